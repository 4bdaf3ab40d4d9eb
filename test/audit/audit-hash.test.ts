import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  ChainVerifier,
  GENESIS_PREV,
  canonicalJson,
  canonicalize,
  eventHash,
  verifyChain,
  verifyChainAsync,
  type AuditRecord,
} from '../../src/shared/audit-hash.js';

/** A valid chain of n records built by hand (independently of any store). */
function chain(n: number, anchor = GENESIS_PREV, firstSeq = 1): AuditRecord[] {
  const out: AuditRecord[] = [];
  let prev = anchor;
  for (let i = 0; i < n; i++) {
    const seq = firstSeq + i;
    const body = {
      seq,
      time: new Date(Date.UTC(2024, 4, 1, 12, 0, 0, seq)).toISOString(),
      session: `sess-${seq % 3}`,
      actor: { sub: 'agent-1', name: 'Build Agent', groups: ['ai-agents'], kind: 'agent' as const },
      target: 'pg-prod',
      type: 'query',
      detail: { sql: `select * from orders where id = ${seq}`, note: 'ünïcödé ✓ \u2028' },
      decision: { effect: 'allow' as const, rule: 'agents-read' },
      outcome: { status: 'ok' as const, rows: seq * 2, duration_ms: 1.25 },
      prev,
    };
    const hash = eventHash(body);
    out.push({ ...body, hash });
    prev = hash;
  }
  return out;
}

const clone = <T>(v: T): T => structuredClone(v);

describe('canonicalJson', () => {
  test('key order does not matter; output is sorted and compact', () => {
    const a = { b: 1, a: { d: [1, 2, { y: true, x: null }], c: 'x' } };
    const b = { a: { c: 'x', d: [1, 2, { x: null, y: true }] }, b: 1 };
    assert.equal(canonicalJson(a), canonicalJson(b));
    assert.equal(canonicalJson(a), '{"a":{"c":"x","d":[1,2,{"x":null,"y":true}]},"b":1}');
  });

  test('sorts keys by UTF-16 code units, not by locale', () => {
    // U+00E9 (é) sorts after 'z'; an astral character's surrogates (U+D83D…) before U+FB01.
    const v = { z: 1, é: 2, '\u{1F600}': 3, '\uFB01': 4, A: 5, a: 6 };
    assert.equal(canonicalJson(v), '{"A":5,"a":6,"z":1,"é":2,"\u{1F600}":3,"\uFB01":4}');
  });

  test('any key order, short or long lists, sorts as the built-in sort does', () => {
    // Keys sharing prefixes, surrogates and case, shuffled by a fixed seed: the short-list
    // path (insertion sort) and the long one must agree with Array.prototype.sort.
    const pool = ['a', 'ab', 'abc', 'b', 'B', 'Z', '_', 'é', '\u{1F600}', '\uFB01', 'id', 'sql', 'params', 'protocol', 'classification', 'statement', 'reason', 'tag', 'masked', 'rows', 'bytes', 'aa', 'a_b', 'a-b', 'x0', 'y', 'zz', 'zzz', 'Ω', ' '];
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (const size of [2, 3, 8, 24, 25, pool.length]) {
      for (let round = 0; round < 20; round++) {
        const keys = pool.slice(0, size);
        for (let i = keys.length - 1; i > 0; i--) {
          const j = rand(i + 1);
          [keys[i], keys[j]] = [keys[j]!, keys[i]!];
        }
        const v = Object.fromEntries(keys.map((k, i) => [k, i]));
        const expected = `{${[...keys].sort().map((k) => `${JSON.stringify(k)}:${v[k]}`).join(',')}}`;
        assert.equal(canonicalJson(v), expected, `size ${size}, order ${keys.join('|')}`);
      }
    }
  });

  test('numbers print as ECMAScript does; -0 is 0', () => {
    assert.equal(canonicalJson([1e21, 1e-7, 0.1 + 0.2, -0, 123456789012345680000, 5e-324]), '[1e+21,1e-7,0.30000000000000004,0,123456789012345680000,5e-324]');
  });

  test('strings are escaped like JSON.stringify, including lone surrogates', () => {
    assert.equal(canonicalJson('a"b\\c\n\u0001\uD800'), '"a\\"b\\\\c\\n\\u0001\\ud800"');
  });

  test('rejects what JSON cannot represent, naming where', () => {
    assert.throws(() => canonicalJson({ a: [1, undefined] }), /\$\.a\[1\] is undefined/);
    assert.throws(() => canonicalJson({ n: { x: Number.NaN } }), /\$\.n\.x is NaN/);
    assert.throws(() => canonicalJson([Number.POSITIVE_INFINITY]), /\$\[0\] is Infinity/);
    assert.throws(() => canonicalJson({ f: () => 1 }), /\$\.f is a function/);
    assert.throws(() => canonicalJson(1n), /bigint/);
    assert.throws(() => canonicalJson(undefined), /\$ is undefined/);
    const cyclic: Record<string, unknown> = {};
    cyclic['me'] = { cyclic };
    assert.throws(() => canonicalJson(cyclic), /circular/);
  });

  test('undefined members are left out; toJSON is honoured', () => {
    assert.equal(canonicalJson({ a: undefined, b: new Date(0) }), '{"b":"1970-01-01T00:00:00.000Z"}');
  });

  test('integer-like keys and __proto__ sort as strings too (JSON.stringify alone would put them first)', () => {
    const v = JSON.parse('{"b":1,"10":2,"9":3,"__proto__":{"z":0,"0":1},"a":[{"2":0,"1":1}]}') as unknown;
    assert.equal(canonicalJson(v), '{"10":2,"9":3,"__proto__":{"0":1,"z":0},"a":[{"1":1,"2":0}],"b":1}');
  });

  test('agrees with an independent reference encoder on random values; the copy is deep and equal', () => {
    // Reference: sort keys by UTF-16 code units at every level, join by hand.
    const reference = (v: unknown): string => {
      if (Array.isArray(v)) return `[${v.map(reference).join(',')}]`;
      if (v !== null && typeof v === 'object') {
        const o = v as Record<string, unknown>;
        return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${reference(o[k])}`).join(',')}}`;
      }
      return JSON.stringify(v);
    };
    let seed = 42;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const keyPool = ['a', 'B', 'zz', 'é', '10', '9', '0', 'sql', 'by_rule', '\u{1F600}', 'column:public.t.c', ''];
    const gen = (depth: number): unknown => {
      switch (rnd(depth > 3 ? 4 : 6)) {
        case 0: return rnd(1000) - 500 + (rnd(2) ? 0.25 : 0);
        case 1: return ['x', 'ü"\\\n', '', '\u2028'][rnd(4)];
        case 2: return rnd(2) === 0 ? null : rnd(2) === 1;
        case 3: return `s${rnd(100)}`;
        case 4: return Array.from({ length: rnd(4) }, () => gen(depth + 1));
        default: {
          const o: Record<string, unknown> = {};
          for (let i = rnd(6); i > 0; i--) o[keyPool[rnd(keyPool.length)]!] = rnd(8) === 0 ? undefined : gen(depth + 1);
          return o;
        }
      }
    };
    for (let i = 0; i < 2000; i++) {
      const v = gen(0);
      const { text, copy } = canonicalize(v);
      assert.equal(text, reference(v));
      assert.deepEqual(copy, JSON.parse(text));
      if (v !== null && typeof v === 'object') assert.notEqual(copy, v);
    }
  });

  test('the same object twice (not a cycle) is fine', () => {
    const shared = { x: 1 };
    assert.equal(canonicalJson({ a: shared, b: [shared, shared] }), '{"a":{"x":1},"b":[{"x":1},{"x":1}]}');
  });
});

describe('eventHash', () => {
  test('is SHA-256 over the canonical JSON without hash, and ignores a hash member', () => {
    const [r] = chain(1);
    assert.ok(r);
    const { hash, ...rest } = r;
    assert.equal(hash, createHash('sha256').update(canonicalJson(rest)).digest('hex'));
    assert.equal(eventHash(r), hash);
    assert.match(hash, /^[0-9a-f]{64}$/);
  });
});

describe('verifyChain', () => {
  test('accepts an intact chain and reports its head', () => {
    const c = chain(50);
    const res = verifyChain(c);
    assert.deepEqual(res, { ok: true, count: 50, head: { seq: 50, hash: c[49]!.hash } });
    assert.deepEqual(verifyChain([]), { ok: true, count: 0, head: { seq: 0, hash: GENESIS_PREV } });
  });

  test('a flipped byte anywhere in a record is a hash mismatch at that record', () => {
    const c = chain(10);
    for (const field of ['detail', 'time', 'prev', 'hash'] as const) {
      const t = clone(c);
      const r = t[6]!;
      if (field === 'detail') r.detail['sql'] = String(r.detail['sql']).replace('orders', 'ordert');
      else {
        const s = r[field];
        r[field] = s.slice(0, 10) + (s[10] === '0' ? '1' : '0') + s.slice(11);
      }
      const res = verifyChain(t);
      assert.equal(res.ok, false, field);
      if (!res.ok) {
        assert.equal(res.seq, 7, field);
        assert.equal(res.index, 6, field);
        assert.equal(res.problem, 'hash mismatch', field);
      }
    }
  });

  test('a flipped bit in an exported JSONL file is found at its line', () => {
    const c = chain(10);
    const lines = c.map((r) => JSON.stringify(r));
    // Flip the lowest bit of one character of line 8's statement ('o' -> 'n').
    const line = lines[7]!;
    const at = line.indexOf('orders') + 1;
    const bytes = Buffer.from(line, 'utf8');
    bytes[at] = bytes[at]! ^ 1;
    lines[7] = bytes.toString('utf8');
    assert.notEqual(lines[7], line);
    const res = verifyChain(lines.map((l) => JSON.parse(l) as AuditRecord));
    assert.equal(res.ok, false);
    if (!res.ok) {
      assert.equal(res.problem, 'hash mismatch');
      assert.equal(res.seq, 8);
    }
  });

  test('an edited field that was re-hashed breaks the link to the next record', () => {
    const t = clone(chain(10));
    const r = t[3]!;
    r.decision = { effect: 'deny', rule: 'cover-up' };
    r.hash = eventHash(r);
    const res = verifyChain(t);
    assert.equal(res.ok, false);
    if (!res.ok) {
      assert.equal(res.problem, 'broken link');
      assert.equal(res.seq, 5);
    }
  });

  test('a deleted record is a sequence gap where it was', () => {
    const t = chain(10).filter((r) => r.seq !== 4);
    const res = verifyChain(t);
    assert.equal(res.ok, false);
    if (!res.ok) {
      assert.equal(res.problem, 'sequence gap');
      assert.equal(res.seq, 5);
      assert.match(res.message, /expected seq 4, found seq 5/);
    }
    // Deleting the first record is caught too.
    const first = verifyChain(chain(3).slice(1));
    assert.equal(first.ok, false);
    if (!first.ok) assert.equal(first.problem, 'sequence gap');
  });

  test('a deleted record with the rest renumbered and re-hashed is a broken link', () => {
    const c = chain(6);
    // Forge: drop seq 3, renumber 4..6 to 3..5 and re-hash each, keeping their prev.
    const forged = [c[0]!, c[1]!, ...c.slice(3).map((r) => {
      const f = { ...clone(r), seq: r.seq - 1 };
      return { ...f, hash: eventHash(f) };
    })];
    const res = verifyChain(forged);
    assert.equal(res.ok, false);
    if (!res.ok) {
      assert.equal(res.problem, 'broken link');
      assert.equal(res.seq, 3);
    }
  });

  test('reordered records are caught', () => {
    const c = chain(8);
    const t = [...c];
    [t[2], t[3]] = [t[3]!, t[2]!];
    const res = verifyChain(t);
    assert.equal(res.ok, false);
    if (!res.ok) {
      assert.equal(res.problem, 'sequence gap');
      assert.equal(res.seq, 4);
      assert.equal(res.index, 2);
    }
  });

  test('an excerpt verifies against the hash before it, and only against that', () => {
    const c = chain(20);
    const excerpt = c.slice(10);
    assert.deepEqual(verifyChain(excerpt, c[9]!.hash), { ok: true, count: 10, head: { seq: 20, hash: c[19]!.hash } });
    const wrong = verifyChain(excerpt, c[8]!.hash);
    assert.equal(wrong.ok, false);
    if (!wrong.ok) assert.equal(wrong.problem, 'broken link');
    // Without an anchor the chain must start at genesis.
    assert.equal(verifyChain(excerpt).ok, false);
  });

  test('malformed input is reported, not thrown', () => {
    const t = clone(chain(3)) as unknown as Record<string, unknown>[];
    t[1]!['seq'] = '2';
    const res = verifyChain(t as unknown as AuditRecord[]);
    assert.equal(res.ok, false);
    if (!res.ok) assert.equal(res.problem, 'malformed record');
  });

  test('the streaming verifiers agree and stop at the first break', async () => {
    const c = chain(5);
    async function* gen(): AsyncGenerator<AuditRecord> {
      for (const r of c) yield r;
    }
    assert.deepEqual(await verifyChainAsync(gen()), verifyChain(c));
    const v = new ChainVerifier();
    assert.equal(v.push(c[0]!), true);
    assert.equal(v.push(c[2]!), false);
    assert.equal(v.push(c[1]!), false);
    const res = v.result();
    assert.equal(res.ok, false);
    if (!res.ok) assert.equal(res.seq, 3);
  });
});
