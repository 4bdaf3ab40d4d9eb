/**
 * SSH exec terminals and word-wise command globs, end to end: the real ssh client through
 * the session's local endpoint and the broker to OpenSSH's sshd.
 *
 * A pty makes a pager or editor interactive (`man ls`, then `!sh` in less), so an exec
 * keeps the pty it asked for only when its rule says `tty: true` (also when a hold under
 * such a rule is approved); otherwise the pty-req is refused and the command is not run
 * (OpenSSH closes the channel when a pty it was told to ask for is refused). A pty-req
 * after the exec is refused. An allow glob's `*` stays inside its word and never stands
 * for `..`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';
import { TARGET, eventually, startSshStack, type SshStack } from './stack.js';

const POLICIES: PolicyConfig[] = [
  {
    name: 'agents-ssh',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'with-terminal', ssh: { commands: ['tty'], tty: true }, effect: 'allow', extra: {} },
      { name: 'plain', ssh: { commands: ['/usr/bin/tty', 'touch *', 'sleep *', 'ls -d /usr/share/*'] }, effect: 'allow', extra: {} },
      { name: 'held-terminal', ssh: { commands: ['/bin/tty'], tty: true }, effect: 'review', approvers: { groups: ['sre'], count: 1 }, extra: {} },
      { name: 'held-plain', ssh: { commands: ['env tty'] }, effect: 'review', approvers: { groups: ['sre'], count: 1 }, extra: {} },
      { name: 'shell', ssh: { shell: true }, effect: 'allow', extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

describe('ssh exec terminals and command globs', () => {
  let stack: SshStack;
  before(async () => {
    stack = await startSshStack(POLICIES);
  });
  after(async () => {
    await stack?.close();
  });

  const ssh = (args: string[]) => stack.run('ssh', ['-F', stack.sshConfig, ...args], { timeoutMs: 20_000 });
  /** The `ssh.command` events of this command. */
  const commandEvents = async (command: string): Promise<AuditRecord[]> => (await stack.events()).filter((e) => e.type === 'ssh.command' && e.detail['command'] === command);

  test('a rule with tty: true keeps the pty the client asked for (-tt): the command sees a terminal', async () => {
    const r = await ssh(['-tt', TARGET, 'tty']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\/dev\/pts\/\d+/);
    const [ev] = await commandEvents('tty');
    assert.equal(ev?.detail['tty'], 'granted');
    assert.equal(ev?.decision?.rule, 'with-terminal');
  });

  test('without tty: true the pty-req is refused and the command is not run; without -t it runs, terminal-less', async () => {
    const marker = join(stack.tmp.path, 'ran-with-pty-asked');
    const r = await ssh(['-tt', TARGET, 'touch', marker]);
    assert.equal(r.code, 255, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /PTY allocation request failed/);
    assert.equal(existsSync(marker), false, 'the command ran although its terminal was refused');
    const [ev] = await commandEvents(`touch ${marker}`);
    assert.equal(ev?.detail['tty'], 'refused');
    assert.equal(ev?.decision?.effect, 'deny');
    assert.equal(ev?.decision?.rule, 'plain');
    assert.match(String(ev?.decision?.reason), /only without a terminal \(a pty needs tty: true on the rule\)/);
    const intents = (await stack.events()).filter((e) => e.type === 'ssh.command.intent' && e.detail['command'] === `touch ${marker}`);
    assert.equal(intents.length, 0, 'nothing went to the target');

    const plain = await ssh([TARGET, '/usr/bin/tty']);
    assert.equal(plain.code, 1, plain.stderr);
    assert.match(plain.stdout, /not a tty/);
    const ok = await ssh([TARGET, 'touch', marker]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(existsSync(marker), true);
  });

  test('a held exec under a review rule with tty: true gets its terminal once approved', async () => {
    const child = stack.spawn('ssh', ['-tt', '-F', stack.sshConfig, TARGET, '/bin/tty']);
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    const held = await eventually('the command held', () => stack.broker.approvals.list(stack.reviewer()).requests.find((r) => r.status === 'pending' && r.statement === '/bin/tty'));
    await stack.broker.approvals.decide(held.id, stack.reviewer(), 'approve', 'ok');
    assert.equal(await exited, 0, out);
    assert.match(out, /\/dev\/pts\/\d+/);
    const [ev] = await commandEvents('/bin/tty');
    assert.equal(ev?.detail['tty'], 'granted');
    assert.equal(ev?.decision?.rule, 'held-terminal');
  });

  test('a pty asked for under a review rule without tty: true is refused at once: no approval is asked for', async () => {
    const r = await ssh(['-tt', TARGET, 'env', 'tty']);
    assert.equal(r.code, 255, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /PTY allocation request failed/);
    const asked = stack.broker.approvals.list(stack.reviewer()).requests.filter((x) => x.statement === 'env tty');
    assert.deepEqual(asked, []);
    const [ev] = await commandEvents('env tty');
    assert.equal(ev?.detail['tty'], 'refused');
    assert.equal(ev?.decision?.rule, 'held-plain');
    assert.equal(ev?.decision?.effect, 'deny');
    assert.equal(ev?.decision?.approval, undefined, 'no approval was asked for');
    assert.match(String(ev?.decision?.reason), /only without a terminal/);
  });

  // ssh2's Server answers nothing to a request on a session whose exec it accepted (its accept and
  // reject are no-ops then): the late pty is never granted, and the broker notes it on the command.
  test('a pty-req after the exec is never granted and is noted on the command (ssh2: OpenSSH never sends one late)', async () => {
    const cfg = await readFile(stack.sshConfig, 'utf8');
    const port = Number(/Port (\d+)/.exec(cfg)?.[1]);
    const key = await readFile(/IdentityFile "([^"]+)"/.exec(cfg)?.[1] ?? '', 'utf8');
    const client = new ssh2.Client();
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve());
      client.once('error', reject);
      client.connect({ host: '127.0.0.1', port, username: 'agentgate', privateKey: key, hostVerifier: () => true });
    });
    try {
      const chan = await new Promise<ClientChannel>((resolve, reject) => client.exec('sleep 1', (err, c) => (err ? reject(err) : resolve(c))));
      // ssh2 has no API for a pty-req on a running exec: the request as its own reqPty sends it.
      const raw = chan as unknown as {
        outgoing: { id: number };
        _callbacks: ((hadErr: unknown) => void)[];
        _client: { _protocol: { pty(id: number, rows: number, cols: number, height: number, width: number, term: string, modes: null, wantReply: boolean): void } };
      };
      const answered = new Promise<boolean>((resolve) => raw._callbacks.push((hadErr) => resolve(!hadErr)));
      raw._client._protocol.pty(raw.outgoing.id, 24, 80, 480, 640, 'xterm', null, true);
      // No success: ssh2's client settles an unanswered request as failed when the channel closes.
      assert.equal(await answered, false, 'a pty-req after the exec was granted');
      chan.resume();
      await new Promise<void>((resolve) => chan.once('close', () => resolve()));
    } finally {
      client.end();
    }
    const ev = await eventually('the sleep on record', async () => (await commandEvents('sleep 1'))[0]);
    assert.equal(ev.detail['tty'], 'refused');
    assert.equal(ev.detail['exit_status'], 0);
  });

  test('an interactive shell keeps its pty', async () => {
    const child = stack.spawn('ssh', ['-F', stack.sshConfig, '-tt', TARGET]);
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    child.stdin.write('tty; exit 7\n');
    assert.equal(await exited, 7, out);
    assert.match(out, /\/dev\/pts\/\d+/);
  });

  test('an allow glob `*` stays inside its word and never stands for `..`', async () => {
    const ok = await ssh([TARGET, 'ls', '-d', '/usr/share/man']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, '/usr/share/man\n');
    for (const args of [['ls', '-d', '/usr/share/../../etc'], ['ls', '-d', '/usr/share/man', '/root'], ['ls', '-d', '/usr/share/..']]) {
      const r = await ssh([TARGET, ...args]);
      assert.equal(r.code, 126, `${args.join(' ')}: ${r.stdout}`);
      assert.match(r.stderr, /agentgate: rule rest denies command `ls -d \/usr\/share\/.*`; nothing was run/);
      assert.equal(r.stdout, '');
    }
  });
});
