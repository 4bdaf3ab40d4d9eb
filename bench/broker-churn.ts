/**
 * Broker memory under churn: RSS of the broker child after many distinct statements (each
 * one a parser run and a cache miss) and after many malformed ones (syntax errors, deep
 * nesting, long junk: the parser's worst inputs). Clients are node-postgres through one
 * connect session; the statements run in parallel on a few connections.
 */
import pg from 'pg';
import type { BrokerProcess } from './broker-process.js';

export interface ChurnResult {
  statements: number;
  malformed: number;
  baselineMb: number;
  afterStatementsMb: number;
  afterMalformedMb: number;
  peakMb: number;
}

const CLIENTS = 4;

/** The i-th distinct statement: new text every time (literals, names and shape vary). */
export function distinctStatement(i: number): string {
  return `select ${i} as n, '${i.toString(36)}' as s, ${i % 7} + ${i % 11} as k where ${i} > ${i % 13} or 'x${i}' like 'y%'`;
}

/** The i-th malformed statement: never valid SQL; some nest deeply, some are long. */
export function malformedStatement(i: number): string {
  switch (i % 4) {
    case 0:
      return `selec ${i} frm nowhere`;
    case 1:
      return `select ${'('.repeat(200 + (i % 300))}${i}`;
    case 2:
      return `select '${'\u00e9'.repeat(1000 + (i % 4000))}`;
    default:
      return `select ${i}, ${'x '.repeat(500 + (i % 2000))}) $$`;
  }
}

export async function measureBrokerChurn(opts: {
  broker: BrokerProcess;
  token: string;
  target: string;
  database: string;
  statements: number;
  malformed: number;
  say?: (line: string) => void;
}): Promise<ChurnResult> {
  const cli = await opts.broker.connect(opts.token, opts.target);
  const clients: pg.Client[] = [];
  try {
    for (let i = 0; i < CLIENTS; i++) {
      const c = new pg.Client({ host: '127.0.0.1', port: cli.port, user: 'agent', password: cli.secret, database: opts.database, ssl: false });
      c.on('error', () => {
        /* surfaces through the awaited calls */
      });
      clients.push(c);
      await c.connect();
      await c.query('select 1');
    }
    const baseline = await opts.broker.memory();
    // The highest RSS sampled during each phase (VmHWM also counts start-up).
    let phaseMax = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        phaseMax = Math.max(phaseMax, (await opts.broker.memory()).rssMb);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    const run = async (count: number, text: (i: number) => string, expectError: boolean): Promise<void> => {
      await Promise.all(
        clients.map(async (c, k) => {
          for (let i = k; i < count; i += CLIENTS) {
            try {
              await c.query(text(i));
              if (expectError) throw new Error(`malformed statement ${i} succeeded`);
            } catch (err) {
              if (!expectError) throw err;
              if ((err as Error).message.startsWith('malformed statement')) throw err;
            }
          }
        }),
      );
    };
    await run(opts.statements, distinctStatement, false);
    const afterStatements = await opts.broker.memory();
    const statementsMax = phaseMax;
    phaseMax = 0;
    opts.say?.(`  ${opts.statements} distinct statements: RSS ${baseline.rssMb.toFixed(1)} → ${afterStatements.rssMb.toFixed(1)} MB (highest sample ${statementsMax.toFixed(1)} MB)`);
    await run(opts.malformed, malformedStatement, true);
    const afterMalformed = await opts.broker.memory();
    sampling = false;
    await sampler;
    opts.say?.(`  ${opts.malformed} malformed statements: RSS → ${afterMalformed.rssMb.toFixed(1)} MB (highest sample ${phaseMax.toFixed(1)} MB; VmHWM ${afterMalformed.hwmMb.toFixed(1)} MB)`);
    return {
      statements: opts.statements,
      malformed: opts.malformed,
      baselineMb: baseline.rssMb,
      afterStatementsMb: afterStatements.rssMb,
      afterMalformedMb: afterMalformed.rssMb,
      peakMb: afterMalformed.hwmMb,
    };
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    await cli.close().catch(() => {});
  }
}
