/**
 * One hop of the `tls-relay` alternative (see tls-relay.ts). Reads `{ role, … }` as one
 * JSON line on stdin, prints `{ port, pid }` when ready, exits when stdin closes.
 *   back:  https server; each `upgrade` answers 101 and pipes the socket to PostgreSQL
 *   front: local TCP listener; each connection upgrades its own HTTPS request (undici)
 *          and pipes the upgraded TLS socket
 */
import { connect, createServer, type Socket } from 'node:net';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { Pool } from 'undici';
import { readJsonInput, replyReady } from './json-child.js';

type RelayInput =
  | { role: 'back'; upstreamPort: number; certPem: string; keyPem: string }
  | { role: 'front'; brokerPort: number };

const { input, stdinClosed } = await readJsonInput<RelayInput>();

function pipeBoth(a: Duplex, b: Duplex): void {
  for (const s of [a, b]) (s as Partial<Socket>).setNoDelay?.(true);
  a.pipe(b);
  b.pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
}

if (input.role === 'back') {
  const server = createHttpsServer({ cert: input.certPem, key: input.keyPem }, (_req, res) => {
    res.writeHead(404).end();
  });
  server.on('upgrade', (_req, socket: Duplex, head: Buffer) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: agentgate-tls/1\r\nConnection: Upgrade\r\n\r\n');
    if (head.length > 0) socket.unshift(head);
    pipeBoth(socket, connect(input.upstreamPort, '127.0.0.1'));
  });
  server.listen(0, '127.0.0.1', () => {
    replyReady({ port: (server.address() as { port: number }).port, pid: process.pid });
  });
} else {
  const pool = new Pool(`https://127.0.0.1:${input.brokerPort}`, { connect: { rejectUnauthorized: false } });
  const server = createServer((local) => {
    local.pause();
    local.on('error', () => local.destroy());
    pool
      .upgrade({ path: '/v1/tunnel', method: 'GET', protocol: 'agentgate-tls/1', headers: { 'x-agentgate-target': 'pg' } })
      .then(({ socket }) => {
        pipeBoth(local, socket);
        local.resume();
      })
      .catch(() => local.destroy());
  });
  server.listen(0, '127.0.0.1', () => {
    replyReady({ port: (server.address() as { port: number }).port, pid: process.pid });
  });
}
// eslint-disable-next-line @typescript-eslint/no-floating-promises -- stdinClosed only resolves (on 'close')
void stdinClosed.then(() => process.exit(0));
