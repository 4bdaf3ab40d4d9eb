import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import * as be from '../../src/broker/postgres/build-backend.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';
import { decodeErrorResponse } from '../../src/broker/postgres/decode-backend.js';
import { BackendReader, FrontendReader } from '../../src/broker/postgres/reader.js';
import type { PgMessage } from '../../src/broker/postgres/reader.js';
import { assertProtocolError, cut, prng, snapshot } from './helpers.js';
import type { Seen } from './helpers.js';

const P = 0x70;

/** What a client sends from StartupMessage to Terminate, one Buffer per message. */
function clientConversation(): Buffer[] {
  return [
    fe.startupMessage({ user: 'u', database: 'd', application_name: 'psql' }),
    fe.saslInitialResponse('SCRAM-SHA-256', 'n,,n=,r=abcdef'),
    fe.saslResponse('c=biws,r=abcdefXYZ,p=cHJvb2Y='),
    fe.query('select 1'),
    fe.parse('s1', 'select $1::int, $2::text', [23, 25]),
    fe.bind('', 's1', ['42', null, Buffer.alloc(300, 7)], { paramFormats: [0, 0, 1], resultFormats: [0] }),
    fe.describe('P', ''),
    fe.execute('', 0),
    fe.SYNC,
    fe.close('S', 's1'),
    fe.FLUSH,
    fe.TERMINATE,
  ];
}

/** Feed `chunks` to a fresh FrontendReader that authenticates after the second 'p'. */
function readClient(chunks: Buffer[]): Seen[] {
  const reader = new FrontendReader();
  const seen: Seen[] = [];
  let passwords = 0;
  const onMessage = (m: PgMessage): void => {
    seen.push(snapshot(m));
    if (m.type === P && ++passwords === 2) reader.authenticated();
  };
  for (const c of chunks) reader.push(c, onMessage);
  reader.end();
  assert.equal(reader.buffered, 0);
  return seen;
}

function serverConversation(): Buffer[] {
  return [
    be.authenticationSASL(),
    be.authenticationSASLContinue('r=abc,s=c2FsdA==,i=4096'),
    be.authenticationSASLFinal('v=c2ln'),
    be.AUTHENTICATION_OK,
    be.parameterStatus('server_version', '15.0'),
    be.parameterStatus('client_encoding', 'UTF8'),
    be.backendKeyData(1234, 5678),
    be.readyForQuery('I'),
    be.rowDescription([{ name: 'x', tableOid: 0, columnAttr: 0, typeOid: 23, typeSize: 4, typeMod: -1, format: 0 }]),
    be.dataRow(['1']),
    be.dataRow([null]),
    be.dataRow([Buffer.alloc(200, 1)]),
    be.commandComplete('SELECT 3'),
    be.noticeResponse({ severity: 'NOTICE', code: '00000', message: 'hello' }),
    be.EMPTY_QUERY_RESPONSE,
    be.readyForQuery('T'),
  ];
}

function readServer(chunks: Buffer[]): Seen[] {
  const reader = new BackendReader();
  const seen: Seen[] = [];
  for (const c of chunks) reader.push(c, (m) => seen.push(snapshot(m)));
  reader.end();
  return seen;
}

function assertSame(seen: Seen[], expected: Buffer[]): void {
  assert.equal(seen.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i] as Buffer;
    const s = seen[i] as Seen;
    assert.deepEqual(s.frame, e, `message ${i}`);
    const header = s.type === 0 ? 4 : 5;
    assert.deepEqual(s.body, e.subarray(header), `body ${i}`);
    assert.equal(s.length, e.readInt32BE(header - 4));
  }
}

describe('FrontendReader framing', () => {
  const messages = clientConversation();
  const stream = Buffer.concat(messages);

  it('reads a whole conversation coalesced into one chunk', () => {
    const seen = readClient([stream]);
    assertSame(seen, messages);
    assert.equal(seen[0]?.type, 0);
    assert.equal(seen[3]?.type, 0x51);
  });

  it('reads it split into two chunks at every byte offset', () => {
    for (let i = 1; i < stream.length; i++) assertSame(readClient(cut(stream, i)), messages);
  });

  it('reads it one byte at a time', () => {
    const bytes = Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1));
    assertSame(readClient(bytes), messages);
  });

  it('reads it in random chunkings', () => {
    const rand = prng(7);
    for (let round = 0; round < 200; round++) {
      const offsets: number[] = [];
      for (let o = 0; ; ) {
        o += 1 + Math.floor(rand() * 40);
        if (o >= stream.length) break;
        offsets.push(o);
      }
      assertSame(readClient(cut(stream, ...offsets)), messages);
    }
  });

  it('never overwrites a frame it handed out, so frames can be forwarded without copying', () => {
    const reader = new FrontendReader();
    const kept: Buffer[] = [];
    let passwords = 0;
    const rand = prng(11);
    const offsets: number[] = [];
    for (let o = 0; ; ) {
      o += 1 + Math.floor(rand() * 30);
      if (o >= stream.length) break;
      offsets.push(o);
    }
    for (const c of cut(stream, ...offsets)) {
      reader.push(c, (m) => {
        kept.push(m.frame); // a view, deliberately not copied
        if (m.type === P && ++passwords === 2) reader.authenticated();
      });
    }
    assert.deepEqual(kept, messages);
  });
});

describe('BackendReader framing', () => {
  const messages = serverConversation();
  const stream = Buffer.concat(messages);

  it('reads coalesced messages, and every two-chunk split', () => {
    assertSame(readServer([stream]), messages);
    for (let i = 1; i < stream.length; i++) assertSame(readServer(cut(stream, i)), messages);
  });

  it('reassembles a 3 MiB DataRow from odd-sized chunks without corrupting neighbours', () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    const expected = [be.readyForQuery('I'), be.dataRow([big, 'tail']), be.commandComplete('SELECT 1'), be.readyForQuery('I')];
    const all = Buffer.concat(expected);
    for (const size of [1000, 65536, 65537, 1 << 20]) {
      const chunks: Buffer[] = [];
      for (let o = 0; o < all.length; o += size) chunks.push(all.subarray(o, o + size));
      const kept: Buffer[] = [];
      const reader = new BackendReader();
      for (const c of chunks) reader.push(c, (m) => kept.push(m.frame));
      reader.end();
      assert.deepEqual(kept, expected, `chunk size ${size}`);
    }
  });
});

describe('length limits', () => {
  it('refuses an oversize typed message from its header alone, before allocating', () => {
    const reader = new FrontendReader({ maxMessageLength: 1024 });
    reader.push(fe.startupMessage({ user: 'u' }), () => reader.authenticated());
    const header = Buffer.from([0x51, 0, 0, 0x04, 0x01]); // 'Q' claiming 1025 bytes
    assertProtocolError(() => reader.push(header, () => assert.fail('no message expected')), /'Q' \(0x51\) claims 1025 bytes, over the 1024-byte limit/);
  });

  it('refuses a 2 GiB claim at the default cap, and never allocates more than 1 MiB for a partial message', () => {
    const allocUnsafe = Buffer.allocUnsafe;
    let largest = 0;
    Buffer.allocUnsafe = (size: number) => {
      largest = Math.max(largest, size);
      return allocUnsafe(size);
    };
    try {
      const huge = new BackendReader();
      assertProtocolError(() => huge.push(Buffer.from([0x44, 0x7f, 0xff, 0xff, 0xff]), () => undefined), /over the 268435456-byte limit/);

      // 60 MiB claimed, under the cap: the claim alone must not buy a 60 MiB buffer.
      const partial = new BackendReader();
      const header = Buffer.alloc(5);
      header[0] = 0x44;
      header.writeInt32BE(60 * 1024 * 1024, 1);
      partial.push(header.subarray(0, 3), () => undefined);
      partial.push(Buffer.concat([header.subarray(3), Buffer.alloc(100)]), () => undefined);
      assert.equal(partial.buffered, 105);
      assertProtocolError(() => partial.end(), /in the middle of a message \(105 of 62914561 bytes/);
    } finally {
      Buffer.allocUnsafe = allocUnsafe;
    }
    assert.ok(largest <= 1024 * 1024, `allocated ${largest} bytes`);
  });

  it('refuses negative and too-small lengths', () => {
    for (const length of [-1, -0x8000_0000, 0, 3]) {
      const header = Buffer.alloc(5);
      header[0] = 0x5a;
      header.writeInt32BE(length, 1);
      assertProtocolError(() => new BackendReader().push(header, () => undefined), /invalid message length/);
    }
    for (const length of [-5, 0, 4, 7, 10_001]) {
      const header = Buffer.alloc(4);
      header.writeInt32BE(length, 0);
      assertProtocolError(() => new FrontendReader().push(header, () => undefined), /invalid length of startup packet/);
    }
  });

  it('caps authentication responses at 65,535 bytes', () => {
    const reader = new FrontendReader();
    reader.push(fe.startupMessage({ user: 'u' }), () => undefined);
    assert.equal(reader.phase, 'auth');
    const header = Buffer.from([0x70, 0, 1, 0, 0]); // 65536
    assertProtocolError(() => reader.push(header, () => undefined), /over the 65535-byte limit/);
  });
});

describe('truncation and failure', () => {
  it('waits for more on a partial message and reports truncation at end()', () => {
    const q = fe.query('select 1');
    const reader = new FrontendReader();
    reader.push(fe.startupMessage({ user: 'u' }), () => undefined);
    reader.authenticated();
    let n = 0;
    reader.push(q.subarray(0, 7), () => n++);
    assert.equal(n, 0);
    assert.equal(reader.buffered, 7);
    assertProtocolError(() => reader.end(), /7 of 14 bytes/);

    const header = new FrontendReader();
    header.push(Buffer.from([0, 0]), () => undefined);
    assertProtocolError(() => header.end(), /message header \(2 bytes/);
  });

  it('end() with nothing pending is fine', () => {
    const reader = new BackendReader();
    reader.push(be.readyForQuery('I'), () => undefined);
    reader.end();
  });

  it('stays failed after a protocol error, and after an error thrown by the callback', () => {
    const reader = new BackendReader();
    const bad = Buffer.from([0x5a, 0, 0, 0, 1]);
    const first = assertProtocolError(() => reader.push(bad, () => undefined), /invalid message length/);
    assert.throws(() => reader.push(be.readyForQuery('I'), () => undefined), (e) => e === first);
    reader.end(); // already reported: no second error

    const throwing = new BackendReader();
    const boom = new Error('callback failed');
    assert.throws(() => throwing.push(Buffer.concat([be.readyForQuery('I'), be.readyForQuery('I')]), () => {
      throw boom;
    }), (e) => e === boom);
    assert.throws(() => throwing.push(be.readyForQuery('I'), () => undefined), (e) => e === boom);
  });
});

describe('FrontendReader phases', () => {
  it('answers SSLRequest and GSSENCRequest one at a time, then reads the StartupMessage', () => {
    const reader = new FrontendReader();
    const seen: Seen[] = [];
    reader.push(fe.GSSENC_REQUEST, (m) => seen.push(snapshot(m)));
    reader.push(fe.SSL_REQUEST, (m) => seen.push(snapshot(m)));
    assert.equal(reader.phase, 'startup');
    const startup = fe.startupMessage({ user: 'u' });
    reader.push(startup, (m) => seen.push(snapshot(m)));
    assert.deepEqual(seen.map((s) => s.frame), [fe.GSSENC_REQUEST, fe.SSL_REQUEST, startup]);
    assert.equal(reader.phase, 'auth');
  });

  it('refuses bytes queued behind an SSLRequest (they did not come through TLS)', () => {
    const e = assertProtocolError(
      () => new FrontendReader().push(Buffer.concat([fe.SSL_REQUEST, fe.startupMessage({ user: 'u' })]), () => undefined),
      /received unencrypted data after SSL request/,
    );
    assert.match(e.detail ?? '', /man-in-the-middle/);
    // Split so that the trailing bytes arrive in the same push as the end of the request.
    const r = new FrontendReader();
    r.push(fe.SSL_REQUEST.subarray(0, 5), () => undefined);
    assertProtocolError(() => r.push(Buffer.concat([fe.SSL_REQUEST.subarray(5), Buffer.from([0])]), () => undefined), /after SSL request/);
    assertProtocolError(
      () => new FrontendReader().push(Buffer.concat([fe.GSSENC_REQUEST, Buffer.from([0])]), () => undefined),
      /after GSSAPI encryption request/,
    );
  });

  it('refuses a second SSLRequest', () => {
    const reader = new FrontendReader();
    reader.push(fe.SSL_REQUEST, () => undefined);
    assertProtocolError(() => reader.push(fe.SSL_REQUEST, () => undefined), /duplicate SSLRequest/);
  });

  it('refuses protocol 2.0 with 0A000, unknown codes with 08P01, and accepts 3.x minor versions for negotiation', () => {
    assertProtocolError(
      () => new FrontendReader().push(fe.startupMessage({ user: 'u' }, 0x0002_0000), () => undefined),
      /unsupported frontend protocol 2\.0/,
      '0A000',
    );
    const reader = new FrontendReader();
    reader.push(fe.startupMessage({ user: 'u' }, 0x0003_0002), () => undefined);
    assert.equal(reader.phase, 'auth');
    assertProtocolError(
      () => new FrontendReader().push(fe.startupMessage({ user: 'u' }, 0x1234_5678), () => undefined),
      /invalid startup packet: unknown request code 305419896/,
    );
  });

  it('closes after a CancelRequest', () => {
    const reader = new FrontendReader();
    const seen: Seen[] = [];
    reader.push(fe.cancelRequest(42, 99), (m) => seen.push(snapshot(m)));
    assert.equal(seen.length, 1);
    assert.equal(reader.phase, 'closed');
    assertProtocolError(() => reader.push(fe.query('x'), () => undefined), /unexpected data after CancelRequest/);
  });

  it('allows only password messages (and Terminate) before authentication', () => {
    const reader = new FrontendReader();
    reader.push(fe.startupMessage({ user: 'u' }), () => undefined);
    reader.push(fe.TERMINATE, () => undefined);
    assertProtocolError(() => reader.push(fe.query('select 1'), () => undefined), /expected password response, got message type 'Q' \(0x51\)/);
  });

  it('refuses unknown message types once ready', () => {
    const reader = new FrontendReader();
    reader.push(fe.startupMessage({ user: 'u' }), () => undefined);
    reader.authenticated();
    assertProtocolError(() => reader.push(Buffer.from([0x7a, 0, 0, 0, 4]), () => undefined), /invalid frontend message type 'z' \(0x7a\)/);
  });

  it('switches phase mid-chunk when the callback says so', () => {
    const reader = new FrontendReader();
    const types: number[] = [];
    const chunk = Buffer.concat([fe.startupMessage({ user: 'u' }), fe.passwordMessage('pw'), fe.query('select 1'), fe.SYNC]);
    reader.push(chunk, (m) => {
      types.push(m.type);
      if (m.type === P) reader.authenticated();
    });
    assert.deepEqual(types, [0, 0x70, 0x51, 0x53]);
  });
});

describe('BackendReader SSL reply', () => {
  it('delivers a lone N as a one-byte message, then reads typed messages', () => {
    const reader = new BackendReader();
    reader.expectSslReply();
    const seen: Seen[] = [];
    reader.push(be.ENCRYPTION_DECLINED, (m) => seen.push(snapshot(m)));
    reader.push(be.AUTHENTICATION_OK, (m) => seen.push(snapshot(m)));
    assert.deepEqual(
      seen.map((s) => [s.type, s.length, s.frame.length, s.body.length]),
      [
        [0x4e, 0, 1, 0],
        [0x52, 8, 9, 4],
      ],
    );
  });

  it("refuses bytes queued behind 'S' (CVE-2021-23222)", () => {
    const reader = new BackendReader();
    reader.expectSslReply();
    assertProtocolError(() => reader.push(Buffer.from('S\x16\x03', 'latin1'), () => undefined), /unencrypted data after SSL response/);
  });

  it('reads an ErrorResponse in place of the reply, and refuses anything else', () => {
    const reader = new BackendReader();
    reader.expectSslReply();
    const err = be.errorResponse({ severity: 'FATAL', code: '08P01', message: 'no SSL here' });
    let message = '';
    reader.push(err, (m) => {
      message = decodeErrorResponse(m.body).message;
    });
    assert.equal(message, 'no SSL here');

    const other = new BackendReader();
    other.expectSslReply();
    assertProtocolError(() => other.push(be.AUTHENTICATION_OK, () => undefined), /unexpected reply to SSLRequest: 'R'/);
  });
});
