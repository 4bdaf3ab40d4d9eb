/**
 * The `tunnel-relay` path: pgbench → local listener → agentgate's tunnel (HTTPS upgrade,
 * SSH over TLS, a channel per connection) → PostgreSQL, in two processes, with no proxy,
 * policy or audit behind it. Between the node-relay floor and agentgate, it splits
 * agentgate's overhead into what the transport costs and what the broker's work costs.
 * (TLS is not verified here: `rejectUnauthorized: false`. A bench fixture only.)
 */
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { makeSelfSignedCert } from '../src/shared/self-signed-cert.js';
import { endJsonChild, processCpuUs, spawnJsonChild } from './procs.js';
import type { NodeRelay } from './node-relay.js';

interface HopReady {
  port: number;
  pid: number;
  fingerprint?: string;
}

function startHop(input: object): Promise<HopReady & { child: ChildProcess }> {
  const script = fileURLToPath(new URL('./tunnel-relay-child.js', import.meta.url));
  const { child, ready } = spawnJsonChild<HopReady>(script, input, 'tunnel relay');
  return ready.then((r) => ({ child, ...r }));
}

export async function startTunnelRelay(pgPort: number): Promise<NodeRelay> {
  const { certPem, keyPem } = await makeSelfSignedCert({ commonName: 'agentgate-bench-tunnel', host: '127.0.0.1', validityDays: 1 });
  const back = await startHop({ role: 'back', upstreamPort: pgPort, certPem, keyPem });
  let front: HopReady & { child: ChildProcess };
  try {
    front = await startHop({ role: 'front', brokerPort: back.port, fingerprint: back.fingerprint });
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
