/**
 * The `node-relay` floor: pgbench → Node relay → TLS → Node relay → PostgreSQL, each
 * relay its own process doing nothing but `socket.pipe()`.
 *
 * That is the least any design with agentgate's shape can do — a CLI process and a
 * broker process, both Node, TLS between them — before adding SSH channels, the protocol
 * proxy, policy and audit. Its TPS and latency, measured in the same invocation, show
 * how much of agentgate's overhead is the shape itself and how much is agentgate's work.
 * (It verifies nothing: `rejectUnauthorized: false`. Never a thing to deploy.)
 */
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { makeSelfSignedCert } from '../src/shared/self-signed-cert.js';
import { endJsonChild, processCpuUs, spawnJsonChild } from './procs.js';

export interface NodeRelay {
  port: number;
  /** CPU (µs) both relay processes have used so far. */
  cpuUs(): Promise<{ user: number; system: number }>;
  close(): Promise<void>;
}

async function startHop(input: object): Promise<{ child: ChildProcess; port: number; pid: number }> {
  const script = fileURLToPath(new URL('./node-relay-child.js', import.meta.url));
  const { child, ready } = spawnJsonChild<{ port: number; pid: number }>(script, input, 'node relay');
  return { child, ...(await ready) };
}

export async function startNodeRelay(pgPort: number): Promise<NodeRelay> {
  const { certPem, keyPem } = await makeSelfSignedCert({ commonName: 'agentgate-bench-relay', host: '127.0.0.1', validityDays: 1 });
  const back = await startHop({ role: 'back', upstreamPort: pgPort, certPem, keyPem });
  let front: Awaited<ReturnType<typeof startHop>>;
  try {
    front = await startHop({ role: 'front', upstreamPort: back.port });
  } catch (err) {
    await endJsonChild(back.child);
    throw err;
  }
  return {
    port: front.port,
    async cpuUs() {
      const [a, b] = await Promise.all([processCpuUs(front.pid), processCpuUs(back.pid)]);
      return { user: a.user + b.user, system: a.system + b.system };
    },
    async close() {
      for (const hop of [front, back]) await endJsonChild(hop.child, 3_000);
    },
  };
}
