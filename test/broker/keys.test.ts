import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { chmod, mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { calculateJwkThumbprint } from 'jose';
import { KeyMaterialError, ensureBrokerKeys } from '../../src/broker/keys.js';
import type { BrokerKeys } from '../../src/broker/keys.js';
import type { BrokerConfig } from '../../src/broker/config/types.js';
import { certFingerprint } from '../../src/shared/fingerprint.js';
import { makeBrokerConfig, makeTempDir } from './fixtures.js';
import type { TempDir } from './fixtures.js';

const mode = async (p: string): Promise<number> => (await stat(p)).mode & 0o777;

describe('ensureBrokerKeys', () => {
  let tmp: TempDir;
  let config: BrokerConfig;
  let keys: BrokerKeys;

  before(async () => {
    tmp = await makeTempDir();
    config = makeBrokerConfig(tmp.path, { listen: { host: 'broker.agentgate.test', port: 8443 } });
    keys = await ensureBrokerKeys(config);
  });
  after(() => tmp.remove());

  test('creates the state dir 0700 and every key file 0600', async () => {
    assert.equal(await mode(config.stateDir), 0o700);
    assert.equal(await mode(config.tls.key), 0o600);
    assert.equal(await mode(config.receiptKeyPath), 0o600);
    assert.equal(await mode(config.sshHostKeyPath), 0o600);
    // The certificate is public; it only needs to exist and not be writable by others.
    assert.equal((await mode(config.tls.cert)) & 0o022, 0);
  });

  test('generates a P-256 certificate for the loopback names and the listen host, valid about a year', () => {
    const cert = new X509Certificate(keys.tlsCertPem);
    assert.equal(cert.publicKey.asymmetricKeyType, 'ec');
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const san = cert.subjectAltName ?? '';
    for (const name of ['DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:0:0:0:0:0:0:0:1', 'DNS:broker.agentgate.test']) {
      assert.ok(san.includes(name), `SAN ${san} lacks ${name}`);
    }
    assert.equal(cert.ca, false);
    const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
    assert.ok(days > 360 && days < 370, `valid for ${days} days`);
    assert.ok(cert.checkPrivateKey(createPrivateKey(keys.tlsKeyPem)));
  });

  test('fingerprint is the SHA-256 of the certificate as uppercase colon hex', () => {
    assert.match(keys.tlsFingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.equal(keys.tlsFingerprint, new X509Certificate(keys.tlsCertPem).fingerprint256);
    assert.equal(keys.tlsFingerprint, certFingerprint(keys.tlsCertPem));
  });

  test('receipt key is Ed25519 and its JWK carries the RFC 7638 thumbprint as kid', async () => {
    assert.equal(keys.receiptPrivateKey.asymmetricKeyType, 'ed25519');
    const { kty, crv, x, kid, alg, use } = keys.receiptPublicJwk;
    assert.deepEqual({ kty, crv, alg, use }, { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
    assert.equal(kid, await calculateJwkThumbprint({ kty, crv, x }));
    const data = Buffer.from('receipt payload');
    const sig = sign(null, data, keys.receiptPrivateKey);
    assert.ok(verify(null, data, createPublicKey({ key: { kty, crv, x }, format: 'jwk' }), sig));
    assert.match(await readFile(config.receiptKeyPath, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
  });

  test("SSH host key is ed25519 and accepted by ssh2's Server", () => {
    const parsed = ssh2.utils.parseKey(keys.sshHostKey);
    assert.ok(!(parsed instanceof Error));
    assert.equal((parsed as { type: string }).type, 'ssh-ed25519');
    const server = new ssh2.Server({ hostKeys: [keys.sshHostKey] }, () => undefined);
    assert.ok(server);
    assert.match(keys.sshHostKeyFingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  test('a second run loads the same keys and rewrites nothing', async () => {
    const paths = [config.tls.cert, config.tls.key, config.receiptKeyPath, config.sshHostKeyPath];
    const before = await Promise.all(paths.map(async (p) => ({ text: await readFile(p, 'utf8'), mtime: (await stat(p)).mtimeMs, ino: (await stat(p)).ino })));
    const again = await ensureBrokerKeys(config);
    const afterRun = await Promise.all(paths.map(async (p) => ({ text: await readFile(p, 'utf8'), mtime: (await stat(p)).mtimeMs, ino: (await stat(p)).ino })));
    assert.deepEqual(afterRun, before);
    assert.equal(again.tlsFingerprint, keys.tlsFingerprint);
    assert.deepEqual(again.receiptPublicJwk, keys.receiptPublicJwk);
    assert.equal(again.sshHostKey, keys.sshHostKey);
  });
});

describe('ensureBrokerKeys refusals', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await makeTempDir();
  });
  after(() => tmp.remove());

  test('refuses a key file readable by others, with a chmod hint', async () => {
    const config = makeBrokerConfig(join(tmp.path, 'perm'));
    await ensureBrokerKeys(config);
    await chmod(config.receiptKeyPath, 0o644);
    const err = await ensureBrokerKeys(config).then(
      () => assert.fail('expected a refusal'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof KeyMaterialError);
    assert.equal(err.code, 'AG_KEY_PERMISSIONS');
    assert.equal(err.hint, `run: chmod 600 ${config.receiptKeyPath}`);
    // and the file was left alone
    assert.equal(await mode(config.receiptKeyPath), 0o644);
  });

  test('refuses a group-writable state dir', async () => {
    const config = makeBrokerConfig(join(tmp.path, 'dirperm'));
    await ensureBrokerKeys(config);
    await chmod(config.stateDir, 0o770);
    await assert.rejects(ensureBrokerKeys(config), (e: unknown) => e instanceof KeyMaterialError && e.code === 'AG_KEY_PERMISSIONS' && e.hint === `run: chmod 700 ${config.stateDir}`);
  });

  test('a configured (not generated) certificate that is missing is an error, not generated', async () => {
    const root = join(tmp.path, 'given');
    const base = makeBrokerConfig(root);
    const config = { ...base, tls: { ...base.tls, generated: false } };
    await assert.rejects(ensureBrokerKeys(config), (e: unknown) => e instanceof KeyMaterialError && e.code === 'AG_TLS_MISSING');
    await assert.rejects(stat(config.tls.cert), { code: 'ENOENT' });
  });

  test('half a generated TLS pair is reported, never silently replaced', async () => {
    const config = makeBrokerConfig(join(tmp.path, 'half'));
    await ensureBrokerKeys(config);
    await unlink(config.tls.cert);
    const keyBefore = await readFile(config.tls.key, 'utf8');
    await assert.rejects(ensureBrokerKeys(config), (e: unknown) => e instanceof KeyMaterialError && e.code === 'AG_TLS_INCOMPLETE' && e.path === config.tls.cert);
    assert.equal(await readFile(config.tls.key, 'utf8'), keyBefore);
  });

  test('a receipt key put in place beforehand is used as is, not replaced', async () => {
    const config = makeBrokerConfig(join(tmp.path, 'existing'));
    await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
    const mine = generateKeyPairSync('ed25519');
    await writeFile(config.receiptKeyPath, mine.privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    const keys = await ensureBrokerKeys(config);
    assert.equal(keys.receiptPublicJwk.x, mine.publicKey.export({ format: 'jwk' }).x);
  });
});
