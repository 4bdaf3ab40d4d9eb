/**
 * A Kubernetes session dies with its credential: a watch open through a tunnel whose token
 * expires is ended (session.end `credential_expired`), and kubectl then gets 401 with a
 * Status naming the cause; the refusal is recorded and nothing reaches the API server. An
 * upgraded stream (kubectl exec -i) is cut as well.
 * Real kubectl, the stand-in API server, the real broker and tunnel.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { eventually, startK8sStack, TARGET, type K8sStack } from '../kubernetes/stack.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';

describe('kubernetes sessions end with their credential', () => {
  let stack: K8sStack;
  before(async () => {
    stack = await startK8sStack({ sessions: { expiryLeewaySeconds: 0, maxDurationSeconds: undefined } });
    stack.api.put('pods', { metadata: { name: 'web-1', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx' }] } });
  });
  after(async () => {
    await stack?.close();
  });

  test('at expiry a live watch ends and kubectl gets 401', async () => {
    const short = await stack.connectAs('k-short', ['ai-agents'], { expiresIn: 3 });
    const ok = await stack.kubectl(['get', 'pods'], { kubeconfig: short.kubeconfig });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /web-1/);

    const watch = stack.spawnKubectl(['get', 'pods', '-w'], { kubeconfig: short.kubeconfig });
    const exited = new Promise<void>((resolve) => watch.on('close', () => resolve()));
    let out = '';
    watch.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    try {
      await eventually('the watch to list', () => /^web-1\s/m.test(out), 15_000);
      const end = await eventually('the watch session to end for expiry', async () =>
        (await stack.events()).find((e) => e.type === 'session.end' && e.actor?.sub === 'k-short' && e.detail['reason'] === 'credential_expired'),
      );
      assert.match(String(end.detail['message']), /credential of k-short expired/);
    } finally {
      watch.kill('SIGTERM');
      await exited;
    }

    const before = stack.api.requests.length;
    const refused = await stack.kubectl(['get', 'pods', '-v=6'], { kubeconfig: short.kubeconfig });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, / 401 Unauthorized /);
    assert.match(refused.stderr, /credential of k-short expired/);
    assert.equal(stack.api.requests.length, before);
    const rec = (await stack.events()).find((e) => e.type === 'k8s.request' && e.actor?.sub === 'k-short' && e.detail['status_code'] === 401);
    assert.equal(rec?.detail['session_ended'], 'credential_expired');
  });
});

describe('a kubectl exec stream ends with its credential', () => {
  let stack: K8sStack;
  before(async () => {
    const policies: PolicyConfig[] = [{ name: 'agents', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: [{ name: 'all', effect: 'allow', extra: {} }] }];
    stack = await startK8sStack({ policies, sessions: { expiryLeewaySeconds: 0, maxDurationSeconds: undefined } });
    stack.api.put('pods', { metadata: { name: 'web-1', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx' }] } });
  });
  after(async () => {
    await stack?.close();
  });

  test('at expiry an open exec -i is cut: what is typed after it never reaches the pod', async () => {
    // Long enough that a loaded machine still starts the exec and echoes before expiry.
    const short = await stack.connectAs('k-exec', ['ai-agents'], { expiresIn: 20 });
    const child = stack.spawnKubectl(['exec', '-i', 'web-1', '--', 'cat'], { kubeconfig: short.kubeconfig });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    // kubectl may already have exited when the cut is recorded: writing to it then fails with
    // EPIPE, which is the outcome wanted (nothing reaches the pod), not an error of the test.
    const stdinErrors: NodeJS.ErrnoException[] = [];
    child.stdin.on('error', (e: NodeJS.ErrnoException) => stdinErrors.push(e));
    child.stdin.write('before-expiry\n');
    await eventually('the pod to echo', () => out.includes('before-expiry'), 15_000);

    await eventually('the exec session to end for expiry', async () =>
      (await stack.events()).find((e) => e.type === 'session.end' && e.actor?.sub === 'k-exec' && e.detail['reason'] === 'credential_expired'),
    30_000);
    child.stdin.write('after-expiry\n');
    assert.notEqual(await exited, 0);
    assert.ok(!out.includes('after-expiry'), out);
    assert.deepEqual(stdinErrors.filter((e) => e.code !== 'EPIPE'), []);
  });
});
