/**
 * binary-scan.ts on its own: what the detectors are given of a binary value (int8 and
 * numeric as their decimal text, arrays element by element), and that a value whose
 * binary form is not what its type's must be counts as a hit (the masker withholds it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { binaryHit, decodesBinary } from '../../src/broker/postgres/binary-scan.js';

/** The texts binaryHit hands the detectors; `hitOn` makes a scan of that text a hit. */
function texts(typeOid: number, value: Buffer, hitOn?: string): { seen: string[]; hit: boolean } {
  const seen: string[] = [];
  const hit = binaryHit(typeOid, value, 0, value.length, (b, s, e) => {
    const t = b.toString('latin1', s, e);
    seen.push(t);
    return t === hitOn;
  });
  return { seen, hit };
}

function numeric(ndigits: number[], weight: number, sign: number, dscale: number): Buffer {
  const b = Buffer.alloc(8 + 2 * ndigits.length);
  b.writeInt16BE(ndigits.length, 0);
  b.writeInt16BE(weight, 2);
  b.writeUInt16BE(sign, 4);
  b.writeInt16BE(dscale, 6);
  ndigits.forEach((d, i) => b.writeInt16BE(d, 8 + 2 * i));
  return b;
}

function array(elem: number, values: (Buffer | null)[]): Buffer {
  const head = Buffer.alloc(20);
  head.writeInt32BE(1, 0);
  head.writeInt32BE(values.includes(null) ? 1 : 0, 4);
  head.writeUInt32BE(elem, 8);
  head.writeInt32BE(values.length, 12);
  head.writeInt32BE(1, 16);
  const parts = values.map((v) => {
    const len = Buffer.alloc(4);
    len.writeInt32BE(v === null ? -1 : v.length);
    return v === null ? len : Buffer.concat([len, v]);
  });
  return Buffer.concat([head, ...parts]);
}

test('int8 and numeric are read as the decimal text their text format shows', () => {
  const big = Buffer.alloc(8);
  big.writeBigInt64BE(4111111111111111n);
  assert.deepEqual(texts(20, big, '4111111111111111'), { seen: ['4111111111111111'], hit: true });
  assert.deepEqual(texts(1700, numeric([4111, 1111, 1111, 1111], 3, 0, 0)).seen, ['4111111111111111']);
  assert.deepEqual(texts(1700, numeric([12, 3400], 0, 0x4000, 4)).seen, ['-12.3400']);
  assert.deepEqual(texts(1700, numeric([1], -2, 0, 8)).seen, ['0.00000001']);
  assert.deepEqual(texts(1700, numeric([], 0, 0xc000, 0)).seen, ['NaN']);
});

test('arrays are read element by element, by their element type; NULL elements skipped', () => {
  const v = array(25, [Buffer.from('plain'), null, Buffer.from('AKIA')]);
  assert.deepEqual(texts(1009, v, 'AKIA'), { seen: ['plain', 'AKIA'], hit: true });
  const jsonb = array(3802, [Buffer.from('\u0001"x"', 'latin1')]);
  assert.deepEqual(texts(3807, jsonb).seen, ['"x"'], 'jsonb elements after their version byte');
  const ints = array(23, [Buffer.from([0, 0, 0, 1])]);
  assert.deepEqual(texts(1007, ints), { seen: [], hit: false }, 'int4 elements cannot hold a find');
});

test('a binary form that is not its type’s counts as a hit', () => {
  assert.equal(texts(20, Buffer.alloc(4)).hit, true, 'int8 of 4 bytes');
  assert.equal(texts(1700, Buffer.alloc(3)).hit, true, 'numeric too short');
  assert.equal(texts(1009, array(23, [Buffer.from([0, 0, 0, 1])])).hit, true, 'text[] whose header names int4');
  const cut = array(25, [Buffer.from('abc')]);
  assert.equal(texts(1009, cut.subarray(0, cut.length - 1)).hit, true, 'an element overrunning the value');
  assert.equal(texts(1009, Buffer.concat([cut, Buffer.from([0])])).hit, true, 'bytes after the last element');
});

test('which binary forms are read at all', () => {
  for (const oid of [20, 1700, 1009, 1007, 3807]) assert.equal(decodesBinary(oid), true, `type ${oid}`);
  // A record, a range, an enum or an extension type: not read (the masker sends NULL).
  for (const oid of [2249, 3904, 16384, 0]) assert.equal(decodesBinary(oid), false, `type ${oid}`);
});
