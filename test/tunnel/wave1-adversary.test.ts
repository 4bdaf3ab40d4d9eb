/**
 * Red-team wave 1 against the broker's tunnel end: a client with a valid login that speaks
 * the mux by hand (rawMuxClient) against the real TunnelAcceptor, trying to make the
 * broker hold memory without bound or starve other tunnels. Each attack has a control
 * showing the legitimate use of the same frames still works.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { openTunnel } from '../../src/tunnel/dialer.js';
import { generateSshKeyPair, hostKeyFingerprint } from '../../src/tunnel/host-key.js';
import { encodeFrame, FrameType } from '../../src/tunnel/mux-codec.js';
import { makeTestCert } from '../helpers/tls.js';
import { rawMuxClient, roundTrip, startTestBroker, waitFor } from './fixture.js';
import type { RawMuxClient, TestBroker } from './fixture.js';

const MiB = 1024 * 1024;
/** What the broker may hold for one tunnel whose client stopped reading: far below what was sent. */
const BACKLOG_BOUND = 4 * MiB;
/**
 * The caps this corpus sets (the acceptor's defaults are higher, 2048 channels per tunnel and
 * 4096 per login, so an application's pool fits: the mechanism is the same, the test faster).
 */
const DEFAULT_MAX_CHANNELS_PER_TUNNEL = 256;
/** Live tunnels per login (the broker counts by issuer and subject); the acceptor's default. */
const DEFAULT_MAX_TUNNELS_PER_IDENTITY = 64;
/** Live channels per login, across its tunnels. */
const DEFAULT_MAX_CHANNELS_PER_IDENTITY = 512;

describe('tunnel red team, wave 1: hostile mux frames from a logged-in client', () => {
  const hostKey = generateSshKeyPair().private;
  let dispatcher: Agent;
  const cleanups: Array<() => Promise<unknown>> = [];

  before(() => {
    dispatcher = new Agent({ connect: { ca: makeTestCert().cert } });
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c();
    await dispatcher.close();
  });

  async function broker(): Promise<TestBroker> {
    const b = await startTestBroker({ hostKey, maxChannelsPerTunnel: DEFAULT_MAX_CHANNELS_PER_TUNNEL });
    cleanups.push(() => b.close());
    return b;
  }
  async function client(b: TestBroker): Promise<RawMuxClient> {
    const raw = await rawMuxClient(b.endpoint, dispatcher);
    cleanups.push(async () => raw.socket.destroy());
    return raw;
  }
  const openJson = (target: string, port = 1): string => JSON.stringify({ target, address: '127.0.0.1', port });

  /** The broker's raw socket for its only tunnel: how much it holds for the client. */
  function brokerSocket(b: TestBroker, i = 0): { writableLength: number; isPaused(): boolean; destroyed: boolean } {
    return b.tunnelSockets[i] as unknown as { writableLength: number; isPaused(): boolean; destroyed: boolean };
  }

  test('control: PING is answered by PONG, an OPEN to a good target echoes, the tunnel stays up', async () => {
    const b = await broker();
    const raw = await client(b);
    raw.send(FrameType.PING, 0, Buffer.from('12345678'));
    const pong = await raw.next((f) => f.type === FrameType.PONG, 'the PONG');
    assert.equal(pong.payload.toString(), '12345678');
    raw.send(FrameType.OPEN, 1, openJson('pg-prod'));
    assert.equal((await raw.next((f) => f.channel === 1, 'the answer to OPEN 1')).type, FrameType.OPEN_OK);
    raw.send(FrameType.DATA, 1, 'hello');
    assert.equal((await raw.next((f) => f.channel === 1 && f.type === FrameType.DATA, 'the echo')).payload.toString(), 'HELLO');
    assert.equal(b.acceptor.size, 1);
  });

  test('a PING with a 1 MiB payload, sent 40 times by a client that never reads, ends the tunnel instead of buffering 40 MiB of PONGs', async () => {
    const b = await broker();
    const raw = await client(b);
    raw.socket.pause(); // the attacker reads nothing from now on
    const ping = encodeFrame(FrameType.PING, 0, Buffer.alloc(MiB, 0x61));
    raw.socket.write(Buffer.concat(Array.from({ length: 40 }, () => ping)));
    const sock = brokerSocket(b);
    let closed = false;
    raw.closed.then(() => (closed = true), () => {});
    await waitFor(() => closed || sock.destroyed || sock.writableLength > BACKLOG_BOUND, 'the broker to end the tunnel (or to pile up PONGs)', 30_000);
    assert.ok(sock.writableLength <= BACKLOG_BOUND, `the broker holds ${sock.writableLength} bytes of PONG for a client that does not read`);
    await waitFor(() => b.acceptor.size === 0, 'the broker to drop the tunnel', 30_000);
  });

  for (const [what, frame] of [
    ['empty PINGs', (_i: number) => encodeFrame(FrameType.PING, 0, Buffer.alloc(56, 0x70))],
    ['OPENs of invalid target names (each answered by OPEN_FAIL)', (i: number) => encodeFrame(FrameType.OPEN, i + 1, Buffer.from(openJson('bad name', i)))],
  ] as const) {
    test(`a flood of ${what} from a client that stops reading: the broker stops reading too, holds a bounded backlog, and answers all once the client reads`, async () => {
      const b = await broker();
      const raw = await client(b);
      const other = await client(b); // another tunnel on the same broker
      raw.socket.pause();
      const count = 400_000;
      const frames: Buffer[] = [];
      for (let i = 0; i < count; i++) frames.push(frame(i));
      raw.socket.write(Buffer.concat(frames));
      const sock = brokerSocket(b);
      await waitFor(() => sock.writableLength > BACKLOG_BOUND || sock.isPaused(), 'the broker to stop reading (or to pile up replies)', 30_000);
      assert.ok(sock.writableLength <= BACKLOG_BOUND, `the broker holds ${sock.writableLength} bytes of replies for a client that does not read`);

      // Meanwhile another tunnel is served.
      other.send(FrameType.PING, 0, Buffer.from('other'));
      assert.equal((await other.next((f) => f.type === FrameType.PONG, "the other tunnel's PONG")).payload.toString(), 'other');

      // The client reads again: every frame it sent is answered, and the tunnel is still up.
      const isReply = (type: number): boolean => type === FrameType.PONG || type === FrameType.OPEN_FAIL;
      raw.socket.resume();
      let replies = 0;
      let scanned = 0;
      await waitFor(() => {
        for (; scanned < raw.frames.length; scanned++) if (isReply(raw.frames[scanned]!.type)) replies++;
        return replies >= count;
      }, 'every flood frame to be answered', 60_000);
      assert.equal(replies, count);
      assert.equal(b.acceptor.size, 2, 'both tunnels are up');
      raw.send(FrameType.OPEN, count + 1, openJson('pg-prod'));
      assert.equal((await raw.next((f) => f.channel === count + 1, 'the answer to a good OPEN')).type, FrameType.OPEN_OK);
    });
  }

  test(`a flood of OPENs to a good target: at most ${DEFAULT_MAX_CHANNELS_PER_TUNNEL} channels live at once per tunnel, the rest refused with a code, and a closed channel frees its place`, async () => {
    const b = await broker();
    const raw = await client(b);
    const n = DEFAULT_MAX_CHANNELS_PER_TUNNEL + 100;
    raw.socket.write(Buffer.concat(Array.from({ length: n }, (_, i) => encodeFrame(FrameType.OPEN, i + 1, Buffer.from(openJson('pg-prod', i))))));
    await waitFor(() => raw.frames.filter((f) => f.type === FrameType.OPEN_OK || f.type === FrameType.OPEN_FAIL).length >= n, 'an answer to every OPEN', 30_000);
    const ok = raw.frames.filter((f) => f.type === FrameType.OPEN_OK);
    const refused = raw.frames.filter((f) => f.type === FrameType.OPEN_FAIL);
    assert.equal(b.channels.length, DEFAULT_MAX_CHANNELS_PER_TUNNEL, 'channels handed to the proxies');
    assert.equal(ok.length, DEFAULT_MAX_CHANNELS_PER_TUNNEL);
    assert.equal(refused.length, 100);
    assert.equal((JSON.parse(refused[0]!.payload.toString()) as { code: string }).code, 'AG_TUNNEL_TOO_MANY_CHANNELS');
    assert.equal(b.acceptor.size, 1, 'the tunnel carries on');

    // Control: the client closes channel 1; once the broker has let it go, a new channel opens and works.
    raw.send(FrameType.CLOSE, 1);
    await waitFor(() => b.channels[0]!.stream.destroyed, 'the broker to let channel 1 go');
    raw.send(FrameType.OPEN, n + 1, openJson('pg-prod'));
    assert.equal((await raw.next((f) => f.channel === n + 1, 'the answer to the new OPEN')).type, FrameType.OPEN_OK);
    raw.send(FrameType.DATA, n + 1, 'again');
    assert.equal((await raw.next((f) => f.channel === n + 1 && f.type === FrameType.DATA, 'the echo')).payload.toString(), 'AGAIN');
  });

  test(`one login opening tunnels without end: at most ${DEFAULT_MAX_TUNNELS_PER_IDENTITY} live at once (429, which the CLI retries), another login unaffected, a closed tunnel frees its place`, async () => {
    const b = await startTestBroker({ hostKey, tokens: { good: { sub: 'alice' }, other: { sub: 'bob' } }, maxTunnelsPerIdentity: DEFAULT_MAX_TUNNELS_PER_IDENTITY });
    cleanups.push(() => b.close());
    const held: RawMuxClient[] = [];
    for (let i = 0; i < DEFAULT_MAX_TUNNELS_PER_IDENTITY; i++) {
      const raw = await rawMuxClient(b.endpoint, dispatcher);
      cleanups.push(async () => raw.socket.destroy());
      held.push(raw);
    }
    await assert.rejects(rawMuxClient(b.endpoint, dispatcher), { code: 'AG_TUNNEL_UNAVAILABLE', message: /HTTP 429.*already holds 64 tunnels/ });
    assert.equal(b.acceptor.size, DEFAULT_MAX_TUNNELS_PER_IDENTITY);

    // Control: another login still gets its tunnel, and a channel on it works.
    const bob = await rawMuxClient(b.endpoint, dispatcher, { token: 'other' });
    cleanups.push(async () => bob.socket.destroy());
    bob.send(FrameType.OPEN, 1, openJson('pg-prod'));
    assert.equal((await bob.next((f) => f.channel === 1, "the answer to bob's OPEN")).type, FrameType.OPEN_OK);

    // Control: alice closes one tunnel; once the broker has seen it go, she may open another.
    held[0]!.socket.destroy();
    await waitFor(() => b.acceptor.size === DEFAULT_MAX_TUNNELS_PER_IDENTITY, 'the broker to drop the closed tunnel');
    const again = await rawMuxClient(b.endpoint, dispatcher);
    cleanups.push(async () => again.socket.destroy());
    again.send(FrameType.OPEN, 1, openJson('pg-prod'));
    assert.equal((await again.next((f) => f.channel === 1, 'the answer to the new OPEN')).type, FrameType.OPEN_OK);
  });

  test(`one login spreading channels over several tunnels: at most ${DEFAULT_MAX_CHANNELS_PER_IDENTITY} live at once across them, another login unaffected, a closed channel frees its place`, async () => {
    const b = await startTestBroker({
      hostKey,
      tokens: { good: { sub: 'alice' }, other: { sub: 'bob' } },
      maxTunnelsPerIdentity: DEFAULT_MAX_TUNNELS_PER_IDENTITY,
      maxChannelsPerIdentity: DEFAULT_MAX_CHANNELS_PER_IDENTITY,
    });
    cleanups.push(() => b.close());
    const perTunnel = 200; // under the per-tunnel cap, so only the per-login one can refuse
    const tunnels: RawMuxClient[] = [];
    for (let t = 0; t < 3; t++) {
      const raw = await client(b);
      raw.socket.write(Buffer.concat(Array.from({ length: perTunnel }, (_, i) => encodeFrame(FrameType.OPEN, i + 1, Buffer.from(openJson('pg-prod', i))))));
      await waitFor(() => raw.frames.filter((f) => f.type === FrameType.OPEN_OK || f.type === FrameType.OPEN_FAIL).length >= perTunnel, 'an answer to every OPEN', 30_000);
      tunnels.push(raw);
    }
    const all = tunnels.flatMap((t) => t.frames);
    const refused = all.filter((f) => f.type === FrameType.OPEN_FAIL);
    assert.equal(all.filter((f) => f.type === FrameType.OPEN_OK).length, DEFAULT_MAX_CHANNELS_PER_IDENTITY);
    assert.equal(refused.length, 3 * perTunnel - DEFAULT_MAX_CHANNELS_PER_IDENTITY);
    assert.equal((JSON.parse(refused[0]!.payload.toString()) as { code: string }).code, 'AG_TUNNEL_TOO_MANY_CHANNELS');
    assert.equal(b.channels.length, DEFAULT_MAX_CHANNELS_PER_IDENTITY);

    // Control: bob's channel opens and works.
    const bob = await rawMuxClient(b.endpoint, dispatcher, { token: 'other' });
    cleanups.push(async () => bob.socket.destroy());
    bob.send(FrameType.OPEN, 1, openJson('pg-prod'));
    assert.equal((await bob.next((f) => f.channel === 1, "the answer to bob's OPEN")).type, FrameType.OPEN_OK);

    // Control: alice closes a channel on her first tunnel; a new one on her third then opens.
    tunnels[0]!.send(FrameType.CLOSE, 1);
    await waitFor(() => b.channels[0]!.stream.destroyed, 'the broker to let the channel go');
    const third = tunnels[2]!;
    third.send(FrameType.OPEN, perTunnel + 1, openJson('pg-prod'));
    assert.equal((await third.next((f) => f.channel === perTunnel + 1, 'the answer to the new OPEN')).type, FrameType.OPEN_OK);
    third.send(FrameType.DATA, perTunnel + 1, 'more');
    assert.equal((await third.next((f) => f.channel === perTunnel + 1 && f.type === FrameType.DATA, 'the echo')).payload.toString(), 'MORE');
  });

  test('the real CLI dialer past the per-tunnel cap: a refusal that names the limit and what to do (not "check the target name"), and the next channel after one closes works', async () => {
    const b = await broker();
    const t = openTunnel({ endpoint: b.endpoint, dispatcher, getToken: async () => 'good', hostKeyFingerprint: hostKeyFingerprint(hostKey), reconnect: { initialMs: 20, maxMs: 200 } });
    cleanups.push(() => t.close());
    await t.ready(10_000);
    const open = [];
    for (let i = 0; i < DEFAULT_MAX_CHANNELS_PER_TUNNEL; i++) open.push(await t.openChannel('pg-prod', 10_000));
    await assert.rejects(t.openChannel('pg-prod', 10_000), (err: Error & { code?: string; hint?: string }) => {
      assert.equal(err.code, 'AG_TUNNEL_CHANNEL_REFUSED');
      assert.match(err.message, /AG_TUNNEL_TOO_MANY_CHANNELS.*already carries 256 open connections/);
      assert.match(err.hint ?? '', /Close connections you no longer use/);
      return true;
    });
    // Control: one local connection ends; the next one gets through and works.
    open[0]!.destroy();
    await waitFor(() => b.channels[0]!.stream.destroyed, 'the broker to let the channel go');
    assert.equal((await roundTrip(await t.openChannel('pg-prod', 10_000), 'ok')).toString(), 'OK');
  });
});
