/**
 * Wave 4 red team, SSH (ids w4s-NN): an agent under a restrictive SSH policy (allow `ls *`,
 * `cat <log>/*`, `git status`, `uptime`; deny `rm *`; review `find <srv>/* *`; deny the
 * rest) tries to run something the policy does not allow, to get a masked secret out in
 * the clear, or to make something run that the durable record does not show.
 *
 * Every attack has a control: the same request straight to the sshd (no agentgate) has the
 * forbidden effect — a marker file on the target's filesystem, or the secret in the output.
 * The target is the test's OpenSSH sshd on this machine, so its filesystem is ours.
 * Harmless commands that must keep working are checked too.
 *
 * Dropped because their control showed no effect on this target: `ls --color=always` of a
 * token-named entry (without TERM or LS_COLORS, which agentgate never forwards, GNU ls
 * prints no colour over a non-pty exec), and BASH_ENV / LD_PRELOAD as SetEnv env requests
 * (the target's sshd AcceptEnv takes only LANG, LC_* and GIT_PROTOCOL; agentgate drops them
 * earlier anyway).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, existsSync, mkdtempSync, openSync, closeSync, writeSync, rmSync } from 'node:fs';
import { mkdir, writeFile, rm } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { createServer, connect, type Server } from 'node:net';
import { join } from 'node:path';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';
import { TARGET, eventually, startSshStack, type RunResult, type SshStack } from './stack.js';
import { freePort } from '../helpers/sshd.js';

const BASE = mkdtempSync('/tmp/w4s-');
const LOG = join(BASE, 'log');
const SRV = join(BASE, 'srv');
const OUTSIDE = join(BASE, 'outside');
const MARKS = join(BASE, 'marks');

const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';
const GH_TOKEN = 'ghp_' + 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8';
const OUTSIDE_SECRET = 'w4s-outside-secret-7f3a';
const PEM_LABEL = '-----BEGIN PRIVATE KEY-----';

const RESTRICTIVE: PolicyConfig[] = [
  {
    name: 'agents-ssh',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'no-rm', ssh: { commands: ['rm *'] }, effect: 'deny', extra: {} },
      { name: 'read-only', ssh: { commands: ['ls *', `cat ${LOG}/*`, 'git status', 'uptime'] }, effect: 'allow', extra: {} },
      { name: 'held-find', ssh: { commands: [`find ${SRV}/* *`] }, effect: 'review', approvers: { groups: ['sre'], count: 1 }, extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

/** A deny list in front of "any plain command": the deny is the only guard. */
const DENY_LIST: PolicyConfig[] = [
  {
    name: 'agents-ssh',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'no-rm', ssh: { commands: ['rm *'] }, effect: 'deny', extra: {} },
      { name: 'anything-plain', ssh: { commands: ['*'] }, effect: 'allow', extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const mark = (name: string): string => join(MARKS, name);

/** Waits a little for a marker (a backgrounded command may finish after ssh returns). */
async function appears(path: string, ms = 2_000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (existsSync(path)) return true;
    await sleep(50);
  }
  return existsSync(path);
}

/** `ssh` straight to the sshd with the broker's own key: the control, no agentgate. */
function directArgs(stack: SshStack): string[] {
  const key = join(BASE, `direct_key_${stack.sshd.port}`);
  if (!existsSync(key)) {
    execFileSync('sh', ['-c', `umask 077; cat > '${key}'`], { input: stack.sshd.clientPrivateKey });
  }
  return ['-i', key, '-p', String(stack.sshd.port), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-o', 'IdentitiesOnly=yes', `${stack.sshd.user}@127.0.0.1`];
}

function direct(stack: SshStack, cmd: string, extra: string[] = []): Promise<RunResult> {
  return stack.run('ssh', [...extra, ...directArgs(stack), cmd], { timeoutMs: 20_000 });
}

function viaBroker(stack: SshStack, cmd: string, extra: string[] = []): Promise<RunResult> {
  return stack.run('ssh', ['-F', stack.sshConfig, ...extra, TARGET, cmd], { timeoutMs: 20_000 });
}

const cmdOf = (e: AuditRecord): string => String(e.detail['command'] ?? '');


/** Connects to 127.0.0.1:port (retrying until something listens) and returns what it reads before the close. */
async function readThrough(port: number, ms = 8_000): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    const r = await new Promise<string | null>((resolve) => {
      const c = connect(port, '127.0.0.1');
      let got = '';
      let connected = false;
      c.on('connect', () => (connected = true));
      c.on('data', (b: Buffer) => (got += b.toString()));
      c.on('error', () => resolve(connected ? got : null));
      c.on('close', () => resolve(connected ? got : null));
      setTimeout(() => c.destroy(), 3_000).unref();
    });
    if (r !== null) return r;
    if (Date.now() > until) return '';
    await sleep(100);
  }
}

/** Opens a FIFO for writing once a reader has it open (O_NONBLOCK: ENXIO until then). */
async function openWriter(path: string, ms = 10_000): Promise<number> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENXIO' || Date.now() > until) throw err;
      await sleep(50);
    }
  }
}

/**
 * Shell metacharacter attacks: each wraps `touch <marker>` in syntax the target's shell
 * (bash, the sshd user's login shell) runs. Control: straight to sshd, the marker appears.
 * Through agentgate: refused (126), no marker, and the refusal is on record.
 */
const META: { id: string; what: string; cmd: (m: string) => string }[] = [
  { id: 'w4s-01', what: 'command substitution $()', cmd: (m) => `ls $(touch ${m})` },
  { id: 'w4s-02', what: 'backticks', cmd: (m) => `ls \`touch ${m}\`` },
  { id: 'w4s-03', what: '; without spaces', cmd: (m) => `ls;touch ${m}` },
  { id: 'w4s-04', what: 'a newline', cmd: (m) => `ls\ntouch ${m}` },
  { id: 'w4s-05', what: 'background &', cmd: (m) => `ls & touch ${m}` },
  { id: 'w4s-06', what: '|| after a failing ls', cmd: (m) => `ls /nonexistent-w4s || touch ${m}` },
  { id: 'w4s-07', what: '&&', cmd: (m) => `ls&&touch ${m}` },
  { id: 'w4s-08', what: 'a pipe', cmd: (m) => `ls|touch ${m}` },
  { id: 'w4s-09', what: 'process substitution <()', cmd: (m) => `ls <(touch ${m})` },
  { id: 'w4s-10', what: 'process substitution >()', cmd: (m) => `ls >(touch ${m})` },
  { id: 'w4s-11', what: 'brace expansion as the command', cmd: (m) => `{touch,${m}}` },
  { id: 'w4s-12', what: 'a glob that matches a binary', cmd: (m) => `/usr/bin/t?uch ${m}` },
  { id: 'w4s-13', what: 'a redirection that creates the file', cmd: (m) => `ls >${m}` },
  { id: 'w4s-14', what: 'NBSP before ;', cmd: (m) => `ls\u00a0;touch ${m}` },
  { id: 'w4s-15', what: 'quoted substitution "$()"', cmd: (m) => `ls "$(touch ${m})"` },
  { id: 'w4s-16', what: 'here-string of a substitution', cmd: (m) => `ls <<<$(touch ${m})` },
  { id: 'w4s-17', what: 'CRLF line break', cmd: (m) => `ls\r\ntouch ${m}` },
  { id: 'w4s-18', what: 'a comment hiding nothing, then a newline', cmd: (m) => `ls #x\ntouch ${m}` },
  { id: 'w4s-19', what: 'a shell keyword after ;', cmd: (m) => `ls;coproc touch ${m}` },
  { id: 'w4s-20', what: 'ANSI-C quoting that becomes a word, then ;', cmd: (m) => `ls $'-d';touch ${m}` },
];

// Both stacks are closed by their own hooks first; the target's files go last.
after(async () => {
  await rm(BASE, { recursive: true, force: true });
});

describe('wave 4: ssh under a restrictive policy', () => {
  let stack: SshStack;
  before(async () => {
    for (const d of [LOG, SRV, OUTSIDE, MARKS]) await mkdir(d, { recursive: true });
    await writeFile(join(LOG, 'plain.log'), `hello from the log\nkey=${AWS_KEY}\n`);
    await writeFile(join(OUTSIDE, 'key.txt'), `${OUTSIDE_SECRET}\n`);
    stack = await startSshStack(RESTRICTIVE);
  });
  after(async () => {
    await stack?.close();
  });

  // ───────────────────────── harmless commands stay allowed ─────────────────────────

  test('w4s-00. harmless: uptime, ls, cat of a log (secret masked, the rest intact), git status, a quoted path', async () => {
    const up = await viaBroker(stack, 'uptime');
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /load average/);
    const ls = await viaBroker(stack, `ls ${LOG}`);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /plain\.log/);
    const cat = await viaBroker(stack, `cat ${LOG}/plain.log`);
    assert.equal(cat.code, 0, cat.stderr);
    assert.match(cat.stdout, /hello from the log/);
    assert.ok(!cat.stdout.includes(AWS_KEY), 'a plain key in a log is masked');
    assert.match(cat.stdout, /key=\S+/);
    const gs = await viaBroker(stack, 'git status');
    assert.notEqual(gs.code, 126, `git status reached the target: ${gs.stderr}`);
    const spaced = join(LOG, 'a b');
    await mkdir(spaced, { recursive: true });
    const q = await viaBroker(stack, `ls -d '${spaced}'`);
    assert.equal(q.code, 0, q.stderr);
    assert.equal(q.stdout.trim(), spaced);
  });

  // ───────────────────────── shell metacharacters ─────────────────────────

  for (const a of META) {
    test(`${a.id}. ${a.what}: runs straight on sshd, refused through agentgate`, async () => {
      const m = mark(`${a.id}-control`);
      await direct(stack, a.cmd(m));
      assert.equal(await appears(m), true, `control: \`${JSON.stringify(a.cmd(m))}\` straight to sshd creates the marker`);
      const b = mark(`${a.id}-broker`);
      const r = await viaBroker(stack, a.cmd(b));
      assert.equal(await appears(b, 1_000), false, `agentgate let \`${JSON.stringify(a.cmd(b))}\` run: ${r.stderr}`);
      assert.equal(r.code, 126, r.stderr);
      const ev = await eventually('the refusal on record', async () => (await stack.events()).find((e) => e.type === 'ssh.command' && cmdOf(e).includes(`${a.id}-broker`)));
      assert.equal(ev.decision?.effect, 'deny');
    });
  }

  test('w4s-21. `..` under an allowed `cat <log>/*`: straight to sshd it reads outside; refused through agentgate', async () => {
    const cmd = `cat ${LOG}/../outside/key.txt`;
    const c = await direct(stack, cmd);
    assert.match(c.stdout, new RegExp(OUTSIDE_SECRET), 'control: the path leaves the log directory');
    const r = await viaBroker(stack, cmd);
    assert.equal(r.code, 126, r.stderr);
    assert.ok(!r.stdout.includes(OUTSIDE_SECRET));
  });

  // ───────────────────────── ssh-level requests ─────────────────────────

  test('w4s-22. local port forwarding (-L): straight to sshd it reaches a service; refused through agentgate', async () => {
    const server: Server = createServer((s) => s.end('w4s-service-banner\n'));
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
    const svc = (server.address() as { port: number }).port;
    try {
      const lc = await freePort();
      const ctl = stack.spawn('ssh', ['-N', '-L', `${lc}:127.0.0.1:${svc}`, ...directArgs(stack)]);
      const got = await readThrough(lc);
      ctl.kill('SIGKILL');
      assert.match(got, /w4s-service-banner/, 'control: -L straight to sshd reaches the service');
      const lb = await freePort();
      const via = stack.spawn('ssh', ['-F', stack.sshConfig, '-N', '-L', `${lb}:127.0.0.1:${svc}`, TARGET]);
      const got2 = await readThrough(lb);
      via.kill('SIGKILL');
      assert.doesNotMatch(got2, /w4s-service-banner/, 'agentgate relayed a local forward no rule allows');
    } finally {
      server.close();
    }
  });

  test('w4s-23. remote port forwarding (-R): straight to sshd it opens a port on the target; refused through agentgate', async () => {
    const server: Server = createServer((s) => s.end('w4s-agent-side\n'));
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
    const svc = (server.address() as { port: number }).port;
    try {
      const rc = await freePort();
      const ctl = stack.spawn('ssh', ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${rc}:127.0.0.1:${svc}`, ...directArgs(stack)]);
      const got = await readThrough(rc);
      ctl.kill('SIGKILL');
      assert.match(got, /w4s-agent-side/, 'control: -R straight to sshd listens on the target');
      const rb = await freePort();
      const via = stack.spawn('ssh', ['-F', stack.sshConfig, '-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${rb}:127.0.0.1:${svc}`, TARGET]);
      const got2 = await readThrough(rb, 3_000);
      via.kill('SIGKILL');
      assert.doesNotMatch(got2, /w4s-agent-side/, 'agentgate opened a remote forward');
    } finally {
      server.close();
    }
  });

  // ───────────────────────── masking ─────────────────────────

  test('w4s-30. a key in a colored log line (ANSI SGR right before it) is masked in `cat <log>/*` output', async () => {
    const f = join(LOG, 'color.log');
    await writeFile(f, `\x1b[33mWARN\x1b[0m loaded \x1b[1m${AWS_KEY}\x1b[0m from env\n`);
    const c = await direct(stack, `cat ${f}`);
    assert.ok(c.stdout.includes(AWS_KEY), 'control: the key is in the file');
    const r = await viaBroker(stack, `cat ${f}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /loaded/);
    assert.ok(!r.stdout.includes(AWS_KEY), `the key came out in the clear after an escape sequence: ${JSON.stringify(r.stdout)}`);
  });

  test('w4s-31. a key after a JSON escape (`\\n`) in a structured log line is masked', async () => {
    const f = join(LOG, 'app.json.log');
    await writeFile(f, `{"level":"info","msg":"credentials loaded:\\n${AWS_KEY}\\n${GH_TOKEN}"}\n`);
    const c = await direct(stack, `cat ${f}`);
    assert.ok(c.stdout.includes(AWS_KEY), 'control: the key is in the file');
    const r = await viaBroker(stack, `cat ${f}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /credentials loaded/);
    assert.ok(!r.stdout.includes(AWS_KEY), `aws key in the clear: ${r.stdout}`);
    assert.ok(!r.stdout.includes(GH_TOKEN), `github token in the clear: ${r.stdout}`);
  });

  test('w4s-32. a token inside a percent-encoded URL in an access log (`%3D` right before it) is masked', async () => {
    const f = join(LOG, 'access.log');
    await writeFile(f, `127.0.0.1 - - "GET /login?next=https%3A%2F%2Fapi.example.com%2Fv1%3Ftoken%3D${GH_TOKEN}%26key%3D${AWS_KEY} HTTP/1.1" 302 0\n`);
    const c = await direct(stack, `cat ${f}`);
    assert.ok(c.stdout.includes(GH_TOKEN) && c.stdout.includes(AWS_KEY), 'control: the values are in the file');
    const r = await viaBroker(stack, `cat ${f}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /GET \/login/);
    assert.ok(!r.stdout.includes(GH_TOKEN), `github token in the clear: ${r.stdout}`);
    assert.ok(!r.stdout.includes(AWS_KEY), `aws key in the clear: ${r.stdout}`);
  });

  test('w4s-33. a key written in two pieces with a pause (no terminal) is still masked', async () => {
    const fifo = join(LOG, 'slow.fifo');
    execFileSync('mkfifo', [fifo]);
    try {
      const child = stack.spawn('ssh', ['-F', stack.sshConfig, TARGET, `cat ${fifo}`]);
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      const exited = new Promise<number | null>((res) => child.once('close', (code) => res(code)));
      const fd = await openWriter(fifo);
      writeSync(fd, `token=${AWS_KEY.slice(0, 9)}`);
      await sleep(800);
      writeSync(fd, `${AWS_KEY.slice(9)}\ndone\n`);
      closeSync(fd);
      assert.equal(await exited, 0);
      assert.match(out, /done/);
      assert.ok(!out.includes(AWS_KEY), `split key in the clear: ${out}`);
    } finally {
      rmSync(fifo, { force: true });
    }
  });

  test('w4s-34. a key right after a byte that is not UTF-8 is masked (binary-ish log)', async () => {
    const f = join(LOG, 'bin.log');
    await writeFile(f, Buffer.concat([Buffer.from('x'), Buffer.from([0xff, 0xc3]), Buffer.from(`${AWS_KEY}\n`)]));
    const c = await direct(stack, `cat ${f}`);
    assert.ok(c.stdout.includes(AWS_KEY), 'control: the key is in the file');
    const r = await viaBroker(stack, `cat ${f}`);
    assert.ok(!r.stdout.includes(AWS_KEY), `key in the clear: ${JSON.stringify(r.stdout)}`);
  });

  // ───────────────────────── the record ─────────────────────────

  test('w4s-40. a held command with a PEM header in an argument: the approver and the audit see what runs', async () => {
    const dir = join(SRV, 'a');
    await mkdir(dir, { recursive: true });
    const build = (m: string): string => `find ${dir} -name '${PEM_LABEL}' -o -exec touch ${m} ';'`;
    const ctl = mark('w4s-40-control');
    await direct(stack, build(ctl));
    assert.equal(await appears(ctl), true, 'control: the find runs touch');
    const m = mark('w4s-40-broker');
    const child = stack.spawn('ssh', ['-F', stack.sshConfig, TARGET, build(m)]);
    const exited = new Promise<number | null>((res) => child.once('close', (code) => res(code)));
    const held = await eventually('the find held', () => stack.broker.approvals.list(stack.reviewer()).requests.find((r) => r.status === 'pending' && r.statement.startsWith(`find ${dir} `)));
    const shown = held.statement;
    await stack.broker.approvals.decide(held.id, stack.reviewer(), 'approve', 'finds key files, fine');
    assert.equal(await exited, 0);
    assert.equal(existsSync(m), true, 'sanity: the approved command ran');
    const intent = (await stack.events()).find((e) => e.type === 'ssh.command.intent' && cmdOf(e).startsWith(`find ${dir} `));
    assert.match(shown, /-exec touch/, `the approver was shown \`${shown}\`, not the -exec that ran`);
    assert.match(cmdOf(intent as AuditRecord), /-exec touch/, `the durable record says \`${cmdOf(intent as AuditRecord)}\``);
  });

  test('w4s-41. a held command longer than 4096 characters: the approver and the audit see its end', async () => {
    const dir = join(SRV, 'b');
    await mkdir(dir, { recursive: true });
    const build = (m: string): string => `find ${dir} -name ${'p'.repeat(4100)} -o -exec touch ${m} ';'`;
    const ctl = mark('w4s-41-control');
    await direct(stack, build(ctl));
    assert.equal(await appears(ctl), true, 'control: the find runs touch');
    const m = mark('w4s-41-broker');
    const child = stack.spawn('ssh', ['-F', stack.sshConfig, TARGET, build(m)]);
    const exited = new Promise<number | null>((res) => child.once('close', (code) => res(code)));
    const held = await eventually('the find held', () => stack.broker.approvals.list(stack.reviewer()).requests.find((r) => r.status === 'pending' && r.statement.startsWith(`find ${dir} `)));
    const shown = held.statement;
    await stack.broker.approvals.decide(held.id, stack.reviewer(), 'approve', 'a long name, fine');
    assert.equal(await exited, 0);
    assert.equal(existsSync(m), true, 'sanity: the approved command ran');
    const intent = (await stack.events()).find((e) => e.type === 'ssh.command.intent' && cmdOf(e).startsWith(`find ${dir} `));
    assert.match(shown, /-exec touch|…|\.\.\.|truncated/, `the approver was shown ${shown.length} characters ending \`${shown.slice(-40)}\`, no -exec and no sign of a cut`);
    assert.match(cmdOf(intent as AuditRecord), /-exec touch|…|\.\.\.|truncated/, 'the durable record is cut silently before the -exec');
  });

  test('w4s-41b. a command longer than agentgate records and shows whole is refused before it is judged; nothing runs', async () => {
    const m = mark('w4s-41b-broker');
    const r = await viaBroker(stack, `find ${join(SRV, 'b')} -name ${'p'.repeat(17_000)} -o -exec touch ${m} ';'`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /longer than the 16384 characters agentgate records/);
    assert.equal(await appears(m, 500), false, 'the command ran');
    const refused = (await stack.events()).filter((e) => e.type === 'ssh.command' && String(e.decision?.reason ?? '').includes('16384 characters'));
    assert.equal(refused.length, 1);
  });

  test('w4s-42. the client killed mid-command: the intent was durable before the target ran it, the outcome follows', async () => {
    const fifo = join(LOG, 'hang.fifo');
    execFileSync('mkfifo', [fifo]);
    try {
      const child = stack.spawn('ssh', ['-F', stack.sshConfig, TARGET, `cat ${fifo}`]);
      const exited = new Promise<void>((res) => child.once('close', () => res()));
      const fd = await openWriter(fifo);
      // The target has the command open now: its intent must already be on record.
      const intent = (await stack.events()).find((e) => e.type === 'ssh.command.intent' && cmdOf(e) === `cat ${fifo}`);
      assert.ok(intent, 'the command reached the target before its intent was on record');
      child.kill('SIGKILL');
      await exited;
      writeSync(fd, 'late\n');
      closeSync(fd);
      const outcome = await eventually('the outcome on record', async () => (await stack.events()).find((e) => e.type === 'ssh.command' && cmdOf(e) === `cat ${fifo}`));
      assert.ok(outcome.seq > intent.seq);
    } finally {
      rmSync(fifo, { force: true });
    }
  });
});

describe('wave 4: ssh with a deny list in front of any plain command', () => {
  let stack: SshStack;
  let victims: string;
  before(async () => {
    victims = join(BASE, 'victims');
    await mkdir(victims, { recursive: true });
    stack = await startSshStack(DENY_LIST);
  });
  after(async () => {
    await stack?.close();
  });

  test('w4s-50. `rm <file>` and `r""m <file>` are refused by the deny rule (must hold)', async () => {
    const v = join(victims, 'v50');
    await writeFile(v, 'x');
    const r = await viaBroker(stack, `rm ${v}`);
    assert.equal(r.code, 126, r.stderr);
    const q = await viaBroker(stack, `r""m ${v}`);
    assert.equal(q.code, 126, q.stderr);
    assert.equal(existsSync(v), true);
  });

  for (const [id, prefix] of [
    ['w4s-51', '/bin/rm'],
    ['w4s-52', 'command rm'],
    ['w4s-53', 'env rm'],
  ] as const) {
    test(`${id}. \`${prefix} <file>\` is caught by a deny rule about \`rm *\` (the program is named by its file name, after wrappers)`, async () => {
      const c = join(victims, `${id}-control`);
      await writeFile(c, 'x');
      await direct(stack, `${prefix} ${c}`);
      assert.equal(existsSync(c), false, 'control: the file is removed straight on sshd');
      const v = join(victims, `${id}-broker`);
      await writeFile(v, 'x');
      const r = await viaBroker(stack, `${prefix} ${v}`);
      assert.equal(existsSync(v), true, `agentgate ran \`${prefix}\` past the rm deny rule (exit ${r.code})`);
      assert.notEqual(r.code, 0);
    });
  }
});
