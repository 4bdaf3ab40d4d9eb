/**
 * The whole SSH path on one machine, every part real: OpenSSH's sshd (test/helpers/sshd.ts),
 * an OIDC-style issuer, the broker (HTTPS, tunnel, SSH proxy, approvals, SQLite audit),
 * the CLI side (tunnel dialer, local listener, the session's OpenSSH client config), and
 * the real ssh, sftp and git binaries.
 */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { Agent } from 'undici';
import { startSshd, type Sshd } from '../helpers/sshd.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { makeBrokerConfig, makeTempDir, type TempDir } from '../broker/fixtures.js';
import { runBroker, type Broker } from '../../src/broker/index.js';
import { startConnectSession, type ConnectSession } from '../../src/tunnel/connect-session.js';
import type { BrokerConfig, MaskingConfig, PolicyConfig, SshTargetConfig } from '../../src/broker/config/types.js';
import type { Identity } from '../../src/broker/identity/types.js';
import { Secret } from '../../src/shared/secret.js';
import { silentLogger } from '../../src/broker/log.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';
import { writeSessionSshConfig } from '../../src/client/session-ssh-config.js';
import type { SessionSummary } from '../../src/broker/session-summary.js';

export const TARGET = 'ssh-test';
/** Same sshd, a wrong pinned host key. */
export const BAD_TARGET = 'ssh-wrong-key';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface SshStack {
  sshd: Sshd;
  tmp: TempDir;
  broker: Broker;
  config: BrokerConfig;
  session: ConnectSession;
  /** `ssh -F <this>` for TARGET and BAD_TARGET. */
  sshConfig: string;
  badSshConfig: string;
  /** Runs a command with the session's env (GIT_SSH_COMMAND etc.), never throwing. */
  run(cmd: string, args: string[], opts?: { cwd?: string; input?: string; timeoutMs?: number }): Promise<RunResult>;
  spawn(cmd: string, args: string[], opts?: { cwd?: string }): ChildProcessWithoutNullStreams;
  env(): NodeJS.ProcessEnv;
  reviewer(sub?: string): Identity;
  events(): Promise<AuditRecord[]>;
  summaries: SessionSummary[];
  /** agent-7's access token (ai-agents), for the real CLI (AGENTGATE_TOKEN). */
  token: string;
  close(): Promise<void>;
}

export interface SshStackOptions {
  reason?: string;
  /** agent-7's token lifetime in seconds (default 3600). */
  tokenExpiresIn?: number;
  /** Live sessions' limits (credential leeway, max_duration). */
  sessions?: Partial<BrokerConfig['sessions']>;
  /** The account the broker logs in to at the target (default: the current user; see startSshd). */
  sshdUser?: string;
}

export async function startSshStack(policies: PolicyConfig[], masking?: MaskingConfig, opts: SshStackOptions = {}): Promise<SshStack> {
  const tmp = await makeTempDir('agentgate-ssh-');
  const sshd = await startSshd(join(tmp.path, 'sshd'), opts.sshdUser !== undefined ? { user: opts.sshdUser } : {});
  const issuer: TestIssuer = await startTestIssuer();
  const base = {
    type: 'ssh' as const,
    host: '127.0.0.1',
    port: sshd.port,
    user: sshd.user,
    privateKey: new Secret(sshd.clientPrivateKey, '${file:broker_key}'),
    password: undefined,
  };
  const target: SshTargetConfig = { ...base, name: TARGET, hostKey: sshd.hostKeyLine };
  // A valid fingerprint of some other key.
  const bad: SshTargetConfig = { ...base, name: BAD_TARGET, hostKey: 'SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s' };
  const summaries: SessionSummary[] = [];
  const config = makeBrokerConfig(tmp.path, {
    identity: { issuer: issuer.issuer },
    targets: { [TARGET]: target, [BAD_TARGET]: bad },
    policies,
    masking: masking ? { [TARGET]: masking } : {},
    ...(opts.sessions ? { sessions: opts.sessions } : {}),
  });
  const broker = await runBroker(config, { port: 0, logger: silentLogger, onSessionEnd: (s) => summaries.push(s) });
  const dispatcher = new Agent({ connect: { ca: broker.keys.tlsCertPem } });
  const tok = await issuer.sign({ sub: 'agent-7', groups: ['ai-agents'] }, { expiresIn: opts.tokenExpiresIn ?? 3600 });
  const session = startConnectSession({
    endpoint: `${broker.url}/v1/tunnel`,
    dispatcher,
    getToken: async () => tok,
    hostKeyFingerprint: broker.keys.sshHostKeyFingerprint,
    reconnect: false,
    ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
  });
  await session.tunnel.ready(20_000);
  const written = [];
  for (const name of [TARGET, BAD_TARGET]) {
    const l = await session.listen({ target: name, type: 'ssh', host: '127.0.0.1', port: 0 });
    written.push(await writeSessionSshConfig({ target: name, host: '127.0.0.1', port: l.address.port, privateKey: session.sshKey.private, brokerHostKey: session.tunnel.hostKey as Buffer }));
  }
  const [main, wrong] = written as [(typeof written)[number], (typeof written)[number]];
  const env = (): NodeJS.ProcessEnv => ({
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: join(tmp.path),
    GIT_SSH_COMMAND: `ssh -F '${main.path}'`,
    GIT_AUTHOR_NAME: 'Agent',
    GIT_AUTHOR_EMAIL: 'agent@example.com',
    GIT_COMMITTER_NAME: 'Agent',
    GIT_COMMITTER_EMAIL: 'agent@example.com',
  });
  return {
    sshd,
    tmp,
    broker,
    config,
    session,
    sshConfig: main.path,
    badSshConfig: wrong.path,
    summaries,
    token: tok,
    env,
    run(cmd, args, o = {}) {
      return new Promise<RunResult>((resolve) => {
        const child = execFile(cmd, args, { env: env(), cwd: o.cwd ?? tmp.path, timeout: o.timeoutMs ?? 30_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
          const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
          resolve({ code, stdout: String(stdout), stderr: String(stderr) });
        });
        if (o.input !== undefined) child.stdin?.end(o.input);
        else child.stdin?.end();
      });
    },
    spawn(cmd, args, o = {}) {
      return spawn(cmd, args, { env: env(), cwd: o.cwd ?? tmp.path, stdio: ['pipe', 'pipe', 'pipe'] });
    },
    reviewer(sub = 'sre-1') {
      return { sub, groups: ['sre'], kind: 'human', issuer: issuer.issuer, expiresAt: Math.floor(Date.now() / 1000) + 3600 };
    },
    async events() {
      const out: AuditRecord[] = [];
      for await (const r of broker.audit.read({})) out.push(r);
      return out;
    },
    async close() {
      await session.close().catch(() => {});
      await main.remove().catch(() => {});
      await wrong.remove().catch(() => {});
      await broker.close().catch(() => {});
      await dispatcher.close().catch(() => {});
      await issuer.close().catch(() => {});
      await sshd.close().catch(() => {});
      await tmp.remove().catch(() => {});
    },
  };
}

export { eventually } from '../helpers/eventually.js';
