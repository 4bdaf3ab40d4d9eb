/**
 * Wave 3 red team, SSH: an allowed exec asked for with a pty. The command is judged on its
 * words, but with a terminal many allowed read-only commands (man, `systemctl status`,
 * `journalctl`, `git log`, …) start a pager, and the pager (less) runs any command the
 * agent types after `!`. The test failed on the code before the fix (the proof): an exec
 * now keeps a pty only under a rule with `tty: true`; here the pty is refused and the
 * command is not run (see ssh-tty.test.ts for the rest of the terminal cases).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { TARGET, startSshStack, type SshStack } from './stack.js';

const POLICIES: PolicyConfig[] = [
  {
    name: 'agents-ssh',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      // Read-only documentation and status commands (DESIGN.md's example allows `systemctl status *`).
      { name: 'read-only', ssh: { commands: ['uptime', 'man *', 'systemctl status *'] }, effect: 'allow', extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

describe('wave 3: ssh exec with a pty', () => {
  let stack: SshStack;
  before(async () => {
    stack = await startSshStack(POLICIES);
  });
  after(async () => {
    await stack?.close();
  });

  test('W3-S1. an allowed `man ls` with a pty cannot run another command through its pager (`!cmd` in less)', async () => {
    const marker = join(stack.tmp.path, 'pwned-through-pager');
    // `ssh -tt` asks for a pty even though our stdin is a pipe; the agent types into it.
    const child = spawn('ssh', ['-tt', '-F', stack.sshConfig, TARGET, 'man', 'ls'], { env: { ...stack.env(), TERM: 'xterm' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString('latin1')));
    child.stderr.on('data', (b: Buffer) => (out += b.toString('latin1')));
    let done = false;
    const exited = new Promise<number | null>((resolve) =>
      child.once('exit', (code) => {
        done = true;
        resolve(code);
      }),
    );
    // Wait for the pager to be up (or the command refused), then type a shell escape.
    const until = Date.now() + 15_000;
    while (Date.now() < until && !done && !/NAME|ls - list|agentgate:/.test(out)) await new Promise((r) => setTimeout(r, 100));
    child.stdin.write(`!touch ${marker}\n`);
    const until2 = Date.now() + 5_000;
    while (Date.now() < until2 && !done && !existsSync(marker)) await new Promise((r) => setTimeout(r, 100));
    child.stdin.write('\nq');
    setTimeout(() => child.kill('SIGKILL'), 3_000).unref();
    await exited;
    assert.equal(existsSync(marker), false, `the pager ran a command that was never judged: touch ${marker} (the audit log says only \`man ls\`)`);
    const events = await stack.events();
    const cmds = events.filter((e) => e.type === 'ssh.command').map((e) => e.detail['command']);
    assert.ok(!cmds.some((c) => String(c).includes('touch')), 'sanity: the escape never went through policy');
    const man = events.find((e) => e.type === 'ssh.command' && e.detail['command'] === 'man ls');
    assert.equal(man?.detail['tty'], 'refused', 'the audit says the terminal was refused');
  });
});
