import { DEFAULT_DANGEROUS_FUNCTIONS } from '../../src/broker/config/schema.js';
/**
 * Broker test fixtures: a BrokerConfig pointing at a private temp state dir (built
 * directly, not from YAML), a logger whose output the test can read, and an HTTPS client
 * that trusts exactly the broker's generated certificate.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Agent, fetch } from 'undici';
import type { BrokerConfig, IdentityConfig, SessionsConfig } from '../../src/broker/config/types.js';
import { createLogger } from '../../src/broker/log.js';
import type { Logger } from '../../src/broker/log.js';

export interface TempDir {
  path: string;
  remove(): Promise<void>;
}

export async function makeTempDir(prefix = 'agentgate-broker-'): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export type BrokerConfigOverrides = Partial<Omit<BrokerConfig, 'identity' | 'sessions'>> & { identity?: Partial<IdentityConfig>; sessions?: Partial<SessionsConfig> };

/** A complete config with state in `<root>/state`, listening on 127.0.0.1 (port chosen by the test). */
export function makeBrokerConfig(root: string, overrides: BrokerConfigOverrides = {}): BrokerConfig {
  const stateDir = overrides.stateDir ?? join(root, 'state');
  const { identity, sessions, ...rest } = overrides;
  return {
    configPath: join(root, 'agentgate.yaml'),
    listen: { host: '127.0.0.1', port: 0 },
    stateDir,
    tls: { cert: join(stateDir, 'tls.crt'), key: join(stateDir, 'tls.key'), generated: true },
    store: { kind: 'sqlite', path: join(stateDir, 'agentgate.db') },
    targets: {},
    policies: [],
    auditors: { groups: ['security'] },
    masking: {},
    audit: { sync: 'normal', retentionDays: undefined },
    approvals: { timeoutSeconds: 600, webhooks: [] },
    dangerousFunctions: [...DEFAULT_DANGEROUS_FUNCTIONS],
    receiptKeyPath: join(stateDir, 'receipt.key'),
    sshHostKeyPath: join(stateDir, 'ssh_host_ed25519_key'),
    ...rest,
    sessions: { maxDurationSeconds: undefined, expiryLeewaySeconds: 30, loginTimeoutMs: 15_000, tlsHandshakeTimeoutMs: 10_000, ...sessions },
    identity: {
      issuer: 'https://idp.invalid',
      audience: 'agentgate',
      clientId: 'agentgate-cli',
      groupsClaim: 'groups',
      agentGroups: ['ai-agents'],
      ciIssuers: [],
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      clockToleranceSec: 30,
      ...identity,
    },
  };
}

export interface CapturedLog {
  logger: Logger;
  /** Everything written so far. */
  text(): string;
  records(): Record<string, unknown>[];
}

export function captureLogger(level: 'debug' | 'info' = 'debug'): CapturedLog {
  let buf = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      buf += chunk.toString('utf8');
      cb();
    },
  });
  return {
    logger: createLogger({ level, stream }),
    text: () => buf,
    records: () =>
      buf
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

export interface JsonResponse<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

export interface BrokerClient {
  get<T = unknown>(url: string, opts?: { token?: string; headers?: Record<string, string>; method?: string }): Promise<JsonResponse<T>>;
  close(): Promise<void>;
}

/** An undici client that trusts only `caPem` (the broker's self-signed certificate). */
export function brokerClient(caPem: string): BrokerClient {
  const dispatcher = new Agent({ connect: { ca: caPem } });
  return {
    async get<T>(url: string, opts: { token?: string; headers?: Record<string, string>; method?: string } = {}) {
      const headers: Record<string, string> = { ...opts.headers };
      if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`;
      const res = await fetch(url, { method: opts.method ?? 'GET', headers, dispatcher });
      const text = await res.text();
      return { status: res.status, headers: res.headers as unknown as Headers, body: (text ? JSON.parse(text) : undefined) as T };
    },
    close: () => dispatcher.close(),
  };
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 5_000, intervalMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
