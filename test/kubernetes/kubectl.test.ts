/**
 * Kubernetes through the broker, end to end with the real kubectl: the stand-in API
 * server, the broker's Kubernetes proxy behind the tunnel, the session's TLS listener and
 * kubeconfig. Each test checks what kubectl printed, what reached the API server, and what
 * the audit log recorded.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { Agent, request } from 'undici';
import tls from 'node:tls';

import { startK8sStack, eventually, TARGET, DEFAULT_POLICIES, type K8sStack } from './stack.js';
import { writeKubeconfig } from '../../src/client/kubeconfig.js';
import { verifyChain, type AuditRecord } from '../../src/shared/audit-hash.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';

/** A client's stdin message (channel 0) in a masked WebSocket frame, as kubectl sends it. */
function stdinFrame(text: string): Buffer {
  const payload = Buffer.concat([Buffer.from([0]), Buffer.from(text, 'utf8')]);
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] = body[i]! ^ key[i & 3]!;
  return Buffer.concat([Buffer.from([0x82, 0x80 | payload.length]), key, body]);
}

function k8sRequests(events: AuditRecord[], pred: (d: AuditRecord['detail']) => boolean): AuditRecord[] {
  return events.filter((e) => e.type === 'k8s.request' && pred(e.detail));
}

describe('kubectl through the broker', () => {
  let stack: K8sStack;

  before(async () => {
    stack = await startK8sStack({
      policies: [
        ...DEFAULT_POLICIES,
        // Operators may exec: exercises the upgrade pipe.
        { name: 'ops', subjects: { groups: ['ops'] }, targets: [TARGET], rules: [{ name: 'ops-all', effect: 'allow', extra: {} }] },
      ],
    });
    const { api } = stack;
    api.put('pods', { metadata: { name: 'web-1', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx', env: [{ name: 'AWS_ACCESS_KEY_ID', value: AWS_KEY }, { name: 'MODE', value: 'prod' }] }] } });
    api.put('pods', { metadata: { name: 'web-2', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx' }] } });
    api.put('secrets', {
      metadata: { name: 'db', namespace: 'default', annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db' }, data: { password: b64('hunter2-applied') } }) } },
      type: 'Opaque',
      data: { password: b64('hunter2'), username: b64('app') },
    });
    api.put('configmaps', { metadata: { name: 'settings', namespace: 'default' }, data: { region: 'eu-west-1', aws: AWS_KEY } });
  });
  after(async () => {
    await stack?.close();
  });

  test('kubectl get pods: discovery, then a Table, all recorded in one valid chain', async () => {
    const r = await stack.kubectl(['get', 'pods']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$/m);
    assert.match(r.stdout, /^web-1\s+1\/1\s+Running\s+0\s+/m);
    assert.match(r.stdout, /^web-2\s+/m);
    const events = await eventually('the pods list event', async () => {
      const ev = await stack.events();
      return k8sRequests(ev, (d) => d['resource'] === 'pods' && d['verb'] === 'list').length > 0 ? ev : undefined;
    });
    const list = k8sRequests(events, (d) => d['resource'] === 'pods' && d['verb'] === 'list')[0] as AuditRecord;
    assert.deepEqual(list.decision, { effect: 'allow', rule: 'read' });
    assert.equal(list.detail['namespace'], 'default');
    assert.equal(list.detail['status_code'], 200);
    assert.equal(list.outcome?.status, 'ok');
    assert.ok((list.outcome?.bytes ?? 0) > 0);
    assert.equal(list.actor?.sub, 'agent-7');
    assert.equal(list.target, TARGET);
    const discovery = k8sRequests(events, (d) => d['path'] === '/api');
    assert.ok(discovery.length > 0 && discovery.every((e) => e.decision?.rule === 'builtin:discovery'));
    const start = events.find((e) => e.type === 'session.start' && e.session === list.session);
    assert.equal(start?.detail['connect_session'], stack.main.session.id);
    assert.deepEqual(start?.decision, { effect: 'allow', rule: 'agents-k8s' });
    // Each kubectl connection is one session with its own signed receipt.
    const receipt = await eventually('the session receipt', () => stack.broker.receipts.get(list.session as string));
    const statement = JSON.parse(Buffer.from(receipt.envelope.payload, 'base64').toString('utf8')) as { predicate: { protocol: string; policy: { name: string }; counts: { statements: number; allowed: number } } };
    assert.equal(statement.predicate.protocol, 'kubernetes');
    assert.equal(statement.predicate.policy.name, 'agents-k8s');
    assert.ok(statement.predicate.counts.statements >= 1 && statement.predicate.counts.allowed === statement.predicate.counts.statements);
    assert.ok(verifyChain(events).ok);
    // The API server saw only the broker's credential; the session secret went nowhere.
    assert.ok(stack.api.requests.length > 0);
    for (const req of stack.api.requests) assert.equal(req.headers['authorization'], `Bearer ${stack.api.token}`);
    assert.ok(!JSON.stringify(events).includes(stack.main.session.secret));
  });

  test('kubectl get secret -o yaml: every value masked, the last-applied copy too', async () => {
    const r = await stack.kubectl(['get', 'secret', 'db', '-o', 'yaml']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^kind: Secret$/m);
    assert.match(r.stdout, new RegExp(`^  password: ${b64('********').replace(/[+=]/g, '\\$&')}$`, 'm'));
    assert.match(r.stdout, new RegExp(`^  username: ${b64('********').replace(/[+=]/g, '\\$&')}$`, 'm'));
    for (const raw of ['hunter2', b64('hunter2'), b64('app'), b64('hunter2-applied')]) assert.ok(!r.stdout.includes(raw), `${raw} leaked`);
    // Asked upstream as JSON, never protobuf.
    const seen = stack.api.requests.filter((q) => q.url.startsWith('/api/v1/namespaces/default/secrets/db'));
    assert.ok(seen.length > 0 && seen.every((q) => !String(q.headers['accept']).includes('protobuf')));
    const ev = await eventually('the secret get event', async () => k8sRequests(await stack.events(), (d) => d['resource'] === 'secrets' && d['name'] === 'db')[0]);
    assert.equal(ev.detail['masked'], 3);
  });

  test('a session that sees masked Secrets may not write one back (kubectl patch/edit would store the masks)', async () => {
    const before = stack.api.requests.length;
    const r = await stack.kubectl(['patch', 'secret', 'db', '-p', '{"stringData":{"password":"********"}}']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /may not update or patch Secrets/);
    assert.ok(!stack.api.requests.slice(before).some((q) => q.method === 'PATCH'), 'nothing reached the API server');
  });

  test('kubectl get secrets (Table) and configmaps and pods as YAML: flagged values masked, others kept', async () => {
    const t = await stack.kubectl(['get', 'secrets']);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^NAME\s+TYPE\s+DATA\s+AGE$/m);
    assert.match(t.stdout, /^db\s+Opaque\s+2\s+/m);
    const cm = await stack.kubectl(['get', 'configmap', 'settings', '-o', 'jsonpath={.data}']);
    assert.equal(cm.code, 0, cm.stderr);
    assert.deepEqual(JSON.parse(cm.stdout), { aws: '********', region: 'eu-west-1' });
    const pods = await stack.kubectl(['get', 'pods', '-o', 'json']);
    assert.equal(pods.code, 0, pods.stderr);
    assert.ok(!pods.stdout.includes(AWS_KEY));
    const env = (JSON.parse(pods.stdout) as { items: { metadata: { name: string }; spec: { containers: { env?: { name: string; value: string }[] }[] } }[] }).items.find((p) => p.metadata.name === 'web-1')?.spec.containers[0]?.env;
    assert.deepEqual(env, [{ name: 'AWS_ACCESS_KEY_ID', value: '********' }, { name: 'MODE', value: 'prod' }]);
    // A client asking for protobuf (typed Go clients do) gets JSON it can be masked in.
    const res = await request(`https://127.0.0.1:${stack.main.port}/api/v1/namespaces/default/secrets/db`, {
      headers: { authorization: `Bearer ${stack.main.session.secret}`, accept: 'application/vnd.kubernetes.protobuf, */*' },
      dispatcher: new Agent({ connect: { ca: stack.main.endpoint.caPem } }),
    });
    const body = await res.body.text();
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    assert.ok(!body.includes(b64('hunter2')));
    assert.equal(stack.api.requests.at(-1)?.headers['accept'], 'application/json');
  });

  test('kubectl delete pod: held for approval with a message kubectl prints; approved, the re-run succeeds', async () => {
    const first = await stack.kubectl(['delete', 'pod', 'web-2']);
    assert.notEqual(first.code, 0);
    const m = /Error from server \(Forbidden\): agentgate: approval required: (apr_[a-z2-7]+) — run: agentgate approve \1/.exec(first.stderr);
    assert.ok(m, first.stderr);
    const id = m[1] as string;
    assert.ok(stack.api.get('pods', 'default', 'web-2'), 'nothing was deleted');
    const held = stack.broker.approvals.get(id);
    assert.equal(held?.status, 'pending');
    assert.equal(held?.protocol, 'kubernetes');
    assert.equal(held?.statement, 'DELETE /api/v1/namespaces/default/pods/web-2');

    // The same request again joins the same pending request.
    const again = await stack.kubectl(['delete', 'pod', 'web-2']);
    assert.match(again.stderr, new RegExp(`approval required: ${id} `));

    await stack.broker.approvals.decide(id, stack.reviewer(), 'approve', 'routine cleanup');
    const rerun = await stack.kubectl(['delete', 'pod', 'web-2']);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.match(rerun.stdout, /pod "web-2" deleted/);
    assert.equal(stack.api.get('pods', 'default', 'web-2'), undefined);

    // The approval was one-shot: used up by the re-run.
    stack.api.put('pods', { metadata: { name: 'web-2', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx' }] } });
    const third = await stack.kubectl(['delete', 'pod', 'web-2']);
    assert.match(third.stderr, /approval required: apr_/);
    assert.ok(!third.stderr.includes(id));

    const events = await stack.events();
    const deletes = k8sRequests(events, (d) => d['verb'] === 'delete' && d['name'] === 'web-2');
    assert.deepEqual(
      deletes.map((e) => [e.detail['status_code'], e.decision?.effect, e.decision?.rule]),
      [
        [403, 'review', 'delete-held'],
        [403, 'review', 'delete-held'],
        [200, 'review', 'delete-held'],
        [403, 'review', 'delete-held'],
      ],
    );
    assert.equal(deletes[2]?.decision?.approval, id);
    assert.ok(events.some((e) => e.type === 'approval.requested' && e.detail['id'] === id));
  });

  test('kubectl exec is denied with a sentence, before any upgrade reaches the cluster', async () => {
    const before = stack.api.requests.length;
    const r = await stack.kubectl(['exec', 'web-1', '--', 'cat', '/etc/hostname']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Error from server \(Forbidden\): agentgate: rule no-exec denies exec pods\/exec "web-1" in namespace default/);
    assert.ok(!stack.api.requests.slice(before).some((q) => q.url.includes('/exec')), 'no exec request reached the API server');
    const denied = k8sRequests(await stack.events(), (d) => d['subresource'] === 'exec');
    assert.ok(denied.length >= 1);
    for (const e of denied) {
      assert.equal(e.decision?.effect, 'deny');
      assert.equal(e.detail['status_code'], 403);
      assert.match(String(e.detail['query']), /command=cat&command=%2Fetc%2Fhostname/);
    }
  });

  test('an allowed exec upgrade is relayed and recorded before it starts', async () => {
    const ops = await stack.connectAs('oncall-1', ['ops']);
    const socket = tls.connect({ host: '127.0.0.1', port: ops.port, ca: ops.endpoint.caPem });
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    socket.write(
      'GET /api/v1/namespaces/default/pods/web-1/exec?command=sh&stdin=true&stdout=true HTTP/1.1\r\n' +
        `Host: 127.0.0.1:${ops.port}\r\nAuthorization: Bearer ${ops.session.secret}\r\n` +
        'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
        'Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n',
    );
    let received = '';
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    await eventually('101 from the API server', () => received.includes('\r\n\r\n'));
    assert.match(received, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(received, /Sec-WebSocket-Protocol: v5\.channel\.k8s\.io/);
    socket.write(stdinFrame('ping-through-the-pipe\n'));
    await eventually('the echo', () => received.includes('ping-through-the-pipe\n'));
    const upstreamExec = stack.api.requests.find((q) => q.url.includes('/exec') && q.headers['upgrade'] === 'websocket');
    assert.equal(upstreamExec?.headers['authorization'], `Bearer ${stack.api.token}`);
    // Recorded before the API server saw it; the end is recorded when the stream closes.
    const started = k8sRequests(await stack.events(), (d) => d['subresource'] === 'exec').filter((e) => e.actor?.sub === 'oncall-1');
    assert.equal(started.length, 1);
    assert.equal(started[0]?.outcome, null);
    assert.deepEqual(started[0]?.decision, { effect: 'allow', rule: 'ops-all' });
    socket.end();
    const end = await eventually('k8s.stream.end', async () => (await stack.events()).find((e) => e.type === 'k8s.stream.end' && e.session === started[0]?.session));
    assert.equal(end.detail['status_code'], 101);
    assert.equal(end.outcome?.status, 'ok');
    assert.ok((end.detail['bytes_to_server'] as number) >= 'ping-through-the-pipe'.length);
    await ops.close();
  });

  /** A raw exec over WebSocket as `sub` in ops, after its 101: the socket and what it received. */
  async function openExec(sub: string): Promise<{ socket: tls.TLSSocket; received: () => string; closed: Promise<void>; session: () => Promise<string>; close(): Promise<void> }> {
    const ops = await stack.connectAs(sub, ['ops']);
    const socket = tls.connect({ host: '127.0.0.1', port: ops.port, ca: ops.endpoint.caPem });
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    let received = '';
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(
      'GET /api/v1/namespaces/default/pods/web-1/exec?command=sh&stdin=true&stdout=true HTTP/1.1\r\n' +
        `Host: 127.0.0.1:${ops.port}\r\nAuthorization: Bearer ${ops.session.secret}\r\n` +
        'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
        'Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n',
    );
    await eventually('101 from the API server', () => received.includes('\r\n\r\n'));
    assert.match(received, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    const session = async (): Promise<string> =>
      (await eventually('the exec on record', async () => k8sRequests(await stack.events(), (d) => d['subresource'] === 'exec').find((e) => e.actor?.sub === sub))).session!;
    return { socket, received: () => received, closed, session, close: () => ops.close() };
  }

  const streamEnds = async (session: string): Promise<AuditRecord[]> => (await stack.events()).filter((e) => e.type === 'k8s.stream.end' && e.session === session);

  test('an exec stream whose API server ignores the end of its input still ends, once', async () => {
    stack.api.execPeer = 'ignores-eof';
    try {
      const x = await openExec('oncall-14');
      x.socket.write(stdinFrame('ping\n'));
      await eventually('the echo', () => x.received().includes('ping\n'));
      x.socket.end();
      await x.closed;
      const session = await x.session();
      const [end] = await eventually('k8s.stream.end', async () => {
        const e = await streamEnds(session);
        return e.length > 0 ? e : undefined;
      });
      assert.equal(end?.detail['status_code'], 101);
      await x.close();
      assert.equal((await streamEnds(session)).length, 1);
    } finally {
      stack.api.execPeer = 'echo';
    }
  });

  test('an exec stream the API server ends while the client stays open ends too, once (the close grace)', async () => {
    stack.api.execPeer = 'ends-after-echo';
    try {
      const x = await openExec('oncall-15');
      x.socket.write(stdinFrame('last-words'));
      // The client never ends its side: the broker ends it after the API server's end.
      await x.closed;
      assert.ok(x.received().endsWith('last-words'), 'what the API server sent before its end arrives');
      const session = await x.session();
      const [end] = await eventually('k8s.stream.end', async () => {
        const e = await streamEnds(session);
        return e.length > 0 ? e : undefined;
      });
      assert.equal(end?.detail['status_code'], 101);
      await x.close();
      assert.equal((await streamEnds(session)).length, 1);
    } finally {
      stack.api.execPeer = 'echo';
    }
  });

  test('an upgrade the API server does not switch ends the connection: no request can ride behind it', async () => {
    const ops = await stack.connectAs('oncall-3', ['ops']);
    const socket = tls.connect({ host: '127.0.0.1', port: ops.port, ca: ops.endpoint.caPem });
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    let received = '';
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const before = stack.api.requests.length;
    // The exec of a pod that does not exist is answered 404 without switching; the
    // pipelined GET behind it must not reach the API server with the broker's credentials.
    socket.write(
      'POST /api/v1/namespaces/default/pods/missing/exec?command=sh HTTP/1.1\r\n' +
        `Host: x\r\nAuthorization: Bearer ${ops.session.secret}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n` +
        'GET /api/v1/namespaces/default/secrets/db HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    await closed;
    assert.match(received, /^HTTP\/1\.1 404 Not Found\r\n/);
    assert.match(received, /pods not found/);
    assert.ok(!received.includes(Buffer.from('hunter2').toString('base64')));
    const seen = stack.api.requests.slice(before);
    assert.deepEqual(seen.map((q) => `${q.method} ${q.url.split('?')[0]}`), ['POST /api/v1/namespaces/default/pods/missing/exec']);
    assert.deepEqual(seen[0]?.headers['sec-websocket-protocol'], 'v5.channel.k8s.io');
    const end = await eventually('k8s.stream.end', async () => (await stack.events()).find((e) => e.type === 'k8s.stream.end' && e.actor?.sub === 'oncall-3'));
    assert.equal(end.detail['status_code'], 404);
    assert.equal(end.outcome?.status, 'error');
    await ops.close();
  });

  test('an API server that breaks off its answer to an upgrade: the client gets a 502 Status, the broker keeps serving', { timeout: 30_000 }, async () => {
    const ops = await stack.connectAs('oncall-5', ['ops']);
    const socket = tls.connect({ host: '127.0.0.1', port: ops.port, ca: ops.endpoint.caPem });
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    let received = '';
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    stack.api.breakUpgradeAnswers = true;
    try {
      socket.write(
        'POST /api/v1/namespaces/default/pods/web-1/exec?command=sh HTTP/1.1\r\n' +
          `Host: x\r\nAuthorization: Bearer ${ops.session.secret}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n`,
      );
      await closed;
    } finally {
      stack.api.breakUpgradeAnswers = false;
    }
    // A whole answer, not the upstream's fragment: a 502 Status that says what happened.
    assert.match(received, /^HTTP\/1\.1 502 /);
    assert.match(received, /agentgate: the Kubernetes API server of k8s-test broke off its answer to the upgrade/);
    assert.ok(!received.includes('{"kind":"Status","message":"pods'), received);
    const end = await eventually('k8s.stream.end', async () => (await stack.events()).find((e) => e.type === 'k8s.stream.end' && e.actor?.sub === 'oncall-5'));
    assert.equal(end.detail['status_code'], 502);
    assert.equal(end.outcome?.status, 'error');
    assert.match(String(end.detail['error']), /broke off its answer/);
    // The session ended (its connection closed) and the broker still serves everyone else.
    const r = await stack.kubectl(['get', 'pods']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^web-1\s/m);
    await ops.close();
  });

  test('kubectl create -f: the request body goes upstream as sent, the object that comes back is masked', async () => {
    const ops = await stack.connectAs('oncall-2', ['ops']);
    const manifest = join(stack.tmp.path, 'secret.json');
    await writeFile(manifest, JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'created', namespace: 'default' }, data: { token: b64('fresh-token') } }));
    // The stand-in has no OpenAPI schemas for client-side validation.
    const r = await stack.kubectl(['create', '--validate=false', '-f', manifest, '-o', 'json'], { kubeconfig: ops.kubeconfig });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(Buffer.from((JSON.parse(r.stdout) as { data: { token: string } }).data.token, 'base64').toString('utf8'), '********');
    assert.equal((stack.api.get('secrets', 'default', 'created')?.['data'] as { token: string }).token, b64('fresh-token'));
    const ev = await eventually('the create event', async () => k8sRequests(await stack.events(), (d) => d['verb'] === 'create' && d['resource'] === 'secrets')[0]);
    assert.equal(ev.detail['status_code'], 201);
    assert.deepEqual(ev.decision, { effect: 'allow', rule: 'ops-all' });
    await ops.close();
  });

  test('kubectl get pods -w streams: an event after the watch started is printed while the watch is open', async () => {
    const endedBefore = stack.api.watchesEnded;
    const child = stack.spawnKubectl(['get', 'pods', '-w']);
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    try {
      await eventually('the initial list', () => /^web-1\s/m.test(out), 15_000);
      await eventually('the watch to be open upstream', () => stack.api.watchers('pods') === 1, 15_000);
      stack.api.put('pods', { metadata: { name: 'late-arrival', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx' }] } });
      await eventually(`kubectl to print the new pod (stderr: ${err})`, () => /^late-arrival\s+1\/1\s+Running/m.test(out), 15_000);
      // Printed while the watch is still open: streamed, not buffered to the end.
      assert.equal(stack.api.watchers('pods'), 1);
      assert.equal(stack.api.watchesEnded, endedBefore);
    } finally {
      child.kill('SIGTERM');
    }
    const watch = await eventually('the watch event', async () => k8sRequests(await stack.events(), (d) => d['verb'] === 'watch' && d['resource'] === 'pods')[0]);
    assert.equal(watch.detail['status_code'], 200);
    assert.deepEqual(watch.decision, { effect: 'allow', rule: 'read' });
    stack.api.remove('pods', 'default', 'late-arrival');
  });

  test('a wrong bearer token is refused with 401 and recorded; nothing reaches the API server', async () => {
    const path = await writeKubeconfig({
      dir: join(stack.tmp.path, 'wrong'),
      target: TARGET,
      port: stack.main.port,
      secret: 'not-the-session-secret',
      caPem: stack.main.endpoint.caPem,
    });
    const before = stack.api.requests.length;
    const r = await stack.kubectl(['get', 'pods'], { kubeconfig: path });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /You must be logged in to the server/);
    assert.equal(stack.api.requests.length, before);
    const refused = await eventually('a 401 event', async () => k8sRequests(await stack.events(), (d) => d['status_code'] === 401)[0]);
    assert.equal(refused.detail['auth'], 'mismatch');
    assert.equal(refused.decision, null);
    assert.ok(!JSON.stringify(await stack.events()).includes('not-the-session-secret'));
  });

  test('an identity no policy gives this target gets 403 Status for everything, discovery included', async () => {
    const other = await stack.connectAs('mallory', ['interns']);
    const before = stack.api.requests.length;
    const r = await stack.kubectl(['get', 'pods'], { kubeconfig: other.kubeconfig });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no policy gives mallory access to k8s-test/);
    assert.equal(stack.api.requests.length, before);
    const events = k8sRequests(await stack.events(), () => true).filter((e) => e.actor?.sub === 'mallory');
    assert.ok(events.length > 0 && events.every((e) => e.detail['status_code'] === 403 && e.decision?.effect === 'deny'));
    await other.close();
  });

  test('impersonation (kubectl --as) is refused', async () => {
    const r = await stack.kubectl(['get', 'pods', '--as', 'system:admin']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /impersonation \(impersonate-user\) is not allowed through agentgate/);
    assert.ok(!stack.api.requests.some((q) => q.headers['impersonate-user'] !== undefined));
  });
});
