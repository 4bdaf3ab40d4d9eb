/**
 * HMAC-SHA256 (RFC 2104 over FIPS 180-4 SHA-256) tuned for many short values under one
 * key: the hash states after the key's inner and outer pad blocks are computed once per
 * key, so a value of up to 55 bytes costs two compressions and no allocation. Node's
 * createHmac costs microseconds per call (a KeyObject, a native object), which is most of
 * a masked row's budget; crypto.hash() one-shots still cross into C++ twice per value.
 *
 * Tests compare it with node:crypto's HMAC over many lengths.
 */

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
  0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const H0 = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
const BLOCK = 64;

const W = new Int32Array(64);

/** One SHA-256 compression of the 64 bytes at `off` into `state`. */
function compress(state: Int32Array, bytes: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++) {
    const p = off + i * 4;
    W[i] = (bytes[p]! << 24) | (bytes[p + 1]! << 16) | (bytes[p + 2]! << 8) | bytes[p + 3]!;
  }
  for (let i = 16; i < 64; i++) {
    const x = W[i - 15]!;
    const y = W[i - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    W[i] = (W[i - 16]! + s0 + W[i - 7]! + s1) | 0;
  }
  let a = state[0]!;
  let b = state[1]!;
  let c = state[2]!;
  let d = state[3]!;
  let e = state[4]!;
  let f = state[5]!;
  let g = state[6]!;
  let h = state[7]!;
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (h + S1 + ch + K[i]! + W[i]!) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const maj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (S0 + maj) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0]! + a) | 0;
  state[1] = (state[1]! + b) | 0;
  state[2] = (state[2]! + c) | 0;
  state[3] = (state[3]! + d) | 0;
  state[4] = (state[4]! + e) | 0;
  state[5] = (state[5]! + f) | 0;
  state[6] = (state[6]! + g) | 0;
  state[7] = (state[7]! + h) | 0;
}

const tail = new Uint8Array(BLOCK * 2);

/**
 * Finish a hash whose state has absorbed `done` bytes so far: absorb `src[s, e)` and the
 * padding (total message length `done + (e - s)` bytes).
 */
function finish(state: Int32Array, done: number, src: Uint8Array, s: number, e: number): void {
  let p = s;
  while (e - p >= BLOCK) {
    compress(state, src, p);
    p += BLOCK;
  }
  const rest = e - p;
  for (let i = 0; i < rest; i++) tail[i] = src[p + i]!;
  tail[rest] = 0x80;
  const blocks = rest + 9 > BLOCK ? 2 : 1;
  const end = blocks * BLOCK;
  tail.fill(0, rest + 1, end - 8);
  // Bit length as a 64-bit big-endian number (values here are far below 2^53 bits).
  const bits = (done + (e - s)) * 8;
  const hi = Math.floor(bits / 0x1_0000_0000);
  tail[end - 8] = hi >>> 24;
  tail[end - 7] = hi >>> 16;
  tail[end - 6] = hi >>> 8;
  tail[end - 5] = hi;
  tail[end - 4] = bits >>> 24;
  tail[end - 3] = bits >>> 16;
  tail[end - 2] = bits >>> 8;
  tail[end - 1] = bits;
  compress(state, tail, 0);
  if (blocks === 2) compress(state, tail, BLOCK);
}

interface KeyStates {
  inner: Int32Array;
  outer: Int32Array;
}
const states = new WeakMap<Uint8Array, KeyStates>();

function keyStates(key: Uint8Array): KeyStates {
  let ks = states.get(key);
  if (ks) return ks;
  let k = key;
  if (k.length > BLOCK) {
    const st = H0.slice();
    finish(st, 0, key, 0, key.length);
    k = digestBytes(st);
  }
  const ipad = new Uint8Array(BLOCK).fill(0x36);
  const opad = new Uint8Array(BLOCK).fill(0x5c);
  for (let i = 0; i < k.length; i++) {
    ipad[i] = k[i]! ^ 0x36;
    opad[i] = k[i]! ^ 0x5c;
  }
  const inner = H0.slice();
  compress(inner, ipad, 0);
  const outer = H0.slice();
  compress(outer, opad, 0);
  ks = { inner, outer };
  states.set(key, ks);
  return ks;
}

function digestBytes(state: Int32Array, out: Uint8Array = new Uint8Array(32)): Uint8Array {
  for (let i = 0; i < 8; i++) {
    const v = state[i]!;
    out[i * 4] = v >>> 24;
    out[i * 4 + 1] = v >>> 16;
    out[i * 4 + 2] = v >>> 8;
    out[i * 4 + 3] = v;
  }
  return out;
}

const work = new Int32Array(8);
const innerDigest = new Uint8Array(32);

/**
 * HMAC-SHA256 of `src[start, end)` under `key`, as the 8 state words of the result
 * (big-endian words of the 32-byte MAC). The returned array is reused by the next call.
 */
export function hmacSha256Words(key: Uint8Array, src: Uint8Array, start: number, end: number): Int32Array {
  const ks = keyStates(key);
  work.set(ks.inner);
  finish(work, BLOCK, src, start, end);
  digestBytes(work, innerDigest);
  work.set(ks.outer);
  finish(work, BLOCK, innerDigest, 0, 32);
  return work;
}

/** HMAC-SHA256 of `src[start, end)` under `key`, as 32 bytes. */
export function hmacSha256(key: Uint8Array, src: Uint8Array, start = 0, end = src.length): Buffer {
  return Buffer.from(digestBytes(hmacSha256Words(key, src, start, end)));
}
