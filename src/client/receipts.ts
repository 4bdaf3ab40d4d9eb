/**
 * CLI side of receipts: collect a connect/run session's receipts from the broker and save
 * them, and load the key set a receipt is checked against.
 *
 * Saved as `<dir>/<session>.receipt.json` (the bare DSSE envelope, so any DSSE/in-toto
 * tool can read it), 0600 in a 0700 folder; `<dir>/jwks.json` keeps every broker key seen,
 * so `agentgate receipt verify` works offline later without --key.
 * Default folder: `$XDG_STATE_HOME/agentgate/receipts` (~/.local/state/agentgate/receipts).
 */
import { pinJwks } from './pinned-keys.js';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { UsageError } from '../errors.js';
import { writeFileAtomic } from '../shared/atomic-file.js';
import {
  describeReceipt,
  jwkThumbprint,
  peekStatement,
  verifyReceipt,
  type Ed25519Jwk,
  type ReceiptListResponse,
  type SessionReceiptPredicate,
} from '../shared/receipt.js';
import { createBrokerDispatcher, transportError, type BrokerApi, type BrokerTrust, type TokenContext } from './broker-http.js';
import type { ResolvedToken } from './token-sources.js';

/** The part of a BrokerSession collecting receipts needs. */
export interface ReceiptBrokerSession {
  url: string;
  api: BrokerApi;
  token(): Promise<ResolvedToken>;
  tokenContext(t: ResolvedToken): TokenContext;
}

export interface CollectedReceipt {
  /** The session id (the receipt's id). */
  id: string;
  path: string;
  /** One line: who, where, when, what. */
  summary: string;
  /** Checked against the broker's published keys when it was saved. */
  verified: boolean;
  /** What the receipt attests (only claimed when not verified); undefined when unreadable. */
  predicate: SessionReceiptPredicate | undefined;
}

export interface CollectOptions {
  /**
   * How many receipts to wait for (e.g. the number of connections the session carried):
   * the broker issues them as sessions end, a moment after the tunnel closes. Without it,
   * one fetch.
   */
  expected?: number;
  /** Give up waiting for `expected` after this long. Default 10 000. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export const JWKS_FILE = 'jwks.json';

/** `--receipt-dir`, else `$XDG_STATE_HOME/agentgate/receipts`, else ~/.local/state/agentgate/receipts. */
export function defaultReceiptDir(env: NodeJS.ProcessEnv = process.env): string {
  const state = env['XDG_STATE_HOME'];
  return state && state.startsWith('/') ? join(state, 'agentgate', 'receipts') : join(homedir(), '.local', 'state', 'agentgate', 'receipts');
}

const SAFE_ID = /^[A-Za-z0-9._-]{1,200}$/;

export async function collectReceipts(
  session: ReceiptBrokerSession,
  connectSessionId: string,
  dir?: string,
  opts: CollectOptions = {},
): Promise<CollectedReceipt[]> {
  const folder = resolve(dir ?? defaultReceiptDir(opts.env));
  const t = await session.token();
  const ctx = session.tokenContext(t);
  const path = `/v1/receipts?connect=${encodeURIComponent(connectSessionId)}`;
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let list = await session.api.get<ReceiptListResponse>(path, t.token, ctx);
  while (opts.expected !== undefined && list.receipts.length < opts.expected && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    list = await session.api.get<ReceiptListResponse>(path, t.token, ctx);
  }
  if (list.receipts.length === 0) return [];

  const jwks = await session.api.get<{ keys: unknown[] }>('/.well-known/jwks.json', t.token, ctx);
  await ensurePrivateDir(folder);
  await mergeJwks(join(folder, JWKS_FILE), jwks);
  // Fetched over the session's verified TLS: what `receipt verify` trusts by default.
  await pinJwks(session.url, jwks, opts.env);

  const out: CollectedReceipt[] = [];
  for (const { session: id, envelope } of list.receipts) {
    let verified = false;
    let summary: string;
    let predicate: SessionReceiptPredicate | undefined;
    try {
      predicate = verifyReceipt(envelope, jwks).statement.predicate;
      summary = describeReceipt(predicate);
      verified = true;
    } catch (err) {
      predicate = peekStatement(envelope)?.predicate;
      summary = `NOT VERIFIED (${(err as Error).message})${predicate ? `: claims ${describeReceipt(predicate)}` : ''}`;
    }
    const name = SAFE_ID.test(id) ? id : `receipt-${randomBytes(6).toString('hex')}`;
    const file = join(folder, `${name}.receipt.json`);
    await writeFileAtomic(file, JSON.stringify(envelope, null, 2) + '\n', { mode: 0o600 });
    out.push({ id, path: file, summary, verified, predicate });
  }
  return out;
}

export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

/** Adds the broker's keys to the saved set (keys are never dropped: old receipts need them). */
export async function mergeJwks(path: string, fresh: { keys: unknown[] }): Promise<void> {
  const byKid = new Map<string, Ed25519Jwk>();
  const add = (keys: unknown): void => {
    if (!Array.isArray(keys)) return;
    for (const k of keys) {
      const j = k as Partial<Ed25519Jwk> | null;
      if (j?.kty !== 'OKP' || j.crv !== 'Ed25519' || typeof j.x !== 'string') continue;
      const kid = jwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: j.x });
      if (!byKid.has(kid)) byKid.set(kid, { kty: 'OKP', crv: 'Ed25519', x: j.x, kid, alg: 'EdDSA', use: 'sig' });
    }
  };
  try {
    add((JSON.parse(await readFile(path, 'utf8')) as { keys?: unknown }).keys);
  } catch {
    // Missing or unreadable: start from the broker's set.
  }
  add(fresh.keys);
  await writeFileAtomic(path, JSON.stringify({ keys: [...byKid.values()] }, null, 2) + '\n', { mode: 0o600 });
}

/**
 * Loads a key set: a JWKS (or single JWK) file, or — only when the user gave one — an
 * https URL (plain http only for loopback), fetched with the broker trust flags.
 */
export async function loadJwks(spec: string, trust: BrokerTrust = {}, env: NodeJS.ProcessEnv = process.env): Promise<{ keys: unknown[] }> {
  let json: unknown;
  if (/^https?:\/\//i.test(spec)) {
    const url = new URL(spec);
    const loopback = url.hostname === 'localhost' || url.hostname === '127.0.0.1' || url.hostname === '[::1]';
    if (url.protocol !== 'https:' && !loopback) throw new UsageError(`refusing to fetch keys over plain http from ${url.host}`, { hint: 'use an https URL, or a JWKS file' });
    const dispatcher = createBrokerDispatcher(trust, { env });
    try {
      const res = await request(url, { dispatcher, headers: { accept: 'application/json' } }).catch((err: unknown) => {
        throw transportError(err, spec);
      });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new UsageError(`GET ${spec} answered HTTP ${res.statusCode}`, { hint: "pass the broker's /.well-known/jwks.json URL, or a JWKS file" });
      json = parseJson(text, spec);
    } finally {
      await dispatcher.close();
    }
  } else {
    let text: string;
    try {
      text = await readFile(spec, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read the key file ${spec}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { hint: "pass --key with the broker's JWKS (a file, or its /.well-known/jwks.json URL)" });
    }
    json = parseJson(text, spec);
  }
  const o = json as { keys?: unknown; kty?: unknown } | null;
  if (o && Array.isArray(o.keys)) return { keys: o.keys };
  if (o && typeof o.kty === 'string') return { keys: [o] };
  throw new UsageError(`${spec} is not a JWKS (no "keys" array) or a JWK`, { hint: "pass the broker's /.well-known/jwks.json" });
}

function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new UsageError(`${where} is not JSON`, { hint: "pass the broker's JWKS (a file, or its /.well-known/jwks.json URL)" });
  }
}

/** The key set to check a saved receipt with when no --key was given: jwks.json beside it. */
export async function savedJwksFor(receiptPath: string): Promise<{ keys: unknown[]; path: string } | undefined> {
  const path = join(dirname(resolve(receiptPath)), JWKS_FILE);
  try {
    const o = JSON.parse(await readFile(path, 'utf8')) as { keys?: unknown };
    return Array.isArray(o.keys) ? { keys: o.keys, path } : undefined;
  } catch {
    return undefined;
  }
}

