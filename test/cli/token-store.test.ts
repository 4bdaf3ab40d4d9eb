/**
 * The token stores: the 0600 file, the keychain probe's verdicts, and the fallback when a
 * real Secret Service answers but refuses to store (no unlocked keyring).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { probeKeychain } from '../../src/client/keychain.js';
import { createTokenStore, FileTokenStore, type StoredLogin } from '../../src/client/token-store.js';
import { AgentgateError } from '../../src/errors.js';

let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'agentgate-tokens-'));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

const login = (sub: string): StoredLogin => ({
  access_token: `access-${sub}`,
  refresh_token: `refresh-${sub}`,
  expires_at: 2_000_000_000,
  issuer: 'https://idp.example.test',
  client_id: 'agentgate-cli',
  claims: { sub },
});

test('the file store keeps one login per broker in a 0600 file inside a 0700 folder', async () => {
  const folder = join(dir, 'file-store');
  const store = new FileTokenStore(folder);
  assert.equal(await store.get('https://a.example'), undefined);
  await store.set('https://a.example', login('alice'));
  await store.set('https://b.example', login('rita'));
  assert.equal((await store.get('https://a.example'))?.claims.sub, 'alice');
  assert.equal((await store.get('https://b.example'))?.claims.sub, 'rita');
  assert.equal(statSync(store.location).mode & 0o777, 0o600);
  assert.equal(statSync(folder).mode & 0o777, 0o700);

  // Loosened by someone: tightened again on the next read.
  chmodSync(store.location, 0o644);
  await store.get('https://a.example');
  assert.equal(statSync(store.location).mode & 0o777, 0o600);

  assert.equal(await store.delete('https://a.example'), true);
  assert.equal(await store.delete('https://a.example'), false);
  assert.equal(await store.get('https://a.example'), undefined);
  assert.equal(await store.delete('https://b.example'), true);
  assert.throws(() => statSync(store.location), { code: 'ENOENT' }, 'an empty store leaves no file behind');
});

test('a corrupt token file is reported with the way out', async () => {
  const folder = join(dir, 'corrupt');
  const store = new FileTokenStore(folder);
  await store.set('https://a.example', login('alice'));
  writeFileSync(store.location, '{not json', { mode: 0o600 });
  await assert.rejects(store.get('https://a.example'), (err: unknown) => {
    assert.ok(err instanceof AgentgateError);
    assert.equal(err.code, 'AG_TOKEN_FILE_CORRUPT');
    assert.match(err.hint ?? '', /rm .*tokens\.json && agentgate login/);
    return true;
  });
});

test('probe verdicts: AGENTGATE_KEYCHAIN=off is quiet; no D-Bus means no keychain', async () => {
  assert.deepEqual(await probeKeychain({ AGENTGATE_KEYCHAIN: 'off' }), { ok: false, reason: 'AGENTGATE_KEYCHAIN=off', quiet: true });
  const noBus = await probeKeychain({});
  assert.equal(noBus.ok, false);
  assert.match(noBus.ok ? '' : noBus.reason, /no D-Bus session bus/);
});

test('file fallback: one notice on the first write, none for AGENTGATE_KEYCHAIN=off', async () => {
  const notices: string[] = [];
  const store = await createTokenStore({ env: {}, dir: join(dir, 'fallback'), notice: (m) => notices.push(m) });
  assert.equal(store.kind, 'file');
  assert.equal(await store.get('https://a.example'), undefined);
  assert.equal(notices.length, 0, 'reading needs no notice');
  await store.set('https://a.example', login('alice'));
  await store.set('https://a.example', login('alice'));
  await store.set('https://b.example', login('rita'));
  assert.equal(notices.length, 1);
  assert.match(notices[0] ?? '', /tokens are kept in the file .*tokens\.json \(mode 0600\) because no D-Bus session bus.*AGENTGATE_KEYCHAIN=off/);

  const quiet: string[] = [];
  const off = await createTokenStore({ env: { AGENTGATE_KEYCHAIN: 'off' }, dir: join(dir, 'off'), notice: (m) => quiet.push(m) });
  await off.set('https://a.example', login('alice'));
  assert.deepEqual(quiet, []);
});

/**
 * Inside a private D-Bus session, gnome-keyring is activated on demand but no keyring is
 * unlocked: the probe's read succeeds, the write is refused, and the login lands in the file.
 */
const REFUSING_KEYCHAIN_SCRIPT = `
const { createTokenStore } = await import(process.argv[1]);
const notices = [];
const store = await createTokenStore({ dir: process.argv[2], notice: (m) => notices.push(m) });
const login = { access_token: 'a', refresh_token: 'r', expires_at: 2000000000, issuer: 'https://idp', client_id: 'c', claims: { sub: 'alice' } };
await store.set('https://broker.example', login);
await store.set('https://broker.example', login);
const back = await store.get('https://broker.example');
const removed = await store.delete('https://broker.example');
const again = await store.get('https://broker.example');
console.log(JSON.stringify({ kind: store.kind, notices, sub: back && back.claims.sub, removed, gone: again === undefined }));
`;

test('a Secret Service that refuses to store falls back to the file, with one notice', async () => {
  const folder = join(dir, 'refusing');
  const home = mkdtempSync(join(tmpdir(), 'agentgate-kr-home-'));
  const moduleUrl = pathToFileURL(join(import.meta.dirname, '../../src/client/token-store.js')).href;
  try {
    const out = await new Promise<string>((resolve, reject) => {
      execFile(
        'dbus-run-session',
        ['--', process.execPath, '--input-type=module', '-e', REFUSING_KEYCHAIN_SCRIPT, moduleUrl, folder],
        { env: { PATH: process.env['PATH'], HOME: home, XDG_CONFIG_HOME: join(home, 'config') }, timeout: 30_000 },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)),
      );
    });
    const result = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { kind: string; notices: string[]; sub: string; removed: boolean; gone: boolean };
    assert.equal(result.kind, 'keychain', 'the probe found a Secret Service');
    assert.equal(result.notices.length, 1, JSON.stringify(result.notices));
    assert.match(result.notices[0] ?? '', /because the keychain refused to store it/);
    assert.equal(result.sub, 'alice', 'read back from the file');
    assert.equal(result.removed, true);
    assert.equal(result.gone, true);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
