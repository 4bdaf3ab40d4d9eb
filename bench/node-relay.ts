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
  /**
   * CPU (µs) both relay processes have used so far; `parts` by hop — the front hop stands
   * where agentgate's CLI end does, the back hop where its broker does.
   */
  cpuUs(): Promise<{ user: number; system: number; parts: { front: number; back: number } }>;
  close(): Promise<void>;
}

interface HopReady {
  port: number;
  pid: number;
  /** The back hop's SSH host key fingerprint (tunnel-relay), for the front hop to pin. */
  fingerprint?: string;
}

type Hop = HopReady & { child: ChildProcess };

function startHop(script: string, input: object, what: string): Promise<Hop> {
  const { child, ready } = spawnJsonChild<HopReady>(script, input, what);
  return ready.then((r) => ({ child, ...r }));
}

/**
 * Two relay processes (`script`, one JSON input each): the back one first, then the front
 * one, which is told how to reach it. pgbench connects to the front hop's port.
 */
export async function startTwoHops(script: string, what: string, backInput: object, frontInput: (back: HopReady) => object): Promise<NodeRelay> {
  const back = await startHop(script, backInput, what);
  let front: Hop;
  try {
    front = await startHop(script, frontInput(back), what);
  } catch (err) {
    await endJsonChild(back.child);
    throw err;
  }
  return {
    port: front.port,
    async cpuUs() {
      const [a, b] = await Promise.all([processCpuUs(front.pid), processCpuUs(back.pid)]);
      return { user: a.user + b.user, system: a.system + b.system, parts: { front: a.user + a.system, back: b.user + b.system } };
    },
    async close() {
      for (const hop of [front, back]) await endJsonChild(hop.child, 3_000);
    },
  };
}

export async function startNodeRelay(pgPort: number): Promise<NodeRelay> {
  const { certPem, keyPem } = await makeSelfSignedCert({ commonName: 'agentgate-bench-relay', host: '127.0.0.1', validityDays: 1 });
  const script = fileURLToPath(new URL('./node-relay-child.js', import.meta.url));
  return startTwoHops(script, 'node relay', { role: 'back', upstreamPort: pgPort, certPem, keyPem }, (back) => ({ role: 'front', upstreamPort: back.port }));
}
