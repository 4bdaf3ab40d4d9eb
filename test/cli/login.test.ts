/**
 * `agentgate login` → `whoami` → `targets` → `logout` as real child processes, against a
 * real oidc-provider and a real broker. Tokens go to the file store here
 * (AGENTGATE_KEYCHAIN=off); keychain.test.ts covers the keychain.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { TargetsResponse } from '../../src/shared/api-types.js';
import type { WhoAmIResult } from '../../src/client/identity.js';
import { JWT_LIKE, loginAs, makeHome, runCli, spawnCli, startStack, USER_CODE, type Home, type Stack } from './fixture.js';

let stack: Stack;
let home: Home;

before(async () => {
  stack = await startStack();
  home = makeHome({ AGENTGATE_KEYCHAIN: 'off' });
});

after(async () => {
  await stack?.close();
  home?.cleanup();
});

test('login runs the device flow, stores the tokens and the broker; whoami and targets use them', async () => {
  const login = await loginAs(stack, 'alice', home.env);
  assert.equal(login.code, 0, login.stderr);
  assert.match(login.stderr, /To sign in, open this page in a browser:/);
  assert.match(login.stderr, new RegExp(`${stack.idp.issuer}/device\\?user_code=`), 'the complete verification URL is shown');
  assert.match(login.stdout, /Logged in to https:\/\/127\.0\.0\.1:\d+ as Alice Agent \(alice\), agent, groups: ai-agents/);
  assert.doesNotMatch(login.stdout + login.stderr, JWT_LIKE);

  // Settings remember the broker and its pinned fingerprint, so later commands need no flags.
  const settings = JSON.parse(readFileSync(join(home.configDir, 'agentgate', 'config.json'), 'utf8')) as {
    defaultBroker: string;
    brokers: Record<string, { fingerprint?: string }>;
  };
  assert.equal(settings.defaultBroker, stack.brokerUrl);
  assert.equal(settings.brokers[stack.brokerUrl]?.fingerprint, stack.fingerprint);
  assert.equal(statSync(join(home.configDir, 'agentgate')).mode & 0o777, 0o700);

  const who = await runCli(['whoami', '--json'], home.env);
  assert.equal(who.code, 0, who.stderr);
  const me = JSON.parse(who.stdout) as WhoAmIResult;
  assert.equal(me.sub, 'alice');
  assert.deepEqual(me.groups, ['ai-agents']);
  assert.equal(me.kind, 'agent');
  assert.equal(me.issuer, stack.idp.issuer);
  assert.equal(me.broker, stack.brokerUrl);
  assert.equal(me.token_source, 'login');
  assert.ok(me.expires_at > Date.now() / 1000, 'token expiry is in the future');
  assert.equal(who.stderr, '', 'nothing but the answer with --json');
  assert.doesNotMatch(who.stdout, JWT_LIKE);

  const human = await runCli(['whoami'], home.env);
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, /^alice \(Alice Agent <alice@example\.test>\)$/m);
  assert.match(human.stdout, /expires: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d \(in \d+ minutes\)/);
  assert.match(human.stdout, /token: +stored login/);

  const targets = await runCli(['targets', '--json'], home.env);
  assert.equal(targets.code, 0, targets.stderr);
  const list = JSON.parse(targets.stdout) as TargetsResponse;
  assert.deepEqual(
    list.targets.map((t) => [t.name, t.type]),
    [['pg-prod', 'postgres']],
  );
  const table = await runCli(['targets'], home.env);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^NAME +TYPE +ALLOWS$/m);
  assert.match(table.stdout, /^pg-prod +postgres +\S/m);
});

test('logout revokes and forgets the login; a second logout is a no-op; whoami then asks to log in', async () => {
  const tokenFile = join(home.configDir, 'agentgate', 'tokens.json');
  assert.ok(statSync(tokenFile).isFile(), 'logged in by the previous test');
  const revokedBefore = stack.idp.revokedGrants();

  const out = await runCli(['logout'], home.env);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /Logged out of https:\/\/127\.0\.0\.1:\d+\./);
  assert.throws(() => statSync(tokenFile), { code: 'ENOENT' });
  assert.equal(stack.idp.revokedGrants(), revokedBefore + 1, 'the refresh token was revoked at the IdP');

  const again = await runCli(['logout'], home.env);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /Not logged in to https:\/\/127\.0\.0\.1:\d+; nothing to do\./);

  const who = await runCli(['whoami', '--json'], home.env);
  assert.equal(who.code, 3, who.stderr);
  assert.match(who.stderr, /not logged in to https:\/\/127\.0\.0\.1:\d+/);
  assert.match(who.stderr, /→ run: agentgate login --broker https:\/\/127\.0\.0\.1:\d+/);
  assert.equal((JSON.parse(who.stdout) as { error: { code: string } }).error.code, 'AG_NOT_LOGGED_IN');
});

test('denying the request in the browser ends login with exit 3 and advice', async () => {
  const h = makeHome({ AGENTGATE_KEYCHAIN: 'off' });
  try {
    const cli = spawnCli(['login', '--broker', stack.brokerUrl, '--fingerprint', stack.fingerprint], h.env);
    const [, code] = await cli.waitForStderr(USER_CODE);
    await stack.idp.completeDeviceFlow(code ?? '', 'rita', { deny: true });
    const run = await cli.done;
    assert.equal(run.code, 3, run.stderr);
    assert.match(run.stderr, /the sign-in was denied in the browser/);
    assert.match(run.stderr, /→ run agentgate login again/);
  } finally {
    h.cleanup();
  }
});

test('without any broker configured, commands say how to log in (exit 2)', async () => {
  const h = makeHome({ AGENTGATE_KEYCHAIN: 'off' });
  try {
    for (const cmd of [['whoami'], ['targets', '--json'], ['login']]) {
      const run = await runCli(cmd, h.env);
      assert.equal(run.code, 2, `${cmd.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, /no broker configured/);
      assert.match(run.stderr, /agentgate login --broker https:\/\/…/);
    }
    const out = await runCli(['logout'], h.env);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /Not logged in to any broker/);
  } finally {
    h.cleanup();
  }
});
