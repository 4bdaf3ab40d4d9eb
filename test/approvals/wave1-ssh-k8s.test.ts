/**
 * Wave 1 of the approvals red team, SSH and Kubernetes holds: what an approval releases is
 * what the reviewer was shown, whole, and it is released once. Real broker, tunnel, sshd
 * and the stand-in API server (test/helpers/kube-apiserver.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { readFile } from 'node:fs/promises';
import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';
import { startK8sStack, TARGET, type K8sStack } from '../kubernetes/stack.js';
import { TARGET as SSH_TARGET, eventually, startSshStack, type SshStack } from '../ssh/stack.js';
import { HELD_PRINTENV_SSH } from './fixtures.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';

const POLICIES: PolicyConfig[] = [
  {
    name: 'agents-k8s',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'read', k8s: { verbs: ['get', 'list', 'watch'] }, effect: 'allow', extra: {} },
      { name: 'changes-held', k8s: { verbs: ['patch', 'delete'] }, effect: 'review', approvers: { groups: ['sre'], count: 1 }, extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

const PATH = '/api/v1/namespaces/default/configmaps/app-config';

describe('approvals, wave 1 adversary (Kubernetes)', () => {
  let stack: K8sStack;

  /** One HTTPS request through the session's listener, as the agent's client sends it. */
  const send = (method: string, path: string, body?: string, contentType = 'application/merge-patch+json'): Promise<{ status: number; text: string }> =>
    new Promise((resolve, reject) => {
      const headers: Record<string, string> = { Authorization: `Bearer ${stack.main.session.secret}`, Accept: 'application/json' };
      if (body !== undefined) headers['Content-Type'] = contentType;
      const req = https.request({ host: '127.0.0.1', port: stack.main.port, method, path, ca: stack.main.endpoint.caPem, headers, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.end(body);
    });
  const pending = () => stack.broker.approvals.list(stack.reviewer(), {}).requests.filter((r) => r.status === 'pending');
  const patches = (): number => stack.api.requests.filter((q) => q.method === 'PATCH').length;

  before(async () => {
    stack = await startK8sStack({ policies: POLICIES });
    stack.api.put('configmaps', { metadata: { name: 'app-config', namespace: 'default' }, data: { MODE: 'production' } });
  });
  after(async () => {
    await stack?.close();
  });

  test('w1a-08: a body too long to be shown whole is refused, not held; one that fits is shown to its last byte', async () => {
    const long = JSON.stringify({ data: { MODE: 'production', NOTES: 'a'.repeat(70_000), UPSTREAM: 'https://attacker.example' } });
    const refused = await send('PATCH', PATH, long);
    assert.equal(refused.status, 403, refused.text);
    assert.match(refused.text, /its body is too long to be shown to a reviewer whole, so it was not held for review and nothing was sent/);
    assert.deepEqual(pending(), []);
    assert.equal(patches(), 0);

    const fits = JSON.stringify({ data: { NOTES: 'b'.repeat(60_000), UPSTREAM: 'https://attacker.example/END' } });
    const held = await send('PATCH', PATH, fits);
    const id = /approval required: (apr_\w+)/.exec(held.text)?.[1];
    assert.ok(id, held.text);
    const req = pending().find((r) => r.id === id);
    assert.match(req?.body?.text ?? '', /attacker\.example\/END/, 'the reviewer sees the end of the body');
    await stack.broker.approvals.decide(id, stack.reviewer(), 'deny', 'no');
    assert.equal(patches(), 0);
  });

  test('w1a-09: a one-shot approval releases one retry; the next identical request is held again', async () => {
    const body = JSON.stringify({ data: { MODE: 'maintenance' } });
    const first = await send('PATCH', PATH, body);
    const id = /approval required: (apr_\w+)/.exec(first.text)?.[1];
    assert.ok(id, first.text);
    await stack.broker.approvals.decide(id, stack.reviewer(), 'approve', null);
    const retry = await send('PATCH', PATH, body);
    assert.equal(retry.status, 200, retry.text);
    assert.equal(patches(), 1);
    const again = await send('PATCH', PATH, body);
    assert.equal(again.status, 403, again.text);
    const second = /approval required: (apr_\w+)/.exec(again.text)?.[1];
    assert.ok(second && second !== id, again.text);
    assert.equal(patches(), 1, 'the approval was used once');
    await stack.broker.approvals.decide(second, stack.reviewer(), 'deny', 'once');
  });
});

describe('approvals, wave 1 adversary (SSH)', () => {
  let stack: SshStack;
  before(async () => {
    stack = await startSshStack(HELD_PRINTENV_SSH);
  });
  after(async () => {
    await stack?.close();
  });

  // ssh2's Server still emits a request on a session whose exec it accepted; OpenSSH never sends one late.
  test('w1a-10: an env request sent while the command is held does not ride on its approval', async () => {
    const cfg = await readFile(stack.sshConfig, 'utf8');
    const port = Number(/Port (\d+)/.exec(cfg)?.[1]);
    const key = await readFile(/IdentityFile "([^"]+)"/.exec(cfg)?.[1] ?? '', 'utf8');
    const client = new ssh2.Client();
    let approval = '';
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve());
      client.once('error', reject);
      client.connect({ host: '127.0.0.1', port, username: 'agentgate', privateKey: key, hostVerifier: () => true });
    });
    try {
      const chan = await new Promise<ClientChannel>((resolve, reject) => client.exec('printenv LC_TIME LC_PAPER', { env: { LC_TIME: 'sent-before-exec' } }, (err, c) => (err ? reject(err) : resolve(c))));
      let out = '';
      chan.on('data', (b: Buffer) => (out += b.toString()));
      chan.stderr.resume();
      const closed = new Promise<void>((resolve) => chan.once('close', () => resolve()));
      // ssh2 has no API for an env request on a running exec: the request as its exec options send it.
      const raw = chan as unknown as { outgoing: { id: number }; _client: { _protocol: { env(id: number, key: string, val: string, wantReply: boolean): void } } };
      raw._client._protocol.env(raw.outgoing.id, 'LC_PAPER', 'injected-after-exec', false);
      // Another channel's answer comes after the broker has read the env request (one connection, in order).
      await new Promise<void>((resolve, reject) =>
        client.exec('uptime', (err, c) => {
          if (err) return reject(err);
          c.resume();
          c.stderr.resume();
          c.once('close', () => resolve());
        }),
      );
      const held = await eventually('the printenv held', () => stack.broker.approvals.list(stack.reviewer()).requests.find((r) => r.status === 'pending' && r.statement === 'printenv LC_TIME LC_PAPER'));
      approval = held.id;
      await stack.broker.approvals.decide(held.id, stack.reviewer(), 'approve', null);
      await closed;
      assert.match(out, /sent-before-exec/, 'an env request before the exec reaches the command');
      assert.doesNotMatch(out, /injected-after-exec/, 'the command ran with an environment nobody approved');
    } finally {
      client.end();
    }
    const ran = await eventually('the printenv on record', async () => (await stack.events()).find((e) => e.type === 'ssh.command' && e.detail['command'] === 'printenv LC_TIME LC_PAPER'));
    assert.equal(ran.decision?.approval, approval, 'it ran released by its approval');
  });
});
