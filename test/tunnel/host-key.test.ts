import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../src/errors.js';
import { hostKeyFingerprint, sameFingerprint, generateSshKeyPair } from '../../src/tunnel/host-key.js';

test('fingerprint matches what `ssh-keygen -lf` prints for the same key', () => {
  // Vector produced once with OpenSSH's ssh-keygen (public key only; nothing secret).
  const pub = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINQWkg3v6YOKq9g7j3bn9NXrTJ7HcAydBHxuBu4RdGgm test';
  assert.equal(hostKeyFingerprint(pub), 'SHA256:bNRE2Oed1kOlIPS7iUKGjNfw/AUOUeng3C39DnJGy24');
});

test('private and public halves give the same fingerprint; different keys differ', () => {
  const a = generateSshKeyPair();
  const b = generateSshKeyPair();
  const fa = hostKeyFingerprint(a.private);
  assert.match(fa, /^SHA256:[A-Za-z0-9+/]{43}$/);
  assert.equal(hostKeyFingerprint(Buffer.from(a.public)), fa);
  assert.notEqual(hostKeyFingerprint(b.private), fa);
  assert.ok(sameFingerprint(fa, `${fa}=`));
  assert.ok(!sameFingerprint(fa, hostKeyFingerprint(b.public)));
});

test('an unreadable key is a ConfigError', () => {
  assert.throws(() => hostKeyFingerprint('not a key'), ConfigError);
});

test('generated host keys always parse back (ssh2 drops a leading zero byte of some public keys)', () => {
  for (let i = 0; i < 2000; i++) {
    const pair = generateSshKeyPair();
    assert.match(hostKeyFingerprint(pair.private), /^SHA256:/);
  }
});
