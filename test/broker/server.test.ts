/**
 * The broker's HTTPS service end to end: a real broker on 127.0.0.1:0 with generated
 * keys, a real OIDC test issuer, and undici trusting exactly the broker's certificate.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, sign as edSign, verify as edVerify } from 'node:crypto';
import { connect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { SignJWT, calculateJwkThumbprint } from 'jose';
import { startBroker } from '../../src/broker/server.js';
import type { RunningBroker } from '../../src/broker/server.js';
import type { Identity } from '../../src/broker/identity/types.js';
import type { ApiErrorBody, BrokerDiscovery, TargetsResponse, TokenRejectionReason, WhoAmI } from '../../src/shared/api-types.js';
import { VERSION } from '../../src/shared/version.js';
import { startTestIssuer } from '../helpers/test-issuer.js';
import type { TestIssuer } from '../helpers/test-issuer.js';
import { brokerClient, captureLogger, makeBrokerConfig, makeTempDir, waitFor } from './fixtures.js';
import type { BrokerClient, CapturedLog, TempDir } from './fixtures.js';
import { POLICIES, TARGETS } from './policy-fixture.js';

const DOWN_CI_ISSUER = 'http://127.0.0.1:1/ci-down';

describe('broker HTTPS service', () => {
  let tmp: TempDir;
  let idp: TestIssuer;
  let ciIdp: TestIssuer;
  let broker: RunningBroker;
  let client: BrokerClient;
  let log: CapturedLog;
  const upgrades: Identity[] = [];
  /** Every token this file sends, to check none reached the log. */
  const tokensSent: string[] = [];

  const token = async (...args: Parameters<TestIssuer['sign']>): Promise<string> => {
    const t = await idp.sign(...args);
    tokensSent.push(t);
    return t;
  };

  before(async () => {
    tmp = await makeTempDir();
    [idp, ciIdp] = await Promise.all([startTestIssuer(), startTestIssuer({ alg: 'EdDSA', audience: 'agentgate-ci' })]);
    log = captureLogger('debug');
    const config = makeBrokerConfig(tmp.path, {
      targets: TARGETS,
      policies: POLICIES,
      identity: {
        issuer: idp.issuer,
        ciIssuers: [
          { issuer: ciIdp.issuer, audience: 'agentgate-ci', subject: 'repo:acme/*', groups: ['ci'] },
          { issuer: DOWN_CI_ISSUER, audience: 'agentgate', subject: '*', groups: ['ci'] },
        ],
      },
    });
    broker = await startBroker(config, {
      port: 0,
      logger: log.logger,
      jwksCooldownMs: 60_000,
      upgradeHandlers: {
        '/v1/tunnel': ({ identity, socket }) => {
          upgrades.push(identity);
          socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: agentgate-test\r\n\r\n');
          socket.end('hello ' + identity.sub);
        },
      },
    });
    client = brokerClient(broker.keys.tlsCertPem);
  });

  after(async () => {
    await client?.close();
    await broker?.close();
    await Promise.all([idp?.close(), ciIdp?.close()]);
    await tmp?.remove();
  });

  test('url, port and fingerprint describe the listener', () => {
    assert.equal(broker.url, `https://127.0.0.1:${broker.port}`);
    assert.ok(broker.port > 0);
    assert.match(broker.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.equal(broker.fingerprint, broker.keys.tlsFingerprint);
  });

  test('GET /healthz', async () => {
    const r = await client.get(`${broker.url}/healthz`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { ok: true });
    assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
  });

  test('GET /.well-known/agentgate describes the broker and its IdP', async () => {
    const r = await client.get<BrokerDiscovery>(`${broker.url}/.well-known/agentgate`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, {
      broker_version: VERSION,
      issuer: idp.issuer,
      audience: 'agentgate',
      client_id: 'agentgate-cli',
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      tunnel_endpoint: `${broker.url}/v1/tunnel`,
      jwks_uri: `${broker.url}/.well-known/jwks.json`,
      ssh_host_key_fingerprint: broker.keys.sshHostKeyFingerprint,
    });
  });

  test('GET /.well-known/jwks.json publishes only the receipt key, and it verifies receipt signatures', async () => {
    const r = await client.get<{ keys: Record<string, string>[] }>(`${broker.url}/.well-known/jwks.json`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('cache-control'), 'max-age=300');
    assert.equal(r.body.keys.length, 1);
    const jwk = r.body.keys[0]!;
    assert.deepEqual(Object.keys(jwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
    assert.equal(jwk['kid'], await calculateJwkThumbprint({ kty: jwk['kty']!, crv: jwk['crv']!, x: jwk['x']! }));
    const payload = Buffer.from('{"_type":"https://in-toto.io/Statement/v1"}');
    const signature = edSign(null, payload, broker.keys.receiptPrivateKey);
    const pub = createPublicKey({ key: { kty: jwk['kty'], crv: jwk['crv'], x: jwk['x'] }, format: 'jwk' });
    assert.equal(edVerify(null, payload, pub, signature), true);
    assert.equal(edVerify(null, Buffer.from('tampered'), pub, signature), false);
  });

  test('GET /v1/whoami with a good token: groups and kind', async () => {
    const human = await client.get<WhoAmI>(`${broker.url}/v1/whoami`, { token: await token({ sub: 'dana', name: 'Dana', email: 'dana@example.com', groups: ['dba'] }) });
    assert.equal(human.status, 200);
    const { expires_at, ...rest } = human.body;
    assert.deepEqual(rest, { sub: 'dana', name: 'Dana', email: 'dana@example.com', groups: ['dba'], kind: 'human', issuer: idp.issuer, broker: broker.url });
    assert.ok(expires_at > Date.now() / 1000 && expires_at < Date.now() / 1000 + 400);

    const agent = await client.get<WhoAmI>(`${broker.url}/v1/whoami`, { token: await token({ sub: 'bot-1', groups: ['ai-agents'] }) });
    assert.equal(agent.status, 200);
    assert.equal(agent.body.kind, 'agent');
    assert.deepEqual(agent.body.groups, ['ai-agents']);
  });

  test('GET /v1/whoami with a CI token whose subject matches', async () => {
    const t = await ciIdp.sign({ sub: 'repo:acme/api:ref:refs/heads/main' });
    tokensSent.push(t);
    const r = await client.get<WhoAmI>(`${broker.url}/v1/whoami`, { token: t });
    assert.equal(r.status, 200);
    assert.equal(r.body.kind, 'ci');
    assert.deepEqual(r.body.groups, ['ci']);
    assert.equal(r.body.issuer, ciIdp.issuer);
  });

  test('GET /v1/targets lists what the policies let this identity reach', async () => {
    const agent = await client.get<TargetsResponse>(`${broker.url}/v1/targets`, { token: await token({ sub: 'bot-1', groups: ['ai-agents'] }) });
    assert.equal(agent.status, 200);
    assert.deepEqual(
      agent.body.targets.map((t) => [t.name, t.type, t.policies]),
      [
        ['k8s-prod', 'kubernetes', ['agents-k8s']],
        ['pg-prod', 'postgres', ['agents-read']],
        ['pg-staging', 'postgres', ['agents-any-pg']],
      ],
    );
    assert.deepEqual(agent.body.targets[1]?.allows, ['select, explain: allow', 'insert, update, delete: review by 1 of dba', 'everything else: deny']);

    const dba = await client.get<TargetsResponse>(`${broker.url}/v1/targets`, { token: await token({ sub: 'dana', groups: ['dba'] }) });
    assert.deepEqual(
      dba.body.targets.map((t) => t.name),
      ['pg-prod', 'pg-staging'],
    );
    const outsider = await client.get<TargetsResponse>(`${broker.url}/v1/targets`, { token: await token({ sub: 'eve', groups: ['marketing'] }) });
    assert.deepEqual(outsider.body, { targets: [] });
  });

  describe('token rejections', () => {
    const now = (): number => Math.floor(Date.now() / 1000);

    const cases: { name: string; reason: TokenRejectionReason; make: () => Promise<string | undefined>; hint?: RegExp; message?: RegExp }[] = [
      { name: 'no token', reason: 'missing_token', make: async () => undefined, hint: /agentgate login/ },
      { name: 'expired', reason: 'token_expired', make: () => token({ iat: now() - 7200, exp: now() - 3600 }), hint: /^run: agentgate login$/, message: /expired at \d{4}-\d\d-\d\dT.*ago/ },
      { name: 'not yet valid', reason: 'token_not_yet_valid', make: () => token({ nbf: now() + 600 }), message: /not valid yet until/ },
      {
        name: 'wrong audience',
        reason: 'wrong_audience',
        make: () => token({ aud: 'someone-else' }),
        hint: /^the broker expects audience "agentgate"; ask your IdP admin/,
        message: /"someone-else".*expects "agentgate"/,
      },
      { name: 'wrong issuer', reason: 'wrong_issuer', make: () => token({ iss: 'https://evil.example' }), message: /evil\.example/ },
      {
        name: 'alg none',
        reason: 'unsupported_alg',
        make: async () => {
          const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
          const t = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: idp.issuer, aud: 'agentgate', sub: 'mallory', exp: now() + 300 })}.`;
          tokensSent.push(t);
          return t;
        },
        message: /"none"/,
      },
      {
        name: 'HS256 keyed with the public key',
        reason: 'unsupported_alg',
        make: async () => {
          const secret = Buffer.from(await idp.publicKeyPem());
          const t = await new SignJWT({ sub: 'mallory', groups: ['ai-agents'] })
            .setProtectedHeader({ alg: 'HS256', kid: idp.kid })
            .setIssuer(idp.issuer)
            .setAudience('agentgate')
            .setExpirationTime('5m')
            .sign(secret);
          tokensSent.push(t);
          return t;
        },
        message: /HS256/,
      },
      { name: 'unsigned garbage', reason: 'malformed_token', make: async () => 'definitely-not-a-jwt' },
      { name: 'three parts of garbage', reason: 'malformed_token', make: async () => 'eyJub3Q.anNvbg.x' },
      { name: 'signature by another key', reason: 'bad_signature', make: async () => tamper(await token({ sub: 'alice' })) },
      { name: 'unknown kid', reason: 'unknown_key', make: () => token({ sub: 'rotated' }, { unpublished: true }) },
      {
        name: 'CI subject outside the glob',
        reason: 'subject_not_allowed',
        make: async () => {
          const t = await ciIdp.sign({ sub: 'repo:evil/api:ref:refs/heads/main' });
          tokensSent.push(t);
          return t;
        },
      },
    ];

    for (const c of cases) {
      test(`${c.name} → 401 ${c.reason}`, async () => {
        const t = await c.make();
        const r = await client.get<ApiErrorBody>(`${broker.url}/v1/whoami`, t === undefined ? {} : { token: t });
        assert.equal(r.status, 401);
        assert.equal(r.body.error.code, 'AG_TOKEN_REJECTED');
        assert.equal(r.body.error.reason, c.reason);
        assert.ok(r.body.error.message.length > 0);
        assert.ok(r.body.error.hint && r.body.error.hint.length > 0);
        if (c.hint) assert.match(r.body.error.hint ?? '', c.hint);
        if (c.message) assert.match(r.body.error.message, c.message);
        const challenge = r.headers.get('www-authenticate') ?? '';
        if (c.reason === 'missing_token') assert.equal(challenge, 'Bearer realm="agentgate"');
        else assert.match(challenge, /^Bearer realm="agentgate", error="invalid_token", error_description="[^"]*"$/);
        if (t !== undefined) assert.ok(!r.body.error.message.includes(t) && !(r.body.error.hint ?? '').includes(t), 'the error echoes the token');
      });
    }

    test('a non-Bearer Authorization header is missing_token', async () => {
      const r = await client.get<ApiErrorBody>(`${broker.url}/v1/targets`, { headers: { authorization: 'Basic YWxpY2U6cHc=' } });
      assert.equal(r.status, 401);
      assert.equal(r.body.error.reason, 'missing_token');
    });

    test('an unreachable issuer is 503 issuer_unreachable, not 401', async () => {
      const t = await idp.sign({ iss: DOWN_CI_ISSUER, sub: 'x' });
      tokensSent.push(t);
      const r = await client.get<ApiErrorBody>(`${broker.url}/v1/whoami`, { token: t });
      assert.equal(r.status, 503);
      assert.equal(r.body.error.reason, 'issuer_unreachable');
      assert.equal(r.body.error.code, 'AG_ISSUER_UNREACHABLE');
      assert.equal(r.headers.get('www-authenticate'), null);
    });
  });

  test('unknown paths are 404 and wrong methods 405, as JSON', async () => {
    const nf = await client.get<ApiErrorBody>(`${broker.url}/v1/nope`);
    assert.equal(nf.status, 404);
    assert.equal(nf.body.error.code, 'AG_NOT_FOUND');
    const na = await client.get<ApiErrorBody>(`${broker.url}/v1/whoami`, { method: 'DELETE' });
    assert.equal(na.status, 405);
    assert.equal(na.body.error.code, 'AG_METHOD_NOT_ALLOWED');
    assert.equal(na.headers.get('allow'), 'GET');
  });

  test('oversized request headers are refused', async () => {
    const r = await client.get(`${broker.url}/healthz`, { headers: { 'x-filler': 'a'.repeat(20_000) } });
    assert.equal(r.status, 431);
  });

  test('HTTP Upgrade on /v1/tunnel: authenticated, then handed to the handler', async () => {
    const t = await token({ sub: 'tunnel-user', groups: ['ai-agents'] });
    const ok = await rawUpgrade(broker, '/v1/tunnel', t);
    assert.match(ok, /^HTTP\/1\.1 101 /);
    assert.match(ok, /hello tunnel-user$/);
    assert.equal(upgrades.at(-1)?.sub, 'tunnel-user');
    assert.equal(upgrades.at(-1)?.kind, 'agent');

    const count = upgrades.length;
    const denied = await rawUpgrade(broker, '/v1/tunnel', await token({ exp: Math.floor(Date.now() / 1000) - 3600 }));
    assert.match(denied, /^HTTP\/1\.1 401 Unauthorized\r\n/);
    assert.match(denied, /www-authenticate: Bearer realm="agentgate", error="invalid_token"/i);
    const body = JSON.parse(denied.slice(denied.indexOf('\r\n\r\n') + 4)) as ApiErrorBody;
    assert.equal(body.error.reason, 'token_expired');
    assert.equal(upgrades.length, count, 'the handler never saw the rejected request');

    const anonymous = await rawUpgrade(broker, '/v1/tunnel', undefined);
    assert.match(anonymous, /^HTTP\/1\.1 401 /);
    const elsewhere = await rawUpgrade(broker, '/v1/other', t);
    assert.match(elsewhere, /^HTTP\/1\.1 404 /);
    assert.equal(upgrades.length, count);
  });

  test('one log line per request with method, path, status, ms, sub — and no token anywhere', async () => {
    const t = await token({ sub: 'logged-user', groups: ['staff'] });
    await client.get(`${broker.url}/v1/whoami?access_token=${t}`, { token: t });
    const line = await waitFor('the request log line', () =>
      log.records().find((r) => r['msg'] === 'request' && r['sub'] === 'logged-user'),
    );
    assert.equal(line['method'], 'GET');
    assert.equal(line['path'], '/v1/whoami');
    assert.equal(line['status'], 200);
    assert.equal(typeof line['ms'], 'number');
    const rejectedLine = log.records().find((r) => r['msg'] === 'request' && r['status'] === 401 && r['reason'] === 'wrong_audience');
    assert.ok(rejectedLine, 'rejected requests are logged too, with the reason');
    assert.equal(rejectedLine['sub'], undefined);

    const text = log.text();
    assert.ok(tokensSent.length > 10);
    for (const sent of tokensSent) assert.ok(!text.includes(sent), 'a token reached the log');
    // Not even the signature part of one.
    for (const sent of tokensSent) {
      const sig = sent.split('.')[2];
      if (sig && sig.length > 20) assert.ok(!text.includes(sig), 'a token signature reached the log');
    }
    assert.ok(!/authorization/i.test(text), 'the Authorization header was logged');
  });
});

describe('broker lifecycle', () => {
  test('close() stops the listener even with an idle keep-alive connection open', async () => {
    const tmp = await makeTempDir();
    const broker = await startBroker(makeBrokerConfig(tmp.path), { port: 0, logger: captureLogger().logger });
    const client = brokerClient(broker.keys.tlsCertPem);
    try {
      assert.equal((await client.get(`${broker.url}/healthz`)).status, 200);
      await broker.close();
      await assert.rejects(client.get(`${broker.url}/healthz`));
    } finally {
      await client.close();
      await tmp.remove();
    }
  });

  test('a second start on the same state dir keeps the fingerprint', async () => {
    const tmp = await makeTempDir();
    try {
      const config = makeBrokerConfig(tmp.path);
      const a = await startBroker(config, { port: 0, logger: captureLogger().logger });
      await a.close();
      const b = await startBroker(config, { port: 0, logger: captureLogger().logger });
      await b.close();
      assert.equal(b.fingerprint, a.fingerprint);
    } finally {
      await tmp.remove();
    }
  });
});

/** Flips a bit in the signature: same header and claims, a signature no key made. */
function tamper(jwt: string): string {
  const [h, p, s] = jwt.split('.') as [string, string, string];
  const sig = Buffer.from(s, 'base64url');
  sig[10] = (sig[10] ?? 0) ^ 0x01;
  return `${h}.${p}.${sig.toString('base64url')}`;
}

/** Sends an Upgrade request over TLS and returns everything the broker wrote until it closed. */
async function rawUpgrade(broker: RunningBroker, path: string, bearer: string | undefined): Promise<string> {
  const socket: TLSSocket = connect({ host: '127.0.0.1', port: broker.port, ca: broker.keys.tlsCertPem });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  const lines = [`GET ${path} HTTP/1.1`, `host: 127.0.0.1:${broker.port}`, 'connection: upgrade', 'upgrade: agentgate-test'];
  if (bearer !== undefined) lines.push(`authorization: Bearer ${bearer}`);
  socket.write(lines.join('\r\n') + '\r\n\r\n');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  await new Promise<void>((resolve, reject) => {
    socket.once('end', resolve);
    socket.once('close', () => resolve());
    socket.once('error', reject);
  });
  socket.destroy();
  return Buffer.concat(chunks).toString('utf8');
}
