/** The CLI's Postgres login detector, fed the broker's real messages split at every byte. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { postgresLoginWatch } from '../../src/tunnel/login-watch.js';
import { AUTHENTICATION_OK, authenticationSASL, authenticationSASLContinue, authenticationSASLFinal, ENCRYPTION_DECLINED, readyForQuery } from '../../src/broker/postgres/build-backend.js';

const beforeOk = Buffer.concat([ENCRYPTION_DECLINED, authenticationSASL(['SCRAM-SHA-256']), authenticationSASLContinue(Buffer.from('r=abc,s=c2FsdA==,i=4096')), authenticationSASLFinal(Buffer.from('v=xyz'))]);

test('AuthenticationOk is recognised at every split of the stream, and not before it', () => {
  const stream = Buffer.concat([beforeOk, AUTHENTICATION_OK, readyForQuery('I')]);
  const okEnd = beforeOk.length + AUTHENTICATION_OK.length;
  for (let cut = 0; cut <= stream.length; cut++) {
    const watch = postgresLoginWatch();
    const first = watch(stream.subarray(0, cut));
    assert.equal(first, cut >= okEnd, `cut at ${cut}`);
    assert.equal(watch(stream.subarray(cut)), true, `cut at ${cut}`);
  }
});

test('authentication messages without Ok never count as logged in', () => {
  const watch = postgresLoginWatch();
  for (const b of beforeOk) assert.equal(watch(Buffer.from([b])), false);
});
