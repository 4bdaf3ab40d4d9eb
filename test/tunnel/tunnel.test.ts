import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { once } from 'node:events';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { after, before, describe, test } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { connect as netConnect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { Agent } from 'undici';
import { createBrokerDispatcher } from '../../src/client/broker-http.js';
import { AuthError, BrokerError } from '../../src/errors.js';
import { openTunnel } from '../../src/tunnel/dialer.js';
import type { TunnelClient, TunnelState } from '../../src/tunnel/dialer.js';
import { hostKeyFingerprint, generateSshKeyPair } from '../../src/tunnel/host-key.js';
import { FrameType, MAX_FRAME_PAYLOAD } from '../../src/tunnel/mux-codec.js';
import { INITIAL_WINDOW } from '../../src/tunnel/mux-channel.js';
import { makeTestCert } from '../helpers/tls.js';
import { rawMuxClient, roundTrip, startTestBroker, waitFor } from './fixture.js';
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
    // All 50 channels rode one tunnel connection.
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

  test('a broker that stops answering is noticed by keepalives', async () => {
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
    const raw = await rawMuxClient(b.endpoint, dispatcher);
    cleanups.push(async () => raw.socket.destroy());
    assert.equal(b.acceptor.size, 1);
    // Answering PINGs keeps it: wait for one PING and answer, then go silent.
    const ping = await raw.next((f) => f.type === FrameType.PING, "the broker's first PING");
    raw.send(FrameType.PONG, 0, ping.payload);
    raw.socket.pause();
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

  test('on the wire: a bad target gets OPEN_FAIL and the tunnel carries on; DATA, EOF and CLOSE per channel', async () => {
    const b = await broker();
    const raw = await rawMuxClient(b.endpoint, dispatcher);
    cleanups.push(async () => raw.socket.destroy());
    raw.send(FrameType.OPEN, 1, JSON.stringify({ target: 'bad name', address: '127.0.0.1', port: 1 }));
    const fail = await raw.next((f) => f.channel === 1, 'the answer to OPEN 1');
    assert.equal(fail.type, FrameType.OPEN_FAIL);
    assert.equal((JSON.parse(fail.payload.toString()) as { code: string }).code, 'AG_TUNNEL_BAD_TARGET');

    raw.send(FrameType.OPEN, 2, JSON.stringify({ target: 'pg-prod', address: '127.0.0.1', port: 2 }));
    assert.equal((await raw.next((f) => f.channel === 2, 'the answer to OPEN 2')).type, FrameType.OPEN_OK);
    raw.send(FrameType.DATA, 2, 'still here');
    raw.send(FrameType.EOF, 2);
    const data = await raw.next((f) => f.channel === 2 && f.type === FrameType.DATA, 'the echo');
    assert.equal(data.payload.toString(), 'STILL HERE');
    await raw.next((f) => f.channel === 2 && f.type === FrameType.EOF, "the echo's EOF");
    await raw.next((f) => f.channel === 2 && f.type === FrameType.CLOSE, 'CLOSE once both sides ended');
    assert.equal(b.channels.length, 1);
    assert.equal(b.acceptor.size, 1);
  });

  for (const [what, send] of [
    ['a frame of unknown type', (raw: Awaited<ReturnType<typeof rawMuxClient>>) => raw.socket.write(Buffer.from([0x7f, 0, 0, 0, 0, 0, 0, 0, 0]))],
    ['a frame longer than the limit', (raw: Awaited<ReturnType<typeof rawMuxClient>>) => raw.socket.write(Buffer.from([FrameType.DATA, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]))],
    ['DATA for a channel never opened', (raw: Awaited<ReturnType<typeof rawMuxClient>>) => raw.send(FrameType.DATA, 9, 'x')],
    ['DATA beyond the channel window', (raw: Awaited<ReturnType<typeof rawMuxClient>>) => {
      raw.send(FrameType.OPEN, 1, JSON.stringify({ target: 'held', address: '127.0.0.1', port: 1 }));
      const chunk = Buffer.alloc(MAX_FRAME_PAYLOAD / 16);
      for (let sent = 0; sent <= INITIAL_WINDOW; sent += chunk.length) raw.send(FrameType.DATA, 1, chunk);
    }],
  ] as const) {
    test(`on the wire: ${what} ends the tunnel`, async () => {
      const b = await startTestBroker({ hostKey, onChannel: () => {} }); // channels are never read
      cleanups.push(() => b.close());
      const raw = await rawMuxClient(b.endpoint, dispatcher);
      cleanups.push(async () => raw.socket.destroy());
      assert.equal(b.acceptor.size, 1);
      send(raw);
      await raw.closed;
      await waitFor(() => b.acceptor.size === 0, 'the broker to end the tunnel');
    });
  }

  test('on the wire: a client must answer HELLO before anything else, and send a nonce', async () => {
    const b = await broker();
    const raw = await rawMuxClient(b.endpoint, dispatcher, { hello: false });
    raw.send(FrameType.OPEN, 1, JSON.stringify({ target: 'pg-prod', address: '127.0.0.1', port: 1 }));
    await raw.closed;
    assert.equal(b.channels.length, 0);

    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = httpsRequest(b.endpoint, {
        ca: makeTestCert().cert,
        headers: { Connection: 'Upgrade', Upgrade: 'agentgate-mux/1', Authorization: 'Bearer good' },
      });
      req.once('response', resolve).once('upgrade', () => reject(new Error('must not upgrade without a nonce'))).once('error', reject);
      req.end();
    });
    assert.equal(res.statusCode, 400);
    assert.match(await readAll(res), /x-agentgate-tunnel-nonce/);
  });

  test('handshake timeouts: the broker drops a client that never answers HELLO; the CLI gives up on a broker that never sends one', async () => {
    const b = await startTestBroker({ hostKey, handshakeTimeoutMs: 100 });
    cleanups.push(() => b.close());
    const raw = await rawMuxClient(b.endpoint, dispatcher, { hello: false });
    await raw.next((f) => f.type === FrameType.HELLO, "the broker's HELLO");
    assert.equal(b.acceptor.size, 1);
    await raw.closed;
    await waitFor(() => b.acceptor.size === 0, 'the broker to drop the client');

    // A server that switches protocols and then says nothing.
    const { cert, key } = makeTestCert();
    const mute = createHttpsServer({ cert, key }, (_req, res) => res.writeHead(404).end());
    const held: Duplex[] = [];
    mute.on('upgrade', (_req, socket: Duplex) => {
      held.push(socket);
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: agentgate-mux/1\r\nConnection: Upgrade\r\n\r\n');
    });
    await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      for (const s of held) s.destroy();
      await new Promise<void>((resolve) => mute.close(() => resolve()));
    });
    const t = dial(b, { endpoint: `https://127.0.0.1:${(mute.address() as AddressInfo).port}/v1/tunnel`, handshakeTimeoutMs: 150, reconnect: false });
    const err = await t.ready(5_000).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof BrokerError, `expected BrokerError, got ${String(err)}`);
    assert.equal(err.code, 'AG_TUNNEL_HANDSHAKE');
    assert.match(err.message, /sent no HELLO within/);
  });

  test('credential renewal on the wire: one exchange at a time, coded refusals, the deadline in the reply', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const tokens: string[] = [];
    const b = await startTestBroker({
      hostKey,
      renewCredential: async (_t, token) => {
        tokens.push(token);
        await released;
        return Date.parse('2030-01-01T00:00:00Z');
      },
    });
    cleanups.push(() => b.close());
    const raw = await rawMuxClient(b.endpoint, dispatcher);
    cleanups.push(async () => raw.socket.destroy());
    const reply = async (id: number): Promise<string> =>
      (await raw.next((f) => f.type === FrameType.CREDENTIAL_REPLY && f.channel === id, `the reply to request ${id}`)).payload.toString();

    raw.send(FrameType.CREDENTIAL, 1, 'not json\n');
    assert.match(await reply(1), /"code":"AG_CREDENTIAL_MALFORMED"/);
    raw.send(FrameType.CREDENTIAL, 2, '{"token":"fresh"}\n');
    raw.send(FrameType.CREDENTIAL, 3, '{"token":"again"}\n');
    assert.match(await reply(3), /"code":"AG_CREDENTIAL_BUSY"/);
    release();
    assert.deepEqual(JSON.parse(await reply(2)), { ok: true, expires_at: '2030-01-01T00:00:00.000Z' });
    assert.deepEqual(tokens, ['fresh']);

    const plain = await broker(); // no renewCredential
    const raw2 = await rawMuxClient(plain.endpoint, dispatcher);
    cleanups.push(async () => raw2.socket.destroy());
    raw2.send(FrameType.CREDENTIAL, 1, '{"token":"t"}\n');
    const refused = await raw2.next((f) => f.type === FrameType.CREDENTIAL_REPLY, 'the reply');
    assert.match(refused.payload.toString(), /"code":"AG_CREDENTIAL_UNSUPPORTED"/);
  });

  test('a TLS-terminating hop is refused even when it relays the right host key', async () => {
    const b = await broker();
    // Trusted by the CLI (same test certificate), it decrypts, then re-encrypts to the broker.
    const { cert, key } = makeTestCert();
    const mitm = createTlsServer({ cert, key }, (front) => {
      const back = tlsConnect({ host: '127.0.0.1', port: b.port, rejectUnauthorized: false });
      front.pipe(back).pipe(front);
      front.on('error', () => back.destroy());
      back.on('error', () => front.destroy());
    });
    await new Promise<void>((resolve) => mitm.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => mitm.close(() => resolve())));
    const port = (mitm.address() as AddressInfo).port;
    const t = dial(b, { endpoint: `https://127.0.0.1:${port}/v1/tunnel` });
    const err = await t.ready(5_000).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof BrokerError, `expected BrokerError, got ${String(err)}`);
    assert.equal(err.code, 'AG_TUNNEL_HOST_KEY_MISMATCH');
    assert.match(err.message, /matches the pinned fingerprint, but its signature over this connection does not verify/);
    assert.equal(t.state, 'closed');
    assert.equal(b.upgrades, 1, 'the upgrade reached the broker, and was not retried');
    assert.equal(b.channels.length, 0);
  });

  test('through an HTTPS_PROXY CONNECT tunnel the identity proof holds and channels work', async () => {
    const b = await broker();
    let connects = 0;
    const proxy = createHttpServer((_req, res) => res.writeHead(405).end());
    proxy.on('connect', (req, socket: Duplex, head: Buffer) => {
      connects++;
      const [host, port] = String(req.url).split(':');
      const up = netConnect(Number(port), host, () => {
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head.length) up.write(head);
        socket.pipe(up).pipe(socket);
      });
      up.on('error', () => socket.destroy());
      socket.on('error', () => up.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    });
    const dir = mkdtempSync(join(tmpdir(), 'agentgate-ca-'));
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, makeTestCert().cert);
    const viaProxy = createBrokerDispatcher({ ca: caFile }, { env: { HTTPS_PROXY: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` } });
    cleanups.push(async () => {
      await viaProxy.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const t = dial(b, { dispatcher: viaProxy });
    await t.ready(5_000);
    assert.equal((await roundTrip(await t.openChannel('pg-prod', 5_000), 'via proxy')).toString(), 'VIA PROXY');
    assert.equal(connects, 1);
    assert.ok(t.hostKey && t.hostKey.length > 0);
  });

  test('flow control: a channel whose reader stops holds one window and does not stall another channel', async () => {
    let held: Duplex | undefined;
    const b = await startTestBroker({
      hostKey,
      onChannel: (ch) => {
        if (ch.target === 'slow') held = ch.stream; // never read until the end
        else ch.stream.pipe(ch.stream);
      },
    });
    cleanups.push(() => b.close());
    const t = dial(b);
    await t.ready(5_000);
    const slow = await t.openChannel('slow', 5_000);
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let written = 0;
    let waiting = false;
    let stop = false;
    const writer = (async () => {
      while (!stop) {
        written += chunk.length;
        if (!slow.write(chunk)) {
          waiting = true;
          await once(slow, 'drain');
          waiting = false;
        }
      }
    })();
    // The writer is told to wait; the broker holds exactly one window for the channel.
    await waitFor(() => held !== undefined && held.readableLength === INITIAL_WINDOW && waiting, 'the slow channel to fill its window and block its writer');
    const writtenAtStall = written;
    assert.ok(slow.writableLength <= 128 * 1024, `the CLI channel buffers ${slow.writableLength}`);
    assert.ok(written <= INITIAL_WINDOW + 128 * 1024, `the writer was let write ${written}`);

    // Meanwhile a second channel moves 4 MB both ways.
    const fast = await t.openChannel('fast', 5_000);
    const big = Buffer.alloc(4 * 1024 * 1024, 0x62);
    const echoed = await roundTrip(fast, big);
    assert.equal(echoed.length, big.length);
    assert.equal(held!.readableLength, INITIAL_WINDOW, 'the held channel did not grow while the other ran');
    assert.equal(written, writtenAtStall, 'its writer stayed blocked');

    // Reading the held channel lets the writer go on and finish.
    let got = 0;
    held!.on('data', (c: Buffer) => (got += c.length));
    stop = true;
    await writer;
    slow.end();
    await once(held!, 'end');
    assert.equal(got, written);
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
