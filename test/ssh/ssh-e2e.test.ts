/**
 * SSH targets end to end: real sshd, real ssh / sftp / git, the broker in between.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { BAD_TARGET, TARGET, eventually, startSshStack, type SshStack } from './stack.js';

const git = promisify(execFile);

const POLICIES: PolicyConfig[] = [
  {
    name: 'agents-ssh',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET, BAD_TARGET],
    rules: [
      { name: 'read-only-commands', ssh: { commands: ['uptime', 'echo *', 'cat *', 'exit *', 'ls *', 'git-upload-pack *'] }, effect: 'allow', extra: {} },
      { name: 'push-held', ssh: { commands: ['git-receive-pack *'] }, effect: 'review', approvers: { groups: ['sre'], count: 1 }, extra: {} },
      { name: 'shell', ssh: { shell: true }, effect: 'allow', extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';
const GH_TOKEN = 'ghp_' + 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8';

describe('ssh targets through the broker', () => {
  let stack: SshStack;
  before(async () => {
    stack = await startSshStack(POLICIES);
  });
  after(async () => {
    await stack?.close();
  });

  const ssh = (args: string[], o: { input?: string; config?: string } = {}) =>
    stack.run('ssh', ['-F', o.config ?? stack.sshConfig, ...args], o.input !== undefined ? { input: o.input } : {});

  test('an allowed exec runs on the target; its output and exit status come back', async () => {
    const r = await ssh([TARGET, 'echo', 'hello-from-target']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello-from-target\n');
    const failed = await ssh([TARGET, 'exit 3']);
    assert.equal(failed.code, 3, failed.stderr);
  });

  test('a chained command is denied and nothing of it runs', async () => {
    const marker = join(stack.tmp.path, 'pwned');
    const r = await ssh([TARGET, `uptime; touch ${marker}`]);
    assert.equal(r.code, 126);
    assert.match(r.stderr, /agentgate: rule rest denies command `uptime; touch .*` \(compound: operator ;\); nothing was run/);
    assert.match(r.stderr, /nothing was run/);
    assert.equal(existsSync(marker), false);
    const sub = await ssh([TARGET, `echo $(touch ${marker})`]);
    assert.equal(sub.code, 126);
    assert.equal(existsSync(marker), false);
    const redirect = await ssh([TARGET, `echo x > ${marker}`]);
    assert.equal(redirect.code, 126);
    assert.equal(existsSync(marker), false);
    const notListed = await ssh([TARGET, `touch ${marker}`]);
    assert.equal(notListed.code, 126);
    assert.equal(existsSync(marker), false);
  });

  test('git clone (upload-pack allowed) and git push (receive-pack held, approved, lands)', async () => {
    const bare = join(stack.tmp.path, 'repo.git');
    await git('git', ['init', '-q', '--bare', '-b', 'main', bare]);
    const seed = join(stack.tmp.path, 'seed');
    await git('git', ['init', '-q', '-b', 'main', seed]);
    await writeFile(join(seed, 'README'), 'first\n');
    const env = stack.env();
    await git('git', ['-C', seed, 'add', 'README'], { env });
    await git('git', ['-C', seed, 'commit', '-q', '-m', 'first'], { env });
    await git('git', ['-C', seed, 'push', '-q', bare, 'main'], { env });

    const work = join(stack.tmp.path, 'work');
    const clone = await stack.run('git', ['clone', '-q', `${TARGET}:${bare}`, work]);
    assert.equal(clone.code, 0, clone.stderr);
    assert.ok(existsSync(join(work, 'README')));

    await writeFile(join(work, 'CHANGE'), 'by the agent\n');
    await stack.run('git', ['-C', work, 'add', 'CHANGE']);
    await stack.run('git', ['-C', work, 'commit', '-q', '-m', 'agent change']);
    const push = stack.spawn('git', ['-C', work, 'push', 'origin', 'main']);
    let stderr = '';
    push.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => push.once('close', (code) => resolve(code)));
    const held = await eventually('the push held for approval', () => stack.broker.approvals.list(stack.reviewer()).requests.find((r) => r.protocol === 'ssh' && r.status === 'pending'));
    assert.match(held.statement, /^git-receive-pack /);
    await eventually('the hold notice on stderr', () => stderr.includes(`held for approval by 1 of sre: ${held.id}`));
    // Nothing landed while held.
    const before = (await git('git', ['--git-dir', bare, 'log', '--oneline', 'main'])).stdout;
    assert.doesNotMatch(before, /agent change/);
    await stack.broker.approvals.decide(held.id, stack.reviewer(), 'approve', 'looks fine');
    assert.equal(await exited, 0, stderr);
    const log = (await git('git', ['--git-dir', bare, 'log', '--oneline', 'main'])).stdout;
    assert.match(log, /agent change/);
  });

  test('a held command that is denied never runs; stderr says so', async () => {
    const marker = join(stack.tmp.path, 'held-marker');
    const child = stack.spawn('ssh', ['-F', stack.sshConfig, TARGET, `git-receive-pack ${marker}`]);
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    const held = await eventually('the command held', () => stack.broker.approvals.list(stack.reviewer()).requests.find((r) => r.status === 'pending' && r.statement.includes('held-marker')));
    await stack.broker.approvals.decide(held.id, stack.reviewer(), 'deny', 'not today');
    assert.equal(await exited, 126);
    assert.match(stderr, new RegExp(`approval ${held.id} was denied: not today; nothing was run`));
    assert.equal(existsSync(marker), false);
  });

  test('a held command whose client goes away is withdrawn; a late approval runs nothing', async () => {
    const marker = join(stack.tmp.path, 'gone-marker');
    const child = stack.spawn('ssh', ['-F', stack.sshConfig, TARGET, `git-receive-pack ${marker}`]);
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const held = await eventually('the command held', () => stack.broker.approvals.list(stack.reviewer()).requests.find((r) => r.status === 'pending' && r.statement.includes('gone-marker')));
    child.kill('SIGKILL');
    await exited;
    const after = await eventually('the request withdrawn', () => {
      const r = stack.broker.approvals.get(held.id);
      return r && r.status !== 'pending' ? r : undefined;
    });
    assert.equal(after.status, 'withdrawn');
    await assert.rejects(stack.broker.approvals.decide(held.id, stack.reviewer(), 'approve', 'too late'));
    assert.equal(existsSync(marker), false);
    const outcome = await eventually('the refused outcome on record', async () =>
      (await stack.events()).find((e) => e.type === 'ssh.command' && String(e.detail['command'] ?? e.detail['text'] ?? '').includes('gone-marker')));
    assert.equal(outcome.decision?.effect, 'review', 'held, then refused: the rule was review');
    assert.equal(outcome.outcome?.status, 'error');
    assert.match(String(outcome.decision?.reason), /disconnected while held/);
  });

  test('sftp is refused', async () => {
    const r = await stack.run('sftp', ['-F', stack.sshConfig, '-b', '-', TARGET], { input: 'ls\n' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /subsystem request failed|Connection closed/);
  });

  test('an interactive shell gets a pty', async () => {
    const child = stack.spawn('ssh', ['-F', stack.sshConfig, '-tt', TARGET]);
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    child.stdin.write('tty; echo "cols=$(tput cols 2>/dev/null || stty size)"; exit 7\n');
    assert.equal(await exited, 7, out);
    assert.match(out, /\/dev\/pts\/\d+/);
  });

  test('a target whose host key is not the pinned one is refused with a clear message', async () => {
    const r = await ssh([BAD_TARGET, 'uptime'], { config: stack.badSshConfig });
    assert.equal(r.code, 255);
    assert.match(r.stderr, /agentgate: the host key of ssh-wrong-key \(127\.0\.0\.1:\d+\) is SHA256:\S+, not the one pinned in the broker config/);
    assert.match(r.stderr, /update(s)? host_key/);
  });

  test('cat .env: secrets are masked in the output, also when split across chunks', async () => {
    const app = join(stack.tmp.path, 'app');
    await mkdir(app, { recursive: true });
    // Enough text before the secret that it lands across a read boundary.
    const filler = 'x'.repeat(65_530) + '\n';
    await writeFile(join(app, '.env'), `${filler}AWS_ACCESS_KEY_ID=${AWS_KEY}\nGITHUB_TOKEN=${GH_TOKEN}\nPLAIN=visible\n`);
    const r = await ssh([TARGET, `cat ${join(app, '.env')}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(AWS_KEY), 'aws key leaked');
    assert.ok(!r.stdout.includes(GH_TOKEN), 'github token leaked');
    assert.match(r.stdout, /PLAIN=visible/);
    assert.ok(r.stdout.length > 65_530);
  });

  test('audit: ssh.command intent before the outcome, masked text, exit status, bytes; session end and summary', async () => {
    const events = await stack.events();
    const cmds = events.filter((e) => e.type === 'ssh.command');
    const intents = events.filter((e) => e.type === 'ssh.command.intent');
    const echo = cmds.find((e) => (e.detail as { command?: string }).command === 'echo hello-from-target');
    assert.ok(echo, 'the echo command is on record');
    assert.equal((echo.detail as { exit_status?: number }).exit_status, 0);
    assert.equal(echo.decision?.effect, 'allow');
    assert.equal(echo.decision?.rule, 'read-only-commands');
    assert.ok((echo.outcome?.bytes ?? 0) > 0);
    const intent = intents.find((e) => e.session === echo.session && (e.detail as { id?: number }).id === (echo.detail as { id?: number }).id);
    assert.ok(intent && intent.seq < echo.seq, 'intent before outcome');
    const denied = cmds.find((e) => String((e.detail as { command?: string }).command).startsWith('uptime; touch'));
    assert.equal(denied?.decision?.effect, 'deny');
    assert.equal(intents.some((e) => String((e.detail as { command?: string }).command).startsWith('uptime; touch')), false, 'no intent for a denied command');
    const push = cmds.find((e) => String((e.detail as { command?: string }).command).startsWith('git-receive-pack'));
    assert.equal(push?.decision?.effect, 'review');
    assert.ok(push?.decision?.approval);
    assert.equal((push?.detail as { exit_status?: number }).exit_status, 0);
    const ended = await eventually('sessions ended', () => stack.summaries.filter((s) => s.protocol === 'ssh').length >= 5 || undefined);
    assert.ok(ended);
    const withPush = stack.summaries.find((s) => s.approvals.length > 0);
    assert.equal(withPush?.approvals[0]?.status, 'approved');
    assert.ok(events.some((e) => e.type === 'session.end' && e.session === echo.session));
  });
});
