import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HOLD_LIMIT, HeldRows } from '../../src/broker/postgres/held-rows.js';

test('held rows are copies, returned in order, and the hold starts fresh after take', () => {
  let overs = 0;
  const held = new HeldRows(() => overs++);
  const a = Buffer.from('row-a');
  held.keep(a);
  held.keep(Buffer.alloc(0));
  held.keep(Buffer.from('row-b'));
  a.fill(0x78); // the caller's buffer is reused: what is held must not change
  const out = held.take();
  assert.deepEqual(out?.rows.map(String), ['row-a', 'row-b']);
  assert.equal(out?.over, false);
  assert.equal(held.take(), undefined);
  assert.equal(overs, 0);
});

test('past HOLD_LIMIT the rows are dropped, the owner is told once, and nothing more is kept', () => {
  let overs = 0;
  const held = new HeldRows(() => overs++);
  const chunk = Buffer.alloc(HOLD_LIMIT >> 2, 0x61);
  for (let i = 0; i < 4; i++) held.keep(chunk);
  assert.equal(held.over, false);
  held.keep(Buffer.from('one byte too many'));
  held.keep(Buffer.from('and more'));
  assert.equal(held.over, true);
  assert.equal(overs, 1);
  assert.deepEqual(held.take(), { rows: [], over: true });
  assert.equal(held.over, false);
  held.keep(Buffer.from('next result'));
  assert.deepEqual(held.take()?.rows.map(String), ['next result']);
});

test('drop forgets what is held, including an outgrown hold', () => {
  const held = new HeldRows(() => undefined);
  held.keep(Buffer.from('x'));
  held.drop();
  assert.equal(held.take(), undefined);
  held.keep(Buffer.alloc(HOLD_LIMIT + 1));
  assert.equal(held.over, true);
  held.drop();
  assert.equal(held.over, false);
  assert.equal(held.take(), undefined);
});
