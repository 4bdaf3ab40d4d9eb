import { DEFAULT_DANGEROUS_FUNCTIONS } from '../../src/broker/config/schema.js';
/**
 * Shared pieces for the CLI identity tests: a real IdP (oidc-provider) and a real broker,
 * a private HOME per test, and the CLI run as a child process (`node bin/agentgate …`).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrokerConfig } from '../../src/broker/config/types.js';
import { createLogger } from '../../src/broker/log.js';
import { startBroker } from '../../src/broker/server.js';
import { startTestIdp, type TestIdp, type TestIdpOptions } from '../helpers/oidc-provider.js';

/** Repo root (this file runs from dist/test/cli/). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'agentgate');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface Stack {
  idp: TestIdp;
  brokerUrl: string;
  fingerprint: string;
  /** The broker's generated TLS certificate (PEM), to trust with --ca. */
  tlsCertPath: string;
  close(): Promise<void>;
}

export async function startStack(idpOptions: TestIdpOptions = {}): Promise<Stack> {
  const idp = await startTestIdp(idpOptions);
  const stateDir = mkdtempSync(join(tmpdir(), 'agentgate-broker-'));
  const config: BrokerConfig = {
    configPath: join(stateDir, 'agentgate.yaml'),
    listen: { host: '127.0.0.1', port: 0 },
    stateDir,
    tls: { cert: join(stateDir, 'tls.crt'), key: join(stateDir, 'tls.key'), generated: true },
    approvals: { timeoutSeconds: 600, webhooks: [] },
    sessions: { maxDurationSeconds: undefined, expiryLeewaySeconds: 30, loginTimeoutMs: 15_000, tlsHandshakeTimeoutMs: 10_000 },
    dangerousFunctions: [...DEFAULT_DANGEROUS_FUNCTIONS],
    store: { kind: 'sqlite', path: join(stateDir, 'agentgate.db') },
    identity: {
      issuer: idp.issuer,
      audience: idp.audience,
      clientId: idp.deviceClientId,
      groupsClaim: 'groups',
      agentGroups: ['ai-agents'],
      ciIssuers: [],
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      clockToleranceSec: 5,
    },
    targets: {
      'pg-prod': {
        type: 'postgres',
        name: 'pg-prod',
        host: '127.0.0.1',
        port: 5432,
        database: 'app',
        user: 'agentgate_ro',
        password: undefined,
        tls: 'disable',
        ca: undefined,
      },
    },
    policies: [
      {
        name: 'agents-read',
        subjects: { groups: ['ai-agents'] },
        targets: ['pg-prod'],
        rules: [
          { name: 'agents-read#1', sql: ['select', 'explain'], effect: 'allow', extra: {} },
          { name: 'agents-read#2', effect: 'deny', extra: {} },
        ],
      },
    ],
    auditors: { groups: ['security'] },
    masking: {},
    audit: { sync: 'normal', retentionDays: undefined },
    receiptKeyPath: join(stateDir, 'receipt.key'),
    sshHostKeyPath: join(stateDir, 'ssh_host_key'),
  };
  const broker = await startBroker(config, { port: 0, closeGraceMs: 100, logger: createLogger({ level: 'silent' }) });
  return {
    idp,
    brokerUrl: broker.url,
    fingerprint: broker.fingerprint,
    tlsCertPath: config.tls.cert,
    async close() {
      await broker.close();
      await idp.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

export interface Home {
  dir: string;
  configDir: string;
  /** A clean environment for the CLI: no inherited AGENTGATE_*, proxies or D-Bus. */
  env: NodeJS.ProcessEnv;
  cleanup(): void;
}

export function makeHome(extra: NodeJS.ProcessEnv = {}): Home {
  const dir = mkdtempSync(join(tmpdir(), 'agentgate-home-'));
  const configDir = join(dir, 'config');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: dir,
    XDG_CONFIG_HOME: configDir,
    NO_COLOR: '1',
    ...(process.env['TZ'] ? { TZ: process.env['TZ'] } : {}),
    ...extra,
  };
  return { dir, configDir, env, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface RunningCli {
  /** Everything on stderr so far. */
  stderr(): string;
  /** Resolves with the first match of `re` on stderr, or rejects after `ms`. */
  waitForStderr(re: RegExp, ms?: number): Promise<RegExpMatchArray>;
  done: Promise<CliRun>;
  kill(): void;
}

/** Starts `agentgate <args>` (or, with `command`, any program) as a child process. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv, command?: { file: string; args: string[] }): RunningCli {
  const child = command
    ? spawn(command.file, command.args, { env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, [BIN, ...args], { env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const waiters: Array<() => void> = [];
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    for (const w of waiters.splice(0)) w();
  });
  let exited = false;
  const done = new Promise<CliRun>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      exited = true;
      for (const w of waiters.splice(0)) w();
      resolve({ code, stdout, stderr });
    });
  });
  return {
    stderr: () => stderr,
    waitForStderr(re, ms = 15_000) {
      return new Promise((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        const check = (timedOut = false): void => {
          const m = re.exec(stderr);
          if (m) {
            clearTimeout(timer);
            resolve(m);
          } else if (exited || timedOut) {
            clearTimeout(timer);
            reject(new Error(`${re} did not appear ${exited ? 'before the process exited' : `within ${ms} ms`}; stderr:\n${stderr}`));
          } else {
            waiters.push(() => check());
          }
        };
        timer = setTimeout(() => check(true), ms);
        check();
      });
    },
    done,
    kill: () => child.kill('SIGKILL'),
  };
}

export function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<CliRun> {
  return spawnCli(args, env).done;
}

/** The device code the CLI shows (`enter the code:  ABCD-EFGH`). */
export const USER_CODE = /enter the code:\s+(\S+)/;

/** Runs `agentgate login` and plays the user in the browser as `username`. */
export async function loginAs(stack: Stack, username: string, env: NodeJS.ProcessEnv, extraArgs: string[] = []): Promise<CliRun> {
  const cli = spawnCli(['login', '--broker', stack.brokerUrl, '--fingerprint', stack.fingerprint, ...extraArgs], env);
  try {
    const [, code] = await cli.waitForStderr(USER_CODE);
    await stack.idp.completeDeviceFlow(code ?? '', username);
  } catch (err) {
    cli.kill();
    await cli.done;
    throw err;
  }
  return cli.done;
}

/** A JWT-looking string: none may appear in anything the CLI prints. */
export const JWT_LIKE = /eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*/;

/** Compares secrets without ever putting them into an assertion message. */
export function sameSecret(a: string | undefined, b: string | undefined): boolean {
  return a !== undefined && a === b;
}
