/**
 * `agentgate broker init [DIR]` and `agentgate broker start [--config F]`. Thin: parse,
 * call the config loader / key setup / server, print. Broker modules are imported lazily
 * so client commands do not pay for loading them.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Option } from 'commander';
import type { Command } from 'commander';
import { ConfigError, UsageError } from '../errors.js';
import type { BrokerConfig } from '../broker/service.js';
import { addBrokerOptions } from '../client/broker-options.js';
import { visible } from '../shared/display-text.js';
import { print, printJson, say } from './render.js';
import { waitForStopSignal } from './signals.js';

export interface BrokerInitOptions {
  issuer?: string;
  audience?: string;
  clientId?: string;
  listen?: string;
  force?: boolean;
  json?: boolean;
}

export interface BrokerStartOptions {
  config?: string;
  logFormat?: 'plain' | 'json';
}

const DEFAULT_INIT_DIR = './agentgate';
const CONFIG_FILE = 'agentgate.yaml';
/** Looked for in order when neither --config nor AGENTGATE_CONFIG is given. */
const DEFAULT_CONFIG_PATHS = ['./agentgate/agentgate.yaml', './agentgate.yaml'];

export function register(program: Command): void {
  const broker = program.command('broker').description('set up and run the broker');

  broker
    .command('init')
    .description('write a commented config and generate the broker keys')
    .argument('[dir]', 'folder for agentgate.yaml and state/', DEFAULT_INIT_DIR)
    .option('--issuer <url>', 'OIDC issuer users log in with')
    .option('--audience <aud>', 'audience the broker requires in access tokens')
    .option('--client-id <id>', 'public OAuth client for the device flow')
    .option('--listen <host:port>', 'address to listen on (default 127.0.0.1:8443)')
    .option('--force', 'overwrite an existing agentgate.yaml')
    .option('--json', 'print {config, state_dir, fingerprint} as JSON on stdout')
    .action(async (dir: string, opts: BrokerInitOptions) => {
      await brokerInit(dir, opts);
    });

  broker
    .command('start')
    .description('validate the config, then run the broker until Ctrl-C')
    .addOption(new Option('--config <file>', `broker config (default ${DEFAULT_CONFIG_PATHS.join(', then ')})`).env('AGENTGATE_CONFIG'))
    .addOption(
      new Option('--log-format <format>', 'the whole stderr stream as plain lines (default on a terminal) or JSON lines (default otherwise)').choices(['plain', 'json']).env('AGENTGATE_LOG_FORMAT'),
    )
    .action(async (opts: BrokerStartOptions) => {
      await brokerStart(opts);
    });

  broker
    .command('migrate')
    .description('copy a stopped broker\'s SQLite store into an empty PostgreSQL store, verifying the chain on both sides')
    .requiredOption('--from <file>', 'the SQLite audit database (<state_dir>/audit.db); receipts.db beside it comes along')
    .addOption(new Option('--to <url>', 'the PostgreSQL store URL (a secret: prefer the environment variable)').env('AGENTGATE_STORE_URL'))
    .option('--json', 'print {events, checkpoints, receipts, head} as JSON on stdout')
    .action(async (opts: BrokerMigrateOptions) => {
      await brokerMigrate(opts);
    });

  addBrokerOptions(
    broker
      .command('sessions')
      .description('operators and auditors: live sessions at the broker (id, actor, target, start, expiry)')
      .option('--json', 'print one JSON document on stdout'),
  ).action(async (flags: LiveFlags) => {
    const { listLiveSessions } = await import('../client/live-sessions.js');
    const res = await listLiveSessions(brokerFlags(flags));
    if (flags.json) return printJson(res);
    if (res.sessions.length === 0) return say('No live sessions.');
    print(['ID\tACTOR\tTARGET\tSTARTED\tEXPIRES', ...res.sessions.map((s) => [s.id, s.actor.sub, s.target, s.started_at, s.expires_at].map((f) => visible(f, true)).join('\t'))].join('\n'));
  });

  addBrokerOptions(
    broker
      .command('revoke')
      .description('operators: end a live session, or every live session of a subject, at once (recorded in the audit log)')
      .argument('<session-or-sub>', 'a session id from `agentgate broker sessions` (pgs_…, k8s_…), or a subject (sub)')
      .option('--sub', 'treat the argument as a subject even if it looks like a session id')
      .option('--json', 'print one JSON document on stdout'),
  ).action(async (which: string, flags: LiveFlags & { sub?: boolean }) => {
    const { revokeLive } = await import('../client/live-sessions.js');
    const res = await revokeLive(brokerFlags(flags), which, Boolean(flags.sub));
    if (flags.json) return printJson(res);
    say(res.ended.length === 0 ? `no live sessions of ${which}; its tunnels (if any) refuse new sessions` : `ended ${res.ended.length} session(s): ${res.ended.join(', ')}`);
  });
}

interface LiveFlags {
  broker?: string;
  ca?: string;
  fingerprint?: string;
  tokenFile?: string;
  json?: boolean;
}

function brokerFlags(f: LiveFlags): LiveFlags {
  return { broker: f.broker, ca: f.ca, fingerprint: f.fingerprint, tokenFile: f.tokenFile };
}

export async function brokerInit(dirArg: string, opts: BrokerInitOptions): Promise<void> {
  const { renderConfigTemplate } = await import('../broker/service.js');
  const { parseBrokerConfig } = await import('../broker/service.js');
  const dir = resolve(dirArg);
  const configPath = join(dir, CONFIG_FILE);

  const text = renderConfigTemplate({
    ...(opts.issuer === undefined ? {} : { issuer: opts.issuer }),
    ...(opts.audience === undefined ? {} : { audience: opts.audience }),
    ...(opts.clientId === undefined ? {} : { clientId: opts.clientId }),
    ...(opts.listen === undefined ? {} : { listen: opts.listen }),
  });
  // Validate before touching the disk, so a bad flag leaves nothing half-written.
  let config: BrokerConfig;
  try {
    config = parseBrokerConfig(text, configPath);
  } catch (err) {
    if (err instanceof ConfigError) {
      throw new UsageError(`these options do not make a valid config:\n${err.problems.map((p) => `  ${p}`).join('\n')}`, {
        hint: 'check --issuer (an https URL), --audience, --client-id and --listen (host:port)',
      });
    }
    throw err;
  }

  // Private keys go into DIR: not into a folder holding other things, and not unremarked into a repository.
  const existing = await readdir(dir).catch(() => [] as string[]);
  if (existing.length > 0 && !opts.force) {
    throw new UsageError(`${dir} is not empty (${existing.length} entr${existing.length === 1 ? 'y' : 'ies'}); broker init writes private keys there`, {
      hint: 'pick a new or empty folder, or pass --force to write into this one',
    });
  }
  const repo = gitWorkTreeOf(dir);
  if (repo) say(`warning: ${dir} is inside the git work tree ${repo}: keep its keys out of commits (add it to .gitignore)`);

  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    // `wx` refuses an existing file atomically; with --force, tighten the mode of the old one too.
    await writeFile(configPath, text, { mode: 0o600, flag: opts.force ? 'w' : 'wx' });
    if (opts.force) await chmod(configPath, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new UsageError(`${configPath} already exists`, {
        hint: `pass --force to overwrite it, or start the broker with it: agentgate broker start --config ${configPath}`,
      });
    }
    throw err;
  }
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  await chmod(config.stateDir, 0o700); // mkdir's mode is masked by umask, and a reused dir may be looser.

  const { ensureBrokerKeys } = await import('../broker/service.js');
  const keys = await ensureBrokerKeys(config);

  if (opts.json) printJson({ config: configPath, state_dir: config.stateDir, fingerprint: keys.tlsFingerprint });
  const url = brokerUrl(config);
  say(
    [
      `wrote ${configPath}`,
      `keys in ${config.stateDir} (0700): TLS certificate, receipt-signing key, SSH host key`,
      `TLS certificate SHA-256 fingerprint: ${keys.tlsFingerprint}`,
      '',
      'next:',
      `  1. edit ${configPath}: identity, then targets and policies`,
      `  2. agentgate broker start --config ${configPath}`,
      `  3. on each client: agentgate login --broker ${url} --fingerprint ${keys.tlsFingerprint}`,
    ].join('\n'),
  );
}

interface BrokerMigrateOptions {
  from: string;
  to?: string;
  json?: boolean;
}

export async function brokerMigrate(opts: BrokerMigrateOptions): Promise<void> {
  if (!opts.to) throw new UsageError('broker migrate needs the PostgreSQL store URL', { hint: 'set AGENTGATE_STORE_URL (or pass --to postgres://…)' });
  const { migrateSqliteToPostgres } = await import('../broker/service.js');
  const r = await migrateSqliteToPostgres({ from: resolve(opts.from), to: opts.to });
  if (opts.json) {
    printJson({ events: r.events, checkpoints: r.checkpoints, receipts: r.receipts, head: r.head });
    return;
  }
  say(`copied ${r.events} audit events, ${r.checkpoints} retention checkpoints and ${r.receipts} receipts; the chain verifies on both sides (head seq ${r.head.seq}, ${r.head.hash})`);
  say('next: set store: { postgres: "${env:…}" } in every broker\'s config and start them');
}

export async function brokerStart(opts: BrokerStartOptions): Promise<void> {
  const { loadBrokerConfig } = await import('../broker/service.js');
  // An empty AGENTGATE_CONFIG counts as unset.
  const configPath = opts.config ? opts.config : await findDefaultConfig();
  // The whole file is validated before anything starts; a ConfigError lists every problem.
  const config = await loadBrokerConfig(configPath);
  // One format on stderr: everything, the start-up lines included, goes through the logger.
  const { createLogger } = await import('../broker/service.js');
  const logger = createLogger({ format: opts.logFormat ?? (process.stderr.isTTY ? 'plain' : 'json') });
  const { configWarnings } = await import('../broker/service.js');
  for (const w of configWarnings(config)) logger.warn(w);

  const { runBroker } = await import('../broker/service.js');
  const broker = await runBroker(config, { logger });
  logger.info(`listening on ${broker.url}`, { url: broker.url });
  logger.info(`TLS certificate SHA-256 fingerprint: ${broker.fingerprint}`, { fingerprint: broker.fingerprint });
  if (process.stderr.isTTY) say('press Ctrl-C to stop');

  await waitForStopSignal();
  logger.info('stopping');
  await broker.close();
}

async function findDefaultConfig(): Promise<string> {
  for (const candidate of DEFAULT_CONFIG_PATHS) {
    const isFile = await stat(candidate).then(
      (s) => s.isFile(),
      () => false,
    );
    if (isFile) return candidate;
  }
  const looked = DEFAULT_CONFIG_PATHS.map((p) => resolve(p)).join(', ');
  throw new ConfigError(`no broker config found (looked for ${looked})`, [], {
    hint: 'write one with `agentgate broker init`, or pass --config FILE (or set AGENTGATE_CONFIG)',
  });
}

/** The work tree holding dir (a `.git` in it or a parent), if any. */
function gitWorkTreeOf(dir: string): string | undefined {
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(join(d, '.git'))) return d;
    if (dirname(d) === d) return undefined;
  }
}

/** How a client on another machine would address this broker. */
function brokerUrl(config: BrokerConfig): string {
  const { host, port } = config.listen;
  const shown = host === '0.0.0.0' || host === '::' ? '<broker-host>' : host.includes(':') ? `[${host}]` : host;
  return `https://${shown}:${port}`;
}
