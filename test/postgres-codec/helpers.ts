import assert from 'node:assert/strict';

import { ProtocolError } from '../../src/broker/postgres/errors.js';
import type { PgMessage } from '../../src/broker/postgres/reader.js';

export interface Seen {
  type: number;
  length: number;
  frame: Buffer;
  body: Buffer;
}

/** Copy what a callback may keep of a reused message view. */
export function snapshot(m: PgMessage): Seen {
  return { type: m.type, length: m.length, frame: Buffer.from(m.frame), body: Buffer.from(m.body) };
}

/** Cut `data` at the given offsets. */
export function cut(data: Buffer, ...offsets: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const o of [...offsets, data.length]) {
    out.push(data.subarray(prev, o));
    prev = o;
  }
  return out;
}

/** A small deterministic PRNG (mulberry32) so random chunkings are reproducible. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Assert `fn` throws a ProtocolError with this SQLSTATE and a message matching `re`. */
export function assertProtocolError(fn: () => unknown, re: RegExp, sqlState = '08P01'): ProtocolError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ProtocolError, `expected a ProtocolError, got ${String(caught)}`);
  assert.match(caught.message, re);
  assert.equal(caught.sqlState, sqlState);
  return caught;
}
