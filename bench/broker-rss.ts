/**
 * Broker memory holding idle tunneled connections. The broker runs alone in a child
 * process; this process plays the CLI (a connect session and its local listener) and the
 * clients (node-postgres), so the child's RSS is the broker's own.
 */
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
    return {
      connections: clients.length,
      baselineMb: baseline.rssMb,
      heldMb: held,
      peakMb: peak,
      perConnectionKb: ((held - baseline.rssMb) * 1024) / clients.length,
    };
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    await cli.close().catch(() => {});
  }
}
