/**
 * `kubectl exec -it` recorded: the real kubectl in a pty (node-pty) through the broker to
 * the stand-in API server, which speaks the remote-command WebSocket protocol as a tiny
 * shell. The .cast (read by a reader of this test's own) holds byte for byte what kubectl
 * wrote to its pty, the resize is an `r` event, and the digest is in the chain and the receipt.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as pty from 'node-pty';
import { startK8sStack, eventually, TARGET, type K8sStack } from '../kubernetes/stack.js';

function readCast(text: string): { header: Record<string, unknown>; events: [number, string, string][] } {
  const [first, ...rest] = text.replace(/\n$/, '').split('\n');
  const header = JSON.parse(first!) as Record<string, unknown>;
  assert.equal(header['version'], 2);
  return { header, events: rest.map((l) => JSON.parse(l) as [number, string, string]) };
}

describe('kubectl exec recordings', () => {
  let stack: K8sStack;
  before(async () => {
    stack = await startK8sStack({
      policies: [{ name: 'agents', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: [{ name: 'all', effect: 'allow', extra: {} }] }],
    });
    stack.api.put('pods', { metadata: { name: 'web-1', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx' }] } });
  });
  after(async () => {
    await stack?.close();
  });

  test('kubectl exec -it with typed commands and a resize: the cast holds what kubectl showed', async () => {
    const home = join(stack.tmp.path, 'kexec-home');
    const term = pty.spawn('kubectl', ['--kubeconfig', stack.main.kubeconfig, 'exec', '-it', 'web-1', '--', 'sh'], {
      name: 'xterm',
      cols: 90,
      rows: 20,
      cwd: stack.tmp.path,
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home, KUBECACHEDIR: join(home, 'cache'), TERM: 'xterm' },
    });
    let seen = '';
    term.onData((d) => (seen += d));
    const exited = new Promise<number>((res) => term.onExit(({ exitCode }) => res(exitCode)));
    const waitFor = (marker: string): Promise<true> => eventually(`"${marker}" on kubectl's pty`, () => seen.includes(marker), 20_000);
    await waitFor('$ ').catch((e: unknown) => { console.error('SEEN', JSON.stringify(seen), JSON.stringify(stack.api.requests.slice(-3).map((r) => [r.url, r.headers['upgrade'], r.headers['sec-websocket-protocol']]))); throw e; });
    term.write('echo hello-pod\r');
    await waitFor('hello-pod\r\n$ ');
    term.write('size\r');
    await waitFor('size-90x20');
    term.resize(120, 40);
    // The resize travels on its own channel; poll the size until the shell has it.
    await eventually('the resize at the shell', async () => {
      const before = seen.length;
      term.write('size\r');
      await eventually('an answer', () => seen.slice(before).includes('$ '), 5_000);
      return seen.slice(before).includes('size-120x40');
    }, 20_000);
    term.write('exit\r');
    const code = await exited;
    assert.equal(code, 0, JSON.stringify(seen.slice(-300)));

    const end = await eventually('recording.end', async () => (await stack.events()).find((e) => e.type === 'recording.end'));
    const bytes = await readFile(join(stack.config.stateDir, 'recordings', String(end.detail['name'])));
    assert.equal(end.detail['sha256'], createHash('sha256').update(bytes).digest('hex'));
    const cast = readCast(bytes.toString('utf8'));
    assert.equal(cast.header['width'], 90);
    assert.equal(cast.header['height'], 20);
    assert.match(String(cast.header['title']), /^agentgate kubernetes agent-7 @ .* exec default\/web-1$/);
    const output = cast.events.filter((e) => e[1] === 'o').map((e) => e[2]).join('');
    assert.equal(output, seen, 'the recording holds exactly what kubectl wrote to its pty');
    assert.deepEqual(cast.events.filter((e) => e[1] === 'r').map((e) => e[2]), ['120x40']);

    const receipt = await eventually('the receipt', async () => stack.broker.receipts.get(end.session!));
    const statement = JSON.parse(Buffer.from(receipt.envelope.payload, 'base64').toString('utf8')) as { subject: { name: string; digest: { sha256: string } }[] };
    assert.deepEqual(statement.subject.slice(1), [{ name: `agentgate-recording:${String(end.detail['name'])}`, digest: { sha256: end.detail['sha256'] } }]);
  });
});
