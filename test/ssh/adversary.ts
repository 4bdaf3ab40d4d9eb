/**
 * What the SSH red-team corpora share: the control (the same command straight to the sshd
 * with the broker's own key, no agentgate), the command through agentgate, victim files,
 * and the check that a deny rule refused an attack that removes a victim.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { AuditRecord } from '../../src/shared/audit-hash.js';
import { TARGET, eventually, type RunResult, type SshStack } from './stack.js';

export interface Attack {
  id: string;
  what: string;
  /** The command that removes `v`. */
  cmd: (v: string) => string;
  /** What the command reads on its input, if anything. */
  input?: (v: string) => string;
  /** Prepares the target for victim `v` (a script the command names). */
  setup?: (v: string) => Promise<void>;
}

export interface RunOptions {
  input?: string | undefined;
  /** ssh options before the destination (`-o SetEnv=…`). */
  ssh?: string[];
}

export const cmdOf = (e: AuditRecord): string => String(e.detail['command'] ?? '');

/** Options for `ssh` straight to the sshd with the broker's own key (written once into `keyDir`). */
export function directArgs(stack: SshStack, keyDir: string): string[] {
  const key = join(keyDir, `direct_key_${stack.sshd.port}`);
  if (!existsSync(key)) execFileSync('sh', ['-c', `umask 077; cat > '${key}'`], { input: stack.sshd.clientPrivateKey });
  return ['-i', key, '-p', String(stack.sshd.port), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-o', 'IdentitiesOnly=yes', `${stack.sshd.user}@127.0.0.1`];
}

export function direct(stack: SshStack, keyDir: string, cmd: string, o: RunOptions = {}): Promise<RunResult> {
  return stack.run('ssh', [...(o.ssh ?? []), ...directArgs(stack, keyDir), cmd], { timeoutMs: 20_000, ...(o.input !== undefined ? { input: o.input } : {}) });
}

export function viaBroker(stack: SshStack, cmd: string, o: RunOptions = {}): Promise<RunResult> {
  return stack.run('ssh', ['-F', stack.sshConfig, ...(o.ssh ?? []), TARGET, cmd], { timeoutMs: 20_000, ...(o.input !== undefined ? { input: o.input } : {}) });
}

export async function victim(dir: string, name: string): Promise<string> {
  const v = join(dir, name);
  await writeFile(v, 'precious\n');
  return v;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Gone within a moment (a background command may finish after ssh returns). */
export async function removed(path: string, ms = 2_000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!existsSync(path)) return true;
    await sleep(50);
  }
  return !existsSync(path);
}

/**
 * The control removes a victim straight on sshd; through agentgate the same command is
 * refused (126) by `rule`, the victim stays, and the refusal is on record.
 */
export async function refusedByDenyRule(stack: SshStack, a: Attack, dirs: { keyDir: string; victims: string }, rule = 'no-rm'): Promise<void> {
  const c = await victim(dirs.victims, `${a.id}-control`);
  await a.setup?.(c);
  await direct(stack, dirs.keyDir, a.cmd(c), { input: a.input?.(c) });
  assert.equal(await removed(c), true, `control: \`${a.cmd(c)}\` straight to sshd removes the file`);
  const v = await victim(dirs.victims, `${a.id}-broker`);
  await a.setup?.(v);
  const r = await viaBroker(stack, a.cmd(v), { input: a.input?.(v) });
  assert.equal(await removed(v, 500), false, `agentgate ran \`${a.cmd(v)}\` past the ${rule} deny rule (exit ${r.code}): ${r.stderr}`);
  assert.equal(r.code, 126, r.stderr);
  const ev = await eventually('the refusal on record', async () => (await stack.events()).find((e) => e.type === 'ssh.command' && cmdOf(e) === a.cmd(v)));
  assert.equal(ev.decision?.effect, 'deny');
  assert.equal(ev.decision?.rule, rule, `refused by ${String(ev.decision?.rule)}, not by the deny rule`);
}
