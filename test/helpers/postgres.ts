/**
 * A real PostgreSQL 15 server for one test file: a fresh cluster in a temp dir, start the
 * postmaster on a free loopback port, create role `app` and database `app`, and tear it
 * all down again. Tests run as root and postgres refuses root, so every server-side
 * binary runs as the `postgres` OS user through `setpriv` (which execs, so the child we
 * hold is the postmaster itself and a kill reaches it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import { accessSync, constants, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PG_BIN = '/usr/lib/postgresql/15/bin';
const START_DEADLINE_MS = 15_000;
const STOP_DEADLINE_MS = 10_000;
const PORT_ATTEMPTS = 5;

/**
 * Where clusters live. A cluster is ~35 MB in a thousand files; copying that onto this
 * machine's ext4 takes over a second, onto tmpfs a tenth of that, so /dev/shm is used
 * when there is one, os.tmpdir() otherwise.
 */
const BASE_DIR = ((): string => {
  try {
    accessSync('/dev/shm', constants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
})();

export type PgAuth = 'scram-sha-256' | 'md5' | 'password';

export interface StartPostgresOptions {
  /** Method for TCP connections (pg_hba `host` lines). Default scram-sha-256. */
  auth?: PgAuth;
  /** Generate a CA and a server certificate for localhost/127.0.0.1 and turn TLS on. */
  ssl?: boolean;
  /** `max_connections`; default 200 (the bench's 1,000-client run asks for more). */
  maxConnections?: number;
}

export interface PsqlOptions {
  /** Database to run in; default `app`. */
  database?: string;
  /**
   * Unaligned, tuples-only output (`-A -t`), fields split by `|`: `select 1` gives "1\n".
   * Default true; false gives psql's ordinary aligned table.
   */
  tuplesOnly?: boolean;
}

export interface PgServer {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly superuser: 'postgres';
  readonly superPassword: string;
  readonly user: 'app';
  readonly password: string;
  readonly database: 'app';
  readonly auth: PgAuth;
  /** PEM of the CA that signed the server certificate (only with `ssl: true`). */
  readonly caPath: string | undefined;
  /** The temp dir holding data, socket and certificates; removed by stop(). */
  readonly dir: string;
  /**
   * `postgresql://user:password@127.0.0.1:port/app`. `user` defaults to `app`; for the
   * superuser the superuser's password is used; any other role needs `password`.
   * No sslmode is added: pass `ssl` options (with `caPath`) to the client yourself.
   */
  url(user?: string, password?: string): string;
  /** Run SQL through the real psql as the superuser (over the unix socket); returns stdout. */
  psql(sql: string, opts?: PsqlOptions): Promise<string>;
  /** Fast shutdown, then remove the temp dir. Safe to call twice. */
  stop(): Promise<void>;
  /** Fast shutdown keeping the data: the server is down until restart(). */
  halt(): Promise<void>;
  /** Starts a halted server again, same data, same port. */
  restart(): Promise<void>;
}

interface Live {
  child: ChildProcess;
  dir: string;
}

/** Servers still running; the exit hook kills them so a crashed test leaves nothing behind. */
const live = new Set<Live>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    // Only synchronous work is possible here. SIGQUIT is PostgreSQL's immediate shutdown:
    // the postmaster takes its backends down, then exits; once it is gone, nothing writes
    // into the dir any more and it can be removed.
    for (const s of live) {
      try {
        s.child.kill('SIGQUIT');
      } catch {
        /* already gone */
      }
    }
    for (const s of live) {
      if (s.child.pid !== undefined) waitGoneSync(s.child.pid, 5000);
      try {
        rmSync(s.dir, { recursive: true, force: true });
      } catch {
        /* best effort during exit */
      }
    }
  });
}

/**
 * Block until the process has exited. Our own child stays a zombie until the event loop
 * reaps it, which cannot happen inside an exit handler, so "zombie" counts as gone.
 */
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

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a program to completion; stdin (if given) is written and closed, never put in argv. */
function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? cleanEnv(), cwd: opts.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.on('error', () => {
      /* the child may exit before reading; its exit status tells the story */
    });
    child.stdin.end(opts.input ?? '');
  });
}

async function runOk(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd.split('/').pop()} failed (${r.code ?? r.signal}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r.stdout;
}

/** The caller's PG* variables (PGPASSWORD, PGSSLMODE, …) must not leak into our tools. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  env.LANG = 'C';
  env.LC_ALL = 'C';
  return env;
}

/** Argv that runs a PostgreSQL binary as the postgres OS user, exec'ing in place. */
function asPostgres(bin: string, args: string[]): [string, string[]] {
  return asPostgresCmd(join(PG_BIN, bin), args);
}

function asPostgresCmd(cmd: string, args: string[]): [string, string[]] {
  return ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', cmd, ...args]];
}

/** Bump when the template's initdb flags change, so stale templates are not reused. */
const TEMPLATE_VERSION = 2;
let template: Promise<string> | undefined;

/**
 * initdb is most of a start's cost, and its output is the same every time, so it runs
 * once per machine into a shared template that each server copies. The template is
 * built in a staging dir and renamed into place, so a reader never sees a half-built one;
 * when two processes race, the loser's rename fails and it uses the winner's.
 */
function templateCluster(): Promise<string> {
  template ??= (async () => {
    const { uid } = await postgresIds();
    const path = join(BASE_DIR, `agentgate-pg15-template-v${TEMPLATE_VERSION}`);
    const usable = async (): Promise<boolean> => {
      try {
        const st = await stat(join(path, 'PG_VERSION'));
        return st.uid === uid && (await stat(path)).uid === uid;
      } catch {
        return false;
      }
    };
    if (await usable()) return path;
    const staging = await mkdtemp(join(BASE_DIR, 'agentgate-pg15-staging-'));
    try {
      await chown(staging, uid, (await postgresIds()).gid);
      const data = join(staging, 'data');
      // Auth lines are rewritten per server; trust here only keeps initdb from asking.
      // 1 MB WAL segments instead of 16 MB: less to copy for every server.
      const [cmd, args] = asPostgres('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '--no-instructions',
        '-E', 'UTF8', '--locale=C', '--wal-segsize=1']);
      await runOk(cmd, args);
      // Role and database `app` go into the template too (single-user mode, no server
      // needed): CREATE DATABASE is the slowest statement a start would otherwise run.
      // Passwords are set per server, after start.
      const [single, singleArgs] = asPostgres('postgres', ['--single', '-D', data, '-c', 'fsync=off', '-c', 'log_min_messages=warning',
        'postgres']);
      await runOk(single, singleArgs, { input: 'CREATE ROLE app LOGIN;\nCREATE DATABASE app OWNER app STRATEGY FILE_COPY;\n' });
      try {
        await rename(data, path);
      } catch (e) {
        if (!(await usable())) throw e;
      }
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
    if (!(await usable())) throw new Error(`PostgreSQL template at ${path} is not owned by the postgres user; remove it`);
    return path;
  })();
  template.catch(() => (template = undefined));
  return template;
}

let pgIds: { uid: number; gid: number } | undefined;
async function postgresIds(): Promise<{ uid: number; gid: number }> {
  if (!pgIds) {
    const uid = Number((await runOk('id', ['-u', 'postgres'])).trim());
    const gid = Number((await runOk('id', ['-g', 'postgres'])).trim());
    pgIds = { uid, gid };
  }
  return pgIds;
}

/** PostgreSQL cannot take port 0, so ask the kernel for a free port and hand it over. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

const secret = (): string => randomBytes(18).toString('hex');

async function makeCertificates(dir: string): Promise<{ caPath: string; certPath: string; keyPath: string }> {
  const caKey = join(dir, 'ca.key');
  const caPath = join(dir, 'ca.crt');
  const keyPath = join(dir, 'server.key');
  const csrPath = join(dir, 'server.csr');
  const certPath = join(dir, 'server.crt');
  const extPath = join(dir, 'server.ext');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await runOk('openssl', ['req', '-x509', ...ec, '-keyout', caKey, '-out', caPath, '-days', '2', '-subj', '/CN=agentgate test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await runOk('openssl', ['req', ...ec, '-keyout', keyPath, '-out', csrPath, '-subj', '/CN=localhost']);
  await writeFile(extPath, [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '',
  ].join('\n'));
  await runOk('openssl', ['x509', '-req', '-in', csrPath, '-CA', caPath, '-CAkey', caKey, '-CAcreateserial', '-out', certPath,
    '-days', '2', '-extfile', extPath]);
  // PostgreSQL refuses a key file that others can read; it must belong to the server user.
  const { uid, gid } = await postgresIds();
  await chown(keyPath, uid, gid);
  await chmod(keyPath, 0o600);
  await chown(certPath, uid, gid);
  await rm(caKey);
  return { caPath, certPath, keyPath };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves when the child has exited (immediately if it already has). */
function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  // The child is unref'd; while someone waits for it, keep the event loop alive.
  const keepAlive = setInterval(() => {}, 60_000);
  return new Promise((r) =>
    child.once('exit', () => {
      clearInterval(keepAlive);
      r();
    }),
  );
}

/** Whether the child exits within `ms`; the timer is cleared so it never holds the process open. */
function exitedWithin(child: ChildProcess, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- exited only resolves (on 'exit')
    void exited(child).then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PgServer> {
  installExitHook();
  const auth: PgAuth = opts.auth ?? 'scram-sha-256';
  const { uid, gid } = await postgresIds();
  const dir = await mkdtemp(join(BASE_DIR, 'agentgate-pg-'));
  try {
    await chmod(dir, 0o700);
    await chown(dir, uid, gid);
    const data = join(dir, 'data');

    const [cpCmd, cpArgs] = asPostgresCmd('/bin/cp', ['-a', await templateCluster(), data]);
    await runOk(cpCmd, cpArgs);
    // What initdb's --auth-local=trust --auth-host=<auth> would write; IPv4 loopback only.
    await writeFile(join(data, 'pg_hba.conf'), `local all all trust\nhost all all 127.0.0.1/32 ${auth}\n`);

    const certs = opts.ssl ? await makeCertificates(dir) : undefined;
    const passwordEncryption = auth === 'md5' ? 'md5' : 'scram-sha-256';
    const conf = [
      '',
      '# agentgate test harness',
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${dir}'`,
      'shared_buffers = 16MB',
      `max_connections = ${opts.maxConnections ?? 200}`,
      // Two-phase commit on, as on servers whose applications use it: the adversarial corpus attacks it.
      'max_prepared_transactions = 8',
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      `password_encryption = '${passwordEncryption}'`,
      "log_min_messages = 'warning'",
      ...(certs ? ['ssl = on', `ssl_cert_file = '${certs.certPath}'`, `ssl_key_file = '${certs.keyPath}'`] : []),
      '',
    ].join('\n');
    await writeFile(join(data, 'postgresql.conf'), conf, { flag: 'a' });

    const { entry, port } = await launch(data, dir);
    let current = entry;

    const superPassword = secret();
    const password = secret();
    const psql = async (sql: string, o: PsqlOptions = {}): Promise<string> => {
      const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', dir, '-p', String(port), '-U', 'postgres', '-d', o.database ?? 'app'];
      if (o.tuplesOnly ?? true) args.push('-A', '-t');
      // SQL goes in on stdin so passwords in it never show up in a process listing.
      const r = await run('psql', [...args, '-f', '-'], { input: sql });
      if (r.code !== 0) throw new Error(`psql failed (${r.code ?? r.signal}): ${r.stderr.trim()}`);
      return r.stdout;
    };

    // Passwords are set after start so they are hashed with this mode's password_encryption
    // (md5 auth silently upgrades to SCRAM when the stored hash is SCRAM).
    await psql(
      [`ALTER ROLE postgres PASSWORD '${superPassword}';`, `ALTER ROLE app PASSWORD '${password}';`].join('\n'),
    );

    const halt = async (): Promise<void> => {
      const child = current.child;
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGINT'); // fast shutdown
        if (!(await exitedWithin(child, STOP_DEADLINE_MS))) {
          child.kill('SIGKILL');
          await exited(child);
        }
      }
      live.delete(current);
    };
    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        await halt();
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    };
    const restart = async (): Promise<void> => {
      await halt();
      current = (await launch(data, dir, port)).entry;
    };

    return {
      host: '127.0.0.1',
      port,
      superuser: 'postgres',
      superPassword,
      user: 'app',
      password,
      database: 'app',
      auth,
      caPath: certs?.caPath,
      dir,
      url(user = 'app', pw?: string): string {
        const p = pw ?? (user === 'app' ? password : user === 'postgres' ? superPassword : undefined);
        const cred = p === undefined ? encodeURIComponent(user) : `${encodeURIComponent(user)}:${encodeURIComponent(p)}`;
        return `postgresql://${cred}@127.0.0.1:${port}/app`;
      },
      psql,
      stop,
      halt,
      restart,
    };
  } catch (err) {
    for (const s of live) {
      if (s.dir === dir) {
        s.child.kill('SIGQUIT');
        await exited(s.child);
        live.delete(s);
      }
    }
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Start the postmaster on a free port, retrying when another process grabbed it first. */
async function launch(data: string, dir: string, fixedPort?: number): Promise<{ entry: Live; port: number }> {
  let lastErr = '';
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    const port = fixedPort ?? (await freePort());
    const [cmd, args] = asPostgres('postgres', ['-D', data, '-p', String(port)]);
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: cleanEnv() });
    // Registered at once, so even a crash during startup leaves no server behind.
    const entry: Live = { child, dir };
    live.add(entry);
    // Keep only the tail of the server log, for error messages; drain it so the pipe never blocks.
    let log = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      log = (log + d).slice(-8192);
    });
    // A test that forgets stop() must not hang its process; the exit hook does the cleanup.
    child.unref();
    (child.stderr as unknown as { unref?: () => void }).unref?.();

    const deadline = Date.now() + START_DEADLINE_MS;
    let ready = false;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) break;
      const r = await run(join(PG_BIN, 'pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port), '-d', 'postgres', '-U', 'postgres']);
      if (r.code === 0) {
        ready = true;
        break;
      }
      await sleep(20);
    }
    if (ready) return { entry, port };

    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGQUIT');
      await exited(child);
      live.delete(entry);
      throw new Error(`postgres did not become ready within ${START_DEADLINE_MS} ms: ${log.trim()}`);
    }
    await exited(child);
    live.delete(entry);
    lastErr = log.trim();
    if (!/Address already in use|could not bind|could not create any TCP\/IP sockets/i.test(lastErr)) {
      throw new Error(`postgres exited during startup: ${lastErr}`);
    }
    // Someone took the port between our probe and the bind: try another.
  }
  throw new Error(`postgres could not find a free port after ${PORT_ATTEMPTS} attempts: ${lastErr}`);
}
