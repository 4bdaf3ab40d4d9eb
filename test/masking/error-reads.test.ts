/**
 * Errors and notices of statements that read a masked column: the field rules of
 * notice-fields.ts under a `reads` verdict, the verdict itself (statement-reads.ts) and its per-session
 * cache keyed by the pipeline tracker's head (error-reads.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { maskNoticeFrame, READS_MASKED_TEXT } from '../../src/broker/masking/notice-fields.js';
import { statementReads, type ReadVerdict } from '../../src/broker/masking/statement-reads.js';
import type { ProvenanceCatalog, RelationInfo } from '../../src/broker/masking/provenance.js';
import { ErrorReads } from '../../src/broker/postgres/error-reads.js';
import type { Outstanding } from '../../src/broker/postgres/pipeline.js';
import * as be from '../../src/broker/postgres/build-backend.js';
import { noticeFields, maskingPlan } from './helpers.js';

const KEY = Buffer.alloc(32, 7);

const plan = maskingPlan;

const EMAIL_RULE = plan({ columns: ['*.email'], detectors: ['email', 'credit_card', 'aws_key'], style: 'partial' });
const DETECT_ONLY = plan({ columns: [], detectors: ['email'], style: 'partial' });

// ───────────────────────────── fields under a reads verdict ─────────────────────────────

const FULL = be.errorResponse({
  severity: 'ERROR',
  code: '42704',
  message: `unrecognized configuration parameter "qxzjv.wolk" near 'rimbo'`,
  detail: 'line 1: qxzjv.wolk<',
  hint: 'try qxzjv',
  position: '8',
  internalQuery: 'select qxzjv.wolk',
  where: 'JSON data, line 1: {"a": qxzjv',
  schema: 'public',
  table: 'users',
  column: 'email',
  dataType: 'text',
  constraint: 'users_pkey',
});

test('reads=masked: quoted segments of M masked, D/H/W/q withheld, codes and names kept', () => {
  const byRule: Record<string, number> = {};
  const f = noticeFields(maskNoticeFrame(FULL, EMAIL_RULE, KEY, byRule, 'masked'));
  assert.equal(f.get('M'), `unrecognized configuration parameter "********" near '********'`);
  for (const c of ['D', 'H', 'q', 'W']) assert.equal(f.get(c), READS_MASKED_TEXT, c);
  assert.equal(f.get('C'), '42704');
  assert.equal(f.get('S'), 'ERROR');
  assert.equal(f.get('P'), '8');
  assert.equal(f.get('s'), 'public');
  assert.equal(f.get('t'), 'users');
  assert.equal(f.get('n'), 'users_pkey');
  assert.equal(byRule['withheld_reads_masked'], 4);
});

test('reads=opaque: the name fields are withheld too (user code may have filled them)', () => {
  const f = noticeFields(maskNoticeFrame(FULL, EMAIL_RULE, KEY, {}, 'opaque'));
  for (const c of ['s', 't', 'c', 'd', 'n']) assert.equal(f.get(c), READS_MASKED_TEXT, c);
  assert.equal(f.get('C'), '42704');
});

test('reads=masked applies to notices and to plans with detectors only; reads=none keeps the old behaviour', () => {
  const n = be.noticeResponse({ severity: 'NOTICE', code: '00000', message: 'value "qxzjv" ignored', detail: 'qxzjv' });
  const f = noticeFields(maskNoticeFrame(n, DETECT_ONLY, KEY, {}, 'masked'));
  assert.equal(f.get('M'), 'value "********" ignored');
  assert.equal(f.get('D'), READS_MASKED_TEXT);
  assert.equal(maskNoticeFrame(n, DETECT_ONLY, KEY, {}, 'none'), n);
});

test('reads=masked: a value holding the quote character is covered from the first quote to the last', () => {
  const e = be.errorResponse({ severity: 'ERROR', code: '42704', message: 'unrecognized configuration parameter "qx"zj"' });
  assert.equal(noticeFields(maskNoticeFrame(e, EMAIL_RULE, KEY, {}, 'masked')).get('M'), 'unrecognized configuration parameter "********"');
  const one = be.errorResponse({ severity: 'ERROR', code: '42601', message: 'unterminated "qxzjv' });
  assert.equal(noticeFields(maskNoticeFrame(one, EMAIL_RULE, KEY, {}, 'masked')).get('M'), 'unterminated "********');
});

// ───────────────────────────── the verdict ─────────────────────────────

const USERS: RelationInfo = { schema: 'public', name: 'users', kind: 'table', columns: ['id', 'name', 'email', 'note'] };
const CARDS: RelationInfo = { schema: 'public', name: 'cards', kind: 'table', columns: ['id', 'card'] };
const V_USERS: RelationInfo = { schema: 'public', name: 'v_users', kind: 'view', columns: ['id', 'contact'], viewSql: 'SELECT id, email AS contact FROM users' };
const V_IDS: RelationInfo = { schema: 'public', name: 'v_ids', kind: 'view', columns: ['id'], viewSql: 'SELECT id FROM users' };

const catalog: ProvenanceCatalog = {
  relations: (_schema, name) => Promise.resolve([USERS, CARDS, V_USERS, V_IDS].filter((r) => r.name === name)),
  functions: (_schema, name) => Promise.resolve(name === 'f_user' ? [{ builtin: false, retset: false }] : name === 'no_such' ? [] : [{ builtin: true, retset: false }]),
  castTargets: () => Promise.resolve([]),
};
/** email by rule; card as if the detector taint said so. */
const verdict = (sql: string): Promise<ReadVerdict> =>
  statementReads(sql, catalog, (source) => source.endsWith('.email') || source === 'public.cards.card');

test('the verdict: a masked column read anywhere, through views, whole rows and *', async () => {
  const cases: [string, ReadVerdict][] = [
    ["select current_setting(split_part(email, '@', 1)) from users", 'masked'],
    ['select 1 from users where email is null', 'masked'],
    ['select (select u.email from users u limit 1)', 'masked'],
    ['select contact from v_users', 'masked'],
    ['select * from users', 'masked'],
    ['select u.* from users u', 'masked'],
    ['select row_to_json(u) from users u', 'masked'],
    ['select u.text from users u', 'masked'],
    ['select substr(card, 1, 12) from cards', 'masked'],
    ['copy users to stdout', 'masked'],
    ['copy users (email) to stdout', 'masked'],
    ['update users set id = null where id = 1', 'masked'],
    ['with c as (select email from users) select 1 from c', 'masked'],
    ['select id, name from users', 'none'],
    ['select current_setting(name) from users', 'none'],
    ['copy users (id, name) to stdout', 'none'],
    ['select id from v_ids', 'none'],
    ['select 1', 'none'],
    ['select f_user(id) from users', 'opaque'],
    ['select no_such(1)', 'opaque'],
    ["select query_to_xml('select 1', true, true, '')", 'opaque'],
    ['execute p', 'opaque'],
    ['fetch all from c', 'opaque'],
    ['do $$ begin end $$', 'opaque'],
    ['select from where', 'opaque'],
    ['select current_setting(x) from tmp_copy', 'opaque'],
    ['with tmp_copy as (select id from users) select id from tmp_copy', 'none'],
  ];
  for (const [sql, want] of cases) assert.equal(await verdict(sql), want, sql);
});

test('the verdict: a column alias list stands for the columns at its positions', async () => {
  const cases: [string, ReadVerdict][] = [
    ["select current_setting(split_part(e, '@', 1)) from users u(a, b, e)", 'masked'],
    ['select 1 from users u(a, b, e) where e is null', 'masked'],
    ['select u.e from users as u(a, b, e)', 'masked'],
    ['select substr(k, 1, 12) from cards c(i, k)', 'masked'],
    // A join's columns: USING columns first, then the rest of each side in order.
    ["select current_setting(split_part(e, '@', 1)) from (users join cards using (id)) j(i, n, e)", 'masked'],
    ['select k from (users u(a, b) natural join cards) j(i, n, x, y, z, k)', 'masked'],
    ['select c from v_users v(i, c)', 'masked'],
    // Unmasked columns renamed, or the masked one renamed but never used.
    ['select current_setting(n) from users u(a, n) where a = 1', 'none'],
    ['select n from users u(a, n, e)', 'none'],
    ['select n from (users join cards using (id)) j(i, n, e)', 'none'],
    // Positions not known here (a join over a subquery): every column counts.
    ['select n from (users join (select 1 as id) s using (id)) j(i, n)', 'masked'],
  ];
  for (const [sql, want] of cases) assert.equal(await verdict(sql), want, sql);
});

test('the verdict: a catalog failure is opaque, never a rejection', async () => {
  const broken: ProvenanceCatalog = {
    relations: () => Promise.reject(new Error('down')),
    functions: () => Promise.reject(new Error('down')),
    castTargets: () => Promise.reject(new Error('down')),
  };
  assert.equal(await statementReads('select 1 from users', broken, () => false), 'opaque');
});

test('ErrorReads: the tracker head picks the text; cached once analysed; FunctionCall is opaque; Sync and nothing are none', async () => {
  let calls = 0;
  const reads = new ErrorReads((sql) => {
    calls++;
    return verdict(sql);
  });
  const rec = { sql: 'select email from users' } as Extract<Outstanding, { kind: 'query' }>['rec'];
  const head = { kind: 'query', rec, batch: 0, changes: undefined, completed: 0 } as Outstanding;
  const first = reads.verdictFor(head);
  assert.ok(first instanceof Promise);
  assert.equal(await first, 'masked');
  assert.equal(reads.verdictFor(head), 'masked', 'cached: answered at once');
  assert.equal(calls, 1);
  assert.equal(reads.verdictFor({ kind: 'function', rec, batch: 0, builtin: true }), 'opaque');
  assert.equal(reads.verdictFor({ kind: 'sync', batch: 0 }), 'none');
  assert.equal(reads.verdictFor(undefined), 'none');
  assert.equal(new ErrorReads(undefined).verdictFor(head), 'opaque', 'no analysis: treated as reading a masked column');
});
