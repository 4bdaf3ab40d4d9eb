/**
 * One hop of the `node-relay` floor (see node-relay.ts): a bare Node TCP relay, with TLS
 * on one side. Reads `{ role, upstreamPort, certPem?, keyPem? }` as one JSON line on
 * stdin, listens on a free loopback port, prints it, and exits when stdin closes.
 *   front: plain TCP in (pgbench) → TLS out (to the back hop)
 *   back:  TLS in (from the front hop) → plain TCP out (PostgreSQL)
 * No framing, no parsing, no audit: bytes are piped as they come.
 */
import { createServer, connect, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { readJsonInput, replyReady } from './json-child.js';

interface RelayInput {
  role: 'front' | 'back';
  upstreamPort: number;
  certPem?: string;
  keyPem?: string;
}

const { input, stdinClosed } = await readJsonInput<RelayInput>();

function pipeBoth(a: Socket, b: Socket): void {
  a.setNoDelay(true);
  b.setNoDelay(true);
  a.pipe(b);
  b.pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
}

const server =
  input.role === 'front'
    ? createServer((c) => pipeBoth(c, tlsConnect({ host: '127.0.0.1', port: input.upstreamPort, rejectUnauthorized: false })))
    : createTlsServer({ cert: input.certPem, key: input.keyPem }, (c) => pipeBoth(c, connect(input.upstreamPort, '127.0.0.1')));
server.listen(0, '127.0.0.1', () => {
  replyReady({ port: (server.address() as { port: number }).port, pid: process.pid });
});
// eslint-disable-next-line @typescript-eslint/no-floating-promises -- stdinClosed only resolves (on 'close')
void stdinClosed.then(() => process.exit(0));
