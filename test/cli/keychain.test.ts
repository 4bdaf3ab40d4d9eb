/**
 * Where tokens land: a REAL keychain (gnome-keyring's Secret Service on a private D-Bus
 * session, checked with secret-tool) and, without D-Bus, the 0600 file with one notice.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { WhoAmIResult } from '../../src/client/identity.js';
import { JWT_LIKE, loginAs, makeHome, runCli, spawnCli, startStack, USER_CODE, type Stack } from './fixture.js';

let stack: Stack;

before(async () => {
  stack = await startStack();
});

after(async () => {
  await stack?.close();
});

/**
 * One D-Bus session with an unlocked gnome-keyring: login, look the entry up with
 * secret-tool (printing only its JSON keys, never the token), whoami, logout, look again.
 */
const SESSION_SCRIPT = `
printf 'keyring-pw' | gnome-keyring-daemon --unlock --components=secrets >/dev/null
"$NODE" bin/agentgate login --broker "$BROKER" --fingerprint "$FP"
echo "@@login=$?"
secret-tool lookup service agentgate account "$BROKER" | "$NODE" -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    try { console.log("@@keychain=" + Object.keys(JSON.parse(s)).sort().join(",")); } catch { console.log("@@keychain=none"); }
  });'
echo "@@whoami-begin"
"$NODE" bin/agentgate whoami --json
echo "@@whoami-end=$?"
"$NODE" bin/agentgate logout
echo "@@logout=$?"
if secret-tool lookup service agentgate account "$BROKER" >/dev/null; then echo "@@after-logout=present"; else echo "@@after-logout=absent"; fi
`;

test('with a Secret Service on D-Bus, the login goes to the keychain and not to the file', async () => {
  const home = makeHome();
  try {
    const env = { ...home.env, NODE: process.execPath, BROKER: stack.brokerUrl, FP: stack.fingerprint };
    const cli = spawnCli([], env, { file: 'dbus-run-session', args: ['--', 'sh', '-c', SESSION_SCRIPT] });
    const [, code] = await cli.waitForStderr(USER_CODE, 20_000);
    await stack.idp.completeDeviceFlow(code ?? '', 'rita');
    const run = await cli.done;
    const marker = (name: string): string | undefined => new RegExp(`^@@${name}=(.*)$`, 'm').exec(run.stdout)?.[1];

    assert.equal(run.code, 0, run.stderr);
    assert.equal(marker('login'), '0', run.stderr);
    const keys = (marker('keychain') ?? '').split(',');
    for (const k of ['access_token', 'refresh_token', 'expires_at', 'issuer', 'client_id', 'claims']) assert.ok(keys.includes(k), `keychain entry has ${k}: ${keys.join(',')}`);
    assert.equal(existsSync(join(home.configDir, 'agentgate', 'tokens.json')), false, 'no token file when the keychain works');
    assert.doesNotMatch(run.stderr, /tokens are kept in the file/);
    assert.match(run.stderr, /Tokens are stored in the OS keychain \(service "agentgate"\)\./);

    const whoJson = run.stdout.slice(run.stdout.indexOf('@@whoami-begin') + '@@whoami-begin'.length, run.stdout.indexOf('@@whoami-end'));
    assert.equal(marker('whoami-end'), '0', run.stderr);
    const who = JSON.parse(whoJson) as WhoAmIResult;
    assert.equal(who.sub, 'rita');
    assert.deepEqual(who.groups, ['dba']);
    assert.equal(who.kind, 'human');

    assert.equal(marker('logout'), '0', run.stderr);
    assert.equal(marker('after-logout'), 'absent', 'logout removed the keychain entry');
    assert.doesNotMatch(run.stdout + run.stderr, JWT_LIKE);
  } finally {
    home.cleanup();
  }
});

test('without D-Bus the tokens go to a 0600 file in a 0700 folder, with one notice; logout removes it', async () => {
  const home = makeHome(); // no DBUS_SESSION_BUS_ADDRESS, no AGENTGATE_KEYCHAIN
  try {
    const login = await loginAs(stack, 'alice', home.env);
    assert.equal(login.code, 0, login.stderr);
    const file = join(home.configDir, 'agentgate', 'tokens.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(join(home.configDir, 'agentgate')).mode & 0o777, 0o700);
    const notices = login.stderr.match(/tokens are kept in the file .*tokens\.json \(mode 0600\) because no D-Bus session bus/g) ?? [];
    assert.equal(notices.length, 1, login.stderr);
    assert.match(login.stderr, /AGENTGATE_KEYCHAIN=off/);
    const stored = JSON.parse(readFileSync(file, 'utf8')) as { brokers: Record<string, { claims: { sub: string } }> };
    assert.equal(stored.brokers[stack.brokerUrl]?.claims.sub, 'alice');

    const who = await runCli(['whoami', '--json'], home.env);
    assert.equal(who.code, 0, who.stderr);
    assert.equal((JSON.parse(who.stdout) as WhoAmIResult).sub, 'alice');
    assert.equal(who.stderr, '', 'reading the file needs no notice');

    const out = await runCli(['logout'], home.env);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(existsSync(file), false);
  } finally {
    home.cleanup();
  }
});

test('AGENTGATE_KEYCHAIN=off uses the file without a notice', async () => {
  const home = makeHome({ AGENTGATE_KEYCHAIN: 'off' });
  try {
    const login = await loginAs(stack, 'alice', home.env);
    assert.equal(login.code, 0, login.stderr);
    assert.doesNotMatch(login.stderr, /tokens are kept in the file/);
    assert.ok(existsSync(join(home.configDir, 'agentgate', 'tokens.json')));
  } finally {
    home.cleanup();
  }
});
