/**
 * A stored login keeps a live session alive: `agentgate login` against a real OIDC
 * provider (oidc-provider, 4-second access tokens, refresh tokens), then the real
 * `agentgate connect`; before the access token expires the CLI refreshes it with the
 * refresh token and re-presents it over the tunnel, and the same psql session still
 * answers after the first token's expiry.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { eventually, startPgStack, TARGET, type PgStack } from '../postgres/stack.js';
import { startTestIdp, type TestIdp } from '../helpers/oidc-provider.js';
import { fileURLToPath } from 'node:url';
import { loginAs, makeHome, type Home, type Stack } from '../cli/fixture.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

let idp: TestIdp;
let stack: PgStack;
let home: Home;

before(async () => {
  idp = await startTestIdp({ accessTokenTtl: 4 });
  stack = await startPgStack({
    identity: { issuer: idp.issuer, audience: idp.audience, clientId: idp.deviceClientId, clockToleranceSec: 0 },
    config: { sessions: { expiryLeewaySeconds: 0, maxDurationSeconds: undefined } },
  });
  home = makeHome({ AGENTGATE_KEYCHAIN: 'off' });
});

after(async () => {
  await stack?.close();
  await idp?.close();
  home?.cleanup();
});

test('the CLI refreshes a stored login and re-presents it before expiry; the session lives on', async () => {
  const login = await loginAs({ idp, brokerUrl: stack.broker.url, fingerprint: stack.broker.fingerprint } as Stack, 'alice', home.env);
  assert.equal(login.code, 0, login.stderr);

  const cli = spawn(process.execPath, [BIN, 'connect', TARGET, '--port', '0', '--json'], { env: home.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const cliDone = new Promise<void>((resolve) => cli.on('close', () => resolve()));
  let cliOut = '';
  let cliErr = '';
  cli.stdout.on('data', (d: Buffer) => (cliOut += d.toString()));
  cli.stderr.on('data', (d: Buffer) => (cliErr += d.toString()));
  try {
    const line = await eventually(`agentgate connect to print its endpoint (stderr: ${cliErr})`, () => (cliOut.includes('\n') ? cliOut : undefined), 20_000);
    const u = new URL((JSON.parse(line) as { url: string }).url);
    const psql = spawn('psql', ['-X', '-At'], {
      env: { PATH: process.env['PATH'], PGHOST: u.hostname, PGPORT: u.port, PGUSER: 'agent', PGDATABASE: 'app', PGPASSWORD: decodeURIComponent(u.password), PGSSLMODE: 'disable' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    psql.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => psql.on('close', resolve));
    psql.stdin.write('select 11;\n');
    await eventually('psql to answer', () => out.split('\n').includes('11'));
    const first = stack.broker.live.list().find((s) => s.actor.sub === 'alice');
    assert.ok(first, 'alice has a live session');
    const refreshesBefore = idp.grantCounts()['refresh_token'] ?? 0;

    const later = await eventually('the broker to hold a renewed credential', () => {
      const s = stack.broker.live.list().find((x) => x.id === first.id);
      return s && Date.parse(s.credential_expires_at) > Date.parse(first.credential_expires_at) ? s : undefined;
    });
    assert.ok((idp.grantCounts()['refresh_token'] ?? 0) > refreshesBefore, 'a refresh_token grant');
    // Past the first access token's expiry (leeway 0), the same session still answers.
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(first.credential_expires_at) + 300 - Date.now())));
    psql.stdin.write('select 12;\n');
    await eventually('psql to answer after the first token expired', () => out.split('\n').includes('12'));
    assert.ok(Date.parse(later.credential_expires_at) > Date.now());
    psql.stdin.end();
    assert.equal(await exited, 0);
    assert.deepEqual((await stack.events()).filter((e) => e.type === 'session.end' && e.detail['reason'] === 'credential_expired'), []);
    assert.doesNotMatch(cliErr, /could not renew/);
  } finally {
    cli.kill('SIGKILL');
    await cliDone;
  }
});
