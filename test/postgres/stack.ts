/**
 * The whole Postgres path on one machine, every part real: a PostgreSQL 15 cluster, an
 * OIDC-style issuer, the broker (HTTPS, tunnel, proxy, SQLite audit), and the CLI side
 * (tunnel dialer, local listener with the session secret). Clients connect to `url`.
 */
import { Agent } from 'undici';
import { startPostgres, type PgServer, type StartPostgresOptions } from '../helpers/postgres.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { makeBrokerConfig, makeTempDir, type BrokerConfigOverrides, type TempDir } from '../broker/fixtures.js';
import { runBroker, type Broker } from '../../src/broker/index.js';
import { startConnectSession, type ConnectSession } from '../../src/tunnel/connect-session.js';
import type { LocalListener } from '../../src/tunnel/local-listener.js';
import type { BrokerConfig, PolicyConfig, PostgresTargetConfig } from '../../src/broker/config/types.js';
import { Secret } from '../../src/shared/secret.js';
import { silentLogger } from '../../src/broker/log.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';

export const TARGET = 'pg-test';

export interface PgStack {
  pg: PgServer;
  issuer: TestIssuer;
  tmp: TempDir;
  config: BrokerConfig;
  broker: Broker;
  token: string;
  dispatcher: Agent;
  session: ConnectSession;
  listener: LocalListener;
  port: number;
  /** `postgresql://agent:<secret>@127.0.0.1:<port>/app?sslmode=disable` */
  url: string;
  /** Environment for psql/pgbench (PGPASSWORD etc.; no secret in argv). */
  env: NodeJS.ProcessEnv;
  /** Restart the broker on the same port and state (a crash and recovery). */
  restartBroker(): Promise<void>;
  /** Every audit event so far. */
  events(): Promise<AuditRecord[]>;
  /** A second connect session as another identity. */
  connectAs(sub: string, groups: string[]): Promise<{ session: ConnectSession; port: number; close(): Promise<void> }>;
  close(): Promise<void>;
}

export interface PgStackOptions {
  pg?: StartPostgresOptions;
  /** Overrides of the target's config; a function sees the started server (e.g. its CA). */
  target?: Partial<PostgresTargetConfig> | ((pg: PgServer) => Partial<PostgresTargetConfig>);
  policies?: PolicyConfig[];
  /** Other config fields (approvals, masking, …). */
  config?: Omit<BrokerConfigOverrides, 'identity' | 'targets' | 'policies'>;
  /** Trusted CI issuers (e.g. a stand-in for GitHub Actions' OIDC issuer). */
  ciIssuers?: BrokerConfig['identity']['ciIssuers'];
  /** Another IdP for users (e.g. the oidc-provider one, for device login and refresh). */
  identity?: Partial<BrokerConfig['identity']>;
}

export async function startPgStack(opts: PgStackOptions = {}): Promise<PgStack> {
  const pg = await startPostgres(opts.pg);
  const issuer = await startTestIssuer();
  const tmp = await makeTempDir('agentgate-pg-');
  const target: PostgresTargetConfig = {
    type: 'postgres',
    name: TARGET,
    host: '127.0.0.1',
    port: pg.port,
    database: 'app',
    user: 'app',
    password: new Secret(pg.password, '${env:TEST_PG_PASSWORD}'),
    tls: 'disable',
    ca: undefined,
    ...(typeof opts.target === 'function' ? opts.target(pg) : opts.target),
  };
  const config = makeBrokerConfig(tmp.path, {
    ...opts.config,
    identity: { issuer: issuer.issuer, ...(opts.ciIssuers ? { ciIssuers: opts.ciIssuers } : {}), ...opts.identity },
    targets: { [TARGET]: target },
    policies: opts.policies ?? [
      { name: 'agents', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: [{ name: 'agents#1', effect: 'allow', extra: {} }] },
    ],
  });
  let broker = await runBroker(config, { port: 0, logger: silentLogger });
  const brokerPort = broker.port;
  const token = await issuer.sign({ sub: 'agent-7', groups: ['ai-agents'] }, { expiresIn: 3600 });
  const dispatcher = new Agent({ connect: { ca: broker.keys.tlsCertPem } });
  const open = async (tok: string): Promise<{ session: ConnectSession; listener: LocalListener }> => {
    const session = startConnectSession({
      endpoint: `${broker.url}/v1/tunnel`,
      dispatcher,
      getToken: async () => tok,
      hostKeyFingerprint: broker.keys.sshHostKeyFingerprint,
      reconnect: { initialMs: 50, maxMs: 500 },
    });
    const listener = await session.listen({ target: TARGET, type: 'postgres', host: '127.0.0.1', port: 0 });
    return { session, listener };
  };
  const { session, listener } = await open(token);
  const port = listener.address.port;
  const url = `postgresql://agent:${session.secret}@127.0.0.1:${port}/app?sslmode=disable`;
  const env = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: 'agent', PGDATABASE: 'app', PGPASSWORD: session.secret, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' };
  const extra: { close(): Promise<void> }[] = [];

  const stack: PgStack = {
    pg,
    issuer,
    tmp,
    config,
    get broker() {
      return broker;
    },
    token,
    dispatcher,
    session,
    listener,
    port,
    url,
    env,
    async restartBroker() {
      await broker.close();
      broker = await runBroker(config, { port: brokerPort, logger: silentLogger });
    },
    async events() {
      const out: AuditRecord[] = [];
      for await (const r of broker.audit.read({})) out.push(r);
      return out;
    },
    async connectAs(sub, groups) {
      const tok = await issuer.sign({ sub, groups }, { expiresIn: 3600 });
      const o = await open(tok);
      const handle = { session: o.session, port: o.listener.address.port, close: () => o.session.close() };
      extra.push(handle);
      return handle;
    },
    async close() {
      for (const e of extra) await e.close().catch(() => {});
      await session.close().catch(() => {});
      await broker.close().catch(() => {});
      await dispatcher.close().catch(() => {});
      await issuer.close().catch(() => {});
      await pg.stop().catch(() => {});
      await tmp.remove().catch(() => {});
    },
  } as PgStack;
  return stack;
}

export { eventually } from '../helpers/eventually.js';
