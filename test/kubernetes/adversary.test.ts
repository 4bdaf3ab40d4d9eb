/**
 * The Kubernetes proxy tried as an attacker would (issue 22, items 7–8), with the real
 * kubectl (and raw HTTP/WebSocket where kubectl cannot be made to misbehave) against the
 * stand-in API server. Each case checks what reached the client, what the API server was
 * asked, and what the audit log recorded.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { startK8sStack, eventually, type K8sStack } from './stack.js';
import { scanTextStream } from '../../src/broker/masking/text-stream.js';
import { createValueMasker } from '../../src/broker/kubernetes/value-mask.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';

const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';
const PASSWORD = 'hunter2-in-the-clear';
const ENV = [
  { name: 'DB_PASSWORD', value: PASSWORD },
  { name: 'NOTES', value: `key ${AWS_KEY} here` },
  { name: 'MODE', value: 'production' },
];
const podTemplate = { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx', env: ENV }] } };

/** One raw HTTP/1.1 exchange over the session's TLS listener; resolves with all the bytes once the server closes or `until` matches. */
async function rawExchange(stack: K8sStack, head: string, until: RegExp): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port: stack.main.port, ca: stack.main.endpoint.caPem });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  let received = '';
  socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(head.replace('{AUTH}', `Authorization: Bearer ${stack.main.session.secret}`));
  await Promise.race([closed, eventually(`an answer matching ${until}`, () => until.test(received) || undefined)]);
  socket.destroy();
  return received;
}

function k8sRequests(events: AuditRecord[], pred: (d: AuditRecord['detail']) => boolean): AuditRecord[] {
  return events.filter((e) => e.type === 'k8s.request' && pred(e.detail));
}

describe('the Kubernetes proxy against an adversarial agent', () => {
  let stack: K8sStack;

  before(async () => {
    stack = await startK8sStack({ maxPendingPerRequester: 2 });
    stack.api.put('pods', { metadata: { name: 'web-1', namespace: 'default' }, spec: podTemplate.spec });
    stack.api.put('controllerrevisions', { metadata: { name: 'web-7d9', namespace: 'default' }, revision: 3, data: { spec: { template: podTemplate } } });
    // The key arrives split across two writes of the log stream.
    stack.api.setLog('default', 'web-1', ['starting\nloaded credentials AKIAIOSF', 'ODNN7EXAMPLE from env\n', 'ready\n']);
  });
  after(async () => {
    await stack?.close();
  });

  test('7a. an Upgrade header on a plain get does not skip masking: refused before the API server sees it', async () => {
    const before = stack.api.requests.length;
    const got = await rawExchange(
      stack,
      'GET /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: x\r\n{AUTH}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAccept: application/vnd.kubernetes.protobuf\r\n\r\n',
      /\r\n\r\n[\s\S]*\}/,
    );
    assert.match(got, /^HTTP\/1\.1 400 /);
    assert.match(got, /only exec, attach, portforward and proxy may upgrade the connection/);
    assert.ok(!got.includes(PASSWORD) && !got.includes(AWS_KEY));
    assert.deepEqual(stack.api.requests.slice(before), [], 'nothing reached the API server');
    const rec = await eventually('the refusal on record', async () => k8sRequests(await stack.events(), (d) => d['upgrade'] === 'websocket' && d['resource'] === 'pods' && d['api_verb'] === 'list')[0]);
    assert.equal(rec.decision?.effect, 'deny');
    assert.equal(rec.detail['status_code'], 400);
  });

  test('7b. a watch over WebSocket is refused; the stand-in would have streamed it in the clear', async () => {
    // The stand-in serves WebSocket watches as the API server does: env values in plain text.
    const direct = tls.connect({ host: '127.0.0.1', port: Number(new URL(stack.api.url).port), ca: stack.api.caPem });
    await new Promise<void>((resolve, reject) => direct.once('secureConnect', resolve).once('error', reject));
    let raw = '';
    direct.on('data', (c: Buffer) => (raw += c.toString('latin1')));
    direct.write(
      `GET /api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${stack.api.token}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    );
    await eventually('an ADDED event over the WebSocket', () => raw.includes('"ADDED"') || undefined);
    assert.match(raw, /^HTTP\/1\.1 101 /);
    assert.ok(raw.includes(PASSWORD), 'the stand-in sends what the real server would');
    direct.destroy();

    const before = stack.api.requests.length;
    const got = await rawExchange(
      stack,
      'GET /api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: x\r\n{AUTH}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      /\r\n\r\n[\s\S]*\}/,
    );
    assert.match(got, /^HTTP\/1\.1 400 /);
    assert.match(got, /watch pods in namespace default over websocket is not relayed|is not relayed/);
    assert.ok(!got.includes(PASSWORD));
    assert.deepEqual(stack.api.requests.slice(before), []);
    const recs = k8sRequests(await stack.events(), (d) => d['upgrade'] === 'websocket' && d['api_verb'] === 'watch');
    assert.equal(recs.length, 1);
    assert.equal(recs[0]?.decision?.effect, 'deny');
  });

  test('7c. a client asking for protobuf and gzip gets masked JSON: the API server is asked for uncompressed JSON', async () => {
    const before = stack.api.requests.length;
    const got = await rawExchange(
      stack,
      'GET /api/v1/namespaces/default/pods/web-1 HTTP/1.1\r\nHost: x\r\n{AUTH}\r\nAccept: application/vnd.kubernetes.protobuf, */*\r\nAccept-Encoding: gzip\r\n\r\n',
      /\r\n\r\n\{[\s\S]*\}$/,
    );
    assert.match(got, /^HTTP\/1\.1 200 /);
    assert.match(got, /content-type: application\/json/i);
    assert.ok(!got.includes(PASSWORD) && !got.includes(AWS_KEY), 'env values masked');
    assert.match(got, /"MODE","value":"production"/);
    const asked = stack.forwarded(before);
    assert.equal(asked.length, 1);
    assert.equal(asked[0]?.headers['accept'], 'application/json');
    assert.equal(asked[0]?.headers['accept-encoding'], 'identity');
    const rec = await eventually('the get on record', async () => k8sRequests(await stack.events(), (d) => d['name'] === 'web-1' && d['resource'] === 'pods' && d['subresource'] === '' && d['status_code'] === 200).at(-1));
    assert.equal(rec.detail['masked'], 2);
  });

  test('5. held deletes stop at the per-requester cap: the next is refused with 429 saying why', async () => {
    for (const n of [1, 2, 3]) stack.api.put('pods', { metadata: { name: `doomed-${n}`, namespace: 'default' }, spec: { containers: [{ name: 'c', image: 'x' }] } });
    const held1 = await stack.kubectl(['delete', 'pod', 'doomed-1', '-n', 'default', '--wait=false']);
    const held2 = await stack.kubectl(['delete', 'pod', 'doomed-2', '-n', 'default', '--wait=false']);
    assert.match(held1.stderr + held2.stderr, /approval required: apr_\w+[\s\S]*approval required: apr_\w+/);
    const before = stack.api.requests.length;
    const third = await stack.kubectl(['delete', 'pod', 'doomed-3', '-n', 'default', '--wait=false']);
    assert.notEqual(third.code, 0);
    assert.match(third.stderr, /agent-7 already has 2 requests waiting for approval \(the limit is 2\)/);
    assert.deepEqual(stack.api.requests.slice(before).filter((q) => q.method === 'DELETE'), [], 'no delete reached the API server');
    assert.ok(stack.api.get('pods', 'default', 'doomed-3'));
    const rec = k8sRequests(await stack.events(), (d) => d['name'] === 'doomed-3' && d['verb'] === 'delete').at(-1);
    assert.equal(rec?.decision?.effect, 'deny');
    assert.equal(rec?.detail['status_code'], 429);
    assert.equal(stack.broker.approvals.list(stack.reviewer(), {}).requests.length, 2);
  });

  test('8a. a ControllerRevision (a copy of the pod template) is masked like the pod', async () => {
    const r = await stack.kubectl(['get', 'controllerrevisions', '-n', 'default', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(PASSWORD) && !r.stdout.includes(AWS_KEY), r.stdout);
    const list = JSON.parse(r.stdout) as { items: { data: { spec: { template: typeof podTemplate } } }[] };
    const env = list.items[0]?.data.spec.template.spec.containers[0]?.env ?? [];
    assert.deepEqual(env.map((e) => e.name), ['DB_PASSWORD', 'NOTES', 'MODE']);
    assert.equal(env[2]?.value, 'production');
    assert.notEqual(env[0]?.value, PASSWORD);
    assert.match(String(env[1]?.value), /^key \S+ here$/);
    // The API server held (and sent) the values in the clear.
    assert.equal((stack.api.get('controllerrevisions', 'default', 'web-7d9')?.['data'] as { spec: { template: typeof podTemplate } }).spec.template.spec.containers[0]?.env[0]?.value, PASSWORD);
    const rec = k8sRequests(await stack.events(), (d) => d['resource'] === 'controllerrevisions' && d['api_verb'] === 'list').at(-1);
    assert.equal(rec?.detail['group'], 'apps');
    assert.equal(rec?.detail['masked'], 2);
  });

  test('8b. pods/log is scanned in-stream: a key split across chunks is masked', async () => {
    const r = await stack.kubectl(['logs', 'web-1', '-n', 'default']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(AWS_KEY), r.stdout);
    assert.match(r.stdout, /^starting\nloaded credentials \S+ from env\nready\n$/);
    assert.ok(stack.api.requests.some((q) => q.url.startsWith('/api/v1/namespaces/default/pods/web-1/log')));
    const rec = k8sRequests(await stack.events(), (d) => d['subresource'] === 'log').at(-1);
    assert.equal(rec?.decision?.effect, 'allow');
    assert.equal(rec?.detail['masked'], 1);
  });

  test('8c. the log scanner finds a key wherever the stream splits it, and holds a PEM block until it ends', async () => {
    const masker = createValueMasker({ masking: {}, policies: [] }, { sub: 'a', groups: [], kind: 'agent', issuer: 'x', expiresAt: 0 }, 't', Buffer.alloc(32));
    assert.ok(masker);
    const log = `line one\nthe key ${AWS_KEY} is here\n`;
    for (let cut = 0; cut <= log.length; cut++) {
      const out = await text(Readable.from([Buffer.from(log.slice(0, cut)), Buffer.from(log.slice(cut))]).pipe(scanTextStream(masker, { onMasked: () => {} })));
      assert.ok(!out.includes(AWS_KEY), `split at ${cut}: ${out}`);
      assert.match(out, /^line one\nthe key \S+ is here\n$/);
    }
    const pem = '-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END RSA PRIVATE KEY-----\n';
    const lines = pem.split(/(?<=\n)/).map((l) => Buffer.from(l));
    const out = await text(Readable.from(lines).pipe(scanTextStream(masker, { onMasked: () => {} })));
    assert.ok(!out.includes('MIIBOgIBAAJBAKj34'), out);
  });
});
