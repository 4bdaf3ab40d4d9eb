/**
 * The pgbouncer baseline: a temp ini on a loopback port in front of the same PostgreSQL,
 * transaction pooling, SCRAM with the app user's password in an auth_file. pgbouncer
 * refuses to run as root, so it runs as the `postgres` OS user (setpriv execs in place,
 * so the child we hold is pgbouncer itself) from a dir that user owns.
 *
 * Protocol-level prepared statements (`pgbench -M prepared`) survive transaction pooling
 * only from pgbouncer 1.21 (`max_prepared_statements`); older versions get a second
 * database alias in session mode for the prepared runs.
 */
import { existsSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { accepts, freePort, runOk, spawnTracked, stopChild, tail, waitUntil } from './procs.js';
import type { QueryMode } from './pgbench.js';

export const PGBOUNCER = '/usr/sbin/pgbouncer';

export interface Bouncer {
  port: number;
  version: string;
  /** Database name to connect to for this query mode. */
  database(mode: QueryMode): string;
  /** Pool mode used for this query mode. */
  poolMode(mode: QueryMode): 'transaction' | 'session';
  close(): Promise<void>;
}

export function pgbouncerAvailable(): boolean {
  return existsSync(PGBOUNCER);
}

function parseVersion(text: string): [number, number] {
  const m = /PgBouncer (\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

export async function startPgbouncer(opts: { pgPort: number; user: string; password: string; database: string }): Promise<Bouncer> {
  const versionText = (await runOk(PGBOUNCER, ['--version'])).split('\n')[0]?.trim() ?? '';
  const [major, minor] = parseVersion(versionText);
  const preparedInTransaction = major > 1 || (major === 1 && minor >= 21);
  const uid = Number((await runOk('id', ['-u', 'postgres'])).trim());
  const gid = Number((await runOk('id', ['-g', 'postgres'])).trim());

  const dir = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'agentgate-bench-pgbouncer-'));
  let child: ChildProcess | undefined;
  const close = async (): Promise<void> => {
    if (child) await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await chmod(dir, 0o700);
    await chown(dir, uid, gid);
    const authFile = join(dir, 'userlist.txt');
    // pgbouncer accepts a plain-text password here and does SCRAM with it both ways.
    await writeFile(authFile, `"${opts.user}" "${opts.password.replace(/"/g, '""')}"\n`, { mode: 0o600 });
    await chown(authFile, uid, gid);
    const port = await freePort();
    const upstream = `host=127.0.0.1 port=${opts.pgPort} dbname=${opts.database}`;
    const ini = join(dir, 'pgbouncer.ini');
    await writeFile(ini, [
      '[databases]',
      `${opts.database} = ${upstream} pool_mode=transaction`,
      // Session pooling holds a server connection per client: the pool must fit the curve's
      // largest -c, or the clients past it wait for the whole run.
      `${opts.database}_session = ${upstream} pool_mode=session pool_size=100`,
      '',
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = scram-sha-256',
      `auth_file = ${authFile}`,
      'pool_mode = transaction',
      'default_pool_size = 20',
      'max_client_conn = 200',
      'server_tls_sslmode = disable',
      'ignore_startup_parameters = extra_float_digits',
      'log_connections = 0',
      'log_disconnections = 0',
      ...(preparedInTransaction ? ['max_prepared_statements = 200'] : []),
      '',
    ].join('\n'));
    await chown(ini, uid, gid);
    child = spawnTracked('setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', PGBOUNCER, ini], {
      stdio: ['ignore', 'ignore', 'pipe'],
      cwd: dir,
    });
    const log = tail(child.stderr);
    await waitUntil('pgbouncer to listen', () => accepts(port), { child, log });
    const poolMode = (mode: QueryMode): 'transaction' | 'session' => (mode === 'prepared' && !preparedInTransaction ? 'session' : 'transaction');
    return {
      port,
      version: versionText,
      database: (mode) => (poolMode(mode) === 'session' ? `${opts.database}_session` : opts.database),
      poolMode,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
