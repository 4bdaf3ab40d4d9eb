import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  ALL_DETECTORS,
  DETECTOR_NAMES,
  findSpans,
  looksLikeSecretName,
  parseDetectorNames,
  type DetectorName,
} from '../../src/broker/masking/detectors.js';

/** [detector, matched text] for every span. */
function hits(text: string, detectors: readonly DetectorName[] | number = ALL_DETECTORS, secretColumn = false): [string, string][] {
  return findSpans(text, detectors, { secretColumn }).map((s) => [s.detector, s.text]);
}

test('detector names: aliases, all, unknown', () => {
  assert.equal(parseDetectorNames(['ssn']).set, parseDetectorNames(['us_ssn']).set);
  assert.equal(parseDetectorNames(['all']).set, ALL_DETECTORS);
  assert.deepEqual(parseDetectorNames(['email', 'phone', 'Credit_Card']).unknown, ['phone']);
  assert.equal(DETECTOR_NAMES.length, 11);
});

test('email: plain, in JSON, in prose, with Unicode around and inside', () => {
  assert.deepEqual(hits('alice@example.com', ['email']), [['email', 'alice@example.com']]);
  assert.deepEqual(hits('{"email":"bob.smith+tag@mail.example.co.uk","n":1}', ['email']), [['email', 'bob.smith+tag@mail.example.co.uk']]);
  assert.deepEqual(hits('write to carol@example.org.', ['email']), [['email', 'carol@example.org']]);
  assert.deepEqual(hits('«dave@example.com»', ['email']), [['email', 'dave@example.com']]);
  assert.deepEqual(hits('連絡先：山田 yamada@example.jp です', ['email']), [['email', 'yamada@example.jp']]);
  assert.deepEqual(hits('josé@exämple.de', ['email']), [['email', 'josé@exämple.de']]);
  assert.deepEqual(hits('📧 erin@example.com 📧', ['email']), [['email', 'erin@example.com']]);
  // A JSON escape before the address stays intact (no dangling backslash).
  assert.deepEqual(hits('"x\\nfrank@example.com"', ['email']), [['email', 'frank@example.com']]);
  assert.deepEqual(hits('a@b.com and c@d.io', ['email']).length, 2);
});

test('email: no false positives', () => {
  for (const text of ['user@localhost', '@example.com', 'a@b', 'a@1.2.3.4', 'x@-bad.com', 'price @ 5.00', 'foo@bar.c', 'ssh git@github']) {
    assert.deepEqual(hits(text, ['email']), [], text);
  }
});

test('credit cards: Luhn-valid numbers, grouped or not, flagged', () => {
  assert.deepEqual(hits('4111111111111111', ['credit_card']), [['credit_card', '4111111111111111']]);
  assert.deepEqual(hits('card: 4111 1111 1111 1111, exp 12/29', ['credit_card']), [['credit_card', '4111 1111 1111 1111']]);
  assert.deepEqual(hits('5500-0000-0000-0004', ['credit_card']), [['credit_card', '5500-0000-0000-0004']]);
  assert.deepEqual(hits('amex 3782 822463 10005', ['credit_card']), [['credit_card', '3782 822463 10005']]);
  assert.deepEqual(hits('{"pan":"6011111111111117"}', ['credit_card']), [['credit_card', '6011111111111117']]);
  assert.deepEqual(hits('カード番号：4111111111111111。', ['credit_card']), [['credit_card', '4111111111111111']]);
  // The card is found even when more digits follow it in another group.
  assert.deepEqual(hits('4111 1111 1111 1111 2024', ['credit_card']), [['credit_card', '4111 1111 1111 1111']]);
});

test('credit cards: no false positives', () => {
  for (const text of [
    '4111111111111112', // Luhn fails
    '411111111111', // 12 digits
    '1700000000000000000', // epoch nanoseconds (issuer digit 1)
    '2024-01-15 10:30:00.123456',
    '2024-01-15T10:30:00Z',
    '550e8400-e29b-41d4-a716-446655440000',
    '12345678-1234-5678-9012-345678901234',
    'order 42 qty 7 total 4111.11',
    '3.4111111111111111', // a decimal
    'id4111111111111111', // glued to letters
    '41111111111111111111111', // 23 digits
    '+1 555 123 4567',
  ]) {
    assert.deepEqual(hits(text, ['credit_card']), [], text);
  }
});

test('US SSN: valid ranges flagged, invalid ranges and look-alikes not', () => {
  assert.deepEqual(hits('ssn 123-45-6789', ['us_ssn']), [['us_ssn', '123-45-6789']]);
  assert.deepEqual(hits('{"ssn":"078-05-1120"}', ['us_ssn']), [['us_ssn', '078-05-1120']]);
  for (const text of ['000-12-3456', '666-12-3456', '900-12-3456', '123-00-4567', '123-45-0000', '123456789', '1-123-45-6789', '123-45-6789-1', '2024-01-15', '123-45-67890']) {
    assert.deepEqual(hits(text, ['us_ssn']), [], text);
  }
});

test('IBAN: mod-97 checked, printed and electronic forms', () => {
  assert.deepEqual(hits('IBAN DE89 3704 0044 0532 0130 00.', ['iban']), [['iban', 'DE89 3704 0044 0532 0130 00']]);
  assert.deepEqual(hits('GB82WEST12345698765432', ['iban']), [['iban', 'GB82WEST12345698765432']]);
  assert.deepEqual(hits('FR1420041010050500013M02606', ['iban']), [['iban', 'FR1420041010050500013M02606']]);
  for (const text of ['DE89370400440532013001', 'GB82WEST1234569876543', 'ZZ89370400440532013000', 'DE8937040044053201300']) {
    assert.deepEqual(hits(text, ['iban']), [], text);
  }
});

test('AWS keys: access key ids anywhere, secret keys only with context', () => {
  assert.deepEqual(hits('key AKIAIOSFODNN7EXAMPLE', ['aws_key']), [['aws_key', 'AKIAIOSFODNN7EXAMPLE']]);
  assert.deepEqual(hits('ASIAY34FZKBOKMUTVV7A', ['aws_key']), [['aws_key', 'ASIAY34FZKBOKMUTVV7A']]);
  const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
  assert.deepEqual(hits(`aws_secret_access_key = ${secret}`, ['aws_key']), [['aws_key', secret]]);
  assert.deepEqual(hits(`{"AWS": {"secret": "${secret}"}}`, ['aws_key']), [['aws_key', secret]]);
  assert.deepEqual(hits(secret, ['aws_key'], true), [['aws_key', secret]]);
  // Without context a 40-character string is not assumed to be a secret; a git SHA never is.
  assert.deepEqual(hits(`blob ${secret}`, ['aws_key']), []);
  assert.deepEqual(hits('aws commit 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12', ['aws_key']), []);
  assert.deepEqual(hits('AKIAIOSFODNN7EXAMPL', ['aws_key']), []);
  assert.deepEqual(hits('XAKIAIOSFODNN7EXAMPLE', ['aws_key']), []);
});

test('GitHub, Slack and Stripe tokens', () => {
  const gh = 'ghp_' + 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8';
  assert.deepEqual(hits(`token=${gh}`, ['github_token']), [['github_token', gh]]);
  const pat = 'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ';
  assert.deepEqual(hits(pat, ['github_token']), [['github_token', pat]]);
  assert.deepEqual(hits('ghp_short', ['github_token']), []);
  assert.deepEqual(hits('xoxb-123456789012-abcdefABCDEF', ['slack_token']), [['slack_token', 'xoxb-123456789012-abcdefABCDEF']]);
  assert.deepEqual(hits('xoxz-123456789012-abcdef', ['slack_token']), []);
  assert.deepEqual(hits('sk_live_4eC39HqLyjWDarjtT1zdp7dc', ['stripe_key']), [['stripe_key', 'sk_live_4eC39HqLyjWDarjtT1zdp7dc']]);
  assert.deepEqual(hits('rk_test_4eC39HqLyjWDarjtT1zdp7dc', ['stripe_key']), [['stripe_key', 'rk_test_4eC39HqLyjWDarjtT1zdp7dc']]);
  assert.deepEqual(hits('pk_live_4eC39HqLyjWDarjtT1zdp7dc task_live_x', ['stripe_key']), []);
});

test('JWT: header must decode to JSON with alg', () => {
  const jwt = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';
  assert.deepEqual(hits(`Authorization: Bearer ${jwt}`, ['jwt']), [['jwt', jwt]]);
  const none = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.';
  assert.deepEqual(hits(none, ['jwt']), [['jwt', none]]);
  // eyJ… that is not a JSON header with alg
  const noAlg = Buffer.from('{"typ":"JWT"}').toString('base64url') + '.eyJzdWIiOiJ4In0.abc';
  assert.deepEqual(hits(noAlg, ['jwt']), []);
  assert.deepEqual(hits('eyJnotbase64.eyJx.y', ['jwt']), []);
});

test('PEM private keys, whole or truncated, raw or inside JSON', () => {
  const pem = '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----';
  assert.deepEqual(hits(`key:\n${pem}\nrest`, ['private_key']), [['private_key', pem]]);
  const json = '{"k":"-----BEGIN PRIVATE KEY-----\\nMIIEvQ\\n-----END PRIVATE KEY-----\\n","n":1}';
  assert.deepEqual(hits(json, ['private_key']).map(([, t]) => t), ['-----BEGIN PRIVATE KEY-----\\nMIIEvQ\\n-----END PRIVATE KEY-----']);
  const truncated = '{"k":"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1r","n":1}';
  assert.deepEqual(hits(truncated, ['private_key']).map(([, t]) => t), ['-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1r']);
  assert.deepEqual(hits('-----BEGIN PGP PRIVATE KEY BLOCK-----\nxyz\n-----END PGP PRIVATE KEY BLOCK-----', ['private_key']).length, 1);
  assert.deepEqual(hits('-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----', ['private_key']), []);
  assert.deepEqual(hits('-----BEGIN CERTIFICATE-----', ['private_key']), []);
});

test('high entropy: only in secret-named columns or under secret-named keys', () => {
  const token = 'Zx8vQ2pL9mN4rT6yB1cK3dF7hJ0';
  assert.deepEqual(hits(token, ['high_entropy'], true), [['high_entropy', token]]);
  assert.deepEqual(hits(token, ['high_entropy'], false), []);
  assert.deepEqual(hits(`{"api_token": "${token}"}`, ['high_entropy']), [['high_entropy', token]]);
  assert.deepEqual(hits(`password=${token}&user=x`, ['high_entropy']), [['high_entropy', token]]);
  assert.deepEqual(hits(`{"comment": "${token}"}`, ['high_entropy']), []);
  // Low entropy, too short, or one character class: not flagged even in a secret column.
  for (const text of ['correcthorsebatterystaple', 'aaaaaaaaaaaaaaaaaaaaaaaa1', 'Zx8vQ2pL9mN4', '2024-01-15T10:30:00.000Z']) {
    assert.deepEqual(hits(text, ['high_entropy'], true), [], text);
  }
});

test('secret-looking names', () => {
  for (const n of ['password', 'password_hash', 'api_key', 'apiKey', 'client_secret', 'accessToken', 'ssh_key', 'credentials', 'pwd']) assert.ok(looksLikeSecretName(n), n);
  for (const n of ['email', 'monkey', 'keyboard', 'author', 'name', 'turkey_count', 'description']) assert.ok(!looksLikeSecretName(n), n);
});

test('timestamps, UUIDs and ordinary numbers trip no detector at all', () => {
  const text =
    'id=550e8400-e29b-41d4-a716-446655440000 at 2024-01-15 10:30:00+00 amount 1234.56 ' +
    'qty 123456789012 phone +1 (555) 123-4567 version 15.4 order #20240115103000 ip 10.0.0.1';
  assert.deepEqual(hits(text), []);
});

test('several detectors in one value keep order and never overlap', () => {
  const text = 'mail a@example.com card 4111111111111111 ssn 123-45-6789 key AKIAIOSFODNN7EXAMPLE';
  assert.deepEqual(
    hits(text).map(([d]) => d),
    ['email', 'credit_card', 'us_ssn', 'aws_key'],
  );
});

test('scanning is linear on hostile input', () => {
  // Patterns that make backtracking regexes blow up: long runs of near-matches.
  const inputs = ['a'.repeat(200_000) + '@', '@'.repeat(200_000), '4'.repeat(200_000), '4 '.repeat(100_000), 'eyJ.'.repeat(50_000), '-----BEGIN '.repeat(20_000), 'x.'.repeat(100_000) + '@'];
  for (const input of inputs) {
    const t0 = performance.now();
    findSpans(input, ALL_DETECTORS, { secretColumn: true });
    const ms = performance.now() - t0;
    assert.ok(ms < 1500, `${input.slice(0, 12)}… took ${ms.toFixed(0)} ms`);
  }
});

test('a value right after an escape (JSON, COPY text) starts a word: \\nAKIA…, \\tcard, \\u0020email', () => {
  assert.deepEqual(hits(String.raw`{"log":"line one\nAKIAIOSFODNN7EXAMPLE"}`, ['aws_key']), [['aws_key', 'AKIAIOSFODNN7EXAMPLE']]);
  assert.deepEqual(hits(String.raw`a\t4111111111111111`, ['credit_card']), [['credit_card', '4111111111111111']]);
  assert.deepEqual(hits(String.raw`x\u0020AKIAIOSFODNN7EXAMPLE`, ['aws_key']), [['aws_key', 'AKIAIOSFODNN7EXAMPLE']]);
  // An escaped backslash is no escape: `\\n` then the key is still inside the word `nAKIA…`.
  assert.deepEqual(hits(String.raw`x\\nAKIAIOSFODNN7EXAMPLE`, ['aws_key']), []);
  // Not an escape letter: the word goes on.
  assert.deepEqual(hits(String.raw`x\qAKIAIOSFODNN7EXAMPLE`, ['aws_key']), []);
});
