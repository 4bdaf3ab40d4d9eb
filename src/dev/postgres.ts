/**
 * The demo database behind `agentgate dev`: a throwaway local PostgreSQL server when one
 * is installed (initdb + postgres from /usr/lib/postgresql/<v>/bin or PATH), otherwise
 * PGlite — PostgreSQL compiled to WASM, in this process — served over TCP by
 * @electric-sql/pglite-socket. Either way: 127.0.0.1 only, seeded, gone when it stops.
 *
 * PostgreSQL refuses to run as root, so as root every server-side binary runs as the
 * `postgres` OS user through setpriv (which execs: the child we hold is the postmaster,
 * and a signal reaches it). setpriv also gives the postmaster a parent-death signal, so
 * it goes down with us even if we are killed outright.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, readdirSync, readFileSync, rmSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { delimiter, join } from 'node:path';
import { tmpdir } from 'node:os';
import { AgentgateError } from '../errors.js';
import { seedSql } from './seed.js';

export interface DemoDatabase {
  kind: 'postgres' | 'pglite';
  /** One line for the user: what runs and where its data is. */
  description: string;
  host: '127.0.0.1';
  port: number;
  database: string;
  user: string;
  /** What the broker logs in with; undefined for PGlite, which trusts every connection. */
  password: string | undefined;
  /** The local server's cluster (removed on close). */
  dataDir: string | undefined;
  /** Stops the server (or PGlite) and removes its data. */
  close(): Promise<void>;
  /** Immediate stop for a forced exit: signals the postmaster and removes its data, synchronously. */
  kill(): void;
}

export interface DemoDatabaseOptions {
  /** Use PGlite even when a PostgreSQL server is installed. */
  pglite?: boolean;
  /** The dev directory; a local server's cluster goes in `<dir>/postgres` (in a temp dir when running as root). */
  dir: string;
  say: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  /** Set when the user stopped us while starting: then a failed server start is not worth a fallback. */
  signal?: AbortSignal;
}

export interface PostgresInstall {
  /** Folder holding initdb and postgres. */
  bin: string;
  /** `15.4`, from `postgres --version`. */
  version: string;
}

const DEMO_ROLE = 'agentgate_demo';
const DEMO_DB = 'demo';
const START_DEADLINE_MS = 20_000;
const STOP_DEADLINE_MS = 10_000;
const PORT_ATTEMPTS = 5;

export async function startDemoDatabase(opts: DemoDatabaseOptions): Promise<DemoDatabase> {
  if (!opts.pglite) {
    const install = findPostgres(opts.env);
    if (install) {
      try {
        return await startLocalPostgres(install, opts);
      } catch (err) {
        if (opts.signal?.aborted) throw err;
        opts.say(`agentgate dev: could not start PostgreSQL from ${install.bin} (${(err as Error).message.split('\n')[0]}); using PGlite instead`);
      }
    }
  }
  return startPglite();
}

/** The newest installed PostgreSQL with both initdb and postgres, or undefined. */
export function findPostgres(env: NodeJS.ProcessEnv = process.env): PostgresInstall | undefined {
  const dirs: string[] = [];
  try {
    const versions = readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) dirs.push(join('/usr/lib/postgresql', v, 'bin'));
  } catch {
    // not a Debian-style install
  }
  for (const p of (env['PATH'] ?? '').split(delimiter)) if (p) dirs.push(p);
  for (const bin of dirs) {
    if (!executable(join(bin, 'initdb')) || !executable(join(bin, 'postgres'))) continue;
    const r = spawnSync(join(bin, 'postgres'), ['--version'], { encoding: 'utf8', timeout: 5_000 });
    const version = /\(PostgreSQL\)\s+(\S+)/.exec(r.stdout ?? '')?.[1];
    if (r.status === 0 && version) return { bin, version };
  }
  return undefined;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** How to run a server binary: as `postgres` when we are root, and tied to our life when setpriv is there. */
interface Runner {
  argv(cmd: string, args: string[]): [string, string[]];
  owner: { uid: number; gid: number } | undefined;
}

function runner(): Runner {
  const setpriv = findOnPath('setpriv');
  const root = process.getuid?.() === 0;
  let owner: Runner['owner'];
  if (root) {
    if (!setpriv) throw new Error('running as root needs setpriv (util-linux) to start PostgreSQL as the postgres user');
    const ids = (flag: string): number => {
      const r = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error('running as root needs a `postgres` OS user to start PostgreSQL as');
      return Number(r.stdout.trim());
    };
    owner = { uid: ids('-u'), gid: ids('-g') };
  }
  const drop = root ? ['--reuid=postgres', '--regid=postgres', '--init-groups'] : [];
  return {
    owner,
    argv: (cmd, args) => (setpriv ? [setpriv, [...drop, '--pdeathsig', 'SIGQUIT', '--', cmd, ...args]] : [cmd, args]),
  };
}

function scratchBase(): string {
  try {
    accessSync('/dev/shm', constants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

function findOnPath(name: string): string | undefined {
  for (const p of (process.env['PATH'] ?? '').split(delimiter)) {
    if (p && executable(join(p, name))) return join(p, name);
  }
  return undefined;
}

/** The server's environment: C messages (we read its log), none of the caller's PG* settings. */
function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && !k.startsWith('LC_')) env[k] = v;
  env['LANG'] = 'C';
  env['LC_ALL'] = 'C';
  return env;
}

async function startLocalPostgres(install: PostgresInstall, opts: DemoDatabaseOptions): Promise<DemoDatabase> {
  const run = runner();
  // As root, the postgres user must reach the cluster, and the dev dir under root's home is closed to it:
  // a temp dir then, on tmpfs where there is one (initdb and CREATE DATABASE run several times faster there).
  const dir = run.owner ? await mkdtemp(join(scratchBase(), 'agentgate-dev-pg-')) : join(opts.dir, 'postgres');
  let child: ChildProcess | undefined;
  try {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    if (run.owner) await chown(dir, run.owner.uid, run.owner.gid);
    const data = join(dir, 'data');
    const password = randomBytes(24).toString('base64url');

    await exec(run, join(install.bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '--no-instructions', '-E', 'UTF8', '--locale=C', '--wal-segsize=1']);
    // TCP on loopback only, password (SCRAM) required; no Unix socket, so nothing needs /var/run/postgresql.
    await writeFile(join(data, 'pg_hba.conf'), 'host all all 127.0.0.1/32 scram-sha-256\n');
    await writeFile(
      join(data, 'postgresql.conf'),
      [
        '',
        '# agentgate dev: a throwaway demo server',
        "listen_addresses = '127.0.0.1'",
        "unix_socket_directories = ''",
        'max_connections = 50',
        'shared_buffers = 16MB',
        'fsync = off',
        'synchronous_commit = off',
        'full_page_writes = off',
        "password_encryption = 'scram-sha-256'",
        "lc_messages = 'C'",
        '',
      ].join('\n'),
      { flag: 'a' },
    );
    // Seeded in single-user mode, before the server listens: no client binary needed, and the password goes in on stdin.
    await single(run, install.bin, data, 'postgres', [`CREATE ROLE ${DEMO_ROLE} LOGIN PASSWORD '${password}';`, `CREATE DATABASE ${DEMO_DB} OWNER ${DEMO_ROLE};`]);
    await single(run, install.bin, data, DEMO_DB, [`SET ROLE ${DEMO_ROLE};`, ...seedSql()]);

    const launched = await launch(run, install.bin, data);
    child = launched.child;
    const postmaster = child;
    let closing: Promise<void> | undefined;
    const kill = (): void => {
      if (postmaster.exitCode === null && postmaster.signalCode === null) postmaster.kill('SIGQUIT');
      if (postmaster.pid !== undefined) waitGoneSync(postmaster.pid, 3_000);
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // best effort on the way out
      }
    };
    return {
      kind: 'postgres',
      description: `PostgreSQL ${install.version} (${install.bin}), data in ${data}`,
      host: '127.0.0.1',
      port: launched.port,
      database: DEMO_DB,
      user: DEMO_ROLE,
      password,
      dataDir: data,
      kill,
      close: () =>
        (closing ??= (async () => {
          if (postmaster.exitCode === null && postmaster.signalCode === null) {
            postmaster.kill('SIGINT'); // fast shutdown: ends sessions, checkpoints, exits
            if (!(await exitedWithin(postmaster, STOP_DEADLINE_MS))) {
              postmaster.kill('SIGKILL');
              await exitedWithin(postmaster, STOP_DEADLINE_MS);
            }
          }
          await rm(dir, { recursive: true, force: true });
        })()),
    };
  } catch (err) {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGQUIT');
      await exitedWithin(child, STOP_DEADLINE_MS);
    }
    await rm(dir, { recursive: true, force: true }).catch(() => {});
    throw err;
  }
}

async function exec(run: Runner, cmd: string, args: string[], input?: string): Promise<string> {
  const [c, a] = run.argv(cmd, args);
  return new Promise((resolve, reject) => {
    const child = spawn(c, a, { env: serverEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-16_384)));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-16_384)));
    child.on('error', reject);
    child.stdin.on('error', () => {
      // it may exit before reading; its status says why
    });
    child.stdin.end(input ?? '');
    child.on('close', (code, signal) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd.split('/').pop()} failed (${code ?? signal}): ${lastLines(out)}`));
    });
  });
}

/** Runs statements in single-user mode (`-j`: a statement ends at `;` and a blank line). It exits 0 even when one fails, so its log is read. */
async function single(run: Runner, bin: string, data: string, database: string, statements: string[]): Promise<void> {
  const out = await exec(run, join(bin, 'postgres'), ['--single', '-j', '-D', data, '-c', 'fsync=off', database], statements.map((s) => `${s}\n\n`).join(''));
  const failed = /\b(ERROR|FATAL|PANIC):\s+(.*)/.exec(out);
  if (failed) throw new Error(`seeding the demo database failed: ${failed[2]}`);
}

/** Starts the postmaster on a free port; retries when another process takes the port first. */
async function launch(run: Runner, bin: string, data: string): Promise<{ child: ChildProcess; port: number }> {
  let last = '';
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    const port = await freePort();
    const [c, a] = run.argv(join(bin, 'postgres'), ['-D', data, '-p', String(port)]);
    // Its own process group: a Ctrl-C at the terminal reaches only us, and we stop the broker before the database.
    const child = spawn(c, a, { env: serverEnv(), stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let log = '';
    const outcome = await new Promise<'ready' | 'exited' | 'timeout'>((resolve) => {
      const timer = setTimeout(() => resolve('timeout'), START_DEADLINE_MS);
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        log = (log + d).slice(-16_384);
        if (/ready to accept connections/.test(log)) {
          clearTimeout(timer);
          resolve('ready');
        }
      });
      child.once('error', (err) => {
        log += String(err.message);
        clearTimeout(timer);
        resolve('exited');
      });
      child.once('exit', () => {
        clearTimeout(timer);
        resolve('exited');
      });
    });
    if (outcome === 'ready') {
      // Keep draining its log so the pipe never fills and stalls the server.
      child.stderr!.resume();
      child.stderr!.removeAllListeners('data');
      child.stderr!.on('data', () => {});
      return { child, port };
    }
    if (outcome === 'timeout') {
      child.kill('SIGQUIT');
      await exitedWithin(child, STOP_DEADLINE_MS);
      throw new Error(`postgres did not become ready within ${START_DEADLINE_MS / 1000} s: ${lastLines(log)}`);
    }
    last = log;
    if (!/could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(log)) {
      throw new Error(`postgres exited while starting: ${lastLines(log)}`);
    }
  }
  throw new Error(`postgres found no free port: ${lastLines(last)}`);
}

/** PostgreSQL cannot listen on port 0, so ask the kernel for a free port and hand it over. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no free port'))));
    });
  });
}

function exitedWithin(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Blocks until the process is gone (a zombie counts: nobody reaps it during a forced exit). */
function waitGoneSync(pid: number, ms: number): void {
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return;
    }
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X') return;
    Atomics.wait(nap, 0, 0, 10);
  }
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-3).join(' | ');
}

async function startPglite(): Promise<DemoDatabase> {
  const [{ PGlite }, { PGLiteSocketServer }] = await Promise.all([import('@electric-sql/pglite'), import('@electric-sql/pglite-socket')]);
  const db = await PGlite.create();
  let server: InstanceType<typeof PGLiteSocketServer> | undefined;
  try {
    await db.exec(seedSql().join('\n'));
    // PGlite is one backend; the socket server queues statements from several connections onto it.
    server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 32 });
    await server.start();
  } catch (err) {
    await server?.stop().catch(() => {});
    await db.close().catch(() => {});
    throw new AgentgateError('AG_DEV_DATABASE', `could not start the PGlite demo database: ${(err as Error).message}`, 1, {
      hint: 'install PostgreSQL (its server binaries, e.g. the postgresql package) and run agentgate dev again without --pglite',
    });
  }
  const port = Number(server.getServerConn().split(':').pop());
  const running = server;
  let closing: Promise<void> | undefined;
  return {
    kind: 'pglite',
    description: 'PGlite (PostgreSQL in WebAssembly, in this process, in memory)',
    host: '127.0.0.1',
    port,
    // PGlite answers for one database and any user name.
    database: 'postgres',
    user: 'postgres',
    password: undefined,
    dataDir: undefined,
    kill: () => {
      // In memory, in this process: it ends with us.
    },
    close: () =>
      (closing ??= (async () => {
        await running.stop();
        await db.close();
      })()),
  };
}
