import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelay } from '../../src/tunnel/backoff.js';

test('backoff doubles from initialMs, caps at maxMs, and jitters within half the step', () => {
  const p = { initialMs: 100, maxMs: 1_000 };
  assert.equal(backoffDelay(p, 0, () => 0), 50);
  assert.equal(backoffDelay(p, 0, () => 1), 100);
  assert.equal(backoffDelay(p, 1, () => 1), 200);
  assert.equal(backoffDelay(p, 3, () => 1), 800);
  assert.equal(backoffDelay(p, 4, () => 1), 1_000);
  assert.equal(backoffDelay(p, 4, () => 0), 500);
  assert.equal(backoffDelay(p, 500, () => 1), 1_000, 'huge attempt counts stay capped');
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(p, 2);
    assert.ok(d >= 200 && d <= 400, `delay ${d} out of range`);
  }
});
