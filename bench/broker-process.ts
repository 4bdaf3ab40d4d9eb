/**
 * The broker in a child process (broker-child.ts) and this process as its CLI: a connect
 * session with a local listener, as `agentgate connect` would open. Used to read the
 * broker's own memory, and for the `agentgate-split` target, where the CLI end and the
 * broker do not share one event loop (as in a real deployment).
 */
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { Agent } from 'undici';
import { startConnectSession, type ConnectSession } from '../src/tunnel/connect-session.js';
import type { BrokerChildInput, BrokerChildReady } from './broker-child.js';
import type { CliChildInput, CliChildReady } from './cli-child.js';
import { endJsonChild, processCpuUs, processMemoryMb, spawnJsonChild } from './procs.js';

/** As in bin/agentgate's first line. */
const BROKER_NODE_FLAGS = ['--liftoff-only', '--max-semi-space-size=4'];
const BROKER_ENV = { MALLOC_ARENA_MAX: '2' };

export interface BrokerProcess {
  pid: number;
  child: ChildProcess;
  /** VmRSS and VmHWM (peak) in MB. */
  memory(): Promise<{ rssMb: number; hwmMb: number }>;
  /** CPU of the child so far, in µs (clock-tick resolution). */
  cpuUs(): Promise<{ user: number; system: number }>;
  /** A connect session to this broker and its local Postgres listener, in this process. */
  connect(token: string, target: string): Promise<CliSession>;
  /** The same in a child process of its own, as `agentgate connect` runs (cli-child.ts). */
  connectChild(token: string, target: string): Promise<CliProcess>;
  close(): Promise<void>;
}

export interface CliSession {
  port: number;
  secret: string;
  session: ConnectSession;
  close(): Promise<void>;
}

export interface CliProcess {
  port: number;
  secret: string;
  pid: number;
  cpuUs(): Promise<{ user: number; system: number }>;
  close(): Promise<void>;
}

/** The flags bin/agentgate gives `connect` (runtime-flags.mjs). */
const CLI_NODE_FLAGS = ['--max-semi-space-size=4'];

export async function startBrokerProcess(input: BrokerChildInput): Promise<BrokerProcess> {
  const script = fileURLToPath(new URL('./broker-child.js', import.meta.url));
  // The Node flags and allocator setting bin/agentgate runs with (README, "Broker memory").
  const { child, ready: started } = spawnJsonChild<BrokerChildReady>(script, input, 'broker child', BROKER_NODE_FLAGS, BROKER_ENV);
  const sessions = new Set<{ close(): Promise<void> }>();
  const dispatchers: Agent[] = [];
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      for (const s of sessions) await s.close().catch(() => {});
      for (const d of dispatchers) await d.close().catch(() => {});
      await endJsonChild(child);
    })());
  try {
    const ready = await started;
    const pid = ready.pid;
    return {
      pid,
      child,
      memory: () => processMemoryMb(pid),
      cpuUs: () => processCpuUs(pid),
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
      async connectChild(token, target) {
        const script = fileURLToPath(new URL('./cli-child.js', import.meta.url));
        const input: CliChildInput = { url: ready.url, tlsCertPem: ready.tlsCertPem, hostKeyFingerprint: ready.sshHostKeyFingerprint, token, target };
        const { child: cli, ready: up } = spawnJsonChild<CliChildReady>(script, input, 'CLI child', CLI_NODE_FLAGS);
        const c: CliProcess = {
          ...(await up.catch(async (err: unknown) => {
            await endJsonChild(cli);
            throw err;
          })),
          cpuUs: () => processCpuUs(c.pid),
          close: async () => {
            sessions.delete(c);
            await endJsonChild(cli);
          },
        };
        sessions.add(c);
        return c;
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
