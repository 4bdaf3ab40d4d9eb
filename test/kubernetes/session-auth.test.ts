/** The bearer token kubectl presents, checked against the session secret's SCRAM verifier. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BearerCheck, bearerToken, MAX_BEARER_ITERATIONS } from '../../src/broker/kubernetes/session-auth.js';
import { makeScramVerifier } from '../../src/broker/postgres/scram.js';

describe('session secret as bearer token', () => {
  const secret = 'k3Vn0_Secret-value-1234567890abc';
  const verifier = makeScramVerifier(secret);

  test('the secret is accepted, anything else is not', async () => {
    const check = new BearerCheck(verifier);
    assert.equal(await check.check(secret), 'ok');
    assert.equal(await check.check(secret), 'ok', 'again, from the per-connection cache');
    assert.equal(await check.check(secret + 'x'), 'mismatch');
    assert.equal(await check.check(''), 'mismatch');
    assert.equal(await check.check('x'.repeat(5000)), 'mismatch');
    // A verifier of another secret rejects this one.
    assert.equal(await new BearerCheck(makeScramVerifier('other')).check(secret), 'mismatch');
  });

  test('a tunnel without a verifier, or with one too costly to check, accepts nothing', async () => {
    assert.equal(await new BearerCheck(undefined).check(secret), 'no-verifier');
    const costly = makeScramVerifier(secret, { iterations: MAX_BEARER_ITERATIONS + 1 });
    assert.equal(await new BearerCheck(costly).check(secret), 'unusable-verifier');
  });

  test('Authorization header parsing', () => {
    assert.equal(bearerToken('Bearer abc'), 'abc');
    assert.equal(bearerToken('bearer   abc '), 'abc');
    assert.equal(bearerToken('Basic YWJj'), undefined);
    assert.equal(bearerToken('Bearer a b'), undefined);
    assert.equal(bearerToken(undefined), undefined);
  });
});
