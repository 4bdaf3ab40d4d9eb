/**
 * The whole Kubernetes path on one machine, every part real except the cluster: the
 * stand-in API server (test/helpers/kube-apiserver.ts), an OIDC-style issuer, the broker
 * (HTTPS, tunnel, Kubernetes proxy, approvals, SQLite audit), the CLI side (tunnel dialer,
 * local listener, the session's kubeconfig), and the real kubectl binary.
 */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import https from 'node:https';
import { Agent } from 'undici';
import { startKubeApiServer, type KubeApiServer } from '../helpers/kube-apiserver.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { makeBrokerConfig, makeTempDir, type TempDir } from '../broker/fixtures.js';
import { runBroker, type Broker } from '../../src/broker/index.js';
import { startConnectSession, type ConnectSession } from '../../src/tunnel/connect-session.js';
import type { BrokerConfig, KubernetesTargetConfig, MaskingConfig, PolicyConfig } from '../../src/broker/config/types.js';
import type { Identity } from '../../src/broker/identity/types.js';
import { Secret } from '../../src/shared/secret.js';
import { silentLogger } from '../../src/broker/log.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';
import type { AuditStore } from '../../src/broker/audit/store.js';
import { connectKubernetes, type KubernetesEndpoint } from '../../src/client/connect-kubernetes.js';

export const TARGET = 'k8s-test';

export const DEFAULT_POLICIES: PolicyConfig[] = [
  {
    name: 'agents-k8s',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'read', k8s: { verbs: ['get', 'list', 'watch'] }, effect: 'allow', extra: {} },
      { name: 'delete-held', k8s: { verbs: ['delete'] }, effect: 'review', approvers: { groups: ['sre'], count: 1 }, extra: {} },
      { name: 'no-exec', k8s: { verbs: ['exec', 'attach', 'portforward'] }, effect: 'deny', extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

export interface KubectlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface Connection {
  session: ConnectSession;
  endpoint: KubernetesEndpoint;
  port: number;
  kubeconfig: string;
  close(): Promise<void>;
}

export interface K8sStack {
  api: KubeApiServer;
  /** The requests the API server saw since index `from` that a client sent through the broker: the broker's own Secret listings (secret-primer.ts) left out. */
  forwarded(from: number): KubeApiServer['requests'];
  issuer: TestIssuer;
  tmp: TempDir;
  config: BrokerConfig;
  broker: Broker;
  /** agent-7 in ai-agents. */
  main: Connection;
  /** Runs kubectl with the main connection's kubeconfig (or another), never throwing. */
  kubectl(args: string[], opts?: { kubeconfig?: string; timeoutMs?: number }): Promise<KubectlResult>;
  /** Runs kubectl with `input` on its stdin and `env` added to its environment (KUBE_EDITOR, feature gates), never throwing. */
  kubectlIn(args: string[], input: string, opts?: { kubeconfig?: string; env?: NodeJS.ProcessEnv }): Promise<KubectlResult>;
  /** Starts kubectl without waiting for it (watches, input on stdin); `env` adds to its environment (KUBE_EDITOR). */
  spawnKubectl(args: string[], opts?: { kubeconfig?: string; env?: NodeJS.ProcessEnv }): ChildProcessWithoutNullStreams;
  /** Another connect session as another identity (token lifetime `expiresIn` seconds, default 3600). */
  connectAs(sub: string, groups: string[], opts?: { expiresIn?: number }): Promise<Connection>;
  /** A reviewer identity for approvals.decide(). */
  reviewer(sub?: string): Identity;
  events(): Promise<AuditRecord[]>;
  close(): Promise<void>;
}

export interface K8sStackOptions {
  policies?: PolicyConfig[];
  masking?: MaskingConfig;
  /** approvals.max_pending_per_requester. */
  maxPendingPerRequester?: number;
  /** Live sessions' limits (credential leeway, max_duration). */
  sessions?: Partial<BrokerConfig['sessions']>;
  /** Overrides of the target's config (idle_timeout, …). */
  target?: Partial<KubernetesTargetConfig>;
  /** An audit store the broker uses instead of opening its own (a wrapper that holds appends); the caller closes it. */
  audit?: (stateDir: string) => Promise<AuditStore>;
}

export async function startK8sStack(opts: K8sStackOptions = {}): Promise<K8sStack> {
  const api = await startKubeApiServer();
  const issuer = await startTestIssuer();
  const tmp = await makeTempDir('agentgate-k8s-');
  const caPath = join(tmp.path, 'k8s-ca.pem');
  await writeFile(caPath, api.caPem, { mode: 0o600 });
  // kubectl keeps a discovery cache under $HOME/.kube/cache: keep it inside the test.
  const home = join(tmp.path, 'home');
  await mkdir(home, { recursive: true, mode: 0o700 });
  const target: KubernetesTargetConfig = {
    type: 'kubernetes',
    name: TARGET,
    server: api.url,
    ca: caPath,
    token: new Secret(api.token, '${env:K8S_TOKEN}'),
    clientCert: undefined,
    clientKey: undefined,
    ...opts.target,
  };
  const config = makeBrokerConfig(tmp.path, {
    identity: { issuer: issuer.issuer },
    targets: { [TARGET]: target },
    policies: opts.policies ?? DEFAULT_POLICIES,
    masking: opts.masking ? { [TARGET]: opts.masking } : {},
    ...(opts.maxPendingPerRequester !== undefined ? { approvals: { timeoutSeconds: 600, webhooks: [], maxPendingPerRequester: opts.maxPendingPerRequester } } : {}),
    ...(opts.sessions ? { sessions: opts.sessions } : {}),
  });
  const broker = await runBroker(config, { port: 0, logger: silentLogger, ...(opts.audit ? { audit: await opts.audit(config.stateDir) } : {}) });
  const dispatcher = new Agent({ connect: { ca: broker.keys.tlsCertPem } });
  const connections: Connection[] = [];

  const open = async (sub: string, groups: string[], o: { expiresIn?: number } = {}): Promise<Connection> => {
    const tok = await issuer.sign({ sub, groups }, { expiresIn: o.expiresIn ?? 3600 });
    const session = startConnectSession({
      endpoint: `${broker.url}/v1/tunnel`,
      dispatcher,
      getToken: async () => tok,
      hostKeyFingerprint: broker.keys.sshHostKeyFingerprint,
      reconnect: false,
    });
    const endpoint = await connectKubernetes(session, { target: TARGET, host: '127.0.0.1', port: 0, dir: join(tmp.path, `kube-${sub}`) });
    const conn: Connection = {
      session,
      endpoint,
      port: endpoint.listener.address.port,
      kubeconfig: endpoint.kubeconfig,
      close: async () => {
        await endpoint.close();
        await session.close();
      },
    };
    connections.push(conn);
    return conn;
  };
  const main = await open('agent-7', ['ai-agents']);

  const env = (): NodeJS.ProcessEnv => ({ PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home, KUBECACHEDIR: join(home, 'cache') });
  const kubectlArgs = (args: string[], kubeconfig: string): string[] => ['--kubeconfig', kubeconfig, ...args];
  const spawnKubectl = (args: string[], o: { kubeconfig?: string; env?: NodeJS.ProcessEnv } = {}): ChildProcessWithoutNullStreams =>
    spawn('kubectl', kubectlArgs(args, o.kubeconfig ?? main.kubeconfig), { env: { ...env(), ...o.env }, stdio: ['pipe', 'pipe', 'pipe'] });

  // The broker lists a namespace's Secrets before a masked request there (secret-primer.ts).
  // The broker's own listings and watches of Secrets are recorded apart (api.brokerRequests).
  const forwarded = (from: number): KubeApiServer['requests'] => api.requests.slice(from);
  return {
    forwarded,
    api,
    issuer,
    tmp,
    config,
    broker,
    main,
    kubectl(args, o = {}) {
      return new Promise<KubectlResult>((resolve) => {
        execFile('kubectl', kubectlArgs(args, o.kubeconfig ?? main.kubeconfig), { env: env(), timeout: o.timeoutMs ?? 30_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
          const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
          resolve({ code, stdout: String(stdout), stderr: String(stderr) });
        });
      });
    },
    spawnKubectl,
    kubectlIn(args, input, o = {}) {
      return new Promise((resolve) => {
        const child = spawnKubectl(args, o);
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
        const timer = setTimeout(() => child.kill(), 30_000);
        child.on('close', (code) => {
          clearTimeout(timer);
          resolve({ code, stdout, stderr });
        });
        child.stdin.end(input);
      });
    },
    connectAs: open,
    reviewer(sub = 'sre-1') {
      return { sub, groups: ['sre'], kind: 'human', issuer: issuer.issuer, expiresAt: Math.floor(Date.now() / 1000) + 3600 };
    },
    async events() {
      const out: AuditRecord[] = [];
      for await (const r of broker.audit.read({})) out.push(r);
      return out;
    },
    async close() {
      for (const c of connections) await c.close().catch(() => {});
      await broker.close().catch(() => {});
      await dispatcher.close().catch(() => {});
      await api.close().catch(() => {});
      await issuer.close().catch(() => {});
      await tmp.remove().catch(() => {});
    },
  };
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** One request with the path exactly as given (node does not normalise it), to agentgate's listener or straight to the stand-in. */
export function rawRequest(to: { port: number; ca: string; token: string }, method: string, path: string, headers: Record<string, string | string[]> = {}, ms = 5_000, body: string | Buffer = ''): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // A connection of its own (no keep-alive reuse): one request's leftovers never meet the next.
    const req = https.request({ host: '127.0.0.1', port: to.port, ca: to.ca, method, path, agent: false, headers: { Authorization: `Bearer ${to.token}`, Accept: 'application/json', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('latin1');
      res.on('data', (c: string) => (text += c));
      const done = (): void => resolve({ status: res.statusCode ?? 0, headers: res.headers, text });
      res.on('end', done);
      // A watch never ends by itself: what came in the first moments is the answer.
      setTimeout(() => {
        res.destroy();
        done();
      }, ms).unref();
    });
    req.on('error', reject);
    req.end(body);
  });
}

export { eventually } from '../helpers/eventually.js';
