/**
 * Overlapping masking regions (sql-text.ts applyRegionsToBytes, used by SQL text for the
 * audit log, error and notice fields, ParameterStatus, NOTIFY and fast-path results): the
 * union is masked in the strongest style among them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { applyRegionsToBytes, maskSqlText } from '../../src/broker/masking/sql-text.js';
import { maskNoticeFrame } from '../../src/broker/masking/notice-fields.js';
import * as be from '../../src/broker/postgres/build-backend.js';
import { noticeFields, maskingPlan } from './helpers.js';

const KEY = Buffer.alloc(32, 7);

const plan = maskingPlan;

const EMAIL_RULE = plan({ columns: ['*.email'], detectors: ['email', 'credit_card', 'aws_key'], style: 'partial' });

test('overlapping regions: the strongest style covers the union, a partial never wins over a whole-value region', () => {
  const buf = Buffer.from('x "elpmaxe.mitciv@klow.vjzxq" y', 'utf8');
  const partial = { start: 3, end: 28, style: 'partial' as const, keep: 'email' as const, rule: 'email' };
  const whole = { start: 3, end: 28, style: 'full' as const, keep: 'none' as const, rule: 'quoted_value' };
  const r = applyRegionsToBytes(buf, [partial, whole], KEY);
  assert.equal(r.bytes.toString('utf8'), 'x "********" y');
  assert.deepEqual(r.byRule, { quoted_value: 1 });
  // A later region reaching past an earlier one: its tail is masked too.
  const a = { start: 0, end: 5, style: 'partial' as const, keep: 'auto' as const, rule: 'a' };
  const b = { start: 3, end: 12, style: 'full' as const, keep: 'none' as const, rule: 'b' };
  const r2 = applyRegionsToBytes(Buffer.from('0123456789ABCDEF'), [a, b], KEY);
  assert.equal(r2.bytes.toString(), '********CDEF');
  // Disjoint regions are masked one by one, as before.
  const r3 = applyRegionsToBytes(Buffer.from('0123456789'), [{ ...b, start: 0, end: 2 }, { ...b, start: 5, end: 7 }], KEY);
  assert.equal(r3.bytes.toString(), '********234********789');
});

test('overlapping regions in SQL text (the audit path): the union is masked', () => {
  const m = maskSqlText("select 1 where email = 'bob@example.com'", EMAIL_RULE, KEY);
  assert.ok(!m.text.includes('bob'), m.text);
});

test('class 22 quoting a reversed email: the quoted value is masked whole, the detector keeps no "domain"', () => {
  const f = be.errorResponse({ severity: 'ERROR', code: '22P02', message: 'invalid input syntax for type integer: "elpmaxe.mitciv@klow.vjzxq"' });
  const out = noticeFields(maskNoticeFrame(f, EMAIL_RULE, KEY));
  assert.equal(out.get('M'), 'invalid input syntax for type integer: "********"');
});

