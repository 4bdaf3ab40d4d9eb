/**
 * The broker in a child process (broker-child.ts) and this process as its CLI: a connect
 * session with a local listener, as `agentgate connect` would open. Used to read the
 * broker's own memory, and for the `agentgate-split` target, where the CLI end and the
 * broker do not share one event loop (as in a real deployment).
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import { Agent } from 'undici';
import { startConnectSession, type ConnectSession } from '../src/tunnel/connect-session.js';
import type { BrokerChildInput, BrokerChildReady } from './broker-child.js';
import { exited, spawnTracked, stopChild, tail } from './procs.js';

export interface BrokerProcess {
  pid: number;
  child: ChildProcess;
  /** VmRSS and VmHWM (peak) in MB. */
  memory(): Promise<{ rssMb: number; hwmMb: number }>;
  /** CPU of the child so far, in µs (clock-tick resolution). */
  cpuUs(): Promise<{ user: number; system: number }>;
  /** A connect session to this broker and its local Postgres listener. */
  connect(token: string, target: string): Promise<CliSession>;
  close(): Promise<void>;
}

export interface CliSession {
  port: number;
  secret: string;
  session: ConnectSession;
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Clock ticks per second for /proc/<pid>/stat; 100 on every Linux build we run on. */
const CLK_TCK = 100;

export async function startBrokerProcess(input: BrokerChildInput): Promise<BrokerProcess> {
  const script = fileURLToPath(new URL('./broker-child.js', import.meta.url));
  const child = spawnTracked(process.execPath, [script], { stdio: ['pipe', 'pipe', 'pipe'] });
  const errLog = tail(child.stderr);
  const sessions = new Set<CliSession>();
  const dispatchers: Agent[] = [];
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      for (const s of sessions) await s.close().catch(() => {});
      for (const d of dispatchers) await d.close().catch(() => {});
      // Closing stdin asks the child to shut down; a stuck one is killed after the grace.
      child.stdin!.end();
      const gone = await Promise.race([exited(child).then(() => true), sleep(5_000).then(() => false)]);
      if (!gone) await stopChild(child);
    })());
  try {
    child.stdin!.write(`${JSON.stringify(input)}\n`);
    const ready = await new Promise<BrokerChildReady>((resolve, reject) => {
      const rl = createInterface({ input: child.stdout! });
      rl.once('line', (l) => resolve(JSON.parse(l) as BrokerChildReady));
      void exited(child).then(() => reject(new Error(`broker child exited before it was ready: ${errLog().trim()}`)));
    });
    const pid = ready.pid;
    return {
      pid,
      child,
      async memory() {
        const status = await readFile(`/proc/${pid}/status`, 'utf8');
        const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
        return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 };
      },
      async cpuUs() {
        const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return { user: (Number(f[11]) * 1e6) / CLK_TCK, system: (Number(f[12]) * 1e6) / CLK_TCK };
      },
      async connect(token, target) {
        const dispatcher = new Agent({ connect: { ca: ready.tlsCertPem } });
        dispatchers.push(dispatcher);
        const session = startConnectSession({
          endpoint: `${ready.url}/v1/tunnel`,
          dispatcher,
          getToken: async () => token,
          hostKeyFingerprint: ready.sshHostKeyFingerprint,
          reconnect: false,
        });
        const listener = await session.listen({ target, type: 'postgres', host: '127.0.0.1', port: 0 });
        const s: CliSession = {
          port: listener.address.port,
          secret: session.secret,
          session,
          close: async () => {
            sessions.delete(s);
            await session.close();
          },
        };
        sessions.add(s);
        return s;
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
