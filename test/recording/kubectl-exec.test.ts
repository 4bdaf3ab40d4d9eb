/**
 * `kubectl exec -it` recorded end to end: the real kubectl (v1.32, WebSocket
 * `v5.channel.k8s.io`) in a pty (node-pty), through the session's kubeconfig and the
 * tunnel, to the stand-in API server, which speaks the remote-command protocol as a tiny
 * shell and ends on `exit` with the exec status and a WebSocket close. The .cast (read by a
 * reader of this test's own) holds byte for byte what kubectl wrote to its pty, the resize is
 * an `r` event, what was typed is `i` events (the target's own `recording:` opts in), `k8s.stream.end` and `recording.end` are written once each, the digest is in
 * the chain and the receipt, and `agentgate replay` plays the output back.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as pty from 'node-pty';
import { startK8sStack, eventually, TARGET, type K8sStack } from '../kubernetes/stack.js';
import { verifyChain } from '../../src/shared/audit-hash.js';
import { runAgentgate, type CliResult } from './agentgate-cli.js';


function readCast(text: string): { header: Record<string, unknown>; events: [number, string, string][] } {
  assert.ok(text.endsWith('\n'), 'a cast ends with a newline');
  const [first, ...rest] = text.slice(0, -1).split('\n');
  const header = JSON.parse(first!) as Record<string, unknown>;
  assert.equal(header['version'], 2);
  const events = rest.map((l) => JSON.parse(l) as [number, string, string]);
  for (const e of events) {
    assert.equal(e.length, 3);
    assert.ok(['o', 'r', 'i'].includes(e[1]), `event code ${e[1]}`);
  }
  return { header, events };
}

describe('kubectl exec recordings', () => {
  let stack: K8sStack;
  let token: string;
  before(async () => {
    stack = await startK8sStack({
      policies: [{ name: 'agents', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: [{ name: 'all', effect: 'allow', extra: {} }] }],
      // The target's own `recording:`, opting in to input.
      target: { recording: { enabled: true, maxBytes: 1 << 20, results: 0, input: true } },
    });
    stack.api.put('pods', { metadata: { name: 'web-1', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx' }] } });
    token = await stack.issuer.sign({ sub: 'agent-7', groups: ['ai-agents'] }, { expiresIn: 3600 });
  });
  after(async () => {
    await stack?.close();
  });

  const agentgate = (args: string[]): Promise<CliResult> =>
    runAgentgate({ home: stack.tmp.path, brokerUrl: stack.broker.url, fingerprint: stack.broker.fingerprint, token: token }, args);

  test('kubectl exec -it with typed commands and a resize: recorded, chained, receipted, replayed', async () => {
    const home = join(stack.tmp.path, 'kexec-home');
    const term = pty.spawn('kubectl', ['--kubeconfig', stack.main.kubeconfig, 'exec', '-it', 'web-1', '--', 'sh'], {
      name: 'xterm',
      cols: 90,
      rows: 20,
      cwd: stack.tmp.path,
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home, KUBECACHEDIR: join(home, 'cache'), TERM: 'xterm' },
    });
    let seen = '';
    let typed = '';
    term.onData((d) => (seen += d));
    const type = (text: string): void => {
      typed += text;
      term.write(text);
    };
    const exited = new Promise<number>((res) => term.onExit(({ exitCode }) => res(exitCode)));
    const waitFor = (marker: string): Promise<true> => eventually(`"${marker}" on kubectl's pty`, () => seen.includes(marker), 20_000);
    await waitFor('$ ');
    type('echo hello-pod\r');
    await waitFor('hello-pod\r\n$ ');
    type('size\r');
    await waitFor('size-90x20');
    term.resize(120, 40);
    // The resize travels on its own channel; ask for the size until the shell has it.
    await eventually('the resize at the shell', async () => {
      const from = seen.length;
      type('size\r');
      await eventually('an answer', () => seen.slice(from).includes('$ '), 5_000);
      return seen.slice(from).includes('size-120x40');
    }, 20_000);
    type('exit\r');
    assert.equal(await exited, 0, JSON.stringify(seen.slice(-300)));

    // kubectl exits on the exec status; the stream must end (and be recorded) without the broker stopping.
    const end = await eventually('recording.end', async () => (await stack.events()).find((e) => e.type === 'recording.end'), 10_000);
    // recording.end and k8s.stream.end are two appends: wait for the second before counting.
    const events = await eventually(
      'k8s.stream.end',
      async () => {
        const mine = (await stack.events()).filter((e) => e.session === end.session);
        return mine.some((e) => e.type === 'k8s.stream.end') ? mine : undefined;
      },
      10_000,
    );
    assert.equal(events.filter((e) => e.type === 'recording.end').length, 1);
    assert.equal(events.filter((e) => e.type === 'k8s.stream.end').length, 1);
    const bytes = await readFile(join(stack.config.stateDir, 'recordings', String(end.detail['name'])));
    assert.equal(end.detail['sha256'], createHash('sha256').update(bytes).digest('hex'));
    const cast = readCast(bytes.toString('utf8'));
    assert.equal(cast.header['width'], 90);
    assert.equal(cast.header['height'], 20);
    assert.match(String(cast.header['title']), /^agentgate kubernetes agent-7 @ .* exec default\/web-1$/);
    const output = cast.events.filter((e) => e[1] === 'o').map((e) => e[2]).join('');
    assert.equal(output, seen, 'the recording holds exactly what kubectl wrote to its pty');
    assert.deepEqual(cast.events.filter((e) => e[1] === 'r').map((e) => e[2]), ['120x40']);
    assert.equal(cast.events.filter((e) => e[1] === 'i').map((e) => e[2]).join(''), typed, 'stdin (channel 0) recorded, as the target opted in');

    // The digest is in the hash chain, which verifies.
    const all = await stack.events();
    assert.equal(verifyChain(all).ok, true);

    const receipt = await eventually('the receipt', async () => stack.broker.receipts.get(end.session!));
    const statement = JSON.parse(Buffer.from(receipt.envelope.payload, 'base64').toString('utf8')) as { subject: { name: string; digest: { sha256: string } }[] };
    assert.deepEqual(statement.subject.slice(1), [{ name: `agentgate-recording:${String(end.detail['name'])}`, digest: { sha256: end.detail['sha256'] } }]);

    const played = await agentgate(['replay', end.session!, '--speed', '1000', '--idle-limit', '0.01']);
    assert.equal(played.code, 0, played.stderr);
    assert.equal(played.stdout, seen, 'replay plays back what kubectl showed');
  });
});
