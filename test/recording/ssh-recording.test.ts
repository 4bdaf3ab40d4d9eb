/**
 * SSH terminal recordings end to end: a real ssh client in a real pty (node-pty) through
 * the broker to a real sshd, typed commands and a resize; the .cast the broker wrote is
 * read back by a small reader written here (not the project's), and its output equals, byte
 * for byte, what the client's pty received — masked values included.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as pty from 'node-pty';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { TARGET, eventually, startSshStack, type SshStack } from '../ssh/stack.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';

const POLICIES: PolicyConfig[] = [
  {
    name: 'agents-ssh',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'shell', ssh: { shell: true }, effect: 'allow', extra: {} },
      { name: 'echo', ssh: { commands: ['echo *'] }, effect: 'allow', extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';

/** An asciicast v2 reader of its own: header object, then [number, string, string] lines. */
function readCast(text: string): { header: Record<string, unknown>; events: [number, string, string][] } {
  assert.ok(text.endsWith('\n'), 'a cast ends with a newline');
  const [first, ...rest] = text.slice(0, -1).split('\n');
  const header = JSON.parse(first!) as Record<string, unknown>;
  assert.equal(header['version'], 2);
  const events = rest.map((l) => JSON.parse(l) as [number, string, string]);
  let last = 0;
  for (const e of events) {
    assert.equal(e.length, 3);
    assert.equal(typeof e[0], 'number');
    assert.ok(e[0] >= last, 'times never go back');
    last = e[0];
    assert.ok(['o', 'r', 'm'].includes(e[1]), `event code ${e[1]}`);
    assert.equal(typeof e[2], 'string');
  }
  return { header, events };
}

describe('ssh terminal recordings', () => {
  let stack: SshStack;
  before(async () => {
    stack = await startSshStack(POLICIES);
  });
  after(async () => {
    await stack?.close();
  });

  const recordingEnds = async (): Promise<AuditRecord[]> => (await stack.events()).filter((e) => e.type === 'recording.end');

  test('a pty shell with typed commands and a resize: the cast holds exactly what the client was shown', async () => {
    const term = pty.spawn('ssh', ['-F', stack.sshConfig, '-tt', '-q', TARGET], { name: 'xterm', cols: 80, rows: 24, cwd: stack.tmp.path, env: { ...stack.env(), TERM: 'xterm' } });
    let seen = '';
    term.onData((d) => (seen += d));
    const exited = new Promise<number>((res) => term.onExit(({ exitCode }) => res(exitCode)));
    const waitFor = (marker: string): Promise<true> => eventually(`"${marker}" on the client's pty`, () => seen.includes(marker), 20_000);

    // Remote output arrives only once ssh has put the local tty in raw mode: typing before
    // would be echoed by the local line discipline, which is not the session's output.
    await eventually('the remote shell', () => seen.length > 0, 20_000);
    term.write('echo ready-$((6*7))\r');
    await waitFor('ready-42');
    term.write(`echo AWS_ACCESS_KEY_ID=${AWS_KEY}\r`);
    await waitFor('AWS_ACCESS_KEY_ID=');
    term.resize(100, 30);
    term.write('stty size | sed s/^/size-/\r');
    await waitFor('size-30 100');
    term.write('exit\r');
    assert.equal(await exited, 0);

    const [end] = await eventually('recording.end in the chain', async () => {
      const r = await recordingEnds();
      return r.length === 1 ? r : undefined;
    });
    const name = String(end!.detail['name']);
    const path = join(stack.config.stateDir, 'recordings', name);
    const bytes = await readFile(path);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal((await stat(join(stack.config.stateDir, 'recordings'))).mode & 0o777, 0o700);
    assert.equal(end!.detail['sha256'], createHash('sha256').update(bytes).digest('hex'));
    assert.equal(end!.detail['bytes'], bytes.length);

    const cast = readCast(bytes.toString('utf8'));
    assert.equal(cast.header['width'], 80);
    assert.equal(cast.header['height'], 24);
    assert.equal(typeof cast.header['timestamp'], 'number');
    assert.match(String(cast.header['title']), new RegExp(`agent-7 @ ${TARGET} session ${end!.session}`));
    assert.equal(cast.header['env'], undefined);
    const output = cast.events.filter((e) => e[1] === 'o').map((e) => e[2]).join('');
    assert.equal(output, seen, 'the recording replays exactly what the pty received');
    assert.ok(!output.includes(AWS_KEY), 'the secret is masked in the recording');
    assert.match(output, /AWS_ACCESS_KEY_ID=/);
    assert.deepEqual(cast.events.filter((e) => e[1] === 'r').map((e) => e[2]), ['100x30']);
    // The resize comes before the output that reports the new size.
    const resizeAt = cast.events.findIndex((e) => e[1] === 'r');
    const sizeAt = cast.events.findIndex((e) => e[1] === 'o' && e[2].includes('size-30 100'));
    assert.ok(resizeAt < sizeAt);
    // Input is not recorded.
    assert.equal(cast.events.filter((e) => e[1] === 'i').length, 0);

    // The session's receipt lists the recording as a subject, with the digest in the chain.
    const receipt = await eventually('the receipt', async () => stack.broker.receipts.get(end!.session!));
    const statement = JSON.parse(Buffer.from(receipt.envelope.payload, 'base64').toString('utf8')) as { subject: { name: string; digest: { sha256: string } }[] };
    assert.deepEqual(statement.subject.slice(1), [{ name: `agentgate-recording:${name}`, digest: { sha256: end!.detail['sha256'] } }]);
  });
});
