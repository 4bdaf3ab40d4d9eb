/**
 * `node dist/bench/tunnel-echo.js [round trips]`: the tunnel's own cost per message, without
 * PostgreSQL or pgbench. 100-byte echo round trips, one at a time, (a) over a bare TLS
 * connection and (b) over one channel of agentgate's tunnel (dialer here, acceptor in a
 * child process), with the CPU each process spent per round trip. Three rounds each; the
 * first includes warm-up.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { Agent } from 'undici';
import { makeSelfSignedCert } from '../src/shared/self-signed-cert.js';
import { createTunnelAcceptor } from '../src/tunnel/acceptor.js';
import { openTunnel } from '../src/tunnel/dialer.js';
import { generateSshKeyPair, hostKeyFingerprint } from '../src/tunnel/host-key.js';

interface ServerReady {
  tlsPort: number;
  tunnelPort: number;
  fingerprint: string;
}

const MESSAGE = Buffer.alloc(100, 0x61);

function echo(stream: Duplex): void {
  stream.on('data', (d: Buffer) => stream.write(d));
  stream.on('error', () => stream.destroy());
}

async function server(): Promise<void> {
  const { certPem, keyPem } = await makeSelfSignedCert({ commonName: 'agentgate-bench-echo', host: '127.0.0.1', validityDays: 1 });
  const hostKey = generateSshKeyPair().private;
  const bare = createTlsServer({ cert: certPem, key: keyPem }, (s) => {
    s.setNoDelay(true);
    echo(s);
  });
  const acceptor = createTunnelAcceptor<object>({ hostKey, onChannel: (ch) => echo(ch.stream) });
  const https = createHttpsServer({ cert: certPem, key: keyPem }, (_req, res) => res.writeHead(404).end());
  https.on('upgrade', (req, socket: Duplex, head: Buffer) => acceptor.handleUpgrade({ identity: {}, req, socket, head }));
  await Promise.all([new Promise<void>((r) => bare.listen(0, '127.0.0.1', r)), new Promise<void>((r) => https.listen(0, '127.0.0.1', r))]);
  const ready: ServerReady = {
    tlsPort: (bare.address() as { port: number }).port,
    tunnelPort: (https.address() as { port: number }).port,
    fingerprint: hostKeyFingerprint(hostKey),
  };
  process.send?.(ready);
  process.on('message', () => process.send?.(process.cpuUsage()));
  process.on('disconnect', () => process.exit(0));
}

function serverCpu(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    child.once('message', (m: NodeJS.CpuUsage) => resolve(m.user + m.system));
    child.send('cpu');
  });
}

async function rounds(name: string, stream: Duplex, child: ChildProcess, n: number): Promise<void> {
  for (let round = 1; round <= 3; round++) {
    const own0 = process.cpuUsage();
    const srv0 = await serverCpu(child);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      await new Promise<void>((resolve) => {
        stream.once('data', () => resolve());
        stream.write(MESSAGE);
      });
    }
    const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
    const own = process.cpuUsage(own0);
    const srv = (await serverCpu(child)) - srv0;
    console.log(`${name} round ${round}: ${us.toFixed(1)} µs per round trip; CPU per round trip: this end ${((own.user + own.system) / n).toFixed(1)} µs, far end ${(srv / n).toFixed(1)} µs`);
  }
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 20_000);
  const child = fork(fileURLToPath(import.meta.url), ['--server'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ready = await new Promise<ServerReady>((resolve) => child.once('message', resolve));
  const bare = tlsConnect({ host: '127.0.0.1', port: ready.tlsPort, rejectUnauthorized: false });
  await new Promise<void>((resolve) => bare.once('secureConnect', resolve));
  bare.setNoDelay(true);
  await rounds('bare TLS', bare, child, n);
  bare.destroy();

  const dispatcher = new Agent({ connect: { rejectUnauthorized: false } });
  const tunnel = openTunnel({
    endpoint: `https://127.0.0.1:${ready.tunnelPort}/v1/tunnel`,
    dispatcher,
    getToken: () => Promise.resolve('bench'),
    hostKeyFingerprint: ready.fingerprint,
    reconnect: false,
    renewal: false,
  });
  await tunnel.ready();
  const channel = await tunnel.openChannel('echo');
  await rounds('tunnel channel', channel, child, n);
  channel.destroy();
  await tunnel.close();
  await dispatcher.close();
  child.disconnect();
}

if (process.argv[2] === '--server') await server();
else await main();
