/**
 * A Kubernetes session dies with its credential: a watch open through a tunnel whose token
 * expires is ended (session.end `credential_expired`), and kubectl then gets 401 with a
 * Status naming the cause; the refusal is recorded and nothing reaches the API server.
 * Real kubectl, the stand-in API server, the real broker and tunnel.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { eventually, startK8sStack, type K8sStack } from '../kubernetes/stack.js';

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
