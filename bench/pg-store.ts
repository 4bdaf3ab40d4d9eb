/**
 * The PostgreSQL store against the SQLite store, in one run (`--pg-store-seconds N`):
 *
 * 1. Audit appends per second: 64 concurrent writers, each appending a statement-sized
 *    event and waiting for it to be durable before the next (as a statement waits for its
 *    intent), for N seconds: SQLite (default journal), PostgreSQL with one broker, and
 *    PostgreSQL with two brokers (two stores, 32 writers each) extending the one chain.
 * 2. pgbench -S -c 8 through agentgate with the SQLite store and with the PostgreSQL store
 *    (the same stack: CLI listener, tunnel, broker, proxy; only the store differs); then a
 *    second broker on the same store and target, and -c 4 through each at once. Both
 *    brokers and the CLI ends run in this one process, so on a small machine this shows
 *    what sharing the store costs, not what a second machine would add.
 *
 * The store database is a PostgreSQL 15 of its own on this machine with fsync on (the test
 * harness turns it off): a commit is a flushed WAL record. Its data is on /dev/shm when
 * there is one, so a flush is cheap here; on a disk it costs the disk's flush latency.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostgres, type PgServer } from '../test/helpers/postgres.js';
import { startPgStack, type PgStack } from '../test/postgres/stack.js';
import { Secret } from '../src/shared/secret.js';
import { openSqliteAuditStore } from '../src/broker/audit/sqlite-store.js';
import { openPostgresStore } from '../src/broker/pgstore/audit-store.js';
import { verifyStore, type AuditStore, type NewAuditEvent } from '../src/broker/audit/store.js';
import { initPgbench, runPgbench, type Endpoint } from './pgbench.js';
import { Agent } from 'undici';
import { makeBrokerConfig, makeTempDir } from '../test/broker/fixtures.js';
import { runBroker } from '../src/broker/index.js';
import { startConnectSession } from '../src/tunnel/connect-session.js';
import { silentLogger } from '../src/broker/log.js';
import { TARGET } from '../test/postgres/stack.js';

export interface PgStoreBenchResult {
  seconds: number;
  appends: { sqlite: number; pg: number; pgTwoBrokers: number; pgTwoVerified: boolean };
  pgbench: { sqlite: number; pg: number; pgTwoBrokers: number } | undefined;
}

const WRITERS = 64;

function event(i: number): NewAuditEvent {
  return {
    session: `pgs_bench${i % 64}`,
    actor: { sub: 'agent-bench', name: null, groups: ['ai-agents'], kind: 'agent' },
    target: 'pg',
    type: 'query.intent',
    detail: { id: i, sql: `SELECT abalance FROM pgbench_accounts WHERE aid = ${i}`, kinds: ['select'], relations: ['public.pgbench_accounts'] },
    decision: { effect: 'allow', rule: 'agents#1' },
    outcome: null,
  };
}

/** `writers` loops on each store, each waiting for its append; events per second over all. */
async function appendRate(stores: AuditStore[], writers: number, seconds: number): Promise<number> {
  const until = Date.now() + seconds * 1000;
  let n = 0;
  const loop = async (s: AuditStore): Promise<void> => {
    while (Date.now() < until) {
      await s.append(event(n));
      n++;
    }
  };
  const started = Date.now();
  await Promise.all(stores.flatMap((s) => Array.from({ length: writers / stores.length }, () => loop(s))));
  return n / ((Date.now() - started) / 1000);
}

function directOf(stack: PgStack): Endpoint {
  return { host: '127.0.0.1', port: stack.pg.port, user: stack.pg.user, password: stack.pg.password, database: stack.pg.database };
}

async function pgbenchThrough(stack: PgStack, seconds: number): Promise<number> {
  const direct = directOf(stack);
  await initPgbench(direct, 1);
  const via: Endpoint = { ...direct, port: stack.port, user: 'agent', password: stack.session.secret };
  await runPgbench(via, { mode: 'simple', clients: 8, threads: 2, seconds: 1 }); // warm-up
  return (await runPgbench(via, { mode: 'simple', clients: 8, threads: 2, seconds })).tps;
}

/**
 * A second broker (same process) on the stack's store and target, and pgbench -c 4 through
 * each broker at once: the two brokers' total TPS.
 */
async function pgbenchTwoBrokers(stack: PgStack, seconds: number): Promise<number> {
  const tmp = await makeTempDir('agentgate-pgstore-bench-b-');
  const config = makeBrokerConfig(tmp.path, { store: stack.config.store, identity: { issuer: stack.issuer.issuer }, targets: stack.config.targets, policies: stack.config.policies });
  const broker = await runBroker(config, { port: 0, logger: silentLogger });
  const dispatcher = new Agent({ connect: { ca: broker.keys.tlsCertPem } });
  const session = startConnectSession({ endpoint: `${broker.url}/v1/tunnel`, dispatcher, getToken: () => Promise.resolve(stack.token), hostKeyFingerprint: broker.keys.sshHostKeyFingerprint });
  try {
    const listener = await session.listen({ target: TARGET, type: 'postgres', host: '127.0.0.1', port: 0 });
    const direct = directOf(stack);
    const viaA: Endpoint = { ...direct, port: stack.port, user: 'agent', password: stack.session.secret };
    const viaB: Endpoint = { ...direct, port: listener.address.port, user: 'agent', password: session.secret };
    await runPgbench(viaB, { mode: 'simple', clients: 4, threads: 2, seconds: 1 }); // warm-up
    const [a, b] = await Promise.all([viaA, viaB].map((e) => runPgbench(e, { mode: 'simple', clients: 4, threads: 1, seconds })));
    return a!.tps + b!.tps;
  } finally {
    await session.close().catch(() => {});
    await broker.close().catch(() => {});
    await dispatcher.close().catch(() => {});
    await tmp.remove().catch(() => {});
  }
}

async function storeServer(): Promise<PgServer> {
  const s = await startPostgres();
  await s.psql('ALTER SYSTEM SET fsync = on; ALTER SYSTEM SET synchronous_commit = on; SELECT pg_reload_conf();', { database: 'postgres' });
  return s;
}

export async function runPgStoreBench(opts: { seconds: number; pgbench: boolean; say: (m: string) => void }): Promise<PgStoreBenchResult> {
  const { seconds, say } = opts;
  const dir = await mkdtemp(join(tmpdir(), 'agentgate-pgstore-bench-'));
  const servers: PgServer[] = [];
  try {
    say(`audit appends/s: SQLite store, ${WRITERS} writers, ${seconds} s`);
    const lite = await openSqliteAuditStore(join(dir, 'audit.db'));
    const sqlite = await appendRate([lite], WRITERS, seconds);
    await lite.close();

    const one = await storeServer();
    servers.push(one);
    say(`audit appends/s: PostgreSQL store, one broker, ${WRITERS} writers, ${seconds} s`);
    const s1 = await openPostgresStore(one.url(), { brokerId: 'brk_bench00000a' });
    const pg = await appendRate([s1], WRITERS, seconds);
    await s1.close();

    const two = await storeServer();
    servers.push(two);
    say(`audit appends/s: PostgreSQL store, two brokers on one chain, ${WRITERS / 2} writers each, ${seconds} s`);
    const a = await openPostgresStore(two.url(), { brokerId: 'brk_bench00000a' });
    const b = await openPostgresStore(two.url(), { brokerId: 'brk_bench00000b' });
    const pgTwoBrokers = await appendRate([a, b], WRITERS, seconds);
    const verified = (await verifyStore(a)).ok;
    await Promise.all([a.close(), b.close()]);

    let pgbench: PgStoreBenchResult['pgbench'];
    if (opts.pgbench) {
      say(`pgbench -S -c 8 through agentgate, SQLite store, ${seconds} s`);
      const liteStack = await startPgStack();
      let liteTps: number;
      try {
        liteTps = await pgbenchThrough(liteStack, seconds);
      } finally {
        await liteStack.close();
      }
      const storeDb = await storeServer();
      servers.push(storeDb);
      say(`pgbench -S -c 8 through agentgate, PostgreSQL store, ${seconds} s`);
      const pgStack = await startPgStack({ config: { store: { kind: 'postgres', url: new Secret(storeDb.url(), '${env:AG_STORE_URL}') } } });
      try {
        const pgTps = await pgbenchThrough(pgStack, seconds);
        say(`pgbench -S -c 4 through each of two brokers on the PostgreSQL store at once, ${seconds} s`);
        pgbench = { sqlite: liteTps, pg: pgTps, pgTwoBrokers: await pgbenchTwoBrokers(pgStack, seconds) };
      } finally {
        await pgStack.close();
      }
    }
    return { seconds, appends: { sqlite, pg, pgTwoBrokers, pgTwoVerified: verified }, pgbench };
  } finally {
    for (const s of servers) await s.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

export function pgStoreLines(r: PgStoreBenchResult): string[] {
  const f = (n: number): string => Math.round(n).toLocaleString('en-US');
  const ratio = (x: number, y: number): string => (y > 0 ? `${(x / y).toFixed(2)}×` : 'n/a');
  return [
    `PostgreSQL store vs SQLite store (${r.seconds} s per cell; store database: its own PostgreSQL 15, fsync on, data on tmpfs):`,
    `  audit appends/s, ${WRITERS} writers each waiting for durability: SQLite ${f(r.appends.sqlite)}, PostgreSQL one broker ${f(r.appends.pg)} (${ratio(r.appends.pg, r.appends.sqlite)} SQLite),` +
      ` two brokers on one chain ${f(r.appends.pgTwoBrokers)} (${ratio(r.appends.pgTwoBrokers, r.appends.pg)} one broker; chain ${r.appends.pgTwoVerified ? 'verified' : 'FAILED verification'})`,
    ...(r.pgbench
      ? [
          `  pgbench -S -c 8 -j 2 (simple) through agentgate: SQLite store ${f(r.pgbench.sqlite)} TPS, PostgreSQL store ${f(r.pgbench.pg)} TPS (${ratio(r.pgbench.pg, r.pgbench.sqlite)})`,
          `  two brokers on the PostgreSQL store, -c 4 through each at once: ${f(r.pgbench.pgTwoBrokers)} TPS in all (${ratio(r.pgbench.pgTwoBrokers, r.pgbench.pg)} one broker at -c 8; both brokers in this one process)`,
        ]
      : []),
  ];
}
