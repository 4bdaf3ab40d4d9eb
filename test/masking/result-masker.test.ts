import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ResultMasker, maskSqlText } from '../../src/broker/postgres/proxy-masking.js';
import type { MaskingPlan } from '../../src/broker/masking/rules.js';
import { maskText } from '../../src/broker/masking/styles.js';
import { loadSqlParser } from '../../src/broker/policy/sql-classify.js';
import type { Provenance } from '../../src/broker/masking/provenance.js';
import type { MaskingConfig } from '../../src/broker/config/types.js';
import * as be from '../../src/broker/postgres/build-backend.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';
import { BackendType } from '../../src/broker/postgres/protocol.js';
import { col, expr, fixedCatalog, frames, noticeFields, ORDERS_OID, rowBuffers, rowValues, USERS_OID, maskingPlan } from './helpers.js';

/** An error or notice masked while no statement runs: at once (no analysis to wait for). */
function now(out: Buffer | Promise<Buffer>): Buffer {
  assert.ok(Buffer.isBuffer(out), 'masked at once');
  return out;
}

const KEY = Buffer.alloc(32, 3);

const plan = (config: Partial<MaskingConfig>): MaskingPlan => maskingPlan({ style: 'partial', ...config });

/** Feed a frontend frame to the masker the way the proxy does. */
function sent(m: ResultMasker, ...frames: Buffer[]): void {
  for (const f of frames) m.frontend(f[0]!, f.subarray(5));
}

/** Feed a server frame; await a lookup when the masker asks for one. */
async function recv(m: ResultMasker, frame: Buffer): Promise<Buffer> {
  const r = m.backend({ type: frame[0]!, frame, body: frame.subarray(5) });
  if (r instanceof Promise) {
    await r;
    return frame;
  }
  return r;
}

/**
 * A DataRow and the CommandComplete of its result: the row's values as the client gets
 * them. Rows of a result with an output masked whole for what it computes over are held
 * until the result completes, so the row may arrive with the CommandComplete.
 */
async function rowThroughCompletion(m: ResultMasker, row: Buffer, tag = 'SELECT 1'): Promise<(string | null)[]> {
  const out = Buffer.concat([await recv(m, row), await recv(m, be.commandComplete(tag))]);
  const rows = frames(out).filter((f) => f.type === BackendType.dataRow);
  assert.equal(rows.length, 1, 'one row reaches the client');
  assert.equal(frames(out).at(-1)?.type, BackendType.commandComplete, 'the row comes before its completion');
  const body = rows[0]!.body;
  const frame = Buffer.alloc(5 + body.length);
  frame[0] = BackendType.dataRow;
  frame.writeInt32BE(4 + body.length, 1);
  body.copy(frame, 5);
  return rowValues(frame);
}

test('text rows: column rules mask whole values, detectors mask spans, the rest is untouched', async () => {
  const catalog = fixedCatalog();
  const m = new ResultMasker(plan({ columns: ['*.email', 'users.ssn'], detectors: ['email', 'credit_card'], style: 'partial' }), KEY, catalog);
  const desc = be.rowDescription([col(1), col(2), col(3), col(4)]);
  const pending = m.rowDescription(desc.subarray(5));
  assert.ok(pending instanceof Promise, 'the table must be looked up first');
  await pending;
  assert.deepEqual(catalog.calls, [[USERS_OID]]);

  const row = be.dataRow(['1', 'alice@example.com', '123-45-6789', 'paid with 4111 1111 1111 1111, receipt to bob@example.org']);
  assert.deepEqual(rowValues(m.dataRow(row)), ['1', '****@example.com', '****6789', 'paid with ****1111, receipt to ****@example.org']);

  // NULLs stay NULL; a row with nothing to mask is the very same Buffer.
  const plain = be.dataRow(['2', null, null, 'nothing to see']);
  assert.equal(m.dataRow(plain), plain);

  // Unicode around and inside values survives byte-exact.
  assert.deepEqual(rowValues(m.dataRow(be.dataRow(['3', 'ünïcødé@example.com', null, 'メール: 山田 yamada@example.jp です']))), [
    '3',
    '****@example.com',
    null,
    'メール: 山田 ****@example.jp です',
  ]);

  // A second result over the same table needs no lookup.
  assert.equal(m.rowDescription(desc.subarray(5)), undefined);
  assert.equal(catalog.calls.length, 1);

  assert.deepEqual(m.counts(), { values: 6, byRule: { 'column:*.email': 2, 'column:users.ssn': 1, email: 2, credit_card: 1 } });
  assert.equal(m.takeNotice(), undefined);
});

test('text rows: null, full and hash styles; json masks stay JSON; bpchar padding ignored', async () => {
  const m = new ResultMasker(plan({ columns: ['users.ssn', '*.email', '*.profile'], style: 'hash' }), KEY, fixedCatalog());
  await m.rowDescription(be.rowDescription([col(2), col(3), col(6)]).subarray(5));
  const out = rowValues(m.dataRow(be.dataRow(['alice@example.com', '123-45-6789  ', '{"a": 1}'])));
  assert.equal(out[0], maskText('alice@example.com', 'hash', KEY));
  assert.equal(out[1], maskText('123-45-6789', 'hash', KEY), 'bpchar padding is not part of the value');
  assert.deepEqual(JSON.parse(out[2]!), maskText('{"a": 1}', 'hash', KEY));

  const n = new ResultMasker(plan({ columns: ['*.email'], style: 'null' }), KEY, fixedCatalog());
  await n.rowDescription(be.rowDescription([col(1), col(2)]).subarray(5));
  assert.deepEqual(rowValues(n.dataRow(be.dataRow(['1', 'a@example.com']))), ['1', null]);

  const f = new ResultMasker(plan({ columns: ['*.profile'], style: 'partial' }), KEY, fixedCatalog());
  await f.rowDescription(be.rowDescription([col(6)]).subarray(5));
  assert.deepEqual(rowValues(f.dataRow(be.dataRow(['{"card": "4111111111111111"}']))), ['"********"']);
});

test('binary rows: text-like types masked in place, jsonb keeps its version byte, other types become NULL with a notice', async () => {
  const m = new ResultMasker(plan({ columns: ['*.email', '*.birth_date', '*.code'], detectors: ['email', 'aws_key'], style: 'full' }), KEY, fixedCatalog());
  await m.rowDescription(be.rowDescription([col(1, 1), col(2, 1), col(6, 1), col(7, 1), col(8, 1), col(4, 1)]).subarray(5));
  const id = Buffer.alloc(4);
  id.writeInt32BE(42);
  const jsonb = Buffer.concat([Buffer.from([1]), Buffer.from('{"contact": "carol@example.com", "key": "AKIAIOSFODNN7EXAMPLE"}')]);
  const date = Buffer.alloc(4, 0x11);
  const out = m.dataRow(be.dataRow([id, Buffer.from('alice@example.com'), jsonb, date, Buffer.from('X-1'), Buffer.from('plain')]));
  const v = rowBuffers(out);
  assert.deepEqual(v[0], id, 'binary int4 untouched');
  assert.equal(v[1]?.toString(), '********');
  assert.equal(v[2]?.[0], 1);
  assert.equal(v[2]?.subarray(1).toString(), '{"contact": "********", "key": "********"}');
  assert.equal(v[3], null, 'a masked date in binary is NULL');
  assert.equal(v[4]?.toString(), '********');
  assert.equal(v[5]?.toString(), 'plain');
  assert.match(m.takeNotice() ?? '', /^masked binary column public\.users\.birth_date returned as NULL/);
  assert.equal(m.takeNotice(), undefined);
  // The notice is one-time per column.
  await m.rowDescription(be.rowDescription([col(7, 1)]).subarray(5));
  assert.equal(m.takeNoticeFrame(), undefined);
});

test('expressions (table OID 0) match by label; detectors-only plans never look anything up', async () => {
  const catalog = fixedCatalog();
  const m = new ResultMasker(plan({ columns: ['*.email'], style: 'full' }), KEY, catalog);
  assert.equal(m.rowDescription(be.rowDescription([expr('email'), expr('count', 20)]).subarray(5)), undefined);
  assert.deepEqual(rowValues(m.dataRow(be.dataRow(['x@example.com', '3']))), ['********', '3']);
  assert.equal(catalog.calls.length, 0);

  const d = new ResultMasker(plan({ detectors: ['credit_card', 'high_entropy'] }), KEY, catalog);
  // int4 is never scanned; a secret-named column turns high_entropy on.
  assert.equal(d.rowDescription(be.rowDescription([col(1), col(5), col(4)]).subarray(5)), undefined);
  assert.equal(catalog.calls.length, 0);
  const row = be.dataRow(['4111111111111111', 'Zx8vQ2pL9mN4rT6yB1cK3dF7hJ0', 'Zx8vQ2pL9mN4rT6yB1cK3dF7hJ0']);
  assert.deepEqual(rowValues(d.dataRow(row)), ['4111111111111111', '****7hJ0', 'Zx8vQ2pL9mN4rT6yB1cK3dF7hJ0']);
});

test('fail closed: a failed lookup masks every column of the table, with a notice', async () => {
  const failing = Object.assign(async () => {
    throw new Error('connection refused');
  }, {});
  const m = new ResultMasker(plan({ columns: ['users.ssn'], style: 'partial' }), KEY, failing);
  await m.rowDescription(be.rowDescription([col(1), col(4)]).subarray(5));
  // An int4 cannot hold a mask's text: it becomes NULL; text is masked whole.
  assert.deepEqual(rowValues(m.dataRow(be.dataRow(['1', 'hello there']))), [null, '********']);
  assert.match(m.takeNotice() ?? '', /could not look up column names \(connection refused\)/);
  assert.deepEqual(m.counts().byRule, { 'column:unresolved': 2 });
});

test('fail closed: rows whose columns were never described', () => {
  const m = new ResultMasker(plan({ columns: ['*.email'], style: 'full' }), KEY, fixedCatalog());
  // The format is unknown too, so NULL (safe in text and binary).
  assert.deepEqual(rowValues(m.dataRow(be.dataRow(['a', null]))), [null, null]);
  assert.match(m.takeNotice() ?? '', /could not be identified/);
  const d = new ResultMasker(plan({ detectors: ['email'] }), KEY, fixedCatalog());
  assert.deepEqual(rowValues(d.dataRow(be.dataRow(['a@example.com']))), ['****@example.com']);
});

test('extended protocol: Describe statement, then Bind with binary results and no RowDescription', async () => {
  const m = new ResultMasker(plan({ columns: ['*.email'], detectors: ['email'], style: 'full' }), KEY, fixedCatalog());
  // Prepare: Parse + Describe S + Sync.
  sent(m, fe.parse('s1', 'select id, email, note from users'), fe.describe('S', 's1'), fe.SYNC);
  await recv(m, be.PARSE_COMPLETE);
  await recv(m, Buffer.from([0x74, 0, 0, 0, 6, 0, 0])); // ParameterDescription, no parameters
  await recv(m, be.rowDescription([col(1), col(2), col(4)])); // formats 0: not yet known
  await recv(m, be.readyForQuery('I'));

  // Execute with binary results for every column.
  sent(m, fe.bind('', 's1', [], { resultFormats: [1] }), fe.execute(''), fe.SYNC);
  await recv(m, be.BIND_COMPLETE);
  const id = Buffer.alloc(4);
  id.writeInt32BE(0x40414243); // bytes '@ABC': binary, so never scanned
  const out = await recv(m, be.dataRow([id, Buffer.from('a@example.com'), Buffer.from('to b@example.com')]));
  const v = rowBuffers(out);
  assert.deepEqual(v[0], id);
  assert.equal(v[1]?.toString(), '********');
  assert.equal(v[2]?.toString(), 'to ********');
  await recv(m, be.commandComplete('SELECT 1'));
  await recv(m, be.readyForQuery('I'));

  // Pipelined: two portals with different formats, answered in order.
  sent(m, fe.bind('p1', 's1', [], { resultFormats: [0] }), fe.bind('p2', 's1', [], { resultFormats: [0, 1, 1] }), fe.execute('p1'), fe.execute('p2'), fe.SYNC);
  await recv(m, be.BIND_COMPLETE);
  await recv(m, be.BIND_COMPLETE);
  assert.deepEqual(rowValues(await recv(m, be.dataRow(['7', 'c@example.com', 'x']))), ['7', '********', 'x']);
  await recv(m, be.commandComplete('SELECT 1'));
  const row2 = rowBuffers(await recv(m, be.dataRow(['8', Buffer.from('d@example.com'), Buffer.from('y')])));
  assert.equal(row2[0]?.toString(), '8');
  assert.equal(row2[1]?.toString(), '********');
  await recv(m, be.commandComplete('SELECT 1'));
  await recv(m, be.readyForQuery('I'));

  // An error skips to Sync: the next simple query's rows use their own RowDescription.
  sent(m, fe.bind('', 's1', [], { resultFormats: [1] }), fe.execute(''), fe.SYNC, fe.query('select note from users'));
  await recv(m, be.errorResponse({ severity: 'ERROR', code: '22012', message: 'division by zero' }));
  await recv(m, be.readyForQuery('I'));
  await recv(m, be.rowDescription([col(4)]));
  assert.deepEqual(rowValues(await recv(m, be.dataRow(['e@example.com']))), ['********']);
});

test('extended protocol: Describe portal gives the real formats; Close forgets the statement', async () => {
  const m = new ResultMasker(plan({ columns: ['*.email'], style: 'full' }), KEY, fixedCatalog());
  sent(m, fe.parse('', 'select email, id from users'), fe.bind('', '', [], { resultFormats: [1, 0] }), fe.describe('P', ''), fe.execute(''), fe.SYNC);
  await recv(m, be.PARSE_COMPLETE);
  await recv(m, be.BIND_COMPLETE);
  await recv(m, be.rowDescription([col(2, 1), col(1, 0)]));
  const v = rowBuffers(await recv(m, be.dataRow([Buffer.from('a@example.com'), '5'])));
  assert.equal(v[0]?.toString(), '********');
  assert.equal(v[1]?.toString(), '5');
  await recv(m, be.commandComplete('SELECT 1'));
  await recv(m, be.readyForQuery('I'));
  sent(m, fe.close('S', ''), fe.SYNC);
  await recv(m, be.CLOSE_COMPLETE);
  await recv(m, be.readyForQuery('I'));
  // A portal of a statement nobody described: fail closed, NULL (formats from Bind are all the masker knows).
  sent(m, fe.bind('', 'never-described', [], {}), fe.execute(''), fe.SYNC);
  await recv(m, be.BIND_COMPLETE);
  assert.deepEqual(await rowThroughCompletion(m, be.dataRow(['x@example.com'])), ['********']);
});

test('rows of a result computed over a masked column are held until it completes, and an error drops them', async () => {
  const provenance = (): Promise<Provenance[]> => Promise.resolve([{ ok: true, columns: [{ name: 'e', sources: new Set(['public.users.email']), direct: false, opaque: false }] }]);
  const m = new ResultMasker(plan({ columns: ['*.email'], style: 'full' }), KEY, fixedCatalog(), undefined, provenance);
  sent(m, fe.query('select 1/(ascii(email) - 113) as e from users'));
  await recv(m, be.rowDescription([expr('e')]));
  assert.equal((await recv(m, be.dataRow(['1']))).length, 0, 'held');
  assert.equal((await recv(m, be.dataRow(['1']))).length, 0, 'held');
  const err = await recv(m, be.errorResponse({ severity: 'ERROR', code: '22012', message: 'division by zero' }));
  assert.deepEqual(frames(err).map((f) => f.type), [BackendType.errorResponse], 'the error alone: the held rows are dropped');
  await recv(m, be.readyForQuery('I'));
  sent(m, fe.query('select 1/(ascii(email) - 113) as e from users'));
  await recv(m, be.rowDescription([expr('e')]));
  assert.equal((await recv(m, be.dataRow(['1']))).length, 0, 'held');
  const done = frames(await recv(m, be.commandComplete('SELECT 1')));
  assert.deepEqual(done.map((f) => f.type), [BackendType.dataRow, BackendType.commandComplete], 'released with the completion');
});

test('NOTIFY payloads are scanned by the detectors', () => {
  const m = new ResultMasker(plan({ detectors: ['email'], style: 'full' }), KEY, fixedCatalog());
  const body = Buffer.concat([Buffer.from([0, 0, 0, 42]), Buffer.from('chan\0new signup a@example.com\0')]);
  const frame = Buffer.concat([Buffer.from([0x41, 0, 0, 0, 0]), body]);
  frame.writeInt32BE(frame.length - 1, 1);
  const out = m.notification(frame);
  assert.equal(out.readInt32BE(1), out.length - 1);
  assert.equal(out.subarray(9).toString(), 'chan\0new signup ********\0');
});

test('ErrorResponse and NoticeResponse: detail values of masked columns and detector hits are masked', async () => {
  const m = new ResultMasker(plan({ columns: ['users.ssn', '*.email'], detectors: ['email', 'jwt'], style: 'partial' }), KEY, fixedCatalog());
  const unique = be.errorResponse({
    severity: 'ERROR',
    code: '23505',
    message: 'duplicate key value violates unique constraint "users_email_key"',
    detail: 'Key (email)=(alice@example.com) already exists.',
    schema: 'public',
    table: 'users',
    constraint: 'users_email_key',
  });
  const u = noticeFields(now(m.errorOrNotice(unique)));
  assert.equal(u.get('D'), 'Key (email)=(****@example.com) already exists.');
  assert.equal(u.get('M'), 'duplicate key value violates unique constraint "users_email_key"');
  assert.equal(u.get('n'), 'users_email_key');

  const composite = be.errorResponse({ severity: 'ERROR', code: '23505', message: 'dup', detail: 'Key (ssn, id)=(123456789, 7) already exists.', schema: 'public', table: 'users' });
  assert.equal(noticeFields(now(m.errorOrNotice(composite))).get('D'), 'Key (ssn, id)=(****6789, 7) already exists.');

  const notNull = be.errorResponse({ severity: 'ERROR', code: '23502', message: 'null value in column "id"', detail: 'Failing row contains (null, bob, 123-45-6789, secret note).', schema: 'public', table: 'users' });
  assert.equal(noticeFields(now(m.errorOrNotice(notNull))).get('D'), 'Failing row contains (********).');

  // Translations keep the (cols)=(values) form.
  const german = be.errorResponse({ severity: 'ERROR', code: '23505', message: 'doppelter Schlüsselwert', detail: 'Schlüssel »(ssn)=(123456789)« existiert bereits.', schema: 'public', table: 'users' });
  assert.equal(noticeFields(now(m.errorOrNotice(german))).get('D'), 'Schlüssel »(ssn)=(****6789)« existiert bereits.');
  // A detail we cannot read, on a table with masked columns: masked whole.
  const unknown = be.errorResponse({ severity: 'ERROR', code: '23505', message: 'dup', detail: 'Wert 123456789 existiert bereits.', schema: 'public', table: 'users' });
  assert.equal(noticeFields(now(m.errorOrNotice(unknown))).get('D'), '********');

  // Other tables' keys are not column-masked (detectors still apply).
  const other = be.errorResponse({ severity: 'ERROR', code: '23505', message: 'dup', detail: 'Key (sku)=(A-1) already exists.', schema: 'public', table: 'products' });
  assert.equal(now(m.errorOrNotice(other)), other, 'nothing to mask: same Buffer');

  const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz';
  const notice = be.noticeResponse({ severity: 'NOTICE', code: '00000', message: `token ${jwt} for x@example.com`, where: 'PL/pgSQL function f() line 3 at RAISE' });
  const n = noticeFields(now(m.errorOrNotice(notice)));
  // Text a RAISE wrote may hold a masked column's value in any form: with column rules it is withheld.
  assert.equal(n.get('M'), 'agentgate: withheld (text from a function may carry masked data)');
  assert.equal(n.get('W'), 'PL/pgSQL function f() line 3 at RAISE');
  assert.equal(frames(now(m.errorOrNotice(notice)))[0]?.type, BackendType.noticeResponse);
  assert.ok(m.counts().values >= 6);
});

test('maskSqlText: detector hits and literals tied to masked columns, for the audit log', async () => {
  await loadSqlParser();
  const p = plan({ columns: ['users.ssn', '*password*', '*.email'], detectors: ['email', 'credit_card'], style: 'full' });
  const ins = maskSqlText("INSERT INTO public.users (id, email, ssn, note) VALUES (1, 'alice@example.com', '123456789', 'card 4111111111111111'), (2, 'b@x.io', E'987\\'65', 'ok')", p, KEY);
  assert.equal(ins.text, "INSERT INTO public.users (id, email, ssn, note) VALUES (1, '********', '********', 'card ********'), (2, '********', E'********', 'ok')");
  assert.equal(ins.count, 5);
  assert.deepEqual(ins.byRule, { 'column:*.email': 2, 'column:users.ssn': 2, credit_card: 1 });

  const upd = maskSqlText("UPDATE users SET password_hash = 'hunter2' WHERE ssn IN ('111', '222') AND name = 'bob' -- it's me", p, KEY);
  assert.equal(upd.text, "UPDATE users SET password_hash = '********' WHERE ssn IN ('********', '********') AND name = 'bob' -- it's me");

  const rev = maskSqlText("select * from users u where '078051120' = u.ssn", p, KEY);
  assert.equal(rev.text, "select * from users u where '********' = u.ssn");

  const none = maskSqlText('select 1', p, KEY);
  assert.deepEqual(none, { text: 'select 1', count: 0, byRule: {} });

  const hashed = maskSqlText("select 'a@example.com'", plan({ detectors: ['email'], style: 'hash' }), KEY);
  assert.equal(hashed.text, `select '${maskText('a@example.com', 'hash', KEY)}'`);
  assert.equal(maskSqlText("select 'a@example.com'", plan({ detectors: ['email'], style: 'hash' })).text, "select '********'", 'no key: full');
});

test('orders.ssn is not users.ssn, and is not looked up twice', async () => {
  const catalog = fixedCatalog();
  const m = new ResultMasker(plan({ columns: ['users.ssn'], style: 'full' }), KEY, catalog);
  const orderSsn = { name: 'ssn', tableOid: ORDERS_OID, columnAttr: 2, typeOid: 25, typeSize: -1, typeMod: -1, format: 0 };
  await m.rowDescription(be.rowDescription([orderSsn, col(3)]).subarray(5));
  assert.deepEqual(rowValues(m.dataRow(be.dataRow(['123-45-6789', '123-45-6789']))), ['123-45-6789', '********']);
  assert.deepEqual(catalog.calls, [[ORDERS_OID, USERS_OID]]);
});

test('provenance is analysed once per statement shape: inlined numbers share it, a new shape is traced afresh', async () => {
  const analysed: string[] = [];
  // What the analysis answers: the output `e` is users.email, computed (so only the trace masks it).
  const provenance = (sql: string): Promise<Provenance[]> => {
    analysed.push(sql);
    const from = sql.includes('lower(') ? 'public.users.email' : 'public.users.note';
    return Promise.resolve([{ ok: true, columns: [{ name: 'e', sources: new Set([from]), direct: false, opaque: false }] }]);
  };
  const m = new ResultMasker(plan({ columns: ['*.email'], style: 'full' }), KEY, fixedCatalog(), undefined, provenance);
  const run = async (sql: string, value: string): Promise<(string | null)[]> => {
    sent(m, fe.query(sql));
    await recv(m, be.rowDescription([expr('e')]));
    const row = await rowThroughCompletion(m, be.dataRow([value]));
    await recv(m, be.readyForQuery('I'));
    return row;
  };
  assert.deepEqual(await run('select lower(email) as e from users where id = 1', 'alice@example.com'), ['********']);
  assert.deepEqual(await run('select lower(email) as e from users where id = 22 limit 3', 'bob@example.com'), ['********'], 'different shape');
  assert.deepEqual(await run('select lower(email) as e from users where id = 2', 'bob@example.com'), ['********']);
  assert.deepEqual(await run('select lower(email) as e from users where id = 4711', 'carol@example.com'), ['********']);
  assert.deepEqual(analysed, ['select lower(email) as e from users where id = 1', 'select lower(email) as e from users where id = 22 limit 3']);
  // Strings are not shape: a different string literal is a different text, traced again.
  assert.deepEqual(await run("select upper(note) as e from users where code = '1'", 'plain'), ['plain']);
  assert.deepEqual(await run("select lower(email) as e from users where code = '2'", 'dave@example.com'), ['********']);
  assert.equal(analysed.length, 4);
});

test('a RowDescription seen before is resolved once; after invalidate() (the session ran DDL) it is looked up afresh', async () => {
  const catalog = fixedCatalog();
  const m = new ResultMasker(plan({ columns: ['*.email'], style: 'full' }), KEY, catalog);
  const desc = be.rowDescription([col(1), col(2)]).subarray(5);
  const first = m.rowDescription(desc);
  assert.ok(first instanceof Promise);
  await first;
  for (let i = 0; i < 3; i++) {
    assert.equal(m.rowDescription(desc), undefined, 'known: resolved at once');
    assert.deepEqual(rowValues(m.dataRow(be.dataRow([String(i), 'a@example.com']))), [String(i), '********']);
  }
  assert.equal(catalog.calls.length, 1);
  m.invalidate();
  const again = m.rowDescription(desc);
  assert.ok(again instanceof Promise, 'what was resolved before the DDL is not reused');
  await again;
  assert.equal(catalog.calls.length, 2);
  assert.deepEqual(rowValues(m.dataRow(be.dataRow(['9', 'b@example.com']))), ['9', '********']);
});

test('one Query, two statements, the same RowDescription bytes: the second is traced as its own statement, not served from the first', async () => {
  // The output `e` of statement 0 is users.note (left alone), of statement 1 users.email (masked):
  // the bytes of the two RowDescriptions are equal, only the statement's place tells them apart.
  const provenance = (): Promise<Provenance[]> =>
    Promise.resolve([
      { ok: true, columns: [{ name: 'e', sources: new Set(['public.users.note']), direct: false, opaque: false }] },
      { ok: true, columns: [{ name: 'e', sources: new Set(['public.users.email']), direct: false, opaque: false }] },
    ]);
  const m = new ResultMasker(plan({ columns: ['*.email'], style: 'full' }), KEY, fixedCatalog(), undefined, provenance);
  const both = async (): Promise<(string | null)[][]> => {
    sent(m, fe.query('select upper(note) as e from users; select lower(email) as e from users'));
    const rows: (string | null)[][] = [];
    for (const value of ['plain', 'alice@example.com']) {
      await recv(m, be.rowDescription([expr('e')]));
      rows.push(await rowThroughCompletion(m, be.dataRow([value])));
    }
    await recv(m, be.readyForQuery('I'));
    return rows;
  };
  assert.deepEqual(await both(), [['plain'], ['********']]);
  assert.deepEqual(await both(), [['plain'], ['********']], 'the second time, both shapes come from the memo');
});
