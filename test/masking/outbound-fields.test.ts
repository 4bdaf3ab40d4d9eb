/**
 * Text that leaves the server outside ordinary text columns: every field of errors and
 * notices, ParameterStatus, NOTIFY channels, and bytea (decoded) in text and binary.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { maskParameterStatusFrame, ResultMasker } from '../../src/broker/postgres/proxy-masking.js';
import type { MaskingPlan } from '../../src/broker/masking/rules.js';
import { maskText, writeMask } from '../../src/broker/masking/styles.js';
import { OutBuffer } from '../../src/broker/masking/out-buffer.js';
import { decodeBytea, encodeByteaHex } from '../../src/broker/masking/bytea.js';
import { maskNoticeFrame } from '../../src/broker/masking/notice-fields.js';
import { maskNotificationFrame } from '../../src/broker/masking/status-text.js';
import { NON_UTF8_TEXT } from '../../src/broker/masking/outbound-text.js';
import * as be from '../../src/broker/postgres/build-backend.js';
import { BackendType } from '../../src/broker/postgres/protocol.js';
import { col, copyData, copyOutResponse, copyPayload, expr, fixedCatalog, noticeFields, rowBuffers, rowValues, maskingPlan } from './helpers.js';

/** An error or notice masked while no statement runs: at once (no analysis to wait for). */
function now(out: Buffer | Promise<Buffer>): Buffer {
  assert.ok(Buffer.isBuffer(out), 'masked at once');
  return out;
}

const KEY = Buffer.alloc(32, 7);
const EMAIL = 'alice@example.com';
const CARD = '4111111111111111';
const AWS = 'AKIAIOSFODNN7EXAMPLE';
const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz';

const plan = maskingPlan;

const DETECT_ALL = plan({ columns: ['*.email'], detectors: ['email', 'credit_card', 'aws_key', 'jwt'], style: 'full' });
/** Detectors without column rules: what a RAISE writes is scanned field by field, not withheld. */
const DETECT_ONLY = plan({ detectors: ['email', 'credit_card', 'aws_key', 'jwt'], style: 'full' });

function masker(p: MaskingPlan = DETECT_ALL): ResultMasker {
  return new ResultMasker(p, KEY, fixedCatalog());
}

/** An ErrorResponse/NoticeResponse with exactly these fields, in order (any codes, raw bytes allowed). */
function rawNotice(type: number, fields: [string, string | Buffer][]): Buffer {
  const parts: Buffer[] = [];
  for (const [code, value] of fields) parts.push(Buffer.from(code, 'latin1'), typeof value === 'string' ? Buffer.from(value, 'utf8') : value, Buffer.from([0]));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(5);
  head[0] = type;
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

function notification(pid: number, channel: string, payload: string): Buffer {
  const body = Buffer.concat([Buffer.alloc(4), Buffer.from(`${channel}\0${payload}\0`, 'utf8')]);
  body.writeInt32BE(pid, 0);
  const head = Buffer.alloc(5);
  head[0] = BackendType.notificationResponse;
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

function statusOf(frame: Buffer): [string, string] {
  assert.equal(frame[0], BackendType.parameterStatus);
  assert.equal(frame.readInt32BE(1), frame.length - 1);
  const [name, value] = frame.subarray(5).toString('utf8').split('\0');
  return [name!, value!];
}

// ───────────────────────────── errors and notices ─────────────────────────────

test('RAISE … USING COLUMN = email: the column field is masked', () => {
  const m = masker(DETECT_ONLY);
  const f = noticeFields(now(m.errorOrNotice(be.errorResponse({ severity: 'ERROR', code: 'P0001', message: 'x', column: EMAIL }))));
  assert.equal(f.get('c'), '********');
  assert.equal(f.get('M'), 'x');
  assert.equal(f.get('C'), 'P0001');
  assert.deepEqual(m.counts(), { values: 1, byRule: { email: 1 } });
});

test('CONSTRAINT carrying a card number is masked', () => {
  const f = noticeFields(now(masker(DETECT_ONLY).errorOrNotice(be.errorResponse({ severity: 'ERROR', code: 'P0001', message: 'x', constraint: `chk ${CARD}` }))));
  assert.equal(f.get('n'), 'chk ********');
});

test('DATATYPE carrying an AWS key is masked', () => {
  const f = noticeFields(now(masker(DETECT_ONLY).errorOrNotice(be.errorResponse({ severity: 'ERROR', code: 'P0001', message: 'x', dataType: AWS }))));
  assert.equal(f.get('d'), '********');
});

test('TABLE carrying a JWT and SCHEMA carrying an email are masked', () => {
  const f = noticeFields(now(masker(DETECT_ONLY).errorOrNotice(be.errorResponse({ severity: 'ERROR', code: 'P0001', message: 'x', table: JWT, schema: EMAIL }))));
  assert.equal(f.get('t'), '********');
  assert.equal(f.get('s'), '********');
});

test('routine, file, line, severity and positions are scanned too', () => {
  const frame = rawNotice(BackendType.errorResponse, [
    ['S', `ERROR ${EMAIL}`],
    ['V', 'ERROR'],
    ['C', 'P0001'],
    ['M', 'x'],
    ['P', CARD],
    ['p', '12'],
    ['F', `pl_exec ${AWS}.c`],
    ['L', CARD],
    ['R', `exec_stmt_raise ${JWT}`],
  ]);
  const f = noticeFields(now(masker().errorOrNotice(frame)));
  assert.equal(f.get('S'), 'ERROR ********');
  assert.equal(f.get('V'), 'ERROR');
  assert.equal(f.get('P'), '********');
  assert.equal(f.get('p'), '12');
  assert.equal(f.get('F'), 'pl_exec ********.c');
  assert.equal(f.get('L'), '********');
  assert.equal(f.get('R'), 'exec_stmt_raise ********');
  assert.deepEqual([...f.keys()], ['S', 'V', 'C', 'M', 'P', 'p', 'F', 'L', 'R'], 'order and codes kept');
});

test('unknown field codes are scanned and kept', () => {
  const frame = rawNotice(BackendType.noticeResponse, [
    ['S', 'NOTICE'],
    ['Z', `future ${EMAIL}`],
    ['x', AWS],
    ['M', 'ok'],
  ]);
  const out = now(masker().errorOrNotice(frame));
  assert.equal(out[0], BackendType.noticeResponse);
  const f = noticeFields(out);
  assert.equal(f.get('Z'), 'future ********');
  assert.equal(f.get('x'), '********');
  assert.equal(f.get('M'), 'ok');
});

test('a bogus SQLSTATE becomes XX000; valid ones pass', () => {
  for (const bad of [EMAIL, '2350', 'p0001', '23505x', '42 01', '']) {
    const m = masker(plan({ columns: ['*.email'] }));
    const f = noticeFields(now(m.errorOrNotice(rawNotice(BackendType.errorResponse, [['S', 'ERROR'], ['C', bad], ['M', 'm']]))));
    assert.equal(f.get('C'), 'XX000', `SQLSTATE ${JSON.stringify(bad)}`);
    assert.deepEqual(m.counts().byRule, { sqlstate: 1 });
  }
  for (const good of ['P0001', '23505', 'XX000', '0A000']) {
    const frame = rawNotice(BackendType.errorResponse, [['S', 'ERROR'], ['C', good], ['M', 'm']]);
    assert.equal(now(masker(DETECT_ONLY).errorOrNotice(frame)), frame, `SQLSTATE ${good} passes, same Buffer`);
  }
});

test('a field that is not valid UTF-8 is replaced when detectors are on', () => {
  const bad = Buffer.concat([Buffer.from('caf'), Buffer.from([0xe9, 0xff]), Buffer.from(' a@b.example')]);
  const frame = rawNotice(BackendType.noticeResponse, [['S', 'NOTICE'], ['M', bad], ['D', 'fine']]);
  const m = masker();
  const f = noticeFields(now(m.errorOrNotice(frame)));
  assert.equal(f.get('M'), NON_UTF8_TEXT);
  assert.equal(f.get('D'), 'fine');
  assert.deepEqual(m.counts().byRule, { non_utf8: 1 });
  // Column rules only: nothing would scan the text, so it is not replaced.
  assert.equal(now(masker(plan({ columns: ['*.email'] })).errorOrNotice(frame)), frame);
});

test('name fields: a (cols)=(values) text under column rules is masked; real constraint names are not', () => {
  const p = plan({ columns: ['users.ssn'], style: 'partial' });
  const forged = be.errorResponse({ severity: 'ERROR', code: '23514', message: 'x', schema: 'public', table: 'users', constraint: 'Key (ssn)=(123456789) already exists.' });
  assert.equal(noticeFields(now(masker(p).errorOrNotice(forged))).get('n'), 'Key (ssn)=(****6789) already exists.');
  const real = be.errorResponse({ severity: 'ERROR', code: '23505', message: 'dup', detail: 'Key (id)=(1) already exists.', schema: 'public', table: 'users', constraint: 'users_pkey' });
  assert.equal(now(masker(p).errorOrNotice(real)), real);
});

test('an error with nothing to mask is the same Buffer; maskNoticeFrame works standalone', () => {
  const frame = be.errorResponse({ severity: 'ERROR', code: '42P01', message: 'relation "t" does not exist', position: '15', file: 'parse_relation.c', line: '1392', routine: 'parserOpenTable' });
  assert.equal(now(masker().errorOrNotice(frame)), frame);
  const byRule: Record<string, number> = {};
  const out = maskNoticeFrame(be.noticeResponse({ severity: 'NOTICE', code: '00000', message: `hi ${EMAIL}`, hint: CARD }), DETECT_ALL, KEY, byRule);
  assert.equal(noticeFields(out).get('M'), 'hi ********');
  assert.equal(noticeFields(out).get('H'), '********');
  assert.deepEqual(byRule, { email: 1, credit_card: 1 });
});

test('backend() routes ErrorResponse through every-field masking', () => {
  const m = masker(DETECT_ONLY);
  const frame = be.errorResponse({ severity: 'ERROR', code: 'P0001', message: 'x', column: EMAIL });
  const out = m.backend({ type: frame[0]!, frame, body: frame.subarray(5) });
  assert.ok(Buffer.isBuffer(out));
  assert.equal(noticeFields(out).get('c'), '********');
});

// ───────────────────────────── ParameterStatus, NOTIFY ─────────────────────────────

test('ParameterStatus with an email value is masked (method and backend() routing)', () => {
  const m = masker(plan({ detectors: ['email'], style: 'partial' }));
  const frame = be.parameterStatus('application_name', EMAIL);
  assert.deepEqual(statusOf(m.parameterStatus(frame)), ['application_name', '****@example.com']);
  const routed = m.backend({ type: frame[0]!, frame, body: frame.subarray(5) });
  assert.ok(Buffer.isBuffer(routed));
  assert.deepEqual(statusOf(routed), ['application_name', '****@example.com']);
  assert.deepEqual(m.counts(), { values: 2, byRule: { email: 2 } });
  const plain = be.parameterStatus('TimeZone', 'Etc/UTC');
  assert.equal(m.parameterStatus(plain), plain, 'nothing to mask: same Buffer');
});

test('maskParameterStatusFrame: standalone, for startup frames (hash style, counts, no detectors)', () => {
  const byRule: Record<string, number> = {};
  const frame = be.parameterStatus('application_name', `app ${CARD}`);
  const out = maskParameterStatusFrame(frame, plan({ detectors: ['credit_card'], style: 'hash' }), KEY, byRule);
  assert.deepEqual(statusOf(out), ['application_name', `app ${maskText(CARD, 'hash', KEY)}`]);
  assert.deepEqual(byRule, { credit_card: 1 });
  assert.equal(maskParameterStatusFrame(be.parameterStatus('DateStyle', 'ISO, MDY'), plan({ columns: ['*.email'] }), KEY).toString('latin1', 5), 'DateStyle\0ISO, MDY\0', 'a setting of a fixed set passes a plan without detectors');
  const untraced: Record<string, number> = {};
  assert.deepEqual(statusOf(maskParameterStatusFrame(frame, plan({ columns: ['*.email'] }), KEY, untraced)), ['application_name', '********'], 'a free-text setting is masked whole under column rules');
  assert.deepEqual(untraced, { untraced: 1 });
  const zone = be.parameterStatus('TimeZone', 'Etc/UTC');
  assert.equal(maskParameterStatusFrame(zone, plan({ columns: ['*.email'] }), KEY, {}, true), zone, 'at startup (no statement chose it) a free-text setting gets the detectors only');
  assert.deepEqual(statusOf(maskParameterStatusFrame(zone, plan({ columns: ['*.email'] }), KEY)), ['TimeZone', '********'], 'after startup it is masked whole');
  const bad = Buffer.concat([Buffer.from([0x53, 0, 0, 0, 0]), Buffer.from('application_name\0'), Buffer.from([0xc3, 0x28, 0])]);
  bad.writeInt32BE(bad.length - 1, 1);
  assert.deepEqual(statusOf(maskParameterStatusFrame(bad, DETECT_ONLY, KEY)), ['application_name', NON_UTF8_TEXT]);
  assert.deepEqual(statusOf(maskParameterStatusFrame(bad, DETECT_ALL, KEY)), ['application_name', '********'], 'under column rules: masked whole');
});

test('NOTIFY: the channel name is scanned; the payload is scanned without column rules, masked whole with them', () => {
  const whole = masker().notification(notification(42, 'jobs', 'run 12'));
  assert.equal(whole.subarray(9).toString(), 'jobs\0agentgate: withheld (a notification payload may carry masked data)\0');
  const m = masker(DETECT_ONLY);
  const out = m.notification(notification(42, EMAIL, `signup ${AWS}`));
  assert.equal(out.readInt32BE(1), out.length - 1);
  assert.equal(out.readInt32BE(5), 42, 'process id kept');
  assert.equal(out.subarray(9).toString(), '********\0signup ********\0');
  assert.deepEqual(m.counts().byRule, { email: 1, aws_key: 1 });
  const plain = notification(7, 'jobs', 'run 12');
  assert.equal(maskNotificationFrame(plain, DETECT_ONLY, KEY), plain);
});

// ───────────────────────────── bytea ─────────────────────────────

test('bytea helpers: hex and escape forms decode, malformed text is refused', () => {
  assert.deepEqual(decodeBytea('\\x616c696365'), Buffer.from('alice'));
  assert.deepEqual(decodeBytea('\\x414243'), Buffer.from('ABC'));
  assert.deepEqual(decodeBytea('\\x4A4b'), Buffer.from('JK'), 'either case');
  assert.deepEqual(decodeBytea('\\x'), Buffer.alloc(0));
  assert.deepEqual(decodeBytea(''), Buffer.alloc(0));
  assert.deepEqual(decodeBytea('a\\\\b\\000\\377c'), Buffer.from([0x61, 0x5c, 0x62, 0, 0xff, 0x63]));
  assert.deepEqual(decodeBytea('alice@example.com'), Buffer.from(EMAIL), 'escape form: printable bytes as themselves');
  for (const bad of ['\\x1', '\\xzz', '\\x12 34', '\\', 'a\\', '\\9', '\\400', '\\12', '\\0a0']) assert.equal(decodeBytea(bad), undefined, JSON.stringify(bad));
  assert.equal(encodeByteaHex(Buffer.from('****')), '\\x2a2a2a2a');
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  assert.deepEqual(decodeBytea(encodeByteaHex(all)), all);
});

test('bytea text (hex) holding an email: masked whole, still valid bytea hex', async () => {
  const m = masker(plan({ detectors: ['email'], style: 'partial' }));
  await m.rowDescription(be.rowDescription([expr('bytea', 17)]).subarray(5));
  const out = rowValues(m.dataRow(be.dataRow([encodeByteaHex(Buffer.from(EMAIL))])));
  assert.match(out[0]!, /^\\x([0-9a-f]{2})+$/);
  assert.equal(decodeBytea(out[0]!)!.toString(), '****@example.com', 'one span that is the whole value keeps what text would');
  assert.deepEqual(m.counts().byRule, { email: 1 });
});

test('bytea text (hex) holding a card number among other bytes: the whole value is masked', async () => {
  const m = masker();
  await m.rowDescription(be.rowDescription([expr('id', 23), expr('convert_to', 17)]).subarray(5));
  const value = Buffer.concat([Buffer.from([0, 1, 2]), Buffer.from(` card ${CARD} `), Buffer.from([0xff])]);
  const out = rowValues(m.dataRow(be.dataRow(['1', encodeByteaHex(value)])));
  assert.equal(out[0], '1');
  assert.equal(out[1], '\\x2a2a2a2a2a2a2a2a');
});

test('bytea text in escape format (bytea_output = escape) is decoded too', async () => {
  const m = masker();
  await m.rowDescription(be.rowDescription([expr('b', 17)]).subarray(5));
  const out = rowValues(m.dataRow(be.dataRow([`\\000\\\\to ${EMAIL}\\377`])));
  assert.equal(out[0], '\\x2a2a2a2a2a2a2a2a');
});

test('bytea binary holding an email or card: the mask bytes', async () => {
  const m = masker();
  await m.rowDescription(be.rowDescription([expr('a', 17, 1), expr('b', 17, 1)]).subarray(5));
  const v = rowBuffers(m.dataRow(be.dataRow([Buffer.from(EMAIL), Buffer.concat([Buffer.from([0x00, 0x80]), Buffer.from(CARD)])])));
  assert.equal(v[0]?.toString(), '********');
  assert.equal(v[1]?.toString(), '********');
  assert.deepEqual(m.counts().byRule, { email: 1, credit_card: 1 });
});

test('bytea without hits passes unchanged (the same Buffer), in text, escape and binary', async () => {
  const m = masker();
  await m.rowDescription(be.rowDescription([expr('a', 17), expr('b', 17)]).subarray(5));
  const text = be.dataRow([encodeByteaHex(Buffer.from('hello world')), 'plain\\000bytes']);
  assert.equal(m.dataRow(text), text);
  await m.rowDescription(be.rowDescription([expr('a', 17, 1)]).subarray(5));
  const bin = be.dataRow([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])]);
  assert.equal(m.dataRow(bin), bin);
  assert.equal(m.counts().values, 0);
});

test('bytea text that is not bytea text: masked whole (fail closed) when detectors are on', async () => {
  const m = masker();
  await m.rowDescription(be.rowDescription([expr('b', 17)]).subarray(5));
  assert.deepEqual(rowValues(m.dataRow(be.dataRow(['\\x616']))), ['\\x2a2a2a2a2a2a2a2a']);
  assert.deepEqual(m.counts().byRule, { bytea_unreadable: 1 });
});

test('a masked bytea column: the rule style over the decoded bytes, text and binary, no NULL', async () => {
  const m = masker(plan({ columns: ['*.avatar'], style: 'hash' }));
  await m.rowDescription(be.rowDescription([expr('avatar', 17), expr('avatar', 17, 1)]).subarray(5));
  const raw = Buffer.from([1, 2, 3, 250]);
  const v = rowBuffers(m.dataRow(be.dataRow([encodeByteaHex(raw), raw])));
  const expected = new OutBuffer();
  writeMask(expected, 'hash', raw, 0, raw.length, KEY);
  // The hash covers the bytes, not their hex spelling: text and binary agree.
  assert.deepEqual(v[1], expected.finish());
  assert.deepEqual(decodeBytea(v[0]!), v[1]);
  assert.match(v[1]!.toString(), /^h:[0-9a-f]{16}$/);
  assert.equal(m.takeNotice(), undefined, 'no "returned as NULL" notice for bytea');
  assert.deepEqual(m.counts().byRule, { 'column:*.avatar': 2 });
});

test('binary "char", name and unknown values are scanned', async () => {
  const m = masker();
  await m.rowDescription(be.rowDescription([expr('c', 18, 1), expr('n', 19, 1), expr('u', 705, 1)]).subarray(5));
  const v = rowBuffers(m.dataRow(be.dataRow([Buffer.from('x'), Buffer.from(EMAIL), Buffer.from(`k ${AWS}`)])));
  assert.equal(v[0]?.toString(), 'x');
  assert.equal(v[1]?.toString(), '********');
  assert.equal(v[2]?.toString(), 'k ********');
});

test('COPY text of a bytea column: decoded through the COPY escaping and written back escaped', async () => {
  const byteaCol = { ...col(1), name: 'data', typeOid: 17 };
  const m = new ResultMasker(plan({ detectors: ['email', 'aws_key'] }), KEY, fixedCatalog(() => [col(1), byteaCol]));
  m.frontend(0x51, Buffer.from('COPY (SELECT id, data FROM blobs) TO STDOUT\0'));
  const resp = copyOutResponse(0, 2);
  const r = m.backend({ type: resp[0]!, frame: resp, body: resp.subarray(5) });
  if (r instanceof Promise) await r;
  const hex = encodeByteaHex(Buffer.from(EMAIL)).replace('\\', '\\\\');
  assert.equal(copyPayload([m.copyData(copyData(`1\t${hex}\n`))]), '1\t\\\\x2a2a2a2a2a2a2a2a\n');
  const clean = copyData(`2\t${encodeByteaHex(Buffer.from('ok')).replace('\\', '\\\\')}\n`);
  assert.equal(m.copyData(clean), clean);
});

test('with column rules, what a RAISE wrote is withheld and values quoted by data errors are masked', () => {
  const raise = be.errorResponse({ severity: 'ERROR', code: 'P0001', message: 'moc.elpmaxe@ecila', detail: 'd', hint: 'h', column: 'c', where: 'PL/pgSQL function f(text) line 1 at RAISE' });
  const f = noticeFields(now(masker().errorOrNotice(raise)));
  for (const code of ['M', 'D', 'H', 'c']) assert.equal(f.get(code), 'agentgate: withheld (text from a function may carry masked data)', code);
  assert.equal(f.get('W'), 'PL/pgSQL function f(text) line 1 at RAISE');
  const notice = be.noticeResponse({ severity: 'NOTICE', code: '00000', message: 'n moc.elpmaxe', where: 'PL/pgSQL function f(text) line 1 at RAISE' });
  assert.equal(noticeFields(now(masker().errorOrNotice(notice))).get('M'), 'agentgate: withheld (text from a function may carry masked data)');
  const cast = be.errorResponse({ severity: 'ERROR', code: '22P02', message: 'invalid input syntax for type integer: "moc.elpmaxe@ecila"' });
  assert.equal(noticeFields(now(masker().errorOrNotice(cast))).get('M'), 'invalid input syntax for type integer: "********"');
  // Server errors that are not data exceptions keep their text (identifiers are quoted there).
  const missing = be.errorResponse({ severity: 'ERROR', code: '42703', message: 'column "emial" does not exist' });
  assert.equal(now(masker().errorOrNotice(missing)), missing);
});
