/**
 * The audit log's hash chain: the event shape, its canonical encoding, and verification.
 * Shared by the broker (which writes the chain) and the CLI's `audit verify` (which checks
 * an export offline), so nothing here may import broker code.
 *
 * Each record's `hash` is SHA-256 (hex) over the canonical JSON of the record without
 * `hash` — which includes `prev`, the hash of the record before it. Changing, removing,
 * inserting or reordering any record breaks the chain at that point.
 */
import { createHash, hash } from 'node:crypto';

/** `prev` of the first record: 64 zeros. */
export const GENESIS_PREV = '0'.repeat(64);

export type ActorKind = 'human' | 'agent' | 'ci';

export interface AuditActor {
  /** The identity's stable subject (OIDC `sub`). */
  sub: string;
  /** Display name when the token carried one. */
  name?: string | null;
  groups: string[];
  kind: ActorKind;
}

export type AuditEventType =
  | 'session.start'
  | 'query.intent'
  | 'query'
  | 'k8s.request.intent'
  | 'k8s.request'
  | 'ssh.command'
  | 'decision'
  | 'approval.requested'
  | 'approval.decided'
  | 'session.end'
  // Open-ended on purpose: new event kinds must not need a change here to be recorded.
  | (string & {});

export interface AuditDecision {
  effect: 'allow' | 'deny' | 'review';
  /** The policy rule that decided; null when nothing matched (default deny). */
  rule: string | null;
  /** The approval request that released (or refused) a held statement. */
  approval?: string;
  /** Why, in words (deny and review decisions). */
  reason?: string;
}

export interface AuditOutcome {
  /**
   * `unknown`: the broker stopped between forwarding and the answer (audit/interrupted.ts);
   * `skipped`: sent, but the server skipped it after an earlier error in its batch.
   */
  status: 'ok' | 'error' | 'unknown' | 'skipped';
  rows?: number;
  bytes?: number;
  sqlstate?: string;
  duration_ms?: number;
}

/** JSON data: what `detail` may hold. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue | undefined };

/** One audit log entry as stored and exported. */
export interface AuditRecord {
  seq: number;
  /** ISO-8601 UTC with milliseconds, as `Date.prototype.toISOString` prints it. */
  time: string;
  /** Null for events outside any session (broker start, config reload, …). */
  session: string | null;
  /** Null for events no identity caused. */
  actor: AuditActor | null;
  target: string | null;
  type: AuditEventType;
  /** Statement text, request line, … — already masked by the caller. */
  detail: { [key: string]: JsonValue | undefined };
  decision: AuditDecision | null;
  outcome: AuditOutcome | null;
  /** `hash` of the record before; GENESIS_PREV for the first. */
  prev: string;
  hash: string;
}

/**
 * RFC 8785-style canonical JSON: object keys sorted by UTF-16 code units, no whitespace,
 * strings escaped as JSON.stringify does, numbers as ECMAScript prints them (so -0 is 0).
 * Rejects what has no single JSON form: non-finite numbers, bigint, functions, symbols,
 * `undefined` as a value or array element. `undefined` object members are left out, as in
 * JSON.stringify, and `toJSON()` is honoured (so a Date becomes its ISO string).
 */
export function canonicalJson(value: unknown): string {
  return canonicalize(value).text;
}

/**
 * The canonical JSON of `value` and a deep copy of it (as JSON.parse of that text would
 * give): the audit store hashes the text and hands the copy out as the record, so later
 * changes to the caller's objects cannot make the two differ.
 *
 * One walk validates the value and builds the copy with every object's keys inserted in
 * sorted order; then JSON.stringify (native) writes exactly the canonical form — about 3×
 * faster than encoding member by member, and the copy replaces a JSON.parse. Two kinds of
 * key JSON.stringify would not write in insertion order: integer-like keys (engines
 * enumerate those first, numerically) and `__proto__` (set as an own property here). A
 * copy holding either is written by `writeSorted` instead.
 */
export function canonicalize(value: unknown): { text: string; copy: unknown } {
  const walk: CopyWalk = { stack: [], insertionOrdered: true };
  try {
    const copy = sortedCopy(value, walk);
    return { text: walk.insertionOrdered ? JSON.stringify(copy) : writeSorted(copy), copy };
  } catch (e) {
    if (e instanceof Unencodable) throw new TypeError(`canonicalJson: $${e.path.reverse().join('')} ${e.reason}`);
    throw e;
  }
}

interface CopyWalk {
  /** The objects being copied, for cycle detection (shallow, so a list is cheap). */
  stack: object[];
  /** False once a key JSON.stringify would not write in insertion order was copied. */
  insertionOrdered: boolean;
}

const INDEX_LIKE = /^(?:0|[1-9]\d*)$/;

/** Validates `value` (naming where it fails) and copies it, keys sorted, undefined members dropped, toJSON applied. */
function sortedCopy(value: unknown, walk: CopyWalk): unknown {
  if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    value = (value as { toJSON: (key: string) => unknown }).toJSON('');
  }
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw new Unencodable(`is ${value}, which JSON cannot represent`);
      return value;
    case 'object': {
      if (value === null) return null;
      const stack = walk.stack;
      if (stack.includes(value)) throw new Unencodable('is a circular reference');
      stack.push(value);
      let out: unknown[] | Record<string, unknown>;
      if (Array.isArray(value)) {
        const arr = new Array<unknown>(value.length);
        for (let i = 0; i < value.length; i++) {
          const item: unknown = value[i];
          try {
            if (item === undefined) throw new Unencodable('is undefined, which a JSON array cannot hold');
            arr[i] = sortedCopy(item, walk);
          } catch (e) {
            throw at(e, `[${i}]`);
          }
        }
        out = arr;
      } else {
        const keys = Object.keys(value);
        sortKeys(keys);
        const obj: Record<string, unknown> = {};
        for (const key of keys) {
          const member: unknown = (value as Record<string, unknown>)[key];
          if (member === undefined) continue;
          let copied: unknown;
          try {
            copied = sortedCopy(member, walk);
          } catch (e) {
            throw at(e, `.${key}`);
          }
          if (key === '__proto__') {
            Object.defineProperty(obj, key, { value: copied, enumerable: true, writable: true, configurable: true });
            walk.insertionOrdered = false;
          } else {
            if (key.charCodeAt(0) <= 0x39 && INDEX_LIKE.test(key)) walk.insertionOrdered = false;
            obj[key] = copied;
          }
        }
        out = obj;
      }
      stack.pop();
      return out;
    }
    default:
      throw new Unencodable(`is ${typeof value === 'undefined' ? 'undefined' : `a ${typeof value}`}, which JSON cannot represent`);
  }
}

/**
 * Sorts keys in place by UTF-16 code units (what RFC 8785 asks for, and what `<` on strings
 * compares). An audit event's objects have a handful of keys: insertion sort allocates
 * nothing, where Array.prototype.sort copies into a work array — measured as a quarter of
 * all the broker's allocation per statement. Long key lists still go to the built-in sort.
 */
function sortKeys(keys: string[]): void {
  const n = keys.length;
  if (n > 24) {
    keys.sort();
    return;
  }
  for (let i = 1; i < n; i++) {
    const k = keys[i] as string;
    let j = i - 1;
    if (!(k < (keys[j] as string))) continue;
    while (j >= 0 && k < (keys[j] as string)) {
      keys[j + 1] = keys[j] as string;
      j--;
    }
    keys[j + 1] = k;
  }
}

/** Canonical text of a copy sortedCopy made (already valid JSON data): keys sorted at every level. */
function writeSorted(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(writeSorted).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${writeSorted(o[k])}`).join(',')}}`;
}

/** Thrown deep down; each level on the way out adds its key, so the happy path builds no paths. */
class Unencodable extends Error {
  readonly path: string[] = [];
  constructor(readonly reason: string) {
    super(reason);
  }
}

function at(e: unknown, segment: string): unknown {
  if (e instanceof Unencodable) e.path.push(segment);
  return e;
}

export function sha256Hex(text: string): string {
  // The one-shot form: no Hash object per call (the audit store hashes every event).
  return hash('sha256', text, 'hex');
}

/** SHA-256 (hex) over the canonical JSON of every field but `hash` (ignored if present). */
export function eventHash(event: Omit<AuditRecord, 'hash'> | AuditRecord): string {
  return sha256Hex(canonicalJson(withoutHash(event)));
}

/** The exact text that is hashed for a record: its canonical JSON without `hash`. */
export function hashedText(event: Omit<AuditRecord, 'hash'> | AuditRecord): string {
  return canonicalJson(withoutHash(event));
}

function withoutHash(event: object): object {
  if (!Object.hasOwn(event, 'hash')) return event;
  const { hash: _ignored, ...rest } = event as { hash: unknown };
  return rest;
}

export type ChainProblem = 'hash mismatch' | 'broken link' | 'sequence gap' | 'malformed record';

export type ChainResult =
  | { ok: true; count: number; head: ChainHead }
  | {
      ok: false;
      /** The seq of the first record that does not fit (as the record states it; NaN if unreadable). */
      seq: number;
      /** 0-based position of that record in the input. */
      index: number;
      problem: ChainProblem;
      /** One line for humans: what was expected and what was found. */
      message: string;
    };

/** The last record's seq and hash; seq 0 and the anchor when no record was checked. */
export interface ChainHead {
  seq: number;
  hash: string;
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Checks records one at a time, in order, keeping only the previous record's seq and
 * hash — so an export of any size can be verified as it streams past.
 *
 * Per record, in this order: is it well formed; does its hash match its content (a
 * flipped byte anywhere, `prev` included); does its seq follow the previous one (a
 * deleted or reordered record); does `prev` equal the previous record's hash (a record
 * edited and re-hashed, or a chain spliced together).
 */
export class ChainVerifier {
  #count = 0;
  #seq: number;
  #hash: string;
  #anchoredAtGenesis: boolean;
  #failure: Extract<ChainResult, { ok: false }> | undefined;

  /**
   * `anchorPrev` is the hash the first record must point back to: GENESIS_PREV (the
   * default) for a chain from the start, where the first seq must also be 1; or the hash
   * of the record just before an excerpt.
   */
  constructor(anchorPrev: string = GENESIS_PREV) {
    this.#hash = anchorPrev;
    this.#seq = 0;
    this.#anchoredAtGenesis = anchorPrev === GENESIS_PREV;
  }

  /** Feed the next record; returns false once the chain is broken (later input is ignored). */
  push(record: AuditRecord): boolean {
    if (this.#failure) return false;
    const index = this.#count;
    const fail = (seq: number, problem: ChainProblem, message: string): false => {
      this.#failure = { ok: false, seq, index, problem, message };
      return false;
    };

    const r = record as Partial<AuditRecord> | null;
    const seq = r !== null && typeof r === 'object' && typeof r.seq === 'number' ? r.seq : Number.NaN;
    if (r === null || typeof r !== 'object') return fail(seq, 'malformed record', `record ${index} is not an object`);
    if (!Number.isSafeInteger(seq) || seq < 1) return fail(seq, 'malformed record', `record ${index} has no valid seq`);
    if (typeof r.hash !== 'string' || !HEX64.test(r.hash)) return fail(seq, 'malformed record', `seq ${seq}: hash is not 64 hex digits`);
    if (typeof r.prev !== 'string' || !HEX64.test(r.prev)) return fail(seq, 'malformed record', `seq ${seq}: prev is not 64 hex digits`);

    let actual: string;
    try {
      actual = eventHash(record);
    } catch (e) {
      return fail(seq, 'malformed record', `seq ${seq}: ${(e as Error).message}`);
    }
    if (actual !== r.hash) return fail(seq, 'hash mismatch', `seq ${seq}: content hashes to ${actual}, record says ${r.hash}`);

    const first = this.#count === 0;
    if (first ? this.#anchoredAtGenesis && seq !== 1 : seq !== this.#seq + 1) {
      const expected = first ? 1 : this.#seq + 1;
      return fail(seq, 'sequence gap', `expected seq ${expected}, found seq ${seq}`);
    }
    if (r.prev !== this.#hash) {
      return fail(seq, 'broken link', `seq ${seq}: prev is ${r.prev}, but the record before hashes to ${this.#hash}`);
    }

    this.#count++;
    this.#seq = seq;
    this.#hash = r.hash;
    return true;
  }

  result(): ChainResult {
    return this.#failure ?? { ok: true, count: this.#count, head: { seq: this.#seq, hash: this.#hash } };
  }
}

/** Verify a whole chain; names the first broken link. */
export function verifyChain(events: Iterable<AuditRecord>, anchorPrev: string = GENESIS_PREV): ChainResult {
  const v = new ChainVerifier(anchorPrev);
  for (const e of events) if (!v.push(e)) break;
  return v.result();
}

/** The same, for a stream (an export being read line by line). */
export async function verifyChainAsync(events: AsyncIterable<AuditRecord> | Iterable<AuditRecord>, anchorPrev: string = GENESIS_PREV): Promise<ChainResult> {
  const v = new ChainVerifier(anchorPrev);
  for await (const e of events) if (!v.push(e)) break;
  return v.result();
}
