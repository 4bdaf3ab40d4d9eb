/**
 * `agentgate dev`: a broker, an embedded OIDC issuer, a seeded demo PostgreSQL and a demo
 * policy on this machine, plus a token file per demo identity, started together and
 * stopped together. State (broker keys, audit log, config, token files) lives in one dev
 * directory; the demo database is fresh on every start.
 */
import { createWriteStream, rmSync } from 'node:fs';
import { writeFileAtomic } from '../shared/atomic-file.js';

import { chmod, mkdir, open, readFile, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { AgentgateError, UsageError, isAgentgateError } from '../errors.js';
import type { Broker } from '../broker/index.js';
import type { Logger, LogFields } from '../broker/log.js';
import { DEMO_TARGET, DEV_AUDIENCE, DEV_PG_PASSWORD_ENV, DEV_USERS, renderDevConfig, type DevRole } from './config.js';
import { startDevIssuer, type DevIssuer } from './issuer.js';
import { startDemoDatabase, type DemoDatabase } from './postgres.js';
import { renderTour, shellQuote } from './tour.js';

/** Tokens, config and the pid file are the user's alone (0600). */
const writePrivateFile = (path: string, text: string): Promise<void> => writeFileAtomic(path, text, { mode: 0o600 });

export const DEFAULT_DEV_PORT = 8443;

/** The folder holding the `agentgate` executable (dist/src/dev → bin). */
const AGENTGATE_BIN_DIR = fileURLToPath(new URL('../../../bin', import.meta.url));

export interface DevOptions {
  /** Default: defaultDevDir(). */
  dir?: string;
  /** Broker port. Default 8443, or a free one when that is taken; 0 = any free port. */
  port?: number;
  /** Use PGlite even when a PostgreSQL server is installed. */
  pglite?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Progress lines (stderr). */
  say: (line: string) => void;
  /** Aborting while starting stops what has started and rejects with DevAbortedError. */
  signal?: AbortSignal;
}

export interface DevEnvironment {
  dir: string;
  brokerUrl: string;
  /** SHA-256 of the broker's self-signed certificate. */
  fingerprint: string;
  issuer: string;
  target: string;
  database: Pick<DemoDatabase, 'kind' | 'host' | 'port' | 'database' | 'description' | 'dataDir'>;
  configPath: string;
  /** Shell lines exporting AGENTGATE_BROKER and AGENTGATE_FINGERPRINT, and putting this agentgate and its Node first on PATH. */
  envFile: string;
  logFile: string;
  receiptDir: string;
  /** A 0600 file holding an access token, per demo identity. */
  tokenFiles: Record<DevRole, string>;
  /** The tour to print. */
  tour: string;
  /** Stops everything cleanly. */
  close(): Promise<void>;
  /** Forced stop (second Ctrl-C): kills the database server and removes the token files, synchronously. */
  kill(): void;
}

export class DevAbortedError extends AgentgateError {
  override readonly name = 'DevAbortedError';
  constructor() {
    super('AG_DEV_ABORTED', 'agentgate dev was stopped while starting', 1);
  }
}

/** `$XDG_STATE_HOME/agentgate/dev`, else ~/.local/state/agentgate/dev. */
export function defaultDevDir(env: NodeJS.ProcessEnv = process.env): string {
  const state = env['XDG_STATE_HOME'];
  return state && state.startsWith('/') ? join(state, 'agentgate', 'dev') : join(homedir(), '.local', 'state', 'agentgate', 'dev');
}

const TOKEN_FILES: Record<DevRole, string> = { human: 'human.token', reviewer: 'reviewer.token', agent: 'agent.token' };
const TOKEN_TTL_SEC = 8 * 3600;

export async function startDev(opts: DevOptions): Promise<DevEnvironment> {
  const dir = resolve(opts.dir ?? defaultDevDir(opts.env));
  const say = opts.say;
  const signal = opts.signal;
  const checkAbort = (): void => {
    if (signal?.aborted) throw new DevAbortedError();
  };

  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700); // mkdir's mode is masked by umask, and a reused dir may be looser
  const pidFile = join(dir, 'dev.pid');
  await claimDir(pidFile, dir);

  const tokenFiles = Object.fromEntries(Object.entries(TOKEN_FILES).map(([role, f]) => [role, join(dir, f)])) as Record<DevRole, string>;
  // Everything started so far, stopped in reverse on failure or close; the sync half runs on a forced exit.
  const stops: (() => Promise<void>)[] = [];
  const kills: (() => void)[] = [];
  const killAll = (): void => {
    for (const k of [...kills].reverse()) {
      try {
        k();
      } catch {
        // keep going: the rest still needs stopping
      }
    }
  };
  kills.push(() => {
    for (const f of Object.values(tokenFiles)) rmSync(f, { force: true });
    rmSync(pidFile, { force: true });
  });
  stops.push(async () => {
    await Promise.all(Object.values(tokenFiles).map((f) => rm(f, { force: true })));
    await rm(pidFile, { force: true });
  });
  // A crash or process.exit() must not leave a database server behind.
  process.once('exit', killAll);
  const stopAll = async (): Promise<void> => {
    process.off('exit', killAll);
    for (const s of stops.reverse()) await s().catch(() => {});
  };

  try {
    say(`agentgate dev: starting in ${dir}`);
    // The issuer and the database take the longest, and do not depend on each other.
    const [issuerResult, dbResult] = await Promise.allSettled([
      startDevIssuer({ audience: DEV_AUDIENCE, users: Object.values(DEV_USERS), tokenTtlSec: TOKEN_TTL_SEC }),
      startDemoDatabase({ dir, say, ...(opts.pglite ? { pglite: true } : {}), ...(opts.env ? { env: opts.env } : {}), ...(signal ? { signal } : {}) }),
    ]);
    if (issuerResult.status === 'fulfilled') stops.push(() => issuerResult.value.close());
    if (dbResult.status === 'fulfilled') {
      stops.push(() => dbResult.value.close());
      kills.push(() => dbResult.value.kill());
    }
    if (issuerResult.status === 'rejected') throw issuerResult.reason;
    if (dbResult.status === 'rejected') throw dbResult.reason;
    const issuer: DevIssuer = issuerResult.value;
    const db: DemoDatabase = dbResult.value;
    checkAbort();

    const requested = opts.port ?? DEFAULT_DEV_PORT;
    const configPath = join(dir, 'agentgate.yaml');
    const logFile = join(dir, 'broker.log');
    const { broker, portNote } = await startDevBroker({ configPath, logFile, requested, issuer, db, stops });
    checkAbort();

    const writeTokens = async (): Promise<void> => {
      for (const [role, user] of Object.entries(DEV_USERS) as [DevRole, (typeof DEV_USERS)[DevRole]][]) {
        const { token } = await issuer.mintToken(user.username);
        await writePrivateFile(tokenFiles[role], token + '\n');
      }
    };
    await writeTokens();
    // Minted tokens live 8 h; fresh ones replace them at half-life for as long as this runs.
    const refresh = setInterval(() => {
      writeTokens().catch((err: unknown) => say(`agentgate dev: could not refresh the token files: ${(err as Error).message}`));
    }, (TOKEN_TTL_SEC / 2) * 1000);
    refresh.unref();
    stops.push(async () => clearInterval(refresh));

    const envFile = join(dir, 'env');
    await writePrivateFile(
      envFile,
      [
        '# agentgate dev: points the agentgate CLI at the dev broker. Use: . ' + envFile,
        `export AGENTGATE_BROKER=${broker.url}`,
        `export AGENTGATE_FINGERPRINT=${broker.fingerprint}`,
        // The tour calls `agentgate` bare: this Node (maybe the one ./agentgate-dev fetched) and this agentgate come first.
        `export PATH=${shellQuote(`${dirname(process.execPath)}:${AGENTGATE_BIN_DIR}`)}:"$PATH"`,
        '',
      ].join('\n'),
    );
    const receiptDir = join(dir, 'receipts');
    const tour = renderTour({
      dir,
      brokerUrl: broker.url,
      issuer: issuer.issuer,
      target: DEMO_TARGET,
      database: db.description,
      envFile,
      logFile,
      receiptDir,
      tokenFiles,
      ...(portNote ? { portNote } : {}),
    });

    let closing: Promise<void> | undefined;
    return {
      dir,
      brokerUrl: broker.url,
      fingerprint: broker.fingerprint,
      issuer: issuer.issuer,
      target: DEMO_TARGET,
      database: { kind: db.kind, host: db.host, port: db.port, database: db.database, description: db.description, dataDir: db.dataDir },
      configPath,
      envFile,
      logFile,
      receiptDir,
      tokenFiles,
      tour,
      close: () => (closing ??= stopAll()),
      kill: killAll,
    };
  } catch (err) {
    await stopAll();
    // A Ctrl-C at the terminal also reaches initdb and friends, which then fail: that is a stop, not an error.
    if (signal?.aborted) throw new DevAbortedError();
    throw err;
  }
}

interface BrokerStart {
  configPath: string;
  logFile: string;
  requested: number;
  issuer: DevIssuer;
  db: DemoDatabase;
  stops: (() => Promise<void>)[];
}

async function startDevBroker(s: BrokerStart): Promise<{ broker: Broker; portNote?: string }> {
  const { parseBrokerConfig } = await import('../broker/config/load.js');
  const { runBroker } = await import('../broker/index.js');
  const { createLogger } = await import('../broker/log.js');

  const render = (port: number): string =>
    renderDevConfig({
      port,
      issuer: s.issuer.issuer,
      clientId: s.issuer.deviceClientId,
      db: { host: s.db.host, port: s.db.port, database: s.db.database, user: s.db.user, hasPassword: s.db.password !== undefined },
    });
  const text = render(s.requested);
  await writePrivateFile(s.configPath, text);
  // The password goes to the loader in memory; the file names only the variable.
  const config = parseBrokerConfig(text, s.configPath, { env: s.db.password === undefined ? {} : { [DEV_PG_PASSWORD_ENV]: s.db.password } });

  // The broker's JSON log goes to a file; its errors also reach the terminal.
  const logStream = createWriteStream(s.logFile, { flags: 'a', mode: 0o600 });
  await once(logStream, 'open');
  await chmod(s.logFile, 0o600);
  const logger = teeLogger(createLogger({ stream: logStream }), createLogger({ level: 'error' }));
  s.stops.push(async () => {
    logStream.end();
    await once(logStream, 'close').catch(() => {});
  });

  let broker: Broker;
  let portNote: string | undefined;
  try {
    broker = await runBroker(config, { logger, port: s.requested });
  } catch (err) {
    if (!(s.requested !== 0 && isAgentgateError(err) && err.code === 'AG_LISTEN_FAILED' && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE')) {
      throw err;
    }
    broker = await runBroker(config, { logger, port: 0 });
    portNote = `agentgate dev: port ${s.requested} is taken, so the broker listens on ${broker.port} (choose one with --port)`;
  }
  s.stops.push(() => broker.close());
  // The file shows what runs: the port actually taken, when it was 0 or busy.
  if (broker.port !== s.requested) await writePrivateFile(s.configPath, render(broker.port));
  return { broker, ...(portNote ? { portNote } : {}) };
}

/** One `agentgate dev` per directory: a second one would fight over the database, the audit store and the token files. */
async function claimDir(pidFile: string, dir: string): Promise<void> {
  const other = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (Number.isInteger(other) && other > 0 && other !== process.pid && alive(other)) {
    throw new UsageError(`agentgate dev is already running with ${dir} (pid ${other})`, {
      hint: 'use that one, stop it with Ctrl-C, or start another with --dir <other folder> --port 0',
    });
  }
  await writePrivateFile(pidFile, `${process.pid}\n`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}


/** A logger writing every record to two loggers, each filtering by its own level. */
function teeLogger(a: Logger, b: Logger): Logger {
  return {
    level: a.level,
    debug: (m: string, f?: LogFields) => (a.debug(m, f), b.debug(m, f)),
    info: (m: string, f?: LogFields) => (a.info(m, f), b.info(m, f)),
    warn: (m: string, f?: LogFields) => (a.warn(m, f), b.warn(m, f)),
    error: (m: string, f?: LogFields) => (a.error(m, f), b.error(m, f)),
    child: (fields: LogFields) => teeLogger(a.child(fields), b.child(fields)),
  };
}
