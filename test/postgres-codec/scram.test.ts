import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';

import { ScramError } from '../../src/broker/postgres/errors.js';
import { md5Password } from '../../src/broker/postgres/md5.js';
import { saslprep } from '../../src/broker/postgres/saslprep.js';
import {
  ScramClient,
  ScramServer,
  formatScramVerifier,
  makeScramVerifier,
  parseScramVerifier,
} from '../../src/broker/postgres/scram.js';
import type { ScramFailure } from '../../src/broker/postgres/errors.js';

/** RFC 7677 section 3: user "user", password "pencil". */
const RFC = {
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: 'W22ZaJ0SNY7soEsUEjb6gQ==',
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

const rfcVerifier = makeScramVerifier('pencil', { salt: Buffer.from(RFC.salt, 'base64'), iterations: 4096 });
// Cheap verifiers for the many negative cases below.
const fast = makeScramVerifier('secret', { iterations: 16 });

function assertScramError(fn: () => unknown, reason: ScramFailure, sqlState = '08P01', re?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ScramError, `expected a ScramError, got ${String(caught)}`);
  assert.equal(caught.reason, reason);
  assert.equal(caught.sqlState, sqlState);
  if (re) assert.match(caught.message, re);
}

async function rejectsScram(p: Promise<unknown>, reason: ScramFailure): Promise<void> {
  await assert.rejects(p, (e) => e instanceof ScramError && e.reason === reason);
}

describe('SCRAM-SHA-256 against RFC 7677', () => {
  it('the server reproduces the example exchange', () => {
    const server = new ScramServer(rfcVerifier, { nonce: RFC.serverNonce });
    assert.equal(server.start(Buffer.from(RFC.clientFirst)), RFC.serverFirst);
    assert.deepEqual(server.finish(Buffer.from(RFC.clientFinal)), { ok: true, serverFinal: RFC.serverFinal });
  });

  it('the client reproduces the example exchange and accepts the server signature', async () => {
    const client = new ScramClient('pencil', { username: 'user', nonce: RFC.clientNonce });
    assert.equal(client.clientFirst(), RFC.clientFirst);
    assert.equal(await client.clientFinal(RFC.serverFirst), RFC.clientFinal);
    assert.equal(client.verified, false);
    client.verifyServerFinal(RFC.serverFinal);
    assert.equal(client.verified, true);
  });
});

describe('SCRAM server and client against each other', () => {
  it('authenticate with the right password, both ways', async () => {
    const verifier = makeScramVerifier('correct horse');
    const server = new ScramServer(verifier);
    const client = new ScramClient('correct horse');
    const serverFirst = server.start(client.clientFirst());
    const result = server.finish(await client.clientFinal(serverFirst));
    assert.equal(result.ok, true);
    if (result.ok) client.verifyServerFinal(result.serverFinal);
    assert.equal(client.verified, true);
  });

  it('a wrong password fails as { ok: false }, not an exception', async () => {
    const server = new ScramServer(makeScramVerifier('right'));
    const client = new ScramClient('wrong');
    const result = server.finish(await client.clientFinal(server.start(client.clientFirst())));
    assert.deepEqual(result, { ok: false });
  });

  it('the client detects a server that does not know the password', async () => {
    // A server holding some other verifier accepts nothing; a server that fakes success
    // cannot produce the signature. Tamper with a real one bit by bit.
    const server = new ScramServer(makeScramVerifier('pw', { iterations: 16 }));
    const client = new ScramClient('pw');
    const result = server.finish(await client.clientFinal(server.start(client.clientFirst())));
    assert.ok(result.ok);
    const sig = Buffer.from(result.serverFinal.slice(2), 'base64');
    sig[0] = (sig[0] as number) ^ 1;
    assertScramError(() => client.verifyServerFinal(`v=${sig.toString('base64')}`), 'server-signature', '28000');
    assert.equal(client.verified, false);
  });

  it('the client reports a server-side e= error and a truncated signature', async () => {
    const errored = new ScramClient('pw', { nonce: 'abc' });
    errored.clientFirst();
    await errored.clientFinal('r=abcdef,s=c2FsdA==,i=16');
    assertScramError(() => errored.verifyServerFinal('e=invalid-proof'), 'server-error', '28P01', /invalid-proof/);

    const short = new ScramClient('pw', { nonce: 'abc' });
    short.clientFirst();
    await short.clientFinal('r=abcdef,s=c2FsdA==,i=16');
    assertScramError(() => short.verifyServerFinal('v=c2ln'), 'server-signature', '28000');
  });

  it('the client refuses a bad server-first-message', async () => {
    const first = (nonce = 'abc'): ScramClient => {
      const c = new ScramClient('pw', { nonce, maxIterations: 100_000 });
      c.clientFirst();
      return c;
    };
    await rejectsScram(first().clientFinal('r=xyz123,s=c2FsdA==,i=16'), 'nonce');
    await rejectsScram(first().clientFinal('r=abc,s=c2FsdA==,i=16'), 'nonce'); // no server part
    await rejectsScram(first().clientFinal('r=abcdef,s=not base64!,i=16'), 'malformed');
    await rejectsScram(first().clientFinal('r=abcdef,s=c2FsdA==,i=0'), 'malformed');
    await rejectsScram(first().clientFinal('r=abcdef,s=c2FsdA==,i=1e3'), 'malformed');
    await rejectsScram(first().clientFinal('r=abcdef,s=c2FsdA==,i=100001'), 'iterations');
    await rejectsScram(first().clientFinal('m=ext,r=abcdef,s=c2FsdA==,i=16'), 'extension');
    await rejectsScram(first().clientFinal('garbage'), 'malformed');
    const twice = first();
    await rejectsScram(twice.clientFinal('garbage'), 'malformed');
    await rejectsScram(twice.clientFinal('r=abcdef,s=c2FsdA==,i=16'), 'state');
  });
});

describe('ScramServer input checks', () => {
  function started(gs2 = 'n,,'): { server: ScramServer; nonce: string } {
    const server = new ScramServer(fast, { nonce: 'SRV' });
    server.start(`${gs2}n=,r=CLI`);
    return { server, nonce: 'CLISRV' };
  }

  it('refuses channel binding (p=) with 08P01: we never offer -PLUS', () => {
    assertScramError(() => new ScramServer(fast).start('p=tls-server-end-point,,n=,r=abc'), 'channel-binding', '08P01', /PLUS/);
  });

  it("accepts y,, (client could bind, thinks we can't: true), and requires c= to echo it", async () => {
    const { server, nonce } = started('y,,');
    const c = Buffer.from('y,,').toString('base64');
    // The proof is wrong, but everything before it checks out.
    assert.deepEqual(server.finish(`c=${c},r=${nonce},p=${Buffer.alloc(32).toString('base64')}`), { ok: false });
    const mismatch = started('y,,');
    assertScramError(() => mismatch.server.finish(`c=biws,r=${mismatch.nonce},p=${Buffer.alloc(32).toString('base64')}`), 'channel-binding');
  });

  it('refuses an authorization identity and mandatory extensions with 0A000', () => {
    assertScramError(() => new ScramServer(fast).start('n,a=admin,n=,r=abc'), 'authzid', '0A000');
    assertScramError(() => new ScramServer(fast).start('n,,m=ext,n=,r=abc'), 'extension', '0A000');
  });

  it('refuses malformed client-first-messages', () => {
    for (const bad of ['', 'x', 'n', 'n,', 'n,,', 'nx,n=,r=a', 'n,,r=abc', 'n,,n=,r=', 'n,,n=,r=a,b', 'n,,n=a=b,r=x', 'n,,n=,x', 'n,,n=,r=a\0']) {
      assertScramError(() => new ScramServer(fast).start(bad), 'malformed');
    }
  });

  it('refuses malformed client-final-messages, and a nonce that does not continue ours', () => {
    const proof = Buffer.alloc(32).toString('base64');
    const cases: [string, ScramFailure][] = [
      ['c=biws,r=CLISRV', 'malformed'], // no proof
      [`c=biws,r=CLISRV,p=${proof.slice(1)}`, 'malformed'], // not base64
      ['c=biws,r=CLISRV,p=AAAA', 'malformed'], // wrong length
      [`r=CLISRV,c=biws,p=${proof}`, 'malformed'], // order
      [`c=!!!!,r=CLISRV,p=${proof}`, 'malformed'],
      [`c=biws,r=CLISRVx,p=${proof}`, 'nonce'],
      [`c=biws,r=CLI,p=${proof}`, 'nonce'],
      [`c=eSws,r=CLISRV,p=${proof}`, 'channel-binding'], // y,, when we were sent n,,
    ];
    for (const [bad, reason] of cases) {
      const { server } = started();
      assertScramError(() => server.finish(bad), reason);
    }
  });

  it('enforces the order of calls', () => {
    assertScramError(() => new ScramServer(fast).finish('c=biws'), 'state');
    const { server } = started();
    assertScramError(() => server.start('n,,n=,r=abc'), 'state');
    assert.deepEqual(server.finish(`c=biws,r=CLISRV,p=${Buffer.alloc(32).toString('base64')}`), { ok: false });
    assertScramError(() => server.finish('c=biws'), 'state');
    const failed = new ScramServer(fast);
    assertScramError(() => failed.start('garbage'), 'malformed');
    assertScramError(() => failed.start('n,,n=,r=abc'), 'state'); // no second chance
  });

  it('throws nothing but ScramError on random input', () => {
    let seed = 3;
    const rand = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const alphabet = 'nyp,=arcmsi0AZ+/\0é';
    for (let round = 0; round < 500; round++) {
      let text = '';
      const len = Math.floor(rand() * 30);
      for (let i = 0; i < len; i++) text += alphabet[Math.floor(rand() * alphabet.length)];
      for (const step of ['start', 'finish'] as const) {
        const server = new ScramServer(fast);
        try {
          if (step === 'finish') server.start('n,,n=,r=abc');
          if (step === 'start') server.start(text);
          else server.finish(text);
        } catch (e) {
          assert.ok(e instanceof ScramError, `${step}(${JSON.stringify(text)}) threw ${String(e)}`);
        }
      }
    }
  });
});

describe('SCRAM verifiers', () => {
  it('round-trip through PostgreSQL’s text form', () => {
    const v = makeScramVerifier('pencil', { iterations: 32 });
    const text = formatScramVerifier(v);
    assert.match(text, /^SCRAM-SHA-256\$32:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$/);
    assert.deepEqual(parseScramVerifier(text), v);
  });

  it('are salted: the same password gives different verifiers', () => {
    assert.notDeepEqual(makeScramVerifier('pw', { iterations: 16 }).storedKey, makeScramVerifier('pw', { iterations: 16 }).storedKey);
  });

  it('refuse malformed text without echoing it', () => {
    const secretish = 'SCRAM-SHA-256$4096:c2FsdA==$hunter2:hunter2';
    for (const bad of ['', 'md5abc', secretish, 'SCRAM-SHA-256$0:c2FsdA==$' + 'A'.repeat(43) + '=:' + 'A'.repeat(43) + '=']) {
      assert.throws(
        () => parseScramVerifier(bad),
        (e) => e instanceof ScramError && e.reason === 'malformed' && !e.message.includes('hunter2'),
      );
    }
  });
});

describe('SASLprep (PostgreSQL flavour)', () => {
  it('uses ASCII passwords exactly as given, control characters included', () => {
    assert.deepEqual(saslprep('pencil'), Buffer.from('pencil'));
    assert.deepEqual(saslprep('a\u0007b'), Buffer.from('a\u0007b'));
  });

  it('maps, removes and normalizes non-ASCII input (RFC 4013 examples)', () => {
    assert.equal(saslprep('I\u00ADX').toString(), 'IX'); // soft hyphen mapped to nothing
    assert.equal(saslprep('\u00AA').toString(), 'a'); // NFKC
    assert.equal(saslprep('\u2168').toString(), 'IX'); // NFKC
    assert.equal(saslprep('a\u00A0b\u3000c').toString(), 'a b c'); // non-ASCII spaces
    assert.equal(saslprep('Äpfel').toString(), 'Äpfel');
  });

  it('falls back to the raw bytes when the result holds a prohibited character', () => {
    assert.deepEqual(saslprep('ü\u0007'), Buffer.from('ü\u0007'));
    assert.deepEqual(saslprep('ü\uE000'), Buffer.from('ü\uE000')); // private use
    assert.deepEqual(saslprep('\u00A0\u200E'), Buffer.from('\u00A0\u200E')); // C.8
  });
});

describe('md5Password', () => {
  it('is md5(md5(password + user) + salt), hex, prefixed', () => {
    // md5("postgres" + "postgres") is the well-known 3175bce1d3201d16594cebf9d7eb3f9d.
    const salt = Buffer.from([0x01, 0x02, 0x03, 0x04]);
    const expected = 'md5' + createHash('md5').update(Buffer.concat([Buffer.from('3175bce1d3201d16594cebf9d7eb3f9d'), salt])).digest('hex');
    assert.equal(md5Password('postgres', 'postgres', salt), expected);
    assert.notEqual(md5Password('postgres', 'postgres', Buffer.from([1, 2, 3, 5])), expected);
  });
});
