/**
 * One hop of the `tunnel-relay` path (see tunnel-relay.ts): agentgate's own tunnel — the
 * HTTPS upgrade, the agentgate-mux/1 multiplex on TLS, one channel per local connection — with
 * nothing behind it but a pipe to PostgreSQL. Reads `{ role, … }` as one JSON line on
 * stdin, prints `{ port, pid, fingerprint? }` when ready, exits when stdin closes.
 *   back:  HTTPS server + tunnel acceptor → plain TCP to PostgreSQL (no proxy, policy or audit)
 *   front: local listener → tunnel dialer (the CLI's code) → the back hop
 */
import { connect, type Socket } from 'node:net';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { Agent } from 'undici';
import { readJsonInput, replyReady } from './json-child.js';
import { createTunnelAcceptor } from '../src/tunnel/acceptor.js';
import { openTunnel } from '../src/tunnel/dialer.js';
import { listenLocal } from '../src/tunnel/local-listener.js';
import { generateSshKeyPair, hostKeyFingerprint } from '../src/tunnel/host-key.js';

type RelayInput =
  | { role: 'back'; upstreamPort: number; certPem: string; keyPem: string }
  | { role: 'front'; brokerPort: number; fingerprint: string };

const { input, stdinClosed } = await readJsonInput<RelayInput>();

function pipeBoth(a: Duplex, b: Socket): void {
  b.setNoDelay(true);
  a.pipe(b);
  b.pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
}

if (input.role === 'back') {
  const hostKey = generateSshKeyPair('agentgate-bench').private;
  const acceptor = createTunnelAcceptor<object>({
    hostKey,
    onChannel: (ch) => pipeBoth(ch.stream, connect(input.upstreamPort, '127.0.0.1')),
  });
  const server = createHttpsServer({ cert: input.certPem, key: input.keyPem }, (_req, res) => {
    res.writeHead(404).end();
  });
  server.on('upgrade', (req, socket: Duplex, head: Buffer) => acceptor.handleUpgrade({ identity: {}, req, socket, head }));
  server.listen(0, '127.0.0.1', () => {
    replyReady({ port: (server.address() as { port: number }).port, pid: process.pid, fingerprint: hostKeyFingerprint(hostKey) });
  });
} else {
  const tunnel = openTunnel({
    endpoint: `https://127.0.0.1:${input.brokerPort}/v1/tunnel`,
    dispatcher: new Agent({ connect: { rejectUnauthorized: false } }),
    getToken: () => Promise.resolve('bench'),
    hostKeyFingerprint: input.fingerprint,
    reconnect: false,
    renewal: false,
  });
  await tunnel.ready();
  const local = await listenLocal({ host: '127.0.0.1', port: 0, open: () => tunnel.openChannel('pg') });
  replyReady({ port: local.address.port, pid: process.pid });
}
// eslint-disable-next-line @typescript-eslint/no-floating-promises -- stdinClosed only resolves (on 'close')
void stdinClosed.then(() => process.exit(0));
