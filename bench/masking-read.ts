/**
 * Issue 5's benchmark: read all of pgbench_accounts at scale 10 (1M rows, ~96 MB of
 * table) through psql, three ways in one run — direct, through agentgate unmasked (a
 * policy with `masking: off`), and through agentgate with one masked column — and report
 * seconds and MB/s. Target: masked ≤ 1.3 × unmasked. Rounds are interleaved; the median
 * of each path is reported.
 *
 * psql reads with FETCH_COUNT (a cursor, 50,000 rows per FETCH) so its memory stays flat;
 * output goes to /dev/null. MB/s counts the bytes psql printed (measured once, direct).
 */
import { spawn } from 'node:child_process';
import { startPgStack, TARGET } from '../test/postgres/stack.js';
import { pgTool } from './pgbench.js';

export const MASKING_LIMIT = 1.3;

export interface MaskingReadResult {
  rows: number;
  outputMb: number;
  seconds: { direct: number; unmasked: number; masked: number };
  mbPerSecond: { direct: number; unmasked: number; masked: number };
  ratio: number;
  maskedValues: number;
}

function timePsql(env: NodeJS.ProcessEnv, sql: string, countBytes = false): Promise<{ seconds: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn(pgTool('psql'), ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-v', 'FETCH_COUNT=50000', '-c', sql], {
      env,
      stdio: ['ignore', countBytes ? 'pipe' : 'ignore', 'pipe'],
    });
    let bytes = 0;
    let err = '';
    child.stdout?.on('data', (d: Buffer) => (bytes += d.length));
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve({ seconds: (performance.now() - t) / 1000, bytes }) : reject(new Error(`psql exited ${code}: ${err}`))));
  });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

export async function runMaskingReadBench(opts: { scale: number; rounds: number; say: (s: string) => void }): Promise<MaskingReadResult> {
  const stack = await startPgStack({
    policies: [
      { name: 'agents', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: [{ name: 'agents#1', sql: ['select', 'transaction'], effect: 'allow', extra: {} }] },
      { name: 'dba', subjects: { groups: ['dba'] }, targets: [TARGET], rules: [{ name: 'dba#1', sql: ['select', 'transaction'], effect: 'allow', extra: {} }], masking: { mode: 'off' } },
    ],
    config: { masking: { [TARGET]: { columns: ['pgbench_accounts.filler'], detectors: [], style: 'partial' } } },
  });
  try {
    opts.say(`masking read: pgbench -i -s ${opts.scale}`);
    const directEnv = { ...stack.env, PGHOST: '127.0.0.1', PGPORT: String(stack.pg.port), PGUSER: 'app', PGPASSWORD: stack.pg.password };
    await new Promise<void>((resolve, reject) => {
      const c = spawn(pgTool('pgbench'), ['-i', '-q', '-s', String(opts.scale)], { env: directEnv, stdio: 'ignore' });
      c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`pgbench -i exited ${code}`))));
    });
    // Give the filler column content, so masking has something to rewrite.
    await stack.pg.psql("UPDATE pgbench_accounts SET filler = 'acct-' || aid; VACUUM ANALYZE pgbench_accounts;", { database: 'app' });
    const dba = await stack.connectAs('dba-1', ['dba']);
    const unmaskedEnv = { ...stack.env, PGPORT: String(dba.port), PGPASSWORD: dba.session.secret };
    const sql = 'SELECT * FROM pgbench_accounts';
    const rows = Number((await stack.pg.psql('SELECT count(*) FROM pgbench_accounts', { database: 'app' })).trim());
    const seqBefore = stack.broker.audit.head().seq;
    const { bytes } = await timePsql(directEnv, sql, true);
    const times = { direct: [] as number[], unmasked: [] as number[], masked: [] as number[] };
    for (let r = 0; r < opts.rounds; r++) {
      opts.say(`masking read: round ${r + 1}/${opts.rounds}`);
      times.direct.push((await timePsql(directEnv, sql)).seconds);
      times.unmasked.push((await timePsql(unmaskedEnv, sql)).seconds);
      times.masked.push((await timePsql(stack.env, sql)).seconds);
    }
    let maskedValues = 0;
    for await (const e of stack.broker.audit.read({ afterSeq: seqBefore })) {
      const m = e.detail['masked'] as { values?: number } | undefined;
      if (e.type === 'query' && m?.values) maskedValues += m.values;
    }
    const seconds = { direct: median(times.direct), unmasked: median(times.unmasked), masked: median(times.masked) };
    const mb = bytes / 1e6;
    return {
      rows,
      outputMb: mb,
      seconds,
      mbPerSecond: { direct: mb / seconds.direct, unmasked: mb / seconds.unmasked, masked: mb / seconds.masked },
      ratio: seconds.masked / seconds.unmasked,
      maskedValues,
    };
  } finally {
    await stack.close();
  }
}

export function maskingReadLines(r: MaskingReadResult): string[] {
  const f = (s: number, mbs: number): string => `${s.toFixed(2)} s  ${mbs.toFixed(1)} MB/s`;
  return [
    `masked read: ${r.rows.toLocaleString('en-US')} rows of pgbench_accounts (${r.outputMb.toFixed(0)} MB as psql prints them), psql FETCH_COUNT=50000, median of rounds`,
    `  direct                       ${f(r.seconds.direct, r.mbPerSecond.direct)}`,
    `  agentgate, unmasked          ${f(r.seconds.unmasked, r.mbPerSecond.unmasked)}`,
    `  agentgate, 1 column masked   ${f(r.seconds.masked, r.mbPerSecond.masked)}   (${r.maskedValues.toLocaleString('en-US')} values masked, per the audit log)`,
    `${r.ratio <= MASKING_LIMIT ? 'PASS' : 'FAIL'}  masked ≤ ${MASKING_LIMIT}× unmasked: ${r.ratio.toFixed(2)}×`,
  ];
}

// Standalone: node dist/bench/masking-read.js [scale] [rounds]
if (import.meta.url === `file://${process.argv[1]}`) {
  const scale = Number(process.argv[2] ?? 10);
  const rounds = Number(process.argv[3] ?? 3);
  const r = await runMaskingReadBench({ scale, rounds, say: (s) => process.stderr.write(`[bench] ${s}\n`) });
  process.stdout.write(maskingReadLines(r).join('\n') + '\n');
}
