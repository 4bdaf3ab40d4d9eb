/** CLI settings: broker URL rules and precedence (flag > environment > saved settings). */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { normalizeBrokerUrl, openSettings, resolveBroker } from '../../src/client/settings.js';
import { UsageError } from '../../src/errors.js';

// Settings are read from $XDG_CONFIG_HOME: point it at a private folder before first use.
const home = mkdtempSync(join(tmpdir(), 'agentgate-settings-'));
process.env['XDG_CONFIG_HOME'] = home;

after(() => rmSync(home, { recursive: true, force: true }));

const FP = 'AB:'.repeat(31) + 'AB';

test('broker URLs: https only, no trailing slash, no credentials or query', () => {
  assert.equal(normalizeBrokerUrl('https://broker.example.com/'), 'https://broker.example.com');
  assert.equal(normalizeBrokerUrl(' https://Broker.Example.com:8443/agentgate/ '), 'https://broker.example.com:8443/agentgate');
  assert.throws(() => normalizeBrokerUrl('http://broker.example.com'), (e: unknown) => e instanceof UsageError && /over https/.test(e.message));
  assert.throws(() => normalizeBrokerUrl('broker.example.com'), UsageError);
  assert.throws(() => normalizeBrokerUrl('https://u:p@broker.example.com'), UsageError);
  assert.throws(() => normalizeBrokerUrl('https://broker.example.com/?x=1'), UsageError);
});

test('nothing configured: a usage error that says how to log in', () => {
  assert.throws(
    () => resolveBroker({}, {}),
    (e: unknown) => e instanceof UsageError && e.message === 'no broker configured' && /agentgate login --broker https:\/\/…/.test(e.hint ?? ''),
  );
  assert.equal(resolveBroker({}, {}, false), undefined);
});

test('flags win over environment twins, which win over saved settings', () => {
  openSettings().saveBroker('https://saved.example', { fingerprint: FP, ca: '/etc/saved-ca.pem' });
  const file = join(home, 'agentgate', 'config.json');
  assert.equal(statSync(join(home, 'agentgate')).mode & 0o777, 0o700);
  assert.equal(JSON.parse(readFileSync(file, 'utf8')).defaultBroker, 'https://saved.example');

  const saved = resolveBroker({}, {});
  assert.deepEqual(saved, { url: 'https://saved.example', alternates: [], trust: { ca: '/etc/saved-ca.pem', fingerprint: FP }, from: 'settings' });

  const env = { AGENTGATE_BROKER: 'https://env.example/', AGENTGATE_CA: 'env-ca.pem', AGENTGATE_FINGERPRINT: 'cd'.repeat(32) };
  const fromEnv = resolveBroker({}, env);
  assert.equal(fromEnv.url, 'https://env.example');
  assert.equal(fromEnv.from, 'env');
  assert.equal(fromEnv.trust.ca, resolve('env-ca.pem'), 'a relative CA path is made absolute');
  assert.equal(fromEnv.trust.fingerprint, 'CD:'.repeat(31) + 'CD', 'fingerprints are normalized');

  const fromFlags = resolveBroker({ broker: 'https://flag.example', fingerprint: `SHA256:${'ef'.repeat(32)}` }, env);
  assert.equal(fromFlags.url, 'https://flag.example');
  assert.equal(fromFlags.from, 'flag');
  assert.equal(fromFlags.trust.fingerprint, 'EF:'.repeat(31) + 'EF');
  assert.equal(fromFlags.trust.ca, resolve('env-ca.pem'), 'unflagged values still come from the environment');

  // A saved broker's trust applies when that broker is named by flag or env, too.
  const named = resolveBroker({ broker: 'https://saved.example/' }, {});
  assert.equal(named.trust.fingerprint, FP);

  // Several brokers on one store: the first is dialed first, the rest are the alternates.
  const several = resolveBroker({ broker: 'https://saved.example/, https://b.example:8443/' }, {});
  assert.equal(several.url, 'https://saved.example');
  assert.deepEqual(several.alternates, ['https://b.example:8443']);
  assert.equal(several.trust.fingerprint, FP);
  assert.throws(() => resolveBroker({ broker: 'https://a.example,http://b.example' }, {}), UsageError);
});
