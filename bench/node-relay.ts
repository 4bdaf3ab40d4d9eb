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
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import { makeSelfSignedCert } from '../src/shared/self-signed-cert.js';
import { exited, spawnTracked, stopChild, tail } from './procs.js';

export interface NodeRelay {
  port: number;
  /** CPU (µs) both relay processes have used so far. */
  cpuUs(): Promise<{ user: number; system: number }>;
  close(): Promise<void>;
}

/** Clock ticks per second for /proc/<pid>/stat. */
const CLK_TCK = 100;

async function cpuOf(pid: number): Promise<{ user: number; system: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: (Number(f[11]) * 1e6) / CLK_TCK, system: (Number(f[12]) * 1e6) / CLK_TCK };
}

async function startHop(input: object): Promise<{ child: ChildProcess; port: number; pid: number }> {
  const script = fileURLToPath(new URL('./node-relay-child.js', import.meta.url));
  const child = spawnTracked(process.execPath, [script], { stdio: ['pipe', 'pipe', 'pipe'] });
  const errLog = tail(child.stderr);
  child.stdin!.write(`${JSON.stringify(input)}\n`);
  const ready = await new Promise<{ port: number; pid: number }>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (l) => resolve(JSON.parse(l) as { port: number; pid: number }));
    void exited(child).then(() => reject(new Error(`node relay exited before it was ready: ${errLog().trim()}`)));
  });
  return { child, ...ready };
}

export async function startNodeRelay(pgPort: number): Promise<NodeRelay> {
  const { certPem, keyPem } = await makeSelfSignedCert({ commonName: 'agentgate-bench-relay', host: '127.0.0.1', validityDays: 1 });
  const back = await startHop({ role: 'back', upstreamPort: pgPort, certPem, keyPem });
  let front: Awaited<ReturnType<typeof startHop>>;
  try {
    front = await startHop({ role: 'front', upstreamPort: back.port });
  } catch (err) {
    await stopChild(back.child);
    throw err;
  }
  return {
    port: front.port,
    async cpuUs() {
      const [a, b] = await Promise.all([cpuOf(front.pid), cpuOf(back.pid)]);
      return { user: a.user + b.user, system: a.system + b.system };
    },
    async close() {
      for (const hop of [front, back]) {
        hop.child.stdin!.end();
        await Promise.race([exited(hop.child), new Promise((r) => setTimeout(r, 3_000))]);
        await stopChild(hop.child);
      }
    },
  };
}
