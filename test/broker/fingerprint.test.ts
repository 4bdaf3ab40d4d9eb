import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { certFingerprint, fingerprintsEqual, normalizeFingerprint } from '../../src/shared/fingerprint.js';
import { UsageError } from '../../src/errors.js';
import { makeTestCert } from '../helpers/tls.js';

const { cert } = makeTestCert();
const der = new X509Certificate(cert).raw;
const hex = createHash('sha256').update(der).digest('hex');
const canonical = hex.toUpperCase().match(/../g)!.join(':');

test('certFingerprint is the SHA-256 of the DER as uppercase colon-separated hex', () => {
  assert.equal(certFingerprint(cert), canonical);
  assert.match(canonical, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
});

test('normalizeFingerprint accepts colon hex, plain hex, prefixes and base64', () => {
  const b64 = createHash('sha256').update(der).digest('base64').replace(/=$/, '');
  for (const form of [canonical, canonical.toLowerCase(), hex, hex.toUpperCase(), `sha256:${hex}`, `SHA256:${canonical}`, ` SHA256: ${hex} `, `SHA256:${b64}`]) {
    assert.equal(normalizeFingerprint(form), canonical, form);
  }
});

test('normalizeFingerprint rejects anything that is not a SHA-256 digest', () => {
  for (const bad of ['', 'AB:CD', hex.slice(2), hex + '00', 'zz' + hex.slice(2), `md5:${hex}`, createHash('sha256').update(der).digest('base64')]) {
    assert.throws(() => normalizeFingerprint(bad), UsageError, bad);
  }
});

test('fingerprintsEqual compares digests across forms and is false for garbage', () => {
  assert.equal(fingerprintsEqual(canonical, `sha256:${hex}`), true);
  const other = (hex.slice(0, -1) + (hex.endsWith('0') ? '1' : '0')).toUpperCase();
  assert.equal(fingerprintsEqual(canonical, other), false);
  assert.equal(fingerprintsEqual(canonical, 'nonsense'), false);
  assert.equal(fingerprintsEqual('nonsense', 'nonsense'), false);
});
