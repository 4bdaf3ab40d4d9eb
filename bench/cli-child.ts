/**
 * The CLI end of `agentgate-split` in its own process, as `agentgate connect` runs: a
 * connect session to the broker child and a local Postgres listener, with the Node flags
 * bin/agentgate gives `connect` (runtime-flags.mjs). Measured apart from the bench's own
 * process, which also runs pgbench bookkeeping and the in-process stack.
 *
 * Protocol (json-child.ts): one JSON line in (the token travels there, never in argv),
 * one JSON line out once the listener is up; stdin closing ends the session and the process.
 */
import { Agent } from 'undici';
import { readJsonInput, replyReady } from './json-child.js';
import { startConnectSession } from '../src/tunnel/connect-session.js';

export interface CliChildInput {
  url: string;
  tlsCertPem: string;
  hostKeyFingerprint: string;
  token: string;
  target: string;
}

export interface CliChildReady {
  port: number;
  secret: string;
  pid: number;
}

const { input, stdinClosed } = await readJsonInput<CliChildInput>();
const dispatcher = new Agent({ connect: { ca: input.tlsCertPem } });
const session = startConnectSession({
  endpoint: `${input.url}/v1/tunnel`,
  dispatcher,
  getToken: () => Promise.resolve(input.token),
  hostKeyFingerprint: input.hostKeyFingerprint,
  reconnect: false,
});
const listener = await session.listen({ target: input.target, type: 'postgres', host: '127.0.0.1', port: 0 });
replyReady({ port: listener.address.port, secret: session.secret, pid: process.pid } satisfies CliChildReady);
await stdinClosed;
await session.close();
await dispatcher.close();
process.exit(0);
