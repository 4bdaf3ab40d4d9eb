/**
 * Time limits with raw sockets against the real stack (PostgreSQL, broker, CLI listener):
 * sessions.login_timeout at the broker and at the CLI's listener, the HTTPS port's TLS
 * handshake bound, and a target's idle_timeout. Timeouts are injected short through the
 * config; each wait ends on the peer closing the socket, and each test has a timeout of
 * its own so a limit that does not hold fails instead of hanging.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startPgStack, TARGET, eventually, type PgStack } from './stack.js';
import { RawPg, errorCodes, errorMessages } from './raw-client.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';
import type { LocalListener } from '../../src/tunnel/local-listener.js';

const BROKER_LOGIN_MS = 1_500;
const IDLE_MS = 400;

/** Resolves with what the peer sent once it closes the connection. */
function closedByPeer(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.once('close', () => resolve(Buffer.concat(chunks)));
  });
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

describe('connection time limits', () => {
  let stack: PgStack;
  let quickCli: LocalListener;

  before(async () => {
    stack = await startPgStack({
      config: { sessions: { loginTimeoutMs: BROKER_LOGIN_MS, tlsHandshakeTimeoutMs: 300 } },
      target: { idleTimeoutMs: IDLE_MS },
    });
    quickCli = await stack.session.listen({ target: TARGET, type: 'postgres', host: '127.0.0.1', port: 0, loginTimeoutMs: 150 });
  });
  after(async () => {
    await quickCli?.close();
    await stack?.close();
  });

  test('the broker ends a connection that sends nothing with FATAL 57014', { timeout: 15_000 }, async () => {
    const c = await RawPg.open(stack.port);
    const started = Date.now();
    const msgs = await c.untilClosed();
    assert.deepEqual(errorCodes(msgs), ['57014']);
    assert.match(errorMessages(msgs)[0] ?? '', /canceling authentication due to timeout/);
    assert.ok(Date.now() - started >= BROKER_LOGIN_MS - 50, 'not before the login timeout');
  });

  test('the broker ends a connection stuck in half a startup packet, and one stuck in SCRAM', { timeout: 15_000 }, async () => {
    const half = await RawPg.open(stack.port);
    half.send(fe.startupMessage({ user: 'agent', database: 'app' }).subarray(0, 6));
    const scram = await RawPg.open(stack.port);
    scram.send(fe.startupMessage({ user: 'agent', database: 'app' }));
    const [a, b] = await Promise.all([half.untilClosed(), scram.untilClosed()]);
    assert.deepEqual(errorCodes(a), ['57014']);
    // The SASL offer came, then the timeout: the client never answered it.
    assert.equal(b[0]?.type, 0x52);
    assert.deepEqual(errorCodes(b), ['57014']);
  });

  test('the CLI listener closes a connection that has not logged in within its own timeout', { timeout: 15_000 }, async () => {
    const s = await connect(quickCli.address.port);
    const started = Date.now();
    const received = await closedByPeer(s);
    // Closed by the CLI (silently), well before the broker's limit would have spoken.
    assert.equal(received.length, 0);
    assert.ok(Date.now() - started < BROKER_LOGIN_MS, `closed after ${Date.now() - started} ms`);
  });

  test('a logged-in connection through the quick listener is not cut by its login timeout', { timeout: 15_000 }, async () => {
    const c = await RawPg.login(quickCli.address.port, stack.session.secret);
    // Longer than the listener's 150 ms login timeout, shorter than the idle timeout.
    c.send(fe.query('select pg_sleep(0.3)'));
    const msgs = await c.untilReady();
    assert.deepEqual(errorCodes(msgs), []);
    c.close();
  });

  test('a TCP connection to the HTTPS port that never starts TLS is closed', { timeout: 15_000 }, async () => {
    const s = await connect(stack.broker.port);
    const received = await closedByPeer(s);
    assert.equal(received.length, 0);
  });

  test('idle_timeout ends an idle session with FATAL 57P05 and records session.end idle_timeout', { timeout: 20_000 }, async () => {
    const c = await RawPg.login(stack.port, stack.session.secret);
    // A statement running longer than the idle timeout is not idleness.
    c.send(fe.query('select pg_sleep(0.8)'));
    assert.deepEqual(errorCodes(await c.untilReady()), []);
    const started = Date.now();
    const msgs = await c.untilClosed();
    assert.deepEqual(errorCodes(msgs), ['57P05']);
    assert.match(errorMessages(msgs)[0] ?? '', /idle-session timeout.*idle_timeout of target "pg-test"/);
    assert.ok(Date.now() - started >= IDLE_MS - 50);

    const end = await eventually('session.end with idle_timeout', async () =>
      (await stack.events()).find((e) => e.type === 'session.end' && (e.detail as { reason?: string }).reason === 'idle_timeout'),
    );
    const events = await stack.events();
    const query = events.find((e) => e.session === end.session && e.type === 'query');
    assert.equal((query?.detail as { sql?: string }).sql, 'select pg_sleep(0.8)');
  });
});
