/**
 * Running pgbench against one endpoint and reading its summary. Connection details go in
 * PG* environment variables, so no password ever shows up in argv.
 */
import { existsSync } from 'node:fs';
import { run, runOk } from './procs.js';

const PG_BIN = '/usr/lib/postgresql/15/bin';

/** The versioned binary when present (the Debian wrapper picks a version by cluster otherwise). */
export function pgTool(name: string): string {
  const p = `${PG_BIN}/${name}`;
  return existsSync(p) ? p : name;
}

export interface Endpoint {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export function endpointEnv(e: Endpoint): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  return {
    ...env,
    PGHOST: e.host,
    PGPORT: String(e.port),
    PGUSER: e.user,
    PGPASSWORD: e.password,
    PGDATABASE: e.database,
    PGSSLMODE: 'disable',
    PGCONNECT_TIMEOUT: '10',
    LC_ALL: 'C',
  };
}

export type QueryMode = 'simple' | 'prepared';

export interface PgbenchRun {
  mode: QueryMode;
  clients: number;
  threads: number;
  seconds: number;
}

export interface PgbenchResult {
  tps: number;
  latencyMs: number;
  transactions: number;
}

export function pgbenchArgs(r: PgbenchRun): string[] {
  return ['-S', '-n', '-M', r.mode, '-c', String(r.clients), '-j', String(r.threads), '-T', String(r.seconds)];
}

/** pgbench's stdout; a non-zero exit throws with the last lines it printed. */
async function pgbenchOutput(e: Endpoint, r: PgbenchRun, what: string): Promise<string> {
  const res = await run(pgTool('pgbench'), pgbenchArgs(r), { env: endpointEnv(e) });
  if (res.code !== 0) throw new Error(`${what} exited ${res.code ?? res.signal}: ${(res.stderr || res.stdout).trim().split('\n').slice(-5).join(' | ')}`);
  return res.stdout;
}

export async function runPgbench(e: Endpoint, r: PgbenchRun): Promise<PgbenchResult> {
  return parsePgbench(await pgbenchOutput(e, r, 'pgbench'));
}

/**
 * A warm-up run: its numbers are not used, and at many clients the connections alone may
 * outlast a short -T (pgbench then prints no tps line). Returns the transactions done.
 */
export async function warmPgbench(e: Endpoint, r: PgbenchRun): Promise<number> {
  const out = await pgbenchOutput(e, r, 'pgbench (warm-up)');
  const m = /^number of transactions actually processed: (\d+)/m.exec(out);
  if (m?.[1] === undefined) throw new Error(`could not read pgbench's warm-up summary:\n${out}`);
  return Number(m[1]);
}

/** pgbench's summary (PostgreSQL 15 wording). */
export function parsePgbench(out: string): PgbenchResult {
  const num = (re: RegExp): number | undefined => {
    const m = re.exec(out);
    return m?.[1] === undefined ? undefined : Number(m[1]);
  };
  const tps = num(/^tps = ([\d.]+) \(without initial connection time\)/m);
  const latencyMs = num(/^latency average = ([\d.]+) ms/m);
  const transactions = num(/^number of transactions actually processed: (\d+)/m);
  if (tps === undefined || latencyMs === undefined || transactions === undefined) {
    throw new Error(`could not read pgbench's summary:\n${out}`);
  }
  return { tps, latencyMs, transactions };
}

/** `pgbench -i -s <scale>`: the tables the select-only script reads. */
export async function initPgbench(e: Endpoint, scale: number): Promise<void> {
  await runOk(pgTool('pgbench'), ['-i', '-q', '-s', String(scale)], { env: endpointEnv(e) });
}

/** Run SQL through the endpoint with psql; fails on any error. */
export async function execSql(e: Endpoint, sql: string): Promise<void> {
  await runOk(pgTool('psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql], { env: endpointEnv(e) });
}

/** One `select 1` through the endpoint with psql: proves the whole path works. */
export async function probe(e: Endpoint): Promise<boolean> {
  const r = await run(pgTool('psql'), ['-X', '-A', '-t', '-c', 'select 1'], { env: endpointEnv(e) });
  return r.code === 0 && r.stdout.trim() === '1';
}
