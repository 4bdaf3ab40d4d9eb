/**
 * Time limits on the Kubernetes path: a target's idle_timeout ends a kubectl connection
 * and records why; the CLI's TLS front closes a local connection that never starts TLS.
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startK8sStack, TARGET, eventually, type K8sStack } from './stack.js';
import { listenKubernetes } from '../../src/client/connect-kubernetes.js';

describe('kubernetes time limits', () => {
  let stack: K8sStack;
  before(async () => {
    stack = await startK8sStack({ target: { idleTimeoutMs: 300 } });
  });
  after(async () => {
    await stack?.close();
  });

  test('idle_timeout closes an idle kept-alive connection and records session.end idle_timeout', { timeout: 30_000 }, async () => {
    // kubectl closes its connection on exit; a kept-alive HTTPS client stays, as a long-running kubectl would.
    const agent = new https.Agent({ keepAlive: true, ca: stack.main.endpoint.caPem });
    try {
      // Resolves when the broker (through the tunnel and the CLI), not us, closes the socket.
      await new Promise<void>((resolve, reject) => {
        const req = https.get(
          { host: '127.0.0.1', port: stack.main.port, path: '/api/v1/namespaces/default/pods', agent, headers: { authorization: `Bearer ${stack.main.session.secret}` } },
          (res) => {
            assert.equal(res.statusCode, 200);
            res.resume();
            const socket = res.socket;
            res.once('end', () => socket.once('close', () => resolve()));
          },
        );
        req.once('error', reject);
      });
      const end = await eventually('session.end with idle_timeout', async () =>
        (await stack.events()).find((e) => e.type === 'session.end' && (e.detail as { reason?: string }).reason === 'idle_timeout'),
      );
      const events = await stack.events();
      assert.ok(events.some((e) => e.session === end.session && e.type === 'k8s.request'), 'the ended session is the one that served the request');
    } finally {
      agent.destroy();
    }
  });

  test('the CLI closes a local connection that never starts TLS', { timeout: 15_000 }, async () => {
    const k = await listenKubernetes(stack.main.session, { target: TARGET, host: '127.0.0.1', port: 0, loginTimeoutMs: 150 });
    try {
      const s = net.connect({ host: '127.0.0.1', port: k.listener.address.port });
      const received = await new Promise<number>((resolve, reject) => {
        let n = 0;
        s.on('data', (c: Buffer) => (n += c.length));
        s.once('error', reject);
        s.once('close', () => resolve(n));
      });
      assert.equal(received, 0);
    } finally {
      await k.close();
    }
  });
});
