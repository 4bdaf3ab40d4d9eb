/**
 * Broker memory holding idle tunneled connections. The broker runs alone in a child
 * process; this process plays the CLI (a connect session and its local listener) and the
 * clients (node-postgres), so the child's RSS is the broker's own.
 */
import { readdir } from 'node:fs/promises';
import pg from 'pg';
import type { BrokerProcess } from './broker-process.js';

export interface RssResult {
  connections: number;
  /** After start, one session and one finished connection (modules loaded, caches warm). */
  baselineMb: number;
  /** Highest of the samples taken while all connections were open and idle. */
  heldMb: number;
  /** VmHWM: the peak over the child's whole life, connection setup included. */
  peakMb: number;
  perConnectionKb: number;
  /** The same broker with many more clients connected (issue 20's 1,000), when asked for. */
  many?: ManyClients;
}

export interface ManyClients {
  clients: number;
  /** Seconds to connect them all (each: two SCRAM exchanges, a PostgreSQL backend). */
  connectSeconds: number;
  brokerRssMb: number;
  brokerFds: number;
  /** This process's (the CLI end's and the clients') RSS growth while they were connected. */
  cliSideRssGrowthMb: number;
  /** Every client ran `select 1` again after all were connected. */
  allAnswered: boolean;
}

async function fdCount(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function measureBrokerRss(opts: {
  broker: BrokerProcess;
  token: string;
  target: string;
  database: string;
  connections: number;
  /** Connections opened at once (each costs two SCRAM exchanges). */
  batch?: number;
  /** After the idle measurement, grow to this many clients and measure again (0 = no). */
  many?: number;
}): Promise<RssResult> {
  const cli = await opts.broker.connect(opts.token, opts.target);
  const clients: pg.Client[] = [];
  try {
    const open = async (): Promise<pg.Client> => {
      const c = new pg.Client({ host: '127.0.0.1', port: cli.port, user: 'agent', password: cli.secret, database: opts.database, ssl: false });
      c.on('error', () => {
        /* surfaces through the awaited calls */
      });
      clients.push(c);
      await c.connect();
      await c.query('select 1');
      return c;
    };

    // Warm up: one full connection, so lazily loaded code and caches count in the baseline.
    const first = await open();
    await first.end();
    clients.length = 0;
    await sleep(500);
    const baseline = await opts.broker.memory();

    const batch = opts.batch ?? 10;
    for (let i = 0; i < opts.connections; i += batch) {
      await Promise.all(Array.from({ length: Math.min(batch, opts.connections - i) }, open));
    }
    // Idle: sample for a second and keep the highest reading.
    let held = 0;
    for (let i = 0; i < 10; i++) {
      await sleep(100);
      held = Math.max(held, (await opts.broker.memory()).rssMb);
    }
    const peak = (await opts.broker.memory()).hwmMb;
    const result: RssResult = {
      connections: clients.length,
      baselineMb: baseline.rssMb,
      heldMb: held,
      peakMb: peak,
      perConnectionKb: ((held - baseline.rssMb) * 1024) / clients.length,
    };
    const many = opts.many ?? 0;
    if (many > clients.length) {
      const ownBefore = process.memoryUsage().rss;
      const started = performance.now();
      for (let i = clients.length; i < many; i += batch) {
        await Promise.all(Array.from({ length: Math.min(batch, many - i) }, open));
      }
      const connectSeconds = (performance.now() - started) / 1000;
      const answers = await Promise.all(clients.map((c) => c.query('select 1 as one').then((r) => r.rows[0]?.one === 1, () => false)));
      await sleep(300);
      result.many = {
        clients: clients.length,
        connectSeconds,
        brokerRssMb: (await opts.broker.memory()).rssMb,
        brokerFds: await fdCount(opts.broker.pid),
        cliSideRssGrowthMb: (process.memoryUsage().rss - ownBefore) / 1024 / 1024,
        allAnswered: answers.every(Boolean),
      };
    }
    return result;
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    await cli.close().catch(() => {});
  }
}
