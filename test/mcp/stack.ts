/**
 * One broker with a real PostgreSQL target and a stand-in Kubernetes API server, an
 * OIDC-style issuer, and `agentgate mcp` started as a child process by the MCP SDK's own
 * client over stdio — the way Claude Code, Cursor or VS Code start it.
 */
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { startKubeApiServer, type KubeApiServer } from '../helpers/kube-apiserver.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { makeBrokerConfig, makeTempDir, type TempDir } from '../broker/fixtures.js';
import { runBroker, type Broker } from '../../src/broker/index.js';
import type { BrokerConfig, PolicyConfig } from '../../src/broker/config/types.js';
import { Secret } from '../../src/shared/secret.js';
import { silentLogger } from '../../src/broker/log.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';
import { makeHome, ROOT, type Home } from '../cli/fixture.js';

export const PG = 'pg-test';
export const K8S = 'k8s-test';
export const BIN = join(ROOT, 'bin', 'agentgate');

export const POLICIES: PolicyConfig[] = [
  {
    name: 'careful',
    subjects: { groups: ['careful-agents'] },
    targets: [PG],
    requireReason: true,
    rules: [
      { name: 'careful-reads', sql: ['select'], effect: 'allow', extra: {} },
      { name: 'careful-rest', effect: 'deny', extra: {} },
    ],
  },
  {
    name: 'agents-pg',
    subjects: { groups: ['ai-agents'] },
    targets: [PG],
    rules: [
      { name: 'reads', sql: ['select'], effect: 'allow', extra: {} },
      { name: 'updates-reviewed', sql: ['update'], effect: 'review', approvers: { groups: ['dba'], count: 1 }, extra: {} },
      { name: 'no-writes', effect: 'deny', extra: {} },
    ],
  },
  {
    name: 'agents-k8s',
    subjects: { groups: ['ai-agents'] },
    targets: [K8S],
    rules: [
      { name: 'k8s-reads', k8s: { verbs: ['get', 'list'] }, effect: 'allow', extra: {} },
      { name: 'k8s-deletes-reviewed', k8s: { verbs: ['delete'] }, effect: 'review', approvers: { groups: ['dba'], count: 1 }, extra: {} },
      { name: 'k8s-rest', effect: 'deny', extra: {} },
    ],
  },
];

export interface McpStack {
  pg: PgServer;
  api: KubeApiServer;
  issuer: TestIssuer;
  tmp: TempDir;
  config: BrokerConfig;
  broker: Broker;
  /** CLI environments (AGENTGATE_BROKER, _FINGERPRINT, _TOKEN) per identity. */
  home(sub: string): Home;
  /** Starts `agentgate mcp <args>` as `sub` and connects the SDK client to it. */
  connect(sub: string, args?: string[], extraEnv?: NodeJS.ProcessEnv): Promise<McpChild>;
  events(): Promise<AuditRecord[]>;
  close(): Promise<void>;
}

export interface McpChild {
  client: Client;
  /** Everything the server wrote on stderr so far. */
  stderr(): string;
  close(): Promise<void>;
}

export async function startMcpStack(policies: PolicyConfig[] = POLICIES): Promise<McpStack> {
  const pg = await startPostgres();
  const api = await startKubeApiServer();
  const issuer = await startTestIssuer();
  const tmp = await makeTempDir('agentgate-mcp-');
  const caPath = join(tmp.path, 'k8s-ca.pem');
  await writeFile(caPath, api.caPem, { mode: 0o600 });
  const config = makeBrokerConfig(tmp.path, {
    identity: { issuer: issuer.issuer },
    targets: {
      [PG]: { type: 'postgres', name: PG, host: '127.0.0.1', port: pg.port, database: 'app', user: 'app', password: new Secret(pg.password, '${env:TEST_PG_PASSWORD}'), tls: 'disable', ca: undefined },
      [K8S]: { type: 'kubernetes', name: K8S, server: api.url, ca: caPath, token: new Secret(api.token, '${env:K8S_TOKEN}'), clientCert: undefined, clientKey: undefined },
    },
    policies,
    masking: { [PG]: { columns: ['customers.email'], detectors: ['email', 'credit_card'], style: 'partial' } },
  });
  const broker = await runBroker(config, { port: 0, logger: silentLogger, closeGraceMs: 100 });
  const homes = new Map<string, Home>();
  const children: McpChild[] = [];
  const groups: Record<string, string[]> = { 'agent-7': ['ai-agents'], 'agent-r': ['careful-agents'], bob: ['dba'], sam: ['security'] };

  const home = (sub: string): Home => {
    const h = homes.get(sub);
    if (!h) throw new Error(`no home for ${sub}: call connect or prepare it first`);
    return h;
  };
  for (const [sub, g] of Object.entries(groups)) {
    const token = await issuer.sign({ sub, groups: g }, { expiresIn: 3600 });
    homes.set(sub, makeHome({ AGENTGATE_BROKER: broker.url, AGENTGATE_FINGERPRINT: broker.fingerprint, AGENTGATE_TOKEN: token }));
  }

  return {
    pg,
    api,
    issuer,
    tmp,
    config,
    broker,
    home,
    async connect(sub, args = [], extraEnv = {}) {
      const transport = new StdioClientTransport({
        command: process.execPath,
        args: [BIN, 'mcp', '--receipt-dir', join(home(sub).dir, 'receipts'), ...args],
        env: { ...home(sub).env, ...extraEnv } as Record<string, string>,
        cwd: ROOT,
        stderr: 'pipe',
      });
      let stderr = '';
      transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
      const client = new Client({ name: 'agentgate-test', version: '1.0.0' });
      try {
        await client.connect(transport);
      } catch (err) {
        throw new Error(`agentgate mcp did not start: ${(err as Error).message}\n${stderr}`);
      }
      const child: McpChild = { client, stderr: () => stderr, close: () => client.close() };
      children.push(child);
      return child;
    },
    async events() {
      const out: AuditRecord[] = [];
      for await (const r of broker.audit.read({})) out.push(r);
      return out;
    },
    async close() {
      for (const c of children) await c.close().catch(() => {});
      for (const h of homes.values()) h.cleanup();
      await broker.close().catch(() => {});
      await api.close().catch(() => {});
      await issuer.close().catch(() => {});
      await pg.stop().catch(() => {});
      await tmp.remove().catch(() => {});
    },
  };
}

export { eventually } from '../helpers/eventually.js';
