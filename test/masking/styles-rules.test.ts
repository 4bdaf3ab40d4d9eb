import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createHmac, randomBytes } from 'node:crypto';
import { join } from 'node:path';

import { FULL_MASK, maskText, moreProtective } from '../../src/broker/masking/styles.js';
import { hmacSha256 } from '../../src/broker/masking/hmac.js';
import { loadOrCreateMaskingKey, MASKING_KEY_FILE } from '../../src/broker/masking/key.js';
import { compileMaskingPlan, matchColumn, matchExpression, maskingConfigProblems, rulesMayTouchTable } from '../../src/broker/masking/rules.js';
import { bit } from '../../src/broker/masking/detectors.js';
import { ConfigError } from '../../src/errors.js';
import { KeyMaterialError } from '../../src/broker/keys.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'agentgate-masking-'));
  dirs.push(d);
  return d;
}

const KEY = Buffer.alloc(32, 7);

test('full: a fixed eight asterisks, whatever the length', () => {
  assert.equal(FULL_MASK, '********');
  assert.equal(maskText('a', 'full', KEY), '********');
  assert.equal(maskText('a much longer secret value', 'full', KEY), '********');
});

test('partial: last four characters from eight on, the domain of an email', () => {
  assert.equal(maskText('4111111111111111', 'partial', KEY), '****1111');
  assert.equal(maskText('12345678', 'partial', KEY), '****5678');
  assert.equal(maskText('1234567', 'partial', KEY), '********');
  assert.equal(maskText('alice@example.com', 'partial', KEY), '****@example.com');
  // Characters, not bytes: a multi-byte suffix is kept whole.
  assert.equal(maskText('données-privées', 'partial', KEY), '****vées');
  assert.equal(maskText('日本語のテキスト値です', 'partial', KEY), '****ト値です');
  assert.equal(maskText('-----BEGIN PRIVATE KEY-----x', 'partial', KEY, 'none'), '********');
});

test('hash: keyed, stable, h: and 16 hex digits', () => {
  const a = maskText('alice@example.com', 'hash', KEY);
  assert.match(a ?? '', /^h:[0-9a-f]{16}$/);
  assert.equal(maskText('alice@example.com', 'hash', KEY), a);
  assert.notEqual(maskText('bob@example.com', 'hash', KEY), a);
  assert.notEqual(maskText('alice@example.com', 'hash', Buffer.alloc(32, 8)), a, 'another broker key, another hash');
});

test('the HMAC behind hash equals node:crypto HMAC-SHA256 for every length and key size', () => {
  for (const keyLength of [0, 16, 32, 64, 65, 131]) {
    const key = randomBytes(keyLength);
    for (let n = 0; n <= 200; n++) {
      const msg = randomBytes(n);
      assert.deepEqual(hmacSha256(key, msg), createHmac('sha256', key).update(msg).digest(), `key ${keyLength} bytes, message ${n} bytes`);
    }
  }
  const value = 'bob@example.com';
  assert.equal(maskText(value, 'hash', KEY), 'h:' + createHmac('sha256', KEY).update(value).digest('hex').slice(0, 16));
});

test('null: SQL NULL for a whole value', () => {
  assert.equal(maskText('x', 'null', KEY), null);
  assert.equal(moreProtective('partial', 'null'), 'null');
  assert.equal(moreProtective('full', 'hash'), 'full');
  assert.equal(moreProtective('hash', 'partial'), 'hash');
});

test('masking key: created 0600 with 32 bytes, the same on every load', () => {
  const dir = tempDir();
  const k1 = loadOrCreateMaskingKey(dir);
  assert.equal(k1.length, 32);
  const path = join(dir, MASKING_KEY_FILE);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.deepEqual(loadOrCreateMaskingKey(dir), k1);
  assert.deepEqual(readFileSync(path), k1);
  // A fresh state dir gets another key.
  assert.notDeepEqual(loadOrCreateMaskingKey(tempDir()), k1);
});

test('masking key: refused when too open or damaged, never replaced', () => {
  const dir = tempDir();
  loadOrCreateMaskingKey(dir);
  const path = join(dir, MASKING_KEY_FILE);
  chmodSync(path, 0o644);
  assert.throws(() => loadOrCreateMaskingKey(dir), (e: unknown) => e instanceof KeyMaterialError && e.code === 'AG_KEY_PERMISSIONS' && /chmod 600/.test(e.hint ?? ''));
  chmodSync(path, 0o600);
  writeFileSync(path, Buffer.alloc(5));
  assert.throws(() => loadOrCreateMaskingKey(dir), (e: unknown) => e instanceof KeyMaterialError && e.code === 'AG_KEY_INVALID');
  assert.equal(readFileSync(path).length, 5, 'the damaged key is left for the operator');
});

const masking = {
  'pg-prod': { columns: ['*.email', 'users.ssn', '*password*', 'public.cards.number', 'secrets.*'], detectors: ['email', 'ssn', 'credit_card'], style: 'partial' as const },
};

test('plan: off means none; inherit uses the target; extend adds and the stricter style wins', () => {
  assert.equal(compileMaskingPlan('pg-prod', masking, { mode: 'off' }), undefined);
  assert.equal(compileMaskingPlan('other', masking), undefined);
  const inherit = compileMaskingPlan('pg-prod', masking, { mode: 'inherit' });
  assert.ok(inherit);
  assert.equal(inherit.columns.length, 5);
  assert.equal(inherit.detectors, bit('email') | bit('us_ssn') | bit('credit_card'));
  assert.equal(inherit.strictestColumnStyle, 'partial');

  const extended = compileMaskingPlan('pg-prod', masking, { mode: 'extend', rules: { columns: ['orders.note'], detectors: ['email', 'jwt'], style: 'full' } });
  assert.ok(extended);
  assert.equal(extended.columns.length, 6);
  assert.equal(extended.detectorStyles[0], 'full', 'email enabled twice: the stricter style');
  assert.ok((extended.detectors & bit('jwt')) !== 0);
  assert.equal(extended.strictestColumnStyle, 'full');

  // A policy may add masking to a target that has none.
  const only = compileMaskingPlan('other', masking, { mode: 'extend', rules: { columns: [], detectors: ['all'], style: 'hash' } });
  assert.equal(only?.columns.length, 0);
  assert.equal(only?.detectorStyles[10], 'hash');
});

test('plan: unknown detectors are a ConfigError naming the key', () => {
  assert.throws(
    () => compileMaskingPlan('t', { t: { columns: [], detectors: ['email', 'phone_number'], style: 'full' } }),
    (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.includes('masking.t.detectors') && p.includes('phone_number')),
  );
  assert.deepEqual(maskingConfigProblems({ columns: ['*'], detectors: [], style: 'full' }).length, 1);
});

test('column globs match schema.table.column, table.column and column, case-insensitively', () => {
  const plan = compileMaskingPlan('pg-prod', masking)!;
  const name = (r: { name: string } | undefined): string | undefined => r?.name;
  assert.equal(name(matchColumn(plan, { schema: 'public', table: 'users', column: 'email' })), 'column:*.email');
  assert.equal(name(matchColumn(plan, { schema: 'crm', table: 'Contacts', column: 'EMAIL' })), 'column:*.email');
  assert.equal(name(matchColumn(plan, { schema: 'public', table: 'users', column: 'ssn' })), 'column:users.ssn');
  assert.equal(matchColumn(plan, { schema: 'public', table: 'orders', column: 'ssn' }), undefined);
  assert.equal(name(matchColumn(plan, { schema: 'public', table: 'users', column: 'password_hash' })), 'column:*password*');
  assert.equal(name(matchColumn(plan, { schema: 'public', table: 'cards', column: 'number' })), 'column:public.cards.number');
  assert.equal(matchColumn(plan, { schema: 'archive', table: 'cards', column: 'number' }), undefined);
  assert.equal(name(matchColumn(plan, { schema: 'public', table: 'secrets', column: 'anything' })), 'column:secrets.*');
  assert.equal(matchColumn(plan, { schema: 'public', table: 'users', column: 'name' }), undefined);
});

test('expressions match on their label against the column part', () => {
  const plan = compileMaskingPlan('pg-prod', masking)!;
  assert.equal(matchExpression(plan, 'email')?.name, 'column:*.email');
  assert.equal(matchExpression(plan, 'ssn')?.name, 'column:users.ssn');
  assert.equal(matchExpression(plan, 'my_password')?.name, 'column:*password*');
  assert.equal(matchExpression(plan, 'count'), undefined, 'secrets.* names a table, not every expression');
});

test('whether rules may touch a table', () => {
  const plan = compileMaskingPlan('t', { t: { columns: ['users.ssn', 'public.cards.number'], detectors: [], style: 'full' } })!;
  assert.ok(rulesMayTouchTable(plan, 'public', 'users'));
  assert.ok(rulesMayTouchTable(plan, 'public', 'cards'));
  assert.ok(!rulesMayTouchTable(plan, 'public', 'orders'));
  assert.ok(rulesMayTouchTable(plan, undefined, undefined));
  const bare = compileMaskingPlan('t', { t: { columns: ['*password*'], detectors: [], style: 'full' } })!;
  assert.ok(rulesMayTouchTable(bare, 'public', 'orders'));
});
