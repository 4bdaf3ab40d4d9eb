/**
 * Audit event times: the cached formatter must print exactly what toISOString prints, at
 * minute and second edges, across days and leap years, and outside the four-digit years.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isoTime, normalizeEventTime } from '../../src/broker/audit/store.js';

test('isoTime prints what Date.prototype.toISOString prints', () => {
  const edges = [
    0, 1, 999, 1000, 59_999, 60_000, 60_001, 3_599_999, 86_399_999, 86_400_000,
    Date.UTC(2024, 1, 29, 23, 59, 59, 999), Date.UTC(2024, 2, 1), Date.UTC(2026, 11, 31, 23, 59, 59, 999), Date.UTC(2027, 0, 1),
    Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.UTC(9999, 11, 31, 23, 59, 59, 999) + 1, Date.UTC(275760, 8, 13), -1, -86_400_001,
  ];
  // Sequential milliseconds (the cache's usual path: same minute, then the next) and jumps back.
  const base = Date.UTC(2026, 11, 5, 17, 58, 59, 990);
  const walk = Array.from({ length: 40 }, (_, i) => base + i);
  for (const ms of [...edges, ...walk, ...walk.reverse(), ...edges]) {
    assert.equal(isoTime(ms), new Date(ms).toISOString(), `ms ${ms}`);
    assert.equal(isoTime(ms), new Date(ms).toISOString(), `ms ${ms}, again (cached)`);
  }
});

test('normalizeEventTime: now by default, given times normalised, junk refused', () => {
  const before = Date.now();
  const now = Date.parse(normalizeEventTime(undefined));
  assert.ok(now >= before && now <= Date.now(), 'stamped with the current time');
  assert.equal(normalizeEventTime(undefined, () => new Date(86_400_000)), '1970-01-02T00:00:00.000Z');
  assert.equal(normalizeEventTime('2026-12-05T18:00:00+01:00'), '2026-12-05T17:00:00.000Z');
  assert.equal(normalizeEventTime(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6))), '2026-01-02T03:04:05.006Z');
  assert.throws(() => normalizeEventTime('yesterday'), /not a valid time/);
});
