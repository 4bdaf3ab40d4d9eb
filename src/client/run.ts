/**
 * `agentgate run`: open the tunnels, hand the child the environment its clients read
 * (DATABASE_URL, PG*, KUBECONFIG, AGENTGATE_SSH_CONFIG and GIT_SSH_COMMAND), run it — in a pty when we sit on a terminal, so
 * interactive agents behave as they would directly — and pass its exit status through.
 *
 * Exit status: the child's code; a child killed by a signal gives 128 + the signal's
 * number (as shells report it); a `--timeout` that fires gives 124 (as timeout(1)).
 */
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import type { Endpoint } from './connect.js';
import { CLIENT_PROTOCOLS } from './protocols.js';

export const TIMEOUT_EXIT = 124;

/** Variables that carry a credential for the broker (token-sources.ts): never in the child's environment. */
export const CREDENTIAL_ENV: readonly string[] = ['AGENTGATE_TOKEN', 'AGENTGATE_CLIENT_SECRET', 'ACTIONS_ID_TOKEN_REQUEST_TOKEN', 'ACTIONS_ID_TOKEN_REQUEST_URL'];

/** The environment for the child: the caller's, plus one block per endpoint. */
export function endpointEnv(endpoints: readonly Endpoint[], session: { id: string; secret: string }, base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base, AGENTGATE_SESSION: session.id };
  // A credential handed to us must not leak into the wrapped command: a token, a client
  // secret, or GitHub's OIDC request token (with it the child mints a token for the broker's
  // audience and is the job's identity at the broker, outside this session).
  for (const name of CREDENTIAL_ENV) delete env[name];
  const seen = new Set<string>();
  for (const e of endpoints) {
    const first = !seen.has(e.target.type);
    seen.add(e.target.type);
    CLIENT_PROTOCOLS[e.target.type].env(e, session, env, first);
  }
  return env;
}

export interface ChildResult {
  /** What `agentgate run` exits with. */
  exitCode: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

export interface RunChildOptions {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Use a pty (node-pty) — when stdin and stdout are terminals. */
  pty: boolean;
  /** The child's stdout goes to our stderr (`run --json`: our stdout holds only the summary). */
  stdoutToStderr?: boolean;
  timeoutMs?: number;
}

export const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

export function exitCodeFor(code: number | null, signal: NodeJS.Signals | null | number): number {
  if (code !== null) return code;
  if (signal === null) return 1;
  const n = typeof signal === 'number' ? signal : (osConstants.signals as Record<string, number>)[signal];
  return 128 + (n ?? 1);
}

/** Runs the command to completion, forwarding our signals to it. */
export async function runChild(opts: RunChildOptions): Promise<ChildResult> {
  // A pty has one output stream, so it cannot keep the child's stdout apart.
  return opts.pty && !opts.stdoutToStderr ? runInPty(opts) : runPlain(opts);
}

function runPlain(opts: RunChildOptions): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(opts.command, opts.args, { env: opts.env, stdio: opts.stdoutToStderr ? ['inherit', 2, 'inherit'] : 'inherit' });
    let timedOut = false;
    const forward = (sig: NodeJS.Signals): void => {
      child.kill(sig);
    };
    for (const s of FORWARDED) process.on(s, forward);
    const timer = opts.timeoutMs ? setTimeout(() => killSlowly(() => child.kill('SIGTERM'), () => child.kill('SIGKILL'), (t) => (timedOut = t)), opts.timeoutMs) : undefined;
    const done = (): void => {
      for (const s of FORWARDED) process.off(s, forward);
      if (timer) clearTimeout(timer);
    };
    child.on('error', (err: NodeJS.ErrnoException) => {
      done();
      reject(err);
    });
    child.on('close', (code, signal) => {
      done();
      resolve({ exitCode: timedOut ? TIMEOUT_EXIT : exitCodeFor(code, signal), code, signal, timedOut });
    });
  });
}

async function runInPty(opts: RunChildOptions): Promise<ChildResult> {
  const pty = await import('node-pty');
  const out = process.stdout;
  const input = process.stdin;
  const term = pty.spawn(opts.command, opts.args, {
    name: process.env['TERM'] ?? 'xterm-256color',
    cols: out.columns || 80,
    rows: out.rows || 24,
    cwd: process.cwd(),
    env: opts.env as Record<string, string>,
  });
  let timedOut = false;
  const onInput = (d: Buffer): void => term.write(d.toString('utf8'));
  const onResize = (): void => term.resize(out.columns || 80, out.rows || 24);
  // In raw mode Ctrl-C reaches the child as a byte, as it would without us.
  const forward = (sig: NodeJS.Signals): void => term.kill(sig);
  const wasRaw = input.isRaw;
  if (input.isTTY) input.setRawMode(true);
  input.on('data', onInput);
  input.resume();
  process.on('SIGWINCH', onResize);
  for (const s of FORWARDED) process.on(s, forward);
  const data = term.onData((d) => out.write(d));
  const timer = opts.timeoutMs ? setTimeout(() => killSlowly(() => term.kill('SIGTERM'), () => term.kill('SIGKILL'), (t) => (timedOut = t)), opts.timeoutMs) : undefined;
  return new Promise((resolve) => {
    term.onExit(({ exitCode, signal }) => {
      data.dispose();
      if (timer) clearTimeout(timer);
      input.off('data', onInput);
      if (input.isTTY) input.setRawMode(wasRaw);
      input.pause();
      process.off('SIGWINCH', onResize);
      for (const s of FORWARDED) process.off(s, forward);
      const sig = signal ? signal : null;
      const code = sig ? null : exitCode;
      resolve({ exitCode: timedOut ? TIMEOUT_EXIT : exitCodeFor(code, sig), code, signal: null, timedOut });
    });
  });
}

/** SIGTERM, then SIGKILL if the child is still there 5 s later. */
function killSlowly(term: () => void, kill: () => void, mark: (t: boolean) => void): void {
  mark(true);
  term();
  setTimeout(() => {
    try {
      kill();
    } catch {
      // already gone
    }
  }, 5_000).unref();
}

/** `30s`, `10m`, `2h`, or plain seconds. */
export function parseTimeout(raw: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  const ms = n * unit;
  return ms > 0 ? ms : undefined;
}
