/** Broker and CLI processes for the tests of several brokers on one store: the real `bin/agentgate`. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

export const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));
export const FINGERPRINT = /\b(?:[0-9A-F]{2}:){31}[0-9A-F]{2}\b/;

export interface Proc {
  child: ChildProcess;
  out: string;
  err: string;
  exit: Promise<number | null>;
}

export function spawnCli(args: string[], env: NodeJS.ProcessEnv): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { child, out: '', err: '', exit: new Promise((done) => child.on('close', done)) };
  child.stdout?.on('data', (d: Buffer) => (p.out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (p.err += d.toString()));
  return p;
}

export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** One statement on a fresh connection through a `connect` listener: its rows. */
export async function run(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    return (await c.query(sql)).rows as Record<string, unknown>[];
  } finally {
    await c.end().catch(() => {});
  }
}

/**
 * A broker config on a PostgreSQL store (`AG_STORE_URL`) with one Postgres target `pg`
 * (password `PG_PASSWORD`) and one policy for the `ai-agents` group: `rules` and `extra`
 * are YAML lines (rules indented under `rules:`, extra at the top level).
 */
export function storeBrokerYaml(o: { port: number; stateDir: string; issuer: string; targetPort: number; rules: string[]; extra?: string[] }): string {
  return [
    `listen: 127.0.0.1:${o.port}`,
    `state_dir: ${o.stateDir}`,
    'store: { postgres: "${env:AG_STORE_URL}" }',
    'identity:',
    `  issuer: ${o.issuer}`,
    '  audience: agentgate',
    '  client_id: agentgate-cli',
    '  agent_groups: [ai-agents]',
    'targets:',
    '  pg:',
    '    type: postgres',
    '    host: 127.0.0.1',
    `    port: ${o.targetPort}`,
    '    database: app',
    '    user: app',
    '    password: ${env:PG_PASSWORD}',
    '    tls: disable',
    'policies:',
    '  - name: agents',
    '    subjects: { groups: [ai-agents] }',
    '    targets: [pg]',
    '    rules:',
    ...o.rules.map((r) => `      - ${r}`),
    ...(o.extra ?? []),
    '',
  ].join('\n');
}
