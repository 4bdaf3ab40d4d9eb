/**
 * Wave 6 red team, SSH (ids w6s-NN): what the shell runs that is not a program's first
 * word — bash builtins that take a command string (`compgen -C`, `mapfile -C`), reserved
 * words in front of a command (`if …; then rm f; fi`, `! rm f`), code carried in an env
 * value the command never shows (`let LC_X` with `LC_X='a[$(rm f)]'`) — a compound command
 * whose first word turned masking off (`git-upload-pack x; cat secret`), and a command
 * crafted to make the analysis itself hold the broker (`eval a a a …`).
 *
 * Every attack has a control: the same request straight to the sshd (no agentgate) removes
 * the victim file or shows the secret. Through agentgate the file stays, the secret is
 * masked, the refusal is on record. Harmless commands that must keep working are checked.
 *
 * Looked at and not kept (no bypass found, or not a bug): multiple exec requests on one
 * channel (only the first runs), `signal`/`window-change` before the command runs (nothing
 * upstream yet), a NUL or a byte that is not UTF-8 in the command (a line break / U+FFFD,
 * judged as such), `~` (re-quoted), `[[ … ]]` and `!` as the first word of a plain command
 * (re-quoted into a command name). A secret printed in halves (`cut`, stdout then stderr),
 * or encoded (`base64`), cannot be seen by detectors: documented in the README.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { mkdir, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { parseCommand } from '../../src/broker/policy/ssh-command.js';
import { decideSsh } from '../../src/broker/policy/ssh-rules.js';
import { TARGET, eventually, startSshStack, type RunResult, type SshStack } from './stack.js';
import { cmdOf, direct as directVia, refusedByDenyRule, removed, viaBroker, victim, type Attack, type RunOptions } from './adversary.js';

const BASE = mkdtempSync('/tmp/w6s-');
const VICTIMS = join(BASE, 'victims');
const LOGS = join(BASE, 'logs');
const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';

const policy = (rules: PolicyConfig['rules']): PolicyConfig[] => [{ name: 'agents-ssh', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules }];
const NO_RM = { name: 'no-rm', ssh: { commands: ['rm *'] }, effect: 'deny' as const, extra: {} };
const REST = { name: 'rest', effect: 'deny' as const, extra: {} };
/** The deny rule is the only guard in front of any plain command. */
const DENY_LIST = policy([NO_RM, { name: 'anything-plain', ssh: { commands: ['*'] }, effect: 'allow', extra: {} }, REST]);
/** The same with compound commands allowed (`compound: true`): shell syntax reaches the deny rule. */
const DENY_LIST_COMPOUND = policy([NO_RM, { name: 'anything', ssh: { commands: ['*'], compound: true }, effect: 'allow', extra: {} }, REST]);

const attack = (stack: SshStack, a: Attack): Promise<void> => refusedByDenyRule(stack, a, { keyDir: BASE, victims: VICTIMS });
const direct = (stack: SshStack, cmd: string, o: RunOptions = {}): Promise<RunResult> => directVia(stack, BASE, cmd, o);


/** Bash builtins whose option is a command string: plain words, so the allow-`*` rule matched them. */
const BUILTINS: Attack[] = [
  { id: 'w6s-01', what: 'compgen -C (the completion command runs)', cmd: (v) => `compgen -C 'rm ${v}' x` },
  { id: 'w6s-02', what: 'mapfile -C (a callback per line read)', cmd: (v) => `mapfile -c 1 -C 'rm ${v}'`, input: () => 'line\n' },
  { id: 'w6s-03', what: 'readarray with the callback glued to -C', cmd: (v) => `readarray -c 1 '-Crm ${v}'`, input: () => 'line\n' },
];

/** Environment on the command line that makes a program run code: plain words, so the allow-`*` rule matched them. */
const ENVIRONMENT: Attack[] = [
  { id: 'w6s-05', what: 'env GIT_SSH_COMMAND=… git ls-remote (git runs it as the ssh program)', cmd: (v) => `env 'GIT_SSH_COMMAND=rm ${v}' git ls-remote w6-host:repo` },
  { id: 'w6s-06', what: 'env BASH_ENV=script bash -c true (bash runs the script first)', cmd: (v) => `env BASH_ENV=${v}.sh bash -c true`, setup: bashEnvScript },
];

/** Reserved words in front of the command: the shell runs what follows them. */
const RESERVED: Attack[] = [
  { id: 'w6s-10', what: 'if …; then rm', cmd: (v) => `if true; then rm ${v}; fi` },
  { id: 'w6s-11', what: '! rm after &&', cmd: (v) => `true && ! rm ${v}` },
  { id: 'w6s-12', what: 'while rm', cmd: (v) => `while rm ${v}; do break; done` },
  { id: 'w6s-13', what: 'for …; do rm', cmd: (v) => `for i in 1; do rm ${v}; done` },
  { id: 'w6s-14', what: 'else rm', cmd: (v) => `if false; then true; else rm ${v}; fi` },
  { id: 'w6s-15', what: 'elif rm', cmd: (v) => `if false; then true; elif rm ${v}; then true; fi` },
];

/** A redirection inside the simple command: the words around it are one command. */
const REDIRECTIONS: Attack[] = [
  { id: 'w6s-16', what: 'a redirection before the program', cmd: (v) => `true; >/dev/null rm ${v}` },
  { id: 'w6s-17', what: 'a redirection between the program and its argument', cmd: (v) => `true; rm >/dev/null ${v}` },
  { id: 'w6s-18', what: 'a numbered redirection before the program', cmd: (v) => `true; 2>/dev/null rm ${v}` },
  { id: 'w6s-19', what: 'an input redirection before the program', cmd: (v) => `true; </dev/null rm ${v}` },
  { id: 'w6s-21', what: 'export BASH_ENV, then a shell', cmd: (v) => `export BASH_ENV=${v}.sh; bash -c true`, setup: bashEnvScript },
  { id: 'w6s-22', what: 'GIT_SSH_COMMAND assigned in front of git', cmd: (v) => `GIT_SSH_COMMAND='rm ${v}' git ls-remote w6-host:repo` },
];

/** Data read into a variable, then evaluated by bash arithmetic: the index `a[$(…)]` runs, with no `$` in the command. */
const ARITHMETIC: Attack[] = [
  { id: 'w6s-23', what: 'read x; let x', cmd: () => 'read -r x; let x', input: (v) => `a[$(rm ${v})]\n` },
  { id: 'w6s-24', what: 'read x; ((x))', cmd: () => 'read -r x; ((x))', input: (v) => `a[$(rm ${v})]\n` },
  { id: 'w6s-25', what: "read x; printf -v 'a[x]' (an array index is arithmetic)", cmd: () => "read -r x; printf -v 'a[x]' 1", input: (v) => `a[$(rm ${v})]\n` },
];

/** A `#` inside a word: shell-quote read a comment to the end, the shell reads on. */
const HASH_IN_WORD: Attack[] = [
  { id: 'w6s-26', what: 'a # glued to a word before ;', cmd: (v) => `true x#; rm ${v}` },
  { id: 'w6s-27', what: 'a # right after a closing quote', cmd: (v) => `true "a"#; rm ${v}` },
];

/** The script a `BASH_ENV` names: it removes the victim (the agent could write it with any allowed `tee`). */
async function bashEnvScript(v: string): Promise<void> {
  await writeFile(`${v}.sh`, `rm ${v}\n`);
}

/** 16,000 characters that each tail of is another command for eval: the analysis was quadratic. */
const EVAL_BOMB = `eval ${'a '.repeat(7_995)}`;

after(async () => {
  await rm(BASE, { recursive: true, force: true });
});

/** A stack under `policies` for the enclosing describe (started before its tests, closed after). */
function stackUnder(policies: PolicyConfig[]): () => SshStack {
  let stack: SshStack | undefined;
  before(async () => {
    await mkdir(VICTIMS, { recursive: true });
    await mkdir(LOGS, { recursive: true });
    stack = await startSshStack(policies);
  });
  after(async () => {
    await stack?.close();
  });
  return () => stack as SshStack;
}

describe('wave 6: a deny rule sees what bash builtins and environment run', () => {
  const current = stackUnder(DENY_LIST);

  test('w6s-00. harmless: a locale still reaches the target; compgen and mapfile without -C run', async () => {
    const stack = current();
    const env = await viaBroker(stack, 'printenv LC_TIME', { ssh: ['-o', 'SetEnv=LC_TIME=C.UTF-8'] });
    assert.equal(env.code, 0, env.stderr);
    assert.equal(env.stdout, 'C.UTF-8\n', 'agentgate passed the locale');
    const words = await viaBroker(stack, "compgen -W 'alpha beta' al");
    assert.equal(words.code, 0, words.stderr);
    assert.equal(words.stdout, 'alpha\n');
    const lines = await viaBroker(stack, 'mapfile -t', { input: 'a\nb\n' });
    assert.equal(lines.code, 0, lines.stderr);
    const lang = await viaBroker(stack, `env LANG=C TZ=UTC ls ${VICTIMS}`);
    assert.equal(lang.code, 0, lang.stderr);
  });

  for (const a of [...BUILTINS, ...ENVIRONMENT]) {
    test(`${a.id}. ${a.what}: removes the file straight on sshd, refused through agentgate`, async () => {
      await attack(current(), a);
    });
  }

  test('w6s-04. code in an env value (`let LC_PAPER`, LC_PAPER=\'a[$(rm f)]\' by SetEnv): removes the file straight on sshd; the value never reaches the target through agentgate', async () => {
    const stack = current();
    const setEnv = (v: string): string[] => ['-o', `SetEnv=LC_PAPER="a[$(rm ${v})]"`];
    const c = await victim(VICTIMS, 'w6s-04-control');
    await direct(stack, 'let LC_PAPER', { ssh: setEnv(c) });
    assert.equal(await removed(c), true, 'control: bash arithmetic runs the substitution held in the env value');
    const v = await victim(VICTIMS, 'w6s-04-broker');
    const r = await viaBroker(stack, 'let LC_PAPER', { ssh: setEnv(v) });
    assert.equal(await removed(v, 500), false, `agentgate forwarded the env value (exit ${r.code}): ${r.stderr}`);
    const shown = await viaBroker(stack, 'printenv LC_PAPER', { ssh: setEnv(v) });
    assert.equal(shown.stdout, '', 'the value reached the target');
  });
});

describe('wave 6: a deny rule under compound commands sees past reserved words and redirections; masking stays on', () => {
  const current = stackUnder(DENY_LIST_COMPOUND);

  test('w6s-09. harmless compound commands with reserved words keep running', async () => {
    const stack = current();
    const r = await viaBroker(stack, `if true; then ls ${VICTIMS}; fi && for i in 1 2; do uptime > /dev/null; done`);
    assert.equal(r.code, 0, r.stderr);
    const redirected = await viaBroker(stack, `LANG=C ls ${VICTIMS} 2>&1 >/dev/null | wc -l # a note`);
    assert.equal(redirected.code, 0, redirected.stderr);
  });

  for (const a of [...RESERVED, ...REDIRECTIONS, ...ARITHMETIC, ...HASH_IN_WORD]) {
    test(`${a.id}. ${a.what}: removes the file straight on sshd, refused through agentgate`, async () => {
      await attack(current(), a);
    });
  }

  test('w6s-20. `git-upload-pack x; cat <secret file>`: the first word is a binary protocol, the rest is text and is masked', async () => {
    const stack = current();
    const f = join(LOGS, 'app.log');
    await writeFile(f, `hello from the log\nkey=${AWS_KEY}\n`);
    const cmd = `git-upload-pack ${BASE}/no-repo 2>/dev/null; cat ${f}`;
    const c = await direct(stack, cmd);
    assert.ok(c.stdout.includes(AWS_KEY), 'control: the key is in the output straight from sshd');
    const plain = await viaBroker(stack, `cat ${f}`);
    assert.ok(!plain.stdout.includes(AWS_KEY), 'control: the key is masked in a plain cat');
    const r = await viaBroker(stack, cmd);
    assert.match(r.stdout, /hello from the log/);
    assert.ok(!r.stdout.includes(AWS_KEY), `the key came out unmasked behind git-upload-pack: ${r.stdout}`);
    const ev = await eventually('the command on record', async () => (await stack.events()).find((e) => e.type === 'ssh.command' && cmdOf(e) === cmd));
    assert.equal(ev.detail['output_scanned'], true);
  });
});

describe('wave 6: the analysis of a command has a budget', () => {
  const current = stackUnder(DENY_LIST);

  test('w6s-30. `eval a a a …` (16,000 characters) is refused at once, and another session is answered meanwhile', async () => {
    const stack = current();
    const started = Date.now();
    const bomb = viaBroker(stack, EVAL_BOMB);
    // Give the broker the bomb first, then ask something ordinary on another connection.
    await eventually('the bomb at the broker', async () => (await stack.events()).some((e) => e.type === 'session.start'));
    const other = await viaBroker(stack, 'uptime');
    assert.equal(other.code, 0, other.stderr);
    const r = await bomb;
    assert.equal(r.code, 126, r.stderr);
    assert.match(r.stderr, /more than agentgate analyses/);
    // A hang guard, not a speed target: before the budget the broker was held 73 s (274 s through this stack).
    assert.ok(Date.now() - started < 30_000, `the broker took ${Date.now() - started} ms`);
  });

  test('w6s-31. the analysis alone: bounded time, and what it did not finish is opaque (so a deny rule decides)', () => {
    for (const cmd of [EVAL_BOMB, `watch ${'a '.repeat(7_995)}`, `env ${'env '.repeat(3_998)}`, `sh -c 'eval ${'a '.repeat(3_995)}'`]) {
      const t = performance.now();
      const runs = parseCommand(cmd).runs;
      const ms = performance.now() - t;
      // A hang guard, not a speed target: 0.2–0.4 s here, and 7.7–85 s before the budget.
      assert.ok(ms < 5_000, `\`${cmd.slice(0, 12)}…\` took ${Math.round(ms)} ms to analyse`);
      assert.notEqual(runs.opaque.length, 0, `\`${cmd.slice(0, 12)}…\` analysed as fully readable`);
    }
  });

  test('w6s-32. `enable -f LIB NAME` loads a shared object as a builtin: code agentgate cannot read, decided by the deny rule', () => {
    const id = { sub: 'agent-7', groups: ['ai-agents'], kind: 'agent' as const, issuer: 'x', expiresAt: Math.floor(Date.now() / 1000) + 60 };
    const d = decideSsh(id, TARGET, DENY_LIST, { kind: 'exec', command: parseCommand(`enable -f ${BASE}/evil.so evil`) });
    assert.equal(d.effect, 'deny');
    assert.equal(d.rule, 'no-rm');
  });
});
