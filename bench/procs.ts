/**
 * Child processes for the benchmark: every long-lived one (sshd, ssh, pgbouncer, the
 * broker child, a running pgbench) is tracked so an error, a Ctrl-C or a plain exit
 * takes it down; nothing the bench started may outlive it.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createConnection, createServer } from 'node:net';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';

const tracked = new Set<ChildProcess>();
/** One-shot programs (pgbench, psql, ssh-keygen) running right now. */
const transient = new Set<ChildProcess>();
let hookInstalled = false;
let aborted: Error | undefined;

/**
 * Stop starting anything (every later run() rejects with `reason`) and end the one-shot
 * programs still running, waiting until they are gone so none is left for init to reap.
 */
export async function abortRuns(reason: Error): Promise<void> {
  aborted ??= reason;
  await Promise.all([...transient].map((c) => stopChild(c, 2_000)));
}

function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  // Only synchronous work is possible in 'exit': anything still tracked gets SIGKILL.
  process.on('exit', () => {
    for (const c of tracked) {
      try {
        c.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
}

/** Spawn a long-lived child that is killed when the bench exits, however it exits. */
export function spawnTracked(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  installExitHook();
  const child = spawn(cmd, args, opts);
  tracked.add(child);
  child.once('exit', () => tracked.delete(child));
  child.once('error', () => tracked.delete(child));
  return child;
}

export function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Resolves when the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (!isRunning(child)) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the child is gone. */
export async function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (!isRunning(child)) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited(child);
  clearTimeout(timer);
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a program to completion; it is tracked while it runs, so an abort kills it too. */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<RunResult> {
  if (aborted) return Promise.reject(aborted);
  return new Promise((resolve, reject) => {
    const child = spawnTracked(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    transient.add(child);
    child.once('exit', () => transient.delete(child));
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => (aborted ? reject(aborted) : resolve({ code, signal, stdout, stderr })));
    child.stdin!.on('error', () => {
      /* the child may exit before reading; its status tells the story */
    });
    child.stdin!.end(opts.input ?? '');
  });
}

export async function runOk(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd.split('/').pop()} ${args[0] ?? ''} failed (${r.code ?? r.signal}): ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

/** A port that was free a moment ago (for programs that cannot take port 0). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Whether something accepts TCP connections on 127.0.0.1:port right now. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Poll `check` until it returns true; fail with `what` (and the child's log tail) after `timeoutMs`. */
export async function waitUntil(what: string, check: () => Promise<boolean>, opts: { timeoutMs?: number; child?: ChildProcess; log?: () => string } = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  for (;;) {
    if (opts.child && !isRunning(opts.child)) throw new Error(`${what}: process exited (${opts.child.exitCode ?? opts.child.signalCode}): ${opts.log?.().trim() ?? ''}`);
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${opts.log?.().trim() ?? ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Keep the last `max` characters a child writes to `stream`, draining it so it never blocks. */
export function tail(stream: NodeJS.ReadableStream | null, max = 8192): () => string {
  let buf = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (d: string) => {
    buf = (buf + d).slice(-max);
  });
  return () => buf;
}

/**
 * A Node child speaking the bench's small start protocol: it reads one JSON line of input
 * on stdin, answers one JSON line on stdout once ready, and exits when stdin closes.
 */
export function spawnJsonChild<Ready>(script: string, input: unknown, what: string, nodeFlags: string[] = [], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; ready: Promise<Ready> } {
  const child = spawnTracked(process.execPath, [...nodeFlags, script], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const errLog = tail(child.stderr);
  child.stdin!.write(`${JSON.stringify(input)}\n`);
  const ready = new Promise<Ready>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (l) => resolve(JSON.parse(l) as Ready));
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- exited only resolves (on 'exit')
    void exited(child).then(() => reject(new Error(`${what} exited before it was ready: ${errLog().trim()}`)));
  });
  return { child, ready };
}

/** Closes a spawnJsonChild's stdin (its cue to exit); one still running after `graceMs` is stopped. */
export async function endJsonChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  child.stdin?.end();
  const gone = await Promise.race([exited(child).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), graceMs))]);
  if (!gone) await stopChild(child);
}

/** Clock ticks per second for /proc/<pid>/stat; 100 on every Linux build we run on. */
const CLK_TCK = 100;

/** CPU (µs) a process has used so far, from /proc/<pid>/stat (utime and stime, fields 14 and 15). */
export async function processCpuUs(pid: number): Promise<{ user: number; system: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name, which may hold spaces.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: (Number(f[11]) * 1e6) / CLK_TCK, system: (Number(f[12]) * 1e6) / CLK_TCK };
}

/** Resident and peak resident memory (MB) of a process, from /proc/<pid>/status. */
export async function processMemoryMb(pid: number): Promise<{ rssMb: number; hwmMb: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 };
}
