/**
 * Non-interactive token sources and broker trust, through the real CLI, IdP and broker:
 * AGENTGATE_TOKEN, --token-file, client credentials, GitHub Actions OIDC, stored logins
 * that cannot be renewed, pinning, --ca, and connection failures.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { WhoAmIResult } from '../../src/client/identity.js';
import type { StoredLogin } from '../../src/client/token-store.js';
import { JWT_LIKE, makeHome, runCli, startStack, type Home, type Stack } from './fixture.js';

let stack: Stack;
let home: Home;
/** Flags that point a command at the test broker. */
let at: string[];

before(async () => {
  stack = await startStack();
  home = makeHome({ AGENTGATE_KEYCHAIN: 'off' });
  at = ['--broker', stack.brokerUrl, '--fingerprint', stack.fingerprint];
});

after(async () => {
  await stack?.close();
  home?.cleanup();
});

function parseWho(stdout: string): WhoAmIResult {
  return JSON.parse(stdout) as WhoAmIResult;
}

test('AGENTGATE_TOKEN is used as is, with AGENTGATE_BROKER and AGENTGATE_FINGERPRINT as the broker flags', async () => {
  const token = await stack.idp.clientCredentialsToken();
  const env = { ...home.env, AGENTGATE_TOKEN: token, AGENTGATE_BROKER: stack.brokerUrl, AGENTGATE_FINGERPRINT: stack.fingerprint };
  const run = await runCli(['whoami', '--json'], env);
  assert.equal(run.code, 0, run.stderr);
  const who = parseWho(run.stdout);
  assert.equal(who.sub, stack.idp.ccClient.id);
  assert.deepEqual(who.groups, ['ci']);
  assert.equal(who.token_source, 'env');
  assert.doesNotMatch(run.stdout + run.stderr, JWT_LIKE);
});

test('AGENTGATE_TOKEN wins over client credentials (which are not even tried)', async () => {
  const token = await stack.idp.clientCredentialsToken();
  const before = stack.idp.grantCounts()['client_credentials'] ?? 0;
  const env = { ...home.env, AGENTGATE_TOKEN: token, AGENTGATE_CLIENT_ID: 'ci-bot', AGENTGATE_CLIENT_SECRET: 'wrong' };
  const run = await runCli(['whoami', '--json', ...at], env);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(parseWho(run.stdout).token_source, 'env');
  assert.equal(stack.idp.grantCounts()['client_credentials'] ?? 0, before);
});

test('a token the broker refuses exits 3 and names the source and the next step', async () => {
  const run = await runCli(['whoami', ...at], { ...home.env, AGENTGATE_TOKEN: 'not-a-jwt' });
  assert.equal(run.code, 3, run.stderr);
  assert.match(run.stderr, /the broker refused the token from AGENTGATE_TOKEN/);
  assert.match(run.stderr, /→ .*unset AGENTGATE_TOKEN, or run: agentgate login/);
});

test('--token-file reads the token from a file', async () => {
  const file = join(home.dir, 'token');
  writeFileSync(file, (await stack.idp.clientCredentialsToken()) + '\n', { mode: 0o600 });
  const run = await runCli(['whoami', '--json', '--token-file', file, ...at], home.env);
  assert.equal(run.code, 0, run.stderr);
  const who = parseWho(run.stdout);
  assert.equal(who.sub, 'ci-bot');
  assert.equal(who.token_source, 'token-file');

  const missing = await runCli(['whoami', '--token-file', join(home.dir, 'nope'), ...at], home.env);
  assert.equal(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /cannot read --token-file .*nope: ENOENT/);
});

test('client credentials: AGENTGATE_CLIENT_ID/SECRET get a token from the IdP for the broker', async () => {
  const before = stack.idp.grantCounts()['client_credentials'] ?? 0;
  const env = { ...home.env, AGENTGATE_CLIENT_ID: stack.idp.ccClient.id, AGENTGATE_CLIENT_SECRET: stack.idp.ccClient.secret };
  const run = await runCli(['whoami', '--json', ...at], env);
  assert.equal(run.code, 0, run.stderr);
  const who = parseWho(run.stdout);
  assert.equal(who.sub, 'ci-bot');
  assert.deepEqual(who.groups, ['ci']);
  assert.equal(who.token_source, 'client-credentials');
  assert.equal(stack.idp.grantCounts()['client_credentials'], before + 1);

  const wrong = await runCli(['whoami', ...at], { ...env, AGENTGATE_CLIENT_SECRET: 'wrong-secret' });
  assert.equal(wrong.code, 3, wrong.stderr);
  assert.match(wrong.stderr, /refused the client credentials for ci-bot \(invalid_client\)/);
  assert.match(wrong.stderr, /→ check AGENTGATE_CLIENT_ID and AGENTGATE_CLIENT_SECRET/);
  assert.doesNotMatch(wrong.stderr, /wrong-secret/);

  const half = await runCli(['whoami', ...at], { ...home.env, AGENTGATE_CLIENT_ID: 'ci-bot' });
  assert.equal(half.code, 2, half.stderr);
  assert.match(half.stderr, /AGENTGATE_CLIENT_SECRET is not set/);
});

test('GitHub Actions: the CLI asks the job\'s token service for a token with the broker\'s audience', async () => {
  const token = await stack.idp.clientCredentialsToken();
  const seen: Array<{ url: string; headers: IncomingHttpHeaders }> = [];
  const gh = createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ count: 1, value: token }));
  });
  await new Promise<void>((resolve) => gh.listen(0, '127.0.0.1', resolve));
  try {
    const env = {
      ...home.env,
      ACTIONS_ID_TOKEN_REQUEST_URL: `http://127.0.0.1:${(gh.address() as AddressInfo).port}/_apis/token?api-version=2.0`,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'request-token-for-tests',
    };
    const run = await runCli(['whoami', '--json', ...at], env);
    assert.equal(run.code, 0, run.stderr);
    const who = parseWho(run.stdout);
    assert.equal(who.sub, 'ci-bot');
    assert.equal(who.token_source, 'github-actions');
    assert.equal(seen.length, 1);
    const url = new URL(seen[0]?.url ?? '', 'http://x');
    assert.equal(url.pathname, '/_apis/token');
    assert.equal(url.searchParams.get('api-version'), '2.0');
    assert.equal(url.searchParams.get('audience'), stack.idp.audience);
    assert.equal(seen[0]?.headers.authorization, 'bearer request-token-for-tests');
  } finally {
    gh.closeAllConnections();
    await new Promise<void>((resolve) => gh.close(() => resolve()));
  }
});

/** Writes a stored login for the test broker into the file store, as a past login would have. */
function storeLogin(h: Home, login: StoredLogin): void {
  const dir = join(h.configDir, 'agentgate');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify({ version: 1, brokers: { [stack.brokerUrl]: login } }), { mode: 0o600 });
}

test('an expired stored login that cannot be renewed exits 3 with login advice', async () => {
  const h = makeHome({ AGENTGATE_KEYCHAIN: 'off' });
  try {
    const base: StoredLogin = {
      access_token: 'expired-access-token',
      expires_at: Math.floor(Date.now() / 1000) - 120,
      issuer: stack.idp.issuer,
      client_id: stack.idp.deviceClientId,
      claims: { sub: 'alice' },
    };
    storeLogin(h, base);
    const noRefresh = await runCli(['whoami', '--json', ...at], h.env);
    assert.equal(noRefresh.code, 3, noRefresh.stderr);
    assert.match(noRefresh.stderr, /your login has expired and cannot be renewed/);
    assert.match(noRefresh.stderr, /→ run: agentgate login/);
    assert.equal((JSON.parse(noRefresh.stdout) as { error: { code: string } }).error.code, 'AG_SESSION_EXPIRED');

    // A refresh token the IdP no longer accepts: same outcome, after asking the IdP.
    storeLogin(h, { ...base, refresh_token: 'revoked-refresh-token' });
    const refused = await runCli(['whoami', ...at], h.env);
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(refused.stderr, /your session has expired/);
    assert.match(refused.stderr, /→ run: agentgate login/);
    assert.doesNotMatch(refused.stderr, /revoked-refresh-token|expired-access-token/);
  } finally {
    h.cleanup();
  }
});

test('a pinned fingerprint that does not match fails closed with a clear error', async () => {
  const token = await stack.idp.clientCredentialsToken();
  const wrong = 'SHA256:' + 'ab'.repeat(32);
  const run = await runCli(['whoami', '--broker', stack.brokerUrl, '--fingerprint', wrong], { ...home.env, AGENTGATE_TOKEN: token });
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stderr, /presented a certificate with SHA-256 fingerprint [0-9A-F:]{95}, but AB:AB:[AB:]+AB is pinned/);
  assert.match(run.stderr, /the connection may be intercepted/);

  const bad = await runCli(['whoami', '--broker', stack.brokerUrl, '--fingerprint', 'xyz'], { ...home.env, AGENTGATE_TOKEN: token });
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /not a SHA-256 certificate fingerprint/);
});

test('without a pin or CA the self-signed broker is refused with a hint; --ca with its certificate works', async () => {
  const token = await stack.idp.clientCredentialsToken();
  const env = { ...home.env, AGENTGATE_TOKEN: token };
  const run = await runCli(['whoami', '--broker', stack.brokerUrl], env);
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stderr, /cannot verify the TLS certificate of https:\/\/127\.0\.0\.1:\d+/);
  assert.match(run.stderr, /→ .*--fingerprint SHA256:… .*--ca FILE/);

  const ok = await runCli(['whoami', '--json', '--broker', stack.brokerUrl, '--ca', stack.tlsCertPath], env);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(parseWho(ok.stdout).sub, 'ci-bot');
});

test('a broker that is not listening is named in a clear error', async () => {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const run = await runCli(['whoami', '--broker', `https://127.0.0.1:${port}`], { ...home.env, AGENTGATE_TOKEN: 'x' });
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stderr, new RegExp(`the broker at https://127\\.0\\.0\\.1:${port} is unreachable: connection refused`));
  assert.match(run.stderr, /→ check that this is the right broker URL .* and that the broker is up \(ask its operator\)/);
});
