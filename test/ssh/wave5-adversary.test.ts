/**
 * Wave 5 red team, SSH (ids w5s-ssh-NN): deny and review rules against interpreters and
 * indirection. The policy is a deny list in front of "any plain command" (deny `rm *`,
 * allow `*`): the deny rule is the only guard, so it must see every program the command
 * runs — behind wrappers, inside `sh -c`, after `find -exec`, fed by `xargs` — and
 * refuse what runs code it cannot read (`python3 -c`, `perl -e`, a shell reading its
 * input, `git -c alias.x=!…`, `tar --checkpoint-action=exec=…`).
 *
 * Every attack has a control: the same command straight to the sshd (no agentgate)
 * removes the victim file. Through agentgate it is refused (126), the file stays, and the
 * refusal is on record. Harmless commands that must keep working are checked too.
 *
 * Requests other than exec (a shell with or without a pty, sftp) are checked under the same
 * policy: a rule about commands never opens them.
 *
 * Dropped (no effect on this target, so no control): `rsync -e` and `busybox rm` (neither
 * is installed here; both are covered by the same mechanism and its unit cases in
 * ssh-rules.test.ts), `sudo`/`doas` (no passwordless sudo for the test user), `watch`
 * (needs a terminal), env requests (the target's sshd accepts only LANG, LC_*,
 * GIT_PROTOCOL; agentgate forwards only LANG, LC_*, GIT_PROTOCOL, TZ).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { mkdir, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { TARGET, eventually, startSshStack, type SshStack } from './stack.js';
import { cmdOf, directArgs, refusedByDenyRule, removed, viaBroker, victim, type Attack } from './adversary.js';

const BASE = mkdtempSync('/tmp/w5s-');
const VICTIMS = join(BASE, 'victims');

const policy = (rules: PolicyConfig['rules']): PolicyConfig[] => [{ name: 'agents-ssh', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules }];
const NO_RM = { name: 'no-rm', ssh: { commands: ['rm *'] }, effect: 'deny' as const, extra: {} };
const REST = { name: 'rest', effect: 'deny' as const, extra: {} };
/** The deny rule is the only guard in front of any plain command. */
const DENY_LIST = policy([NO_RM, { name: 'anything-plain', ssh: { commands: ['*'] }, effect: 'allow', extra: {} }, REST]);
/** The same with compound commands allowed (`compound: true`): shell syntax reaches the deny rule. */
const DENY_LIST_COMPOUND = policy([NO_RM, { name: 'anything', ssh: { commands: ['*'], compound: true }, effect: 'allow', extra: {} }, REST]);
/** Removing files is held for a human; anything else plain runs. */
const REVIEW_LIST = policy([
  { name: 'held-rm', ssh: { commands: ['rm *'] }, effect: 'review', approvers: { groups: ['sre'], count: 1 }, extra: {} },
  { name: 'anything-plain', ssh: { commands: ['*'] }, effect: 'allow', extra: {} },
  REST,
]);

/** Each removes the victim while its first word is something other than `rm`. */
const INDIRECT: Attack[] = [
  { id: 'w5s-ssh-01', what: 'sh -c', cmd: (v) => `sh -c 'rm ${v}'` },
  { id: 'w5s-ssh-02', what: 'bash -lc (a login shell, -c in a cluster)', cmd: (v) => `bash -lc 'true; rm ${v}'` },
  { id: 'w5s-ssh-03', what: 'python3 -c', cmd: (v) => `python3 -c 'import os; os.remove("${v}")'` },
  { id: 'w5s-ssh-04', what: 'perl -e', cmd: (v) => `perl -e 'unlink "${v}"'` },
  { id: 'w5s-ssh-05', what: 'find -exec rm (no {} placeholder, so no braces)', cmd: (v) => `find ${v} -exec rm ${v} ';'` },
  { id: 'w5s-ssh-06', what: 'find -delete', cmd: (v) => `find ${v} -delete` },
  { id: 'w5s-ssh-07', what: 'xargs rm, the file name on its input', cmd: () => 'xargs rm', input: (v) => `${v}\n` },
  { id: 'w5s-ssh-08', what: 'env -S (split string glued to the option)', cmd: (v) => `env '-Srm ${v}'` },
  { id: 'w5s-ssh-09', what: 'env --split-string=', cmd: (v) => `env '--split-string=rm ${v}'` },
  { id: 'w5s-ssh-10', what: 'taskset -c LIST (the option takes a value, then the program)', cmd: (v) => `taskset -c 0 rm ${v}` },
  { id: 'w5s-ssh-11', what: 'a shell reading its commands from the input', cmd: () => 'sh', input: (v) => `rm ${v}\n` },
  { id: 'w5s-ssh-12', what: 'a shell running a script it reads from /dev/stdin', cmd: () => 'bash /dev/stdin', input: (v) => `rm ${v}\n` },
  { id: 'w5s-ssh-13', what: 'git -c alias.x=!… (a shell alias defined on the command line)', cmd: (v) => `git -c 'alias.w5=!rm ${v}' w5` },
  { id: 'w5s-ssh-14', what: 'git ls-remote --upload-pack=…', cmd: (v) => `git ls-remote '--upload-pack=rm ${v};' ${BASE}` },
  { id: 'w5s-ssh-15', what: 'tar --checkpoint-action=exec=…', cmd: (v) => `tar -cf /dev/null --checkpoint=1 '--checkpoint-action=exec=rm ${v}' ${BASE}/tarred` },
  { id: 'w5s-ssh-16', what: 'vim in Ex mode with -c "!…"', cmd: (v) => `vim -Nes -c '!rm ${v}' -c 'qa!'` },
  { id: 'w5s-ssh-17', what: 'nohup sh -c (a wrapper, then a shell)', cmd: (v) => `nohup sh -c 'rm ${v}'` },
  { id: 'w5s-ssh-18', what: 'timeout with options, then sh -c with options', cmd: (v) => `timeout -k 2 10 sh -e -c 'rm ${v}'` },
  { id: 'w5s-ssh-19', what: 'find -exec sh -c (a shell behind find)', cmd: (v) => `find ${v} -exec sh -c 'rm ${v}' ';'` },
  { id: 'w5s-ssh-20', what: 'eval', cmd: (v) => `eval rm ${v}` },
  { id: 'w5s-ssh-22', what: 'GNU sed\'s e command', cmd: (v) => `sed -n '1e rm ${v}' ${BASE}/tarred/f` },
];

/** Shell syntax a `compound: true` allow rule lets through to the deny rule. */
const SYNTAX: Attack[] = [
  { id: 'w5s-ssh-30', what: 'a glob naming the program', cmd: (v) => `true; /bin/r? ${v}` },
  { id: 'w5s-ssh-31', what: 'command substitution naming the program', cmd: (v) => `true; $(echo rm) ${v}` },
  { id: 'w5s-ssh-32', what: '${IFS} between the program and its argument', cmd: (v) => `true; rm\${IFS}${v}` },
  { id: 'w5s-ssh-33', what: 'a backslash inside the program name', cmd: (v) => `true; r\\m ${v}` },
  { id: 'w5s-ssh-34', what: 'backticks naming the program', cmd: (v) => `true; \`echo rm\` ${v}` },
  { id: 'w5s-ssh-35', what: 'brace expansion as the command', cmd: (v) => `true; {rm,${v}}` },
  { id: 'w5s-ssh-36', what: 'a variable assigned and used as the program', cmd: (v) => `x=rm; $x ${v}` },
  { id: 'w5s-ssh-37', what: 'backslash-newline inside the program name', cmd: (v) => `true; r\\\nm ${v}` },
];

after(async () => {
  await rm(BASE, { recursive: true, force: true });
});

/** A stack under `policies` for the enclosing describe (started before its tests, closed after). */
function stackUnder(policies: PolicyConfig[], setup: () => Promise<void> = async () => {}): () => SshStack {
  let stack: SshStack | undefined;
  before(async () => {
    await mkdir(VICTIMS, { recursive: true });
    await setup();
    stack = await startSshStack(policies);
  });
  after(async () => {
    await stack?.close();
  });
  return () => stack as SshStack;
}

const attack = (stack: SshStack, a: Attack): Promise<void> => refusedByDenyRule(stack, a, { keyDir: BASE, victims: VICTIMS });

describe('wave 5: a deny rule sees what interpreters and wrappers run', () => {
  const current = stackUnder(DENY_LIST, async () => {
    await mkdir(join(BASE, 'tarred'), { recursive: true });
    await writeFile(join(BASE, 'tarred', 'f'), 'x');
  });

  test('w5s-ssh-00. harmless commands keep running under the deny list: ls, cat, git status, uptime, sh -c of a plain command, find without -exec, python3 --version, awk without system, xargs ls', async () => {
    const stack = current();
    const f = await victim(VICTIMS, 'w5s-00');
    for (const cmd of ['uptime', `ls ${VICTIMS}`, `cat ${f}`, 'git --version', `sh -c 'ls ${VICTIMS}'`, `find ${VICTIMS} -name w5s-00`, 'python3 --version', `awk -F: NR==1 ${f}`, `xargs ls`]) {
      const r = await viaBroker(stack, cmd, { input: cmd === 'xargs ls' ? `${f}\n` : undefined });
      assert.equal(r.code, 0, `\`${cmd}\`: ${r.stderr}`);
    }
    assert.equal(existsSync(f), true);
  });

  for (const a of INDIRECT) {
    test(`${a.id}. ${a.what}: removes the file straight on sshd, refused through agentgate`, async () => {
      const stack = current();
      await attack(stack, a);
    });
  }

  // ── requests other than exec: each would run `rm` where no command rule looks ──

  for (const [id, flag, what] of [
    ['w5s-ssh-50', '-T', 'a shell request without a pty, `rm` on its input'],
    ['w5s-ssh-51', '-tt', 'a shell with a pty (ssh -tt), `rm` typed into it'],
  ] as const) {
    test(`${id}. ${what}: removes the file straight on sshd; refused (no rule allows a shell)`, async () => {
      const stack = current();
      const c = await victim(VICTIMS, `${id}-control`);
      await stack.run('ssh', [flag, ...directArgs(stack, BASE)], { input: `rm ${c}\nexit\n`, timeoutMs: 20_000 });
      assert.equal(await removed(c), true, 'control: the shell runs what it reads');
      const v = await victim(VICTIMS, `${id}-broker`);
      const r = await stack.run('ssh', [flag, '-F', stack.sshConfig, TARGET], { input: `rm ${v}\nexit\n`, timeoutMs: 20_000 });
      assert.equal(await removed(v, 500), false, `agentgate opened a shell: ${r.stderr}`);
      assert.notEqual(r.code, 0);
    });
  }

  test('w5s-ssh-52. the sftp subsystem\'s rm: removes the file straight on sshd; refused (no rule names sftp)', async () => {
    const stack = current();
    const c = await victim(VICTIMS, 'w5s-52-control');
    await stack.run('sftp', ['-b', '-', ...directArgs(stack, BASE).filter((a) => a !== '-p').map((a) => (a === String(stack.sshd.port) ? `-P${a}` : a))], { input: `rm ${c}\n`, timeoutMs: 20_000 });
    assert.equal(await removed(c), true, 'control: sftp removes the file');
    const v = await victim(VICTIMS, 'w5s-52-broker');
    const r = await stack.run('sftp', ['-F', stack.sshConfig, '-b', '-', TARGET], { input: `rm ${v}\n`, timeoutMs: 20_000 });
    assert.equal(await removed(v, 500), false, `agentgate relayed sftp: ${r.stderr}`);
    assert.notEqual(r.code, 0);
  });

  test('w5s-ssh-21. the refusal says why: what runs that agentgate cannot read', async () => {
    const stack = current();
    const v = await victim(VICTIMS, 'w5s-21');
    const r = await viaBroker(stack, `python3 -c 'print(1)' ${v}`);
    assert.equal(r.code, 126);
    assert.match(r.stderr, /python3 \(runs code agentgate cannot read\)/);
  });
});

describe('wave 5: a deny rule under compound commands sees through shell syntax', () => {
  const current = stackUnder(DENY_LIST_COMPOUND);

  test('w5s-ssh-29. harmless compound commands keep running: a pipe, && and a redirection to /dev/null', async () => {
    const stack = current();
    const r = await viaBroker(stack, `ls ${VICTIMS} | wc -l && uptime > /dev/null`);
    assert.equal(r.code, 0, r.stderr);
  });

  for (const a of SYNTAX) {
    test(`${a.id}. ${a.what}: removes the file straight on sshd, refused through agentgate`, async () => {
      const stack = current();
      await attack(stack, a);
    });
  }
});

describe('wave 5: a review rule holds what interpreters run', () => {
  const current = stackUnder(REVIEW_LIST);

  for (const [id, what, cmd] of [
    ['w5s-ssh-40', '`sh -c "rm f"` is held for the rm review, not run; the reviewer sees the whole command', (v: string) => `sh -c 'rm ${v}'`],
    ['w5s-ssh-41', '`perl -e` is held too (code agentgate cannot read meets the review rule)', (v: string) => `perl -e 'unlink "${v}"'`],
  ] as const) {
    test(`${id}. ${what}`, async () => {
      const stack = current();
      const v = await victim(VICTIMS, id);
      const child = stack.spawn('ssh', ['-F', stack.sshConfig, TARGET, cmd(v)]);
      const exited = new Promise<number | null>((res) => child.once('close', (code) => res(code)));
      const held = await eventually('the command held', () => stack.broker.approvals.list(stack.reviewer()).requests.find((r) => r.status === 'pending' && r.statement.includes(id)));
      assert.equal(existsSync(v), true, 'the held command ran before approval');
      assert.equal(held.statement, cmd(v));
      assert.equal(held.rule, 'held-rm');
      await stack.broker.approvals.decide(held.id, stack.reviewer(), 'deny', 'no');
      assert.equal(await exited, 126);
      assert.equal(existsSync(v), true);
    });
  }
});
