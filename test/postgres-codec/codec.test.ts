import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ValueCursor } from '../../src/broker/postgres/body-reader.js';
import * as be from '../../src/broker/postgres/build-backend.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';
import * as dbe from '../../src/broker/postgres/decode-backend.js';
import * as dfe from '../../src/broker/postgres/decode-frontend.js';
import {
  PgError,
  ProtocolError,
  SqlState,
  insufficientPrivilege,
  passwordAuthFailed,
  queryCanceled,
} from '../../src/broker/postgres/errors.js';
import { AuthCode } from '../../src/broker/postgres/protocol.js';
import { BackendReader, FrontendReader } from '../../src/broker/postgres/reader.js';
import { MessageWriter } from '../../src/broker/postgres/writer.js';
import { assertProtocolError, snapshot } from './helpers.js';
import type { Seen } from './helpers.js';

/** Run bytes from a backend builder through a BackendReader. */
function fromServer(bytes: Buffer): Seen {
  const seen: Seen[] = [];
  const reader = new BackendReader();
  reader.push(bytes, (m) => seen.push(snapshot(m)));
  reader.end();
  assert.equal(seen.length, 1);
  return seen[0] as Seen;
}

/** Run bytes from a frontend builder through an authenticated FrontendReader. */
function fromClient(bytes: Buffer): Seen {
  const seen: Seen[] = [];
  const reader = new FrontendReader();
  reader.push(fe.startupMessage({ user: 'u' }), () => reader.authenticated());
  reader.push(bytes, (m) => seen.push(snapshot(m)));
  reader.end();
  assert.equal(seen.length, 1);
  return seen[0] as Seen;
}

function startupPacket(bytes: Buffer): Seen {
  const seen: Seen[] = [];
  new FrontendReader().push(bytes, (m) => seen.push(snapshot(m)));
  return seen[0] as Seen;
}

describe('frontend round trips (builder → reader → decoder)', () => {
  it('StartupMessage', () => {
    const m = startupPacket(fe.startupMessage({ user: 'alice', database: 'app', application_name: 'psql', options: '-c x=ü' }));
    assert.equal(m.type, 0);
    assert.equal(dfe.startupRequestKind(m.body), 'startup');
    const s = dfe.decodeStartupMessage(m.body);
    assert.equal(s.majorVersion, 3);
    assert.equal(s.minorVersion, 0);
    assert.deepEqual(Object.fromEntries(s.params), { user: 'alice', database: 'app', application_name: 'psql', options: '-c x=ü' });
  });

  it('SSLRequest, GSSENCRequest, CancelRequest', () => {
    assert.equal(dfe.startupRequestKind(startupPacket(fe.SSL_REQUEST).body), 'ssl');
    assert.equal(dfe.startupRequestKind(startupPacket(fe.GSSENC_REQUEST).body), 'gssenc');
    const c = startupPacket(fe.cancelRequest(4321, -5));
    assert.equal(dfe.startupRequestKind(c.body), 'cancel');
    const cancel = dfe.decodeCancelRequest(c.body);
    assert.equal(cancel.processId, 4321);
    assert.equal(cancel.secretKey.readInt32BE(0), -5);
    const long = dfe.decodeCancelRequest(startupPacket(fe.cancelRequest(1, Buffer.alloc(32, 9))).body);
    assert.deepEqual(long.secretKey, Buffer.alloc(32, 9));
  });

  it('Query', () => {
    const m = fromClient(fe.query("select 'ü', 1; select 2"));
    assert.equal(m.type, 0x51);
    assert.equal(dfe.decodeQuery(m.body), "select 'ü', 1; select 2");
  });

  it('Parse', () => {
    const p = dfe.decodeParse(fromClient(fe.parse('stmt', 'select $1, $2', [23, 0xffff_fff0])).body);
    assert.deepEqual(p, { statement: 'stmt', sql: 'select $1, $2', paramTypes: [23, 0xffff_fff0] });
  });

  it('Bind, walking parameters in place', () => {
    const big = Buffer.alloc(1 << 20, 0xab);
    const m = fromClient(fe.bind('portal', 'stmt', ['42', null, big, ''], { paramFormats: [1], resultFormats: [0, 1] }));
    const b = dfe.decodeBind(m.body);
    assert.equal(b.portal, 'portal');
    assert.equal(b.statement, 'stmt');
    assert.deepEqual(b.paramFormats, [1]);
    assert.equal(b.paramCount, 4);
    assert.deepEqual(b.resultFormats, [0, 1]);
    assert.equal(dfe.bindParamFormat(b, 3), 1);
    const cur = dfe.bindParamValues(m.body, b);
    const got: (string | number | null)[] = [];
    while (cur.next()) got.push(cur.isNull ? null : cur.index === 2 ? cur.length : cur.text());
    assert.deepEqual(got, ['42', null, 1 << 20, '']);
    // The value is a view into the message, not a copy.
    cur.reset(m.body, b.paramCount, b.paramsOffset, 'Bind');
    cur.next();
    cur.next();
    cur.next();
    assert.equal(cur.value()?.buffer, m.body.buffer);
  });

  it('Describe, Execute, Close', () => {
    assert.deepEqual(dfe.decodeDescribe(fromClient(fe.describe('S', 'stmt')).body), { kind: 'S', name: 'stmt' });
    assert.deepEqual(dfe.decodeExecute(fromClient(fe.execute('p1', 50)).body), { portal: 'p1', maxRows: 50 });
    assert.deepEqual(dfe.decodeClose(fromClient(fe.close('P', 'p1')).body), { kind: 'P', name: 'p1' });
  });

  it('SASLInitialResponse, SASLResponse, PasswordMessage', () => {
    const i = dfe.decodeSASLInitialResponse(fromClient(fe.saslInitialResponse('SCRAM-SHA-256', 'n,,n=,r=abc')).body);
    assert.equal(i.mechanism, 'SCRAM-SHA-256');
    assert.equal(i.data?.toString(), 'n,,n=,r=abc');
    assert.equal(dfe.decodeSASLInitialResponse(fromClient(fe.saslInitialResponse('X', null)).body).data, null);
    assert.equal(dfe.decodeSASLResponse(fromClient(fe.saslResponse('c=biws')).body).toString(), 'c=biws');
    assert.equal(dfe.decodePasswordMessage(fromClient(fe.passwordMessage('md5abc')).body), 'md5abc');
  });

  it('payload-less messages are shared constants of the right shape', () => {
    assert.deepEqual(fe.SYNC, Buffer.from([0x53, 0, 0, 0, 4]));
    assert.deepEqual(fe.TERMINATE, Buffer.from([0x58, 0, 0, 0, 4]));
    assert.deepEqual(fe.FLUSH, Buffer.from([0x48, 0, 0, 0, 4]));
    assert.deepEqual(fe.SSL_REQUEST, Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
    assert.deepEqual(be.ENCRYPTION_DECLINED, Buffer.from('N'));
    assert.equal(be.readyForQuery('I'), be.readyForQuery('I'));
  });
});

describe('backend round trips (builder → reader → decoder)', () => {
  it('Authentication*', () => {
    const ok = dbe.decodeAuthentication(fromServer(be.AUTHENTICATION_OK).body);
    assert.equal(ok.code, AuthCode.ok);
    assert.equal(ok.data.length, 0);
    assert.equal(dbe.decodeAuthentication(fromServer(be.AUTHENTICATION_CLEARTEXT_PASSWORD).body).code, AuthCode.cleartextPassword);
    const md5 = dbe.decodeAuthentication(fromServer(be.authenticationMD5Password(Buffer.from([1, 2, 3, 4]))).body);
    assert.deepEqual([md5.code, [...md5.data]], [AuthCode.md5Password, [1, 2, 3, 4]]);
    const sasl = dbe.decodeAuthentication(fromServer(be.authenticationSASL()).body);
    assert.equal(sasl.code, AuthCode.sasl);
    assert.deepEqual(dbe.decodeSASLMechanisms(sasl.data), ['SCRAM-SHA-256']);
    const cont = dbe.decodeAuthentication(fromServer(be.authenticationSASLContinue('r=x,s=y,i=1')).body);
    assert.deepEqual([cont.code, cont.data.toString()], [AuthCode.saslContinue, 'r=x,s=y,i=1']);
    const fin = dbe.decodeAuthentication(fromServer(be.authenticationSASLFinal('v=abc')).body);
    assert.deepEqual([fin.code, fin.data.toString()], [AuthCode.saslFinal, 'v=abc']);
  });

  it('ParameterStatus, BackendKeyData, ReadyForQuery', () => {
    assert.deepEqual(dbe.decodeParameterStatus(fromServer(be.parameterStatus('TimeZone', 'UTC')).body), { name: 'TimeZone', value: 'UTC' });
    const k = dbe.decodeBackendKeyData(fromServer(be.backendKeyData(77, -1)).body);
    assert.equal(k.processId, 77);
    assert.equal(k.secretKey.readInt32BE(0), -1);
    for (const s of ['I', 'T', 'E'] as const) assert.equal(dbe.decodeReadyForQuery(fromServer(be.readyForQuery(s)).body), s);
  });

  it('RowDescription and DataRow', () => {
    const fields = [
      { name: 'id', tableOid: 16384, columnAttr: 1, typeOid: 23, typeSize: 4, typeMod: -1, format: 0 },
      { name: 'émail', tableOid: 0xffff_fffe, columnAttr: 2, typeOid: 25, typeSize: -1, typeMod: -1, format: 1 },
    ];
    assert.deepEqual(dbe.decodeRowDescription(fromServer(be.rowDescription(fields)).body), fields);

    const cursor = new ValueCursor();
    const row = fromServer(be.dataRow(['1', null, Buffer.from([0, 1, 2]), '']));
    const cur = dbe.dataRowValues(row.body, cursor);
    assert.equal(cur, cursor);
    assert.equal(cur.count, 4);
    const got: (string | null)[] = [];
    while (cur.next()) got.push(cur.isNull ? null : cur.value()!.toString('hex'));
    assert.deepEqual(got, ['31', null, '000102', '']);
    assert.equal(cur.end, row.body.length);
  });

  it('CommandComplete tags', () => {
    const tag = (t: string) => dbe.decodeCommandComplete(fromServer(be.commandComplete(t)).body);
    assert.deepEqual(tag('INSERT 0 5'), { tag: 'INSERT 0 5', command: 'INSERT', rows: 5 });
    assert.deepEqual(tag('SELECT 12'), { tag: 'SELECT 12', command: 'SELECT', rows: 12 });
    assert.deepEqual(tag('UPDATE 0'), { tag: 'UPDATE 0', command: 'UPDATE', rows: 0 });
    assert.deepEqual(tag('CREATE TABLE'), { tag: 'CREATE TABLE', command: 'CREATE TABLE', rows: null });
    assert.deepEqual(tag('BEGIN'), { tag: 'BEGIN', command: 'BEGIN', rows: null });
  });

  it('ErrorResponse and NoticeResponse, every field', () => {
    const fields = {
      severity: 'ERROR',
      code: '42501',
      message: 'permission denied for table t',
      detail: 'd',
      hint: 'h',
      position: '3',
      internalPosition: '4',
      internalQuery: 'q',
      where: 'w',
      schema: 's',
      table: 't',
      column: 'c',
      dataType: 'dt',
      constraint: 'n',
      file: 'f.c',
      line: '12',
      routine: 'r',
    };
    const m = fromServer(be.errorResponse(fields));
    assert.equal(m.type, 0x45);
    assert.deepEqual(dbe.decodeErrorResponse(m.body), fields);
    const map = dbe.decodeNoticeFieldMap(m.body);
    assert.equal(map.get('S'), 'ERROR');
    assert.equal(map.get('V'), 'ERROR');
    assert.equal(map.get('C'), '42501');
    const n = fromServer(be.noticeResponse({ severity: 'WARNING', code: '01000', message: 'careful' }));
    assert.equal(n.type, 0x4e);
    assert.deepEqual(dbe.decodeNoticeResponse(n.body), { severity: 'WARNING', code: '01000', message: 'careful' });
  });

  it('drops NUL from error text rather than corrupting the frame', () => {
    const m = fromServer(be.errorResponse({ severity: 'ERROR', code: '42501', message: 'bad\0name' }));
    assert.equal(dbe.decodeErrorResponse(m.body).message, 'badname');
  });

  it('NotificationResponse, Copy*Response, NegotiateProtocolVersion (hand-built)', () => {
    const w = new MessageWriter();
    const notify = fromServer(w.int32(9).cstring('chan').cstring('payload').flush(0x41));
    assert.deepEqual(dbe.decodeNotificationResponse(notify.body), { processId: 9, channel: 'chan', payload: 'payload' });
    const copy = fromServer(w.uint8(0).int16(2).int16(0).int16(0).flush(0x47));
    assert.deepEqual(dbe.decodeCopyResponse(copy.body), { format: 0, columnFormats: [0, 0] });
    const nego = fromServer(be.negotiateProtocolVersion(0, ['_pq_.foo']));
    assert.deepEqual(dbe.decodeNegotiateProtocolVersion(nego.body), { newestMinor: 0, unrecognizedOptions: ['_pq_.foo'] });
  });
});

describe('malformed bodies are ProtocolErrors, never RangeErrors', () => {
  const w = new MessageWriter();
  it('truncated and overlong bodies', () => {
    assertProtocolError(() => dfe.decodeQuery(Buffer.from('select 1')), /malformed Query message: unterminated string/);
    assertProtocolError(() => dfe.decodeQuery(Buffer.from('a\0b\0')), /trailing bytes/);
    assertProtocolError(() => dfe.decodeExecute(Buffer.from('p\0\0\0')), /needs 2 more bytes/);
    assertProtocolError(() => dbe.decodeReadyForQuery(Buffer.from('X')), /status/);
    assertProtocolError(() => dbe.decodeRowDescription(Buffer.from([0xff, 0xff, 0x61, 0])), /65535 fields declared/);
    assertProtocolError(() => dfe.decodeParse(Buffer.from([0x73, 0, 0x71, 0, 0, 2, 0, 0, 0, 23])), /2 parameter types declared/);
    assertProtocolError(() => dfe.decodeDescribe(Buffer.from([0x58, 0])), /target type/);
  });

  it('StartupMessage layout and user', () => {
    const noTerm = w.int32(196608).cstring('user').cstring('u').flush().subarray(4);
    assertProtocolError(() => dfe.decodeStartupMessage(noTerm), /expected terminator as last byte/);
    const noUser = w.int32(196608).cstring('database').cstring('d').uint8(0).flush().subarray(4);
    assertProtocolError(() => dfe.decodeStartupMessage(noUser), /no PostgreSQL user name/, '28000');
    const noValue = w.int32(196608).cstring('user').flush().subarray(4);
    assertProtocolError(() => dfe.decodeStartupMessage(noValue), /parameter "user" has no value/);
  });

  it('DataRow and Bind value lengths that overrun or go below -1', () => {
    const row = w.int16(2).int32(3).bytes('abc').int32(100).bytes('x').flush(0x44).subarray(5);
    const cur = dbe.dataRowValues(row);
    assert.equal(cur.next(), true);
    assertProtocolError(() => cur.next(), /value 1 claims 100 bytes/);
    const neg = w.int16(1).int32(-2).flush(0x44).subarray(5);
    assertProtocolError(() => dbe.dataRowValues(neg).next(), /value 0 claims -2 bytes/);
    const bind = w.cstring('').cstring('').int16(0).int16(1).int32(50).bytes('short').int16(0).flush(0x42).subarray(5);
    assertProtocolError(() => dfe.decodeBind(bind), /malformed Bind message: value 0 claims 50 bytes/);
    const formats = w.cstring('').cstring('').int16(2).int16(0).int16(0).int16(1).int32(-1).int16(0).flush(0x42).subarray(5);
    assertProtocolError(() => dfe.decodeBind(formats), /2 parameter formats for 1 parameters/);
  });

  it('random garbage never escapes as anything but a ProtocolError', () => {
    const decoders: ((b: Buffer) => unknown)[] = [
      dfe.decodeStartupMessage, dfe.decodeCancelRequest, dfe.decodeQuery, dfe.decodeParse, (b) => dfe.decodeBind(b),
      dfe.decodeDescribe, dfe.decodeExecute, dfe.decodeSASLInitialResponse, dfe.decodePasswordMessage,
      dbe.decodeRowDescription, (b) => dbe.dataRowValues(b).skipRest(), dbe.decodeCommandComplete, dbe.decodeErrorResponse,
      dbe.decodeParameterStatus, dbe.decodeBackendKeyData, dbe.decodeReadyForQuery, dbe.decodeAuthentication,
      dbe.decodeSASLMechanisms, dbe.decodeNotificationResponse, dbe.decodeCopyResponse, dbe.decodeNegotiateProtocolVersion,
    ];
    let seed = 1;
    const rand = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let round = 0; round < 300; round++) {
      const body = Buffer.alloc(Math.floor(rand() * 24));
      for (let i = 0; i < body.length; i++) body[i] = rand() < 0.3 ? 0 : rand() < 0.5 ? 0xff : Math.floor(rand() * 256);
      for (const d of decoders) {
        try {
          d(body);
        } catch (e) {
          assert.ok(e instanceof ProtocolError, `${d.name || 'decoder'} threw ${String(e)}`);
        }
      }
    }
  });
});

describe('MessageWriter', () => {
  it('fills the 5-byte header on flush, and writes untyped packets without a type byte', () => {
    const w = new MessageWriter(64);
    assert.deepEqual(w.int32(1).cstring('ab').flush(0x51), Buffer.from([0x51, 0, 0, 0, 11, 0, 0, 0, 1, 0x61, 0x62, 0]));
    assert.deepEqual(w.int16(7).flush(), Buffer.from([0, 0, 0, 6, 0, 7]));
  });

  it('never rewrites what it has handed out, even when it grows', () => {
    const w = new MessageWriter(64);
    const out: Buffer[] = [];
    const expect: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      const text = 'x'.repeat(i % 50);
      out.push(w.cstring(text).flush(0x51));
      expect.push(Buffer.concat([Buffer.from([0x51]), Buffer.from([0, 0, 0, text.length + 5]), Buffer.from(text), Buffer.from([0])]));
    }
    const big = w.bytes(Buffer.alloc(10_000, 3)).flush(0x64);
    assert.equal(big.length, 10_005);
    assert.deepEqual(out, expect);
  });

  it('rejects a NUL in a string or an out-of-range integer and stays usable', () => {
    const w = new MessageWriter();
    w.cstring('partial');
    assert.throws(() => w.cstring('a\0b'), RangeError);
    assert.throws(() => w.int16(40_000), RangeError);
    assert.deepEqual(w.cstring('ok').flush(0x51), fe.query('ok'));
  });
});

describe('PgError', () => {
  it('serializes to an ErrorResponse with a real SQLSTATE', () => {
    const e = insufficientPrivilege('policy agents-read denies DELETE on pg-prod', 'ask a dba to approve it');
    assert.ok(e instanceof PgError);
    assert.equal(e.code, 'AG_PG_ERROR');
    const fields = dbe.decodeErrorResponse(fromServer(e.toErrorResponse()).body);
    assert.deepEqual(fields, {
      severity: 'ERROR',
      code: SqlState.insufficientPrivilege,
      message: 'policy agents-read denies DELETE on pg-prod',
      hint: 'ask a dba to approve it',
    });
    assert.equal(e.fatal, false);
  });

  it('uses the wording clients know', () => {
    const f = dbe.decodeErrorResponse(fromServer(passwordAuthFailed('u').toErrorResponse()).body);
    assert.equal(f.severity, 'FATAL');
    assert.equal(f.code, '28P01');
    assert.equal(f.message, 'password authentication failed for user "u"');
    assert.equal(queryCanceled().sqlState, '57014');
    const p = new ProtocolError('bad');
    assert.equal(p.sqlState, '08P01');
    assert.equal(p.fatal, true);
    assert.equal(p.code, 'AG_PG_PROTOCOL');
  });
});
