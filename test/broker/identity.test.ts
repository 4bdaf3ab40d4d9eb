/**
 * The identity verifier against real issuers on 127.0.0.1: key rotation and the JWKS
 * refetch floor, CI issuers, group claims, an unreachable or lying IdP. The per-reason
 * HTTP answers are in server.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createIdentityVerifier } from '../../src/broker/identity/verifier.js';
import { TokenRejectedError } from '../../src/broker/identity/errors.js';
import type { IdentityVerifier } from '../../src/broker/identity/types.js';
import type { IdentityConfig } from '../../src/broker/config/types.js';
import { startTestIssuer } from '../helpers/test-issuer.js';
import type { TestIssuer } from '../helpers/test-issuer.js';
import { waitFor } from './fixtures.js';

function identityConfig(issuer: string, extra: Partial<IdentityConfig> = {}): IdentityConfig {
  return {
    issuer,
    audience: 'agentgate',
    clientId: 'agentgate-cli',
    groupsClaim: 'groups',
    agentGroups: ['ai-agents'],
    ciIssuers: [],
    scopes: ['openid'],
    clockToleranceSec: 30,
    ...extra,
  };
}

async function rejection(p: Promise<unknown>): Promise<TokenRejectedError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof TokenRejectedError) return err;
    throw err;
  }
  assert.fail('expected the token to be rejected');
}

describe('identity verifier', () => {
  let idp: TestIssuer;
  let ciIdp: TestIssuer;

  before(async () => {
    [idp, ciIdp] = await Promise.all([startTestIssuer(), startTestIssuer({ alg: 'ES256', audience: 'agentgate-ci' })]);
  });
  after(async () => {
    await Promise.all([idp.close(), ciIdp.close()]);
  });

  test('a good token yields the identity; agent groups make kind agent', async () => {
    const v = createIdentityVerifier(identityConfig(idp.issuer));
    const human = await v.verify(await idp.sign({ sub: 'alice', name: 'Alice', email: 'alice@example.com', groups: ['staff'] }));
    assert.equal(human.sub, 'alice');
    assert.equal(human.name, 'Alice');
    assert.equal(human.email, 'alice@example.com');
    assert.deepEqual(human.groups, ['staff']);
    assert.equal(human.kind, 'human');
    assert.equal(human.issuer, idp.issuer);
    assert.ok(human.expiresAt > Date.now() / 1000);

    const agent = await v.verify(await idp.sign({ sub: 'bot', groups: 'staff ai-agents' }));
    assert.deepEqual(agent.groups, ['staff', 'ai-agents']);
    assert.equal(agent.kind, 'agent');
  });

  test('groups may live under a dotted claim path', async () => {
    const v = createIdentityVerifier(identityConfig(idp.issuer, { groupsClaim: 'realm_access.roles' }));
    const id = await v.verify(await idp.sign({ realm_access: { roles: ['ai-agents', 7] } }));
    assert.deepEqual(id.groups, ['ai-agents']);
    assert.equal(id.kind, 'agent');
  });

  test('a trailing slash in the configured issuer finds the same IdP, but iss must be exact', async () => {
    const v = createIdentityVerifier(identityConfig(idp.issuer + '/'));
    const id = await v.verify(await idp.sign());
    assert.equal(id.issuer, idp.issuer);
    const err = await rejection(v.verify(await idp.sign({ iss: idp.issuer + '/' })));
    assert.equal(err.reason, 'wrong_issuer');
  });

  test('rotation: unknown kid is refetched after the cooldown, a flood of unknown kids costs at most one fetch', async (t) => {
    const cooldownMs = 30_000;
    // jose keeps the cooldown by Date.now(): the test moves that clock itself, so "inside"
    // and "after" the cooldown hold however slow the machine is. Timers and I/O stay real.
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() });
    const v = createIdentityVerifier(identityConfig(idp.issuer), { jwksCooldownMs: cooldownMs });
    // Signed with the next key, which the JWKS does not publish yet.
    const good = await idp.sign();
    const rotated = await idp.sign({ sub: 'after-rotation' }, { unpublished: true });
    const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => idp.sign({ sub: `burst-${i}` }, { unpublished: true })));

    const fetches0 = idp.jwksFetchCount;
    await v.verify(good);
    assert.equal(idp.jwksFetchCount, fetches0 + 1);

    // Inside the cooldown (the clock has not moved): rejected without any fetch.
    const early = await Promise.all(burst.map((b) => rejection(v.verify(b))));
    for (const e of early) assert.equal(e.reason, 'unknown_key');
    assert.equal(idp.jwksFetchCount, fetches0 + 1, 'no refetch inside the cooldown');
    t.mock.timers.tick(cooldownMs - 1);
    await rejection(v.verify(burst[0] as string));
    assert.equal(idp.jwksFetchCount, fetches0 + 1, 'no refetch 1 ms before the cooldown ends');

    // After the cooldown: 20 unknown kids one after another refetch the JWKS once (which still lacks the kid).
    t.mock.timers.tick(2);
    const before = idp.jwksFetchCount;
    for (const b of burst) assert.equal((await rejection(v.verify(b))).reason, 'unknown_key');
    assert.equal(idp.jwksFetchCount, before + 1, '20 unknown kids refetched the JWKS exactly once');
    // …and 20 at once inside the new cooldown, none.
    await Promise.all(burst.map((b) => rejection(v.verify(b))));
    assert.equal(idp.jwksFetchCount, before + 1);

    // The IdP publishes the new key: accepted once the cooldown allows a refetch.
    await idp.rotate();
    assert.equal((await rejection(v.verify(rotated))).reason, 'unknown_key', 'still cooling down');
    t.mock.timers.tick(cooldownMs + 1);
    const id = await v.verify(rotated);
    assert.equal(id.sub, 'after-rotation');
    assert.equal(idp.jwksFetchCount, before + 2);
    // The old key is gone from the JWKS.
    assert.equal((await rejection(v.verify(good))).reason, 'unknown_key');
  });

  test('CI issuer: sub must match the subject glob; kind ci with the configured groups', async () => {
    const v = createIdentityVerifier(
      identityConfig(idp.issuer, { ciIssuers: [{ issuer: ciIdp.issuer, audience: 'agentgate-ci', subject: 'repo:acme/*:ref:refs/heads/main', groups: ['ci', 'deployers'] }] }),
    );
    const ok = await v.verify(await ciIdp.sign({ sub: 'repo:acme/api:ref:refs/heads/main', groups: ['admins'] }));
    assert.equal(ok.kind, 'ci');
    assert.deepEqual(ok.groups, ['ci', 'deployers']);
    assert.equal(ok.issuer, ciIdp.issuer);

    const wrongSub = await rejection(v.verify(await ciIdp.sign({ sub: 'repo:acme/api:ref:refs/heads/feature' })));
    assert.equal(wrongSub.reason, 'subject_not_allowed');
    assert.match(wrongSub.message, /repo:acme\/api:ref:refs\/heads\/feature/);

    const otherRepo = await rejection(v.verify(await ciIdp.sign({ sub: 'repo:evil/acme/x:ref:refs/heads/main' })));
    assert.equal(otherRepo.reason, 'subject_not_allowed');

    // The CI issuer's audience, not the human one.
    const wrongAud = await rejection(v.verify(await ciIdp.sign({ sub: 'repo:acme/api:ref:refs/heads/main', aud: 'agentgate' })));
    assert.equal(wrongAud.reason, 'wrong_audience');

    // A CI issuer's key cannot vouch for the human issuer.
    const forged = await rejection(v.verify(await ciIdp.sign({ iss: idp.issuer, aud: 'agentgate', sub: 'alice' })));
    assert.equal(forged.reason, 'unknown_key');
  });

  test('an IdP that is down is issuer_unreachable (503), and recovers', async () => {
    const down = await startTestIssuer();
    try {
      const v = createIdentityVerifier(identityConfig(down.issuer), { jwksCooldownMs: 100 });
      const token = await down.sign();
      down.setAvailable(false);
      const err = await rejection(v.verify(token));
      assert.equal(err.reason, 'issuer_unreachable');
      assert.equal(err.status, 503);
      assert.equal(err.code, 'AG_ISSUER_UNREACHABLE');
      down.setAvailable(true);
      const id = await waitFor('the IdP to be usable again', () => v.verify(token).catch(() => undefined));
      assert.equal(id.sub, 'alice');

      // JWKS failing while discovery works is the same answer.
      const v2 = createIdentityVerifier(identityConfig(down.issuer));
      down.setAvailable(false, 'jwks');
      const jwksErr = await rejection(v2.verify(token));
      assert.equal(jwksErr.reason, 'issuer_unreachable');
      assert.match(jwksErr.message, /signing keys/);
    } finally {
      await down.close();
    }
  });

  test('a discovery document naming another issuer is refused', async () => {
    const liar = await startTestIssuer();
    try {
      liar.setDocumentIssuer('https://someone-else.example');
      const v = createIdentityVerifier(identityConfig(liar.issuer));
      const err = await rejection(v.verify(await liar.sign()));
      assert.equal(err.reason, 'issuer_unreachable');
      assert.match(err.message, /someone-else/);
      assert.equal(liar.jwksFetchCount, 0);
    } finally {
      await liar.close();
    }
  });

  test('tokens from untrusted issuers are refused without contacting anything', async () => {
    const v: IdentityVerifier = createIdentityVerifier(identityConfig(idp.issuer));
    const before = idp.discoveryFetchCount + idp.jwksFetchCount;
    const err = await rejection(v.verify(await idp.sign({ iss: 'http://127.0.0.1:1/evil' })));
    assert.equal(err.reason, 'wrong_issuer');
    assert.equal(idp.discoveryFetchCount + idp.jwksFetchCount, before);
  });

  test('missing exp or sub is malformed', async () => {
    const v = createIdentityVerifier(identityConfig(idp.issuer));
    const noSub = await rejection(v.verify(await idp.sign({ sub: undefined })));
    assert.equal(noSub.reason, 'malformed_token');
    assert.match(noSub.message, /"sub"/);
    const noExp = await rejection(v.verify(await idp.sign({ exp: undefined })));
    assert.equal(noExp.reason, 'malformed_token');
  });
});
