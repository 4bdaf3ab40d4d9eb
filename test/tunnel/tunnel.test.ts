import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { after, before, describe, test } from 'node:test';
import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';
import { Agent } from 'undici';
import { AuthError, BrokerError } from '../../src/errors.js';
import { openTunnel } from '../../src/tunnel/dialer.js';
import type { TunnelClient, TunnelState } from '../../src/tunnel/dialer.js';
import { hostKeyFingerprint, generateSshKeyPair } from '../../src/tunnel/host-key.js';
import { TUNNEL_SSH_USER } from '../../src/tunnel/protocol.js';
import { upgradeToTunnel } from '../../src/tunnel/upgrade.js';
import { makeTestCert } from '../helpers/tls.js';
import { roundTrip, startTestBroker, waitFor } from './fixture.js';
import type { TestBroker } from './fixture.js';

const FAST = { initialMs: 20, maxMs: 200 };

describe('tunnel: dialer ⇄ acceptor over HTTPS upgrade', () => {
  const hostKey = generateSshKeyPair().private;
  const fingerprint = hostKeyFingerprint(hostKey);
  let dispatcher: Agent;
  const cleanups: Array<() => Promise<unknown>> = [];

  before(() => {
    dispatcher = new Agent({ connect: { ca: makeTestCert().cert } });
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c();
    await dispatcher.close();
  });

  async function broker(port?: number): Promise<TestBroker> {
    const b = await startTestBroker({ hostKey, port });
    cleanups.push(() => b.close());
    return b;
  }

  function dial(b: TestBroker, extra: Partial<Parameters<typeof openTunnel>[0]> = {}): TunnelClient {
    const t = openTunnel({
      endpoint: b.endpoint,
      dispatcher,
      getToken: async () => 'good',
      hostKeyFingerprint: fingerprint,
      reconnect: FAST,
      ...extra,
    });
    cleanups.push(() => t.close());
    return t;
  }

  test('50 concurrent channels round-trip their bytes; target, identity and headers reach onChannel', async () => {
    const b = await broker();
    const states: TunnelState[] = [];
    const t = dial(b, { headers: { 'X-Agentgate-Session': 'sess-123' }, onState: (s) => states.push(s) });
    await t.ready(5_000);
    assert.equal(t.state, 'up');
    assert.deepEqual(states, ['up']);

    const replies = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const ch = await t.openChannel(`pg-prod-${i}`, 5_000, { address: '127.0.0.1', port: 40000 + i });
        return (await roundTrip(ch, `hello from channel ${i}`)).toString();
      }),
    );
    replies.forEach((r, i) => assert.equal(r, `HELLO FROM CHANNEL ${i}`));

    assert.equal(b.channels.length, 50);
    const targets = b.channels.map((c) => c.target).sort();
    assert.deepEqual(targets, Array.from({ length: 50 }, (_, i) => `pg-prod-${i}`).sort());
    const one = b.channels.find((c) => c.target === 'pg-prod-7')!;
    assert.deepEqual(one.identity, { sub: 'alice' });
    assert.deepEqual(one.originator, { address: '127.0.0.1', port: 40007 });
    assert.equal(one.headers['x-agentgate-session'], 'sess-123');
    assert.equal(one.headers.authorization, undefined, 'the bearer token must not travel past the upgrade');
    // All 50 channels rode one SSH connection.
    assert.equal(new Set(b.channels.map((c) => c.tunnelId)).size, 1);
    assert.equal(b.upgrades, 1);
  });

  test('a wrong host key fingerprint fails closed: clear error, no channel, no retry', async () => {
    const b = await broker();
    const other = hostKeyFingerprint(generateSshKeyPair().private);
    const states: TunnelState[] = [];
    const t = dial(b, { hostKeyFingerprint: other, onState: (s) => states.push(s) });

    const err = await t.ready(5_000).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof BrokerError, `expected BrokerError, got ${String(err)}`);
    assert.equal(err.code, 'AG_TUNNEL_HOST_KEY_MISMATCH');
    assert.match(err.message, new RegExp(fingerprint.replace(/[+/]/g, '\\$&')));
    assert.match(err.message, /does not match/);
    assert.equal(t.state, 'closed');
    assert.deepEqual(states, ['closed']);
    await assert.rejects(t.openChannel('pg-prod', 1_000), { code: 'AG_TUNNEL_HOST_KEY_MISMATCH' });
    assert.equal(b.channels.length, 0);
    assert.equal(b.upgrades, 1);
  });

  test('401 on upgrade → AuthError with the broker reason, and no reconnect loop', async () => {
    const b = await broker();
    let tokenCalls = 0;
    const t = dial(b, {
      getToken: async () => {
        tokenCalls++;
        return 'expired-token';
      },
    });
    const err = await t.ready(5_000).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof AuthError, `expected AuthError, got ${String(err)}`);
    assert.equal(err.exitCode, 3);
    assert.equal(err.reason, 'token_expired');
    assert.match(err.message, /The access token has expired/);
    assert.ok(!err.message.includes('expired-token'), 'the token must not appear in the error');
    assert.equal(t.state, 'closed');
    await assert.rejects(t.openChannel('pg-prod', 1_000), AuthError);
    assert.equal(tokenCalls, 1);
    assert.equal(b.upgrades, 1);
  });

  test('other refusals become BrokerError with the HTTP status', async () => {
    const b = await broker();
    const t = dial(b, { endpoint: b.endpoint.replace('/v1/tunnel', '/v1/nope') });
    const err = await t.ready(5_000).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof BrokerError, `expected BrokerError, got ${String(err)}`);
    assert.equal(err.code, 'AG_TUNNEL_REFUSED');
    assert.match(err.message, /HTTP 404/);
  });

  test('an untrusted broker certificate fails closed with a TLS error, no retry', async () => {
    const b = await broker();
    const untrusting = new Agent();
    cleanups.push(() => untrusting.close());
    const t = dial(b, { dispatcher: untrusting });
    const err = await t.ready(5_000).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof BrokerError, `expected BrokerError, got ${String(err)}`);
    assert.equal(err.code, 'AG_TUNNEL_TLS');
    assert.match(err.hint ?? '', /AGENTGATE_CA/);
    assert.equal(t.state, 'closed');
    assert.equal(b.upgrades, 0);
  });

  test('a refused Upgrade protocol gets 400 from the acceptor', async () => {
    const b = await broker();
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = httpsRequest(b.endpoint, {
        ca: makeTestCert().cert,
        headers: { Connection: 'Upgrade', Upgrade: 'websocket', Authorization: 'Bearer good' },
      });
      req.once('response', resolve).once('upgrade', () => reject(new Error('must not upgrade'))).once('error', reject);
      req.end();
    });
    assert.equal(res.statusCode, 400);
    const body = JSON.parse(await readAll(res)) as { error: { code: string } };
    assert.equal(body.error.code, 'AG_TUNNEL_BAD_UPGRADE');
    assert.equal(b.acceptor.size, 0);
  });

  test('broker restart on the same port: down → up with a fresh token, then a new channel works', async () => {
    let b = await broker();
    const port = b.port;
    const states: TunnelState[] = [];
    let tokenCalls = 0;
    const t = dial(b, {
      getToken: async () => {
        tokenCalls++;
        return 'good';
      },
      onState: (s) => states.push(s),
    });
    await t.ready(5_000);
    assert.equal((await roundTrip(await t.openChannel('pg-prod', 5_000), 'before')).toString(), 'BEFORE');

    await b.close();
    await waitFor(() => t.state === 'down', 'the client to notice the broker is gone');
    assert.ok(t.lastError instanceof BrokerError);

    b = await broker(port);
    await waitFor(() => t.state === 'up', 'the client to reconnect');
    assert.deepEqual(states, ['up', 'down', 'up']);
    assert.ok(tokenCalls >= 2, 'each connection attempt fetches a token');
    assert.equal((await roundTrip(await t.openChannel('pg-prod', 5_000), 'after')).toString(), 'AFTER');
    assert.equal(b.channels.length, 1);
  });

  test('openChannel while down waits for the broker to come back', async () => {
    let b = await broker();
    const port = b.port;
    let tokenCalls = 0;
    const t = dial(b, {
      getToken: async () => {
        tokenCalls++;
        return 'good';
      },
    });
    await t.ready(5_000);
    await b.close();
    await waitFor(() => t.state === 'down', 'the client to notice the broker is gone');

    const pending = t.openChannel('pg-prod', 10_000);
    let settled = false;
    void pending.then(() => (settled = true), () => (settled = true));
    // Two more token fetches mean at least one reconnect attempt failed meanwhile.
    const callsAtDown = tokenCalls;
    await waitFor(() => tokenCalls >= callsAtDown + 2, 'a failed reconnect attempt');
    assert.equal(settled, false, 'the channel request waits while no broker listens');
    assert.equal(t.state, 'down');

    b = await broker(port);
    const ch = await pending;
    assert.equal((await roundTrip(ch, 'late')).toString(), 'LATE');
  });

  test('openChannel while down gives up after its timeout with a typed error', async () => {
    const b = await broker();
    const t = dial(b);
    await t.ready(5_000);
    await b.close();
    await waitFor(() => t.state === 'down', 'the client to notice the broker is gone');
    const err = await t.openChannel('pg-prod', 150).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof BrokerError, `expected BrokerError, got ${String(err)}`);
    assert.equal(err.code, 'AG_TUNNEL_DOWN');
    assert.match(err.message, /down/);
    assert.ok(err.hint);
  });

  test('a broker that stops answering is noticed by SSH keepalives', async () => {
    const b = await broker();
    const t = dial(b, { keepaliveIntervalMs: 40, keepaliveCountMax: 2 });
    await t.ready(5_000);
    // The broker's socket stays open but nothing on it is read or answered any more.
    b.tunnelSockets[0]!.pause();
    await waitFor(() => t.state === 'down', 'keepalives to declare the broker gone');
    assert.match(t.lastError?.message ?? '', /Lost the connection/);
  });

  test('the broker drops a client that stops answering its keepalives', async () => {
    const b = await startTestBroker({ hostKey, keepaliveIntervalMs: 40 });
    cleanups.push(() => b.close());
    const socket = await upgradeToTunnel({ endpoint: b.endpoint, dispatcher, token: 'good' });
    const client = new ssh2.Client();
    cleanups.push(async () => client.destroy());
    await new Promise<void>((resolve, reject) => {
      client.once('ready', resolve).once('error', reject);
      client.connect({ sock: socket, username: TUNNEL_SSH_USER, authHandler: ['none'], hostVerifier: () => true, keepaliveInterval: 0 });
    });
    client.on('error', () => {});
    assert.equal(b.acceptor.size, 1);
    socket.pause();
    await waitFor(() => b.acceptor.size === 0, 'the broker to drop the silent client');
  });

  test('close() ends the tunnel and rejects later channels', async () => {
    const b = await broker();
    const states: TunnelState[] = [];
    const t = dial(b, { onState: (s) => states.push(s) });
    await t.ready(5_000);
    await t.close();
    assert.equal(t.state, 'closed');
    assert.deepEqual(states, ['up', 'closed']);
    await assert.rejects(t.openChannel('pg-prod', 1_000), { code: 'AG_TUNNEL_CLOSED' });
    await waitFor(() => b.acceptor.size === 0, 'the broker to drop the tunnel');
  });

  test('the broker refuses everything but direct-tcpip, and SSH auth other than none is not needed', async () => {
    const b = await broker();
    const socket = await upgradeToTunnel({ endpoint: b.endpoint, dispatcher, token: 'good' });
    const client = new ssh2.Client();
    cleanups.push(async () => client.destroy());
    await new Promise<void>((resolve, reject) => {
      client.once('ready', resolve).once('error', reject);
      client.connect({ sock: socket, username: TUNNEL_SSH_USER, authHandler: ['none'], hostVerifier: () => true });
    });
    const execErr = await new Promise<Error | undefined>((resolve) => client.exec('id', (err) => resolve(err)));
    assert.ok(execErr, 'exec must be refused');
    const shellErr = await new Promise<Error | undefined>((resolve) => client.shell((err) => resolve(err)));
    assert.ok(shellErr, 'shell must be refused');
    const fwdErr = await new Promise<Error | undefined>((resolve) => client.forwardIn('127.0.0.1', 0, (err) => resolve(err)));
    assert.ok(fwdErr, 'remote forwarding must be refused');
    // The connection survives the refusals and still carries tunnel channels.
    const ch = await new Promise<ClientChannel>((resolve, reject) =>
      client.forwardOut('127.0.0.1', 1, 'pg-prod', 0, (err, c) => (err ? reject(err) : resolve(c))),
    );
    assert.equal((await roundTrip(ch, 'still here')).toString(), 'STILL HERE');
  });

  test('a bad channel on one tunnel does not disturb another tunnel', async () => {
    const b = await startTestBroker({
      hostKey,
      onChannel: (ch) => {
        if (ch.target === 'boom') throw new Error('handler bug');
        ch.stream.end(`ok ${ch.target}`);
      },
    });
    cleanups.push(() => b.close());
    const t1 = dial(b);
    const t2 = dial(b);
    await Promise.all([t1.ready(5_000), t2.ready(5_000)]);
    const boom = await t1.openChannel('boom', 5_000);
    await new Promise<void>((resolve) => {
      boom.resume();
      boom.once('close', resolve);
    });
    assert.equal((await roundTrip(await t2.openChannel('fine', 5_000), '')).toString(), 'ok fine');
    assert.equal((await roundTrip(await t1.openChannel('fine', 5_000), '')).toString(), 'ok fine');
    assert.equal(t1.state, 'up');
    assert.equal(b.acceptor.size, 2);
  });
});

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let out = '';
  for await (const chunk of stream) out += chunk.toString();
  return out;
}
