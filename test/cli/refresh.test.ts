/**
 * Silent refresh: with a 2-second access-token lifetime, a command after the token lapsed
 * renews it with the refresh token, saves the new (rotated) tokens, and succeeds.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { WhoAmIResult } from '../../src/client/identity.js';
import type { StoredLogin } from '../../src/client/token-store.js';
import { JWT_LIKE, loginAs, makeHome, runCli, sameSecret, startStack, type Home, type Stack } from './fixture.js';

let stack: Stack;
let home: Home;

before(async () => {
  stack = await startStack({ accessTokenTtl: 2 });
  home = makeHome({ AGENTGATE_KEYCHAIN: 'off' });
});

after(async () => {
  await stack?.close();
  home?.cleanup();
});

function stored(): StoredLogin {
  const file = JSON.parse(readFileSync(join(home.configDir, 'agentgate', 'tokens.json'), 'utf8')) as { brokers: Record<string, StoredLogin> };
  const login = file.brokers[stack.brokerUrl];
  assert.ok(login, 'a stored login for the broker');
  return login;
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('an expired access token is refreshed silently and the new tokens are saved', async () => {
  const login = await loginAs(stack, 'alice', home.env);
  assert.equal(login.code, 0, login.stderr);
  const first = stored();
  assert.ok(first.refresh_token, 'the IdP issued a refresh token (offline_access)');

  await until(() => Date.now() / 1000 > first.expires_at, 10_000, 'the access token to expire');
  const refreshesBefore = stack.idp.grantCounts()['refresh_token'] ?? 0;

  const who = await runCli(['whoami', '--json'], home.env);
  assert.equal(who.code, 0, who.stderr);
  const me = JSON.parse(who.stdout) as WhoAmIResult;
  assert.equal(me.sub, 'alice');
  assert.deepEqual(me.groups, ['ai-agents']);
  assert.equal(who.stderr, '', 'refresh is silent');
  assert.doesNotMatch(who.stdout, JWT_LIKE);

  assert.equal(stack.idp.grantCounts()['refresh_token'], refreshesBefore + 1, 'one refresh_token grant');
  const second = stored();
  assert.ok(second.expires_at > first.expires_at, 'the new expiry is later');
  assert.ok(!sameSecret(second.access_token, first.access_token), 'a new access token was saved');
  assert.ok(second.refresh_token && !sameSecret(second.refresh_token, first.refresh_token), 'the rotated refresh token was saved');
  assert.equal(second.claims.sub, 'alice');
});
