/**
 * The broker HTTP client against real local servers: TLS trust (system CAs, --ca, pinned
 * fingerprint), a real CONNECT proxy in between, and how answers map to our errors.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect as netConnect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { brokerApi, createBrokerDispatcher, fetchDiscovery } from '../../src/client/broker-http.js';
import { AgentgateError, AuthError, BrokerError, ExitCode, UsageError } from '../../src/errors.js';
import type { ApiErrorBody, BrokerDiscovery, TokenRejectionReason } from '../../src/shared/api-types.js';
import { makeTestCert } from '../helpers/tls.js';

const DISCOVERY: BrokerDiscovery = {
  broker_version: '0.0.0-test',
  issuer: 'https://idp.example.test',
  audience: 'agentgate',
  client_id: 'agentgate-cli',
  scopes: ['openid', 'offline_access'],
  tunnel_endpoint: 'https://broker.invalid/v1/tunnel',
  jwks_uri: 'https://broker.invalid/.well-known/jwks.json',
};

let broker: HttpsServer;
let brokerUrl: string;
let fingerprint: string;
let caFile: string;
let dir: string;
/** The 401 reason the fake broker answers /v1/whoami with (undefined = 200). */
let reason: TokenRejectionReason | undefined;
let lastAuthorization: string | undefined;

let proxy: HttpServer;
let proxyUrl: string;
let tunnels = 0;
let lastProxyAuthorization: string | undefined;

before(async () => {
  const { cert, key } = makeTestCert();
  fingerprint = new X509Certificate(cert).fingerprint256;
  dir = mkdtempSync(join(tmpdir(), 'agentgate-brokerhttp-'));
  caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, cert);

  broker = createHttpsServer({ cert, key }, (req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/.well-known/agentgate') return void res.end(JSON.stringify(DISCOVERY));
    if (req.url === '/v1/whoami') {
      lastAuthorization = req.headers.authorization;
      if (reason) {
        const body: ApiErrorBody = { error: { code: 'AG_UNAUTHENTICATED', message: `token refused (${reason})`, reason } };
        res.statusCode = 401;
        return void res.end(JSON.stringify(body));
      }
      return void res.end(JSON.stringify({ sub: 'alice', groups: [], kind: 'human', issuer: DISCOVERY.issuer, expires_at: 1, broker: 'x' }));
    }
    if (req.url === '/huge') return void res.end(JSON.stringify({ pad: 'x'.repeat(2 * 1024 * 1024) }));
    if (req.url === '/v1/boom') {
      res.statusCode = 503;
      return void res.end(JSON.stringify({ error: { code: 'AG_STORE_DOWN', message: 'store unavailable', hint: 'retry in a minute' } }));
    }
    res.statusCode = 404;
    res.end('not here');
  });
  await new Promise<void>((resolve) => broker.listen(0, '127.0.0.1', resolve));
  brokerUrl = `https://127.0.0.1:${(broker.address() as AddressInfo).port}`;

  // A minimal CONNECT proxy that records what it was asked.
  proxy = createHttpServer((_req, res) => res.writeHead(405).end());
  proxy.on('connect', (req, socket, head) => {
    tunnels++;
    lastProxyAuthorization = req.headers['proxy-authorization'];
    const [host, port] = (req.url ?? '').split(':');
    const upstream = netConnect(Number(port), host ?? '127.0.0.1', () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
});

after(async () => {
  broker?.closeAllConnections();
  proxy?.closeAllConnections();
  await Promise.all([
    new Promise<void>((resolve) => (broker ? broker.close(() => resolve()) : resolve())),
    new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve())),
  ]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function discover(trust: Parameters<typeof createBrokerDispatcher>[0], env: NodeJS.ProcessEnv = {}): Promise<BrokerDiscovery> {
  const d = createBrokerDispatcher(trust, { env });
  try {
    return await fetchDiscovery(brokerUrl, d);
  } finally {
    await d.close();
  }
}

function isError(code: string, exitCode: number = ExitCode.error) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof AgentgateError, `expected an AgentgateError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.exitCode, exitCode);
    return true;
  };
}

test('system CAs refuse the self-signed broker with a hint about --ca / --fingerprint', async () => {
  await assert.rejects(discover({}), (err: unknown) => {
    assert.ok(err instanceof BrokerError);
    assert.equal(err.code, 'AG_BROKER_TLS');
    assert.match(err.message, /cannot verify the TLS certificate of https:\/\/127\.0\.0\.1:\d+: DEPTH_ZERO_SELF_SIGNED_CERT/);
    assert.match(err.hint ?? '', /--fingerprint SHA256:… .*--ca FILE/);
    return true;
  });
});

test('--ca trusts the broker certificate; an unreadable CA file is a usage error', async () => {
  assert.equal((await discover({ ca: caFile })).audience, 'agentgate');
  await assert.rejects(discover({ ca: join(dir, 'missing.pem') }), (err: unknown) => err instanceof UsageError && /cannot read the CA file .*ENOENT/.test(err.message));
});

test('a pinned fingerprint in any accepted form lets the connection through', async () => {
  const plainHex = fingerprint.replace(/:/g, '').toLowerCase();
  for (const fp of [fingerprint, plainHex, `SHA256:${plainHex}`]) {
    assert.equal((await discover({ fingerprint: fp })).client_id, 'agentgate-cli', fp);
  }
});

test('a pin that does not match fails closed, naming both fingerprints', async () => {
  const wrong = '11'.repeat(32);
  await assert.rejects(discover({ fingerprint: wrong }), (err: unknown) => {
    assert.ok(err instanceof BrokerError);
    assert.equal(err.code, 'AG_BROKER_FINGERPRINT_MISMATCH');
    assert.ok(err.message.includes(fingerprint), 'names the certificate actually presented');
    assert.ok(err.message.includes('11:11:11'), 'names the pin');
    return true;
  });
  // A pin wins over a CA that would otherwise accept the certificate.
  await assert.rejects(discover({ fingerprint: wrong, ca: caFile }), isError('AG_BROKER_FINGERPRINT_MISMATCH'));
  await assert.rejects(discover({ fingerprint: 'not-a-fingerprint' }), (err: unknown) => err instanceof UsageError);
});

test('through an HTTPS_PROXY CONNECT tunnel, pinning and --ca still apply; NO_PROXY bypasses it', async () => {
  const env = { HTTPS_PROXY: proxyUrl };
  const before = tunnels;
  assert.equal((await discover({ fingerprint }, env)).issuer, DISCOVERY.issuer);
  assert.equal(tunnels, before + 1, 'went through the proxy');
  await assert.rejects(discover({ fingerprint: '22'.repeat(32) }, env), isError('AG_BROKER_FINGERPRINT_MISMATCH'));
  assert.equal((await discover({ ca: caFile }, env)).issuer, DISCOVERY.issuer);
  await assert.rejects(discover({}, env), isError('AG_BROKER_TLS'));
  const direct = tunnels;
  assert.equal((await discover({ fingerprint }, { ...env, NO_PROXY: '127.0.0.1' })).issuer, DISCOVERY.issuer);
  assert.equal(tunnels, direct, 'NO_PROXY: no tunnel');
  const withUser = proxyUrl.replace('http://', 'http://u:p@');
  assert.equal((await discover({ fingerprint }, { HTTPS_PROXY: withUser })).issuer, DISCOVERY.issuer);
  assert.equal(lastProxyAuthorization, `Basic ${Buffer.from('u:p').toString('base64')}`);
});

test('a proxy that refuses the tunnel is reported as such', async () => {
  const refusing = createHttpServer();
  refusing.on('connect', (_req, socket) => socket.end('HTTP/1.1 407 Proxy Authentication Required\r\n\r\n'));
  await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve));
  try {
    const env = { HTTPS_PROXY: `http://127.0.0.1:${(refusing.address() as AddressInfo).port}` };
    await assert.rejects(discover({ fingerprint }, env), (err: unknown) => {
      assert.ok(err instanceof BrokerError);
      assert.equal(err.code, 'AG_PROXY_REFUSED');
      assert.match(err.message, /refused to open a tunnel to 127\.0\.0\.1:\d+: HTTP 407/);
      assert.match(err.hint ?? '', /credentials/);
      return true;
    });
  } finally {
    refusing.closeAllConnections();
    await new Promise<void>((resolve) => refusing.close(() => resolve()));
  }
});

test('each 401 reason becomes an AuthError (exit 3) with its own advice', async () => {
  const d = createBrokerDispatcher({ fingerprint }, { env: {} });
  const api = brokerApi(brokerUrl, d, DISCOVERY);
  const expectations: Array<[TokenRejectionReason, RegExp]> = [
    ['token_expired', /^run: agentgate login$/],
    ['wrong_audience', /audience "agentgate"/],
    ['wrong_issuer', /https:\/\/idp\.example\.test/],
    ['token_not_yet_valid', /clock/],
    ['malformed_token', /not a JWT/],
    ['unknown_key', /not signed by a key the broker trusts/],
    ['subject_not_allowed', /operator/],
    ['issuer_unreachable', /cannot reach the IdP/],
  ];
  try {
    for (const [r, advice] of expectations) {
      reason = r;
      await assert.rejects(api.whoami('token-value-for-tests'), (err: unknown) => {
        assert.ok(err instanceof AuthError, r);
        assert.equal(err.exitCode, ExitCode.auth);
        assert.equal(err.reason, r);
        assert.match(err.hint ?? '', advice, r);
        assert.ok(!err.message.includes('token-value-for-tests') && !(err.hint ?? '').includes('token-value-for-tests'), 'no token in messages');
        return true;
      });
    }
    reason = 'token_expired';
    await assert.rejects(api.whoami('t', { source: 'AGENTGATE_TOKEN' }), (err: unknown) => {
      assert.ok(err instanceof AuthError);
      assert.match(err.message, /refused the token from AGENTGATE_TOKEN/);
      assert.match(err.hint ?? '', /token from AGENTGATE_TOKEN has expired/);
      return true;
    });
    reason = undefined;
    assert.equal((await api.whoami('token-value-for-tests')).sub, 'alice');
    assert.equal(lastAuthorization, 'Bearer token-value-for-tests');
    await assert.rejects(api.get('/v1/boom', 't'), (err: unknown) => {
      assert.ok(err instanceof BrokerError);
      assert.equal(err.code, 'AG_STORE_DOWN');
      assert.match(err.message, /HTTP 503: store unavailable/);
      assert.equal(err.hint, 'retry in a minute');
      return true;
    });
    await assert.rejects(api.get('/huge', 't'), isError('AG_BROKER_PROTOCOL'));
    await assert.rejects(api.get('/v1/nothing', 't'), isError('AG_BROKER_PROTOCOL'));
  } finally {
    await d.close();
  }
});

test('a server that is not an agentgate broker is named as such', async () => {
  const other = createHttpsServer(makeTestCert(), (_req, res) => res.writeHead(404).end('nope'));
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(other.address() as AddressInfo).port}`;
  const d = createBrokerDispatcher({ ca: caFile }, { env: {} });
  try {
    await assert.rejects(fetchDiscovery(url, d), (err: unknown) => {
      assert.ok(err instanceof BrokerError);
      assert.equal(err.code, 'AG_BROKER_PROTOCOL');
      assert.match(err.message, /does not look like an agentgate broker \(GET \/\.well-known\/agentgate answered HTTP 404\)/);
      return true;
    });
  } finally {
    await d.close();
    other.closeAllConnections();
    await new Promise<void>((resolve) => other.close(() => resolve()));
  }
});
