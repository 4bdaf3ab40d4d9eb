import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import { pipeline } from 'node:stream';
import type { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { BrokerError, UsageError } from '../../src/errors.js';
import { openTunnel } from '../../src/tunnel/dialer.js';
import type { TunnelClient } from '../../src/tunnel/dialer.js';
import { hostKeyFingerprint, generateSshKeyPair } from '../../src/tunnel/host-key.js';
import { isLoopback, listenLocal } from '../../src/tunnel/local-listener.js';
import { INITIAL_WINDOW } from '../../src/tunnel/mux-channel.js';
import type { LocalListener } from '../../src/tunnel/local-listener.js';
import type { TunnelChannel } from '../../src/tunnel/acceptor.js';
import { makeTestCert } from '../helpers/tls.js';
import { echoUppercase, roundTrip, startTestBroker, upperBytes, uppercaser, waitFor } from './fixture.js';
import type { TestBroker, TestIdentity } from './fixture.js';

const MB = 1024 * 1024;

describe('listenLocal', () => {
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

  async function broker(opts: { port?: number; onChannel?: (ch: TunnelChannel<TestIdentity>) => void } = {}): Promise<TestBroker> {
    const b = await startTestBroker({ hostKey, ...opts });
    cleanups.push(() => b.close());
    return b;
  }
  function dial(b: TestBroker): TunnelClient {
    const t = openTunnel({
      endpoint: b.endpoint,
      dispatcher,
      getToken: async () => 'good',
      hostKeyFingerprint: fingerprint,
      reconnect: { initialMs: 20, maxMs: 200 },
    });
    cleanups.push(() => t.close());
    return t;
  }
  async function listen(open: (s: net.Socket) => Promise<Duplex>, extra: Partial<Parameters<typeof listenLocal>[0]> = {}): Promise<LocalListener> {
    const l = await listenLocal({ host: '127.0.0.1', port: 0, open, ...extra });
    cleanups.push(() => l.close());
    return l;
  }
  function connect(l: LocalListener): net.Socket {
    const s = net.connect(l.address.port, l.address.host);
    s.on('error', () => {});
    return s;
  }

  test('a taken port is a UsageError that suggests --port 0', async () => {
    const first = await listen(async () => {
      throw new Error('unused');
    });
    const err = await listenLocal({ host: '127.0.0.1', port: first.address.port, open: async () => new net.Socket() }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof UsageError, `expected UsageError, got ${String(err)}`);
    assert.equal(err.exitCode, 2);
    assert.match(err.message, new RegExp(`Port ${first.address.port} .*already in use`));
    assert.match(err.hint ?? '', /--port 0/);
  });

  test('a non-loopback bind needs allowRemote', async () => {
    const err = await listenLocal({ host: '0.0.0.0', port: 0, open: async () => new net.Socket() }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof UsageError, `expected UsageError, got ${String(err)}`);
    assert.match(err.hint ?? '', /--allow-remote/);

    const l = await listen(async () => new net.Socket(), { host: '0.0.0.0', allowRemote: true });
    assert.equal(l.address.host, '0.0.0.0');
    assert.ok(l.address.port > 0);

    assert.equal(isLoopback('127.0.0.1'), true);
    assert.equal(isLoopback('127.8.9.10'), true);
    assert.equal(isLoopback('::1'), true);
    assert.equal(isLoopback('[::1]'), true);
    assert.equal(isLoopback('localhost'), true);
    assert.equal(isLoopback('::'), false);
    assert.equal(isLoopback('192.168.1.4'), false);
    assert.equal(isLoopback('db.example.com'), false);
  });

  test('a failed open() goes to onOpenError, then the local socket closes', async () => {
    const seen: unknown[] = [];
    const l = await listen(
      async () => {
        throw new BrokerError('AG_TUNNEL_DOWN', 'down');
      },
      {
        onOpenError: (socket, err) => {
          seen.push(err);
          socket.write('E:refused\n');
        },
      },
    );
    const s = connect(l);
    const reply = await roundTrip(s, 'hello');
    assert.equal(reply.toString(), 'E:refused\n');
    assert.equal(seen.length, 1);
    assert.ok(seen[0] instanceof BrokerError);
  });

  test('half-close: the client ends its side and still gets the whole reply', async () => {
    const b = await broker();
    const t = dial(b);
    await t.ready(5_000);
    const l = await listen(() => t.openChannel('pg-prod', 5_000));
    const replies = await Promise.all(
      Array.from({ length: 5 }, async (_, i) => (await roundTrip(connect(l), `local ${i}`)).toString()),
    );
    assert.deepEqual(replies, Array.from({ length: 5 }, (_, i) => `LOCAL ${i}`));
  });

  test('20 MB through a local socket and the tunnel with backpressure, bytes intact', async () => {
    // The echo side holds off reading until backpressure has reached the local writer.
    let held: Duplex | undefined;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const b = await broker({
      onChannel: (ch) => {
        held = ch.stream;
        // eslint-disable-next-line @typescript-eslint/no-floating-promises -- released only resolves
        void released.then(() => pipeline(ch.stream, uppercaser(), ch.stream, () => {}));
      },
    });
    const t = dial(b);
    await t.ready(5_000);
    let cliChannel: Duplex | undefined;
    let accepted: net.Socket | undefined;
    const l = await listen(async (socket) => {
      accepted = socket;
      return (cliChannel = await t.openChannel('pg-prod', 5_000));
    });

    const total = 20 * MB;
    const payload = randomBytes(total);
    const expected = createHash('sha256').update(upperBytes(payload)).digest('hex');
    const got = createHash('sha256');
    let received = 0;
    const s = connect(l);
    s.on('data', (c: Buffer) => {
      got.update(c);
      received += c.length;
    });
    const ended = once(s, 'end');

    let written = 0;
    let blocked = false;
    const writer = (async () => {
      const chunk = 64 * 1024;
      for (let off = 0; off < total; off += chunk) {
        written += chunk;
        if (!s.write(payload.subarray(off, off + chunk))) {
          blocked = true;
          await once(s, 'drain');
          blocked = false;
        }
      }
      s.end();
    })();

    // Steady state under backpressure: the broker holds a full channel window, the CLI's
    // channel is at its high-water mark, the accepted local socket has stopped being
    // read (its own buffer full), and the local writer is waiting for 'drain'. A hop
    // that ignored backpressure would keep that socket flowing and never get here.
    await waitFor(
      () =>
        held !== undefined &&
        held.readableLength === INITIAL_WINDOW &&
        cliChannel !== undefined &&
        cliChannel.writableLength >= cliChannel.writableHighWaterMark &&
        accepted !== undefined &&
        accepted.readableLength >= accepted.readableHighWaterMark &&
        blocked,
      'backpressure to reach the local writer',
    );
    const writtenWhileHeld = written;
    const brokerBuffered = held!.readableLength;
    const cliBuffered = cliChannel!.writableLength;
    release();

    await writer;
    await ended;
    assert.equal(received, total);
    assert.equal(got.digest('hex'), expected);
    // Bounded buffering while the far side was not reading: on the broker, one channel
    // window; in the CLI, the channel's high-water mark plus one chunk.
    assert.equal(brokerBuffered, INITIAL_WINDOW, `broker buffered ${brokerBuffered}`);
    assert.ok(cliBuffered <= cliChannel!.writableHighWaterMark + 64 * 1024, `CLI channel buffered ${cliBuffered}`);
    assert.ok(writtenWhileHeld < total, 'the writer was held back before sending everything');
  });

  test('a local connection arriving while the broker is down waits, then succeeds', async () => {
    let b = await broker();
    const port = b.port;
    const t = dial(b);
    await t.ready(5_000);
    const l = await listen(() => t.openChannel('pg-prod', 10_000));
    await b.close();
    await waitFor(() => t.state === 'down', 'the client to notice the broker is gone');

    const s = connect(l);
    const reply = roundTrip(s, 'while down');
    await once(s, 'connect');
    b = await broker({ port, onChannel: echoUppercase });
    assert.equal((await reply).toString(), 'WHILE DOWN');
    assert.equal(b.channels.length, 1);
  });

  test('an established local connection is closed when the broker goes away', async () => {
    const b = await broker({ onChannel: (ch) => ch.stream.write('hello\n') }); // keeps the channel open
    const t = dial(b);
    await t.ready(5_000);
    const l = await listen(() => t.openChannel('pg-prod', 5_000));
    const s = connect(l);
    await once(s, 'data');
    const closed = once(s, 'close');
    await b.close();
    await closed;
    assert.equal(s.destroyed, true);
  });

  test('close() drops joined connections', async () => {
    const b = await broker({ onChannel: () => {} }); // never answers
    const t = dial(b);
    await t.ready(5_000);
    const l = await listenLocal({ host: '127.0.0.1', port: 0, open: () => t.openChannel('pg-prod', 5_000) });
    const s = connect(l);
    await waitFor(() => b.channels.length === 1, 'the channel to open');
    const closed = once(s, 'close');
    await l.close();
    await closed;
    assert.equal(l.server.listening, false);
  });
});
