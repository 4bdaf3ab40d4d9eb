/**
 * A bootstrap token is a credential the writer of a Secret chooses: a Secret of type
 * `bootstrap.kubernetes.io/token` in kube-system makes the API server accept
 * `<token-id>.<token-secret>` as `system:bootstrap:<id>` (group system:bootstrappers, which
 * may ask for node certificates). A rule that lets a session create or write Secrets there
 * must not hand that out: such a write is decided as `create secrets/bootstrap-token`, which
 * only a rule naming it literally grants. Real kubectl, the API server stand-in, the broker.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rawRequest as request, startK8sStack, TARGET, type Connection, type K8sStack } from './stack.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';

const policy = (name: string, groups: string[], rules: PolicyConfig['rules'], extra: Partial<PolicyConfig> = {}): PolicyConfig => ({ name, subjects: { groups }, targets: [TARGET], rules, ...extra });
const POLICIES: PolicyConfig[] = [
  policy('agents-k8s', ['ai-agents'], [
    // "Secrets may be written in kube-system", and a glob over every secrets subresource.
    { name: 'system-secrets', k8s: { verbs: ['create', 'update', 'patch'], resources: ['secrets', 'secrets/*'], namespaces: ['kube-system'] }, effect: 'allow', extra: {} },
    { name: 'read', k8s: { verbs: ['get', 'list'], resources: ['configmaps'] }, effect: 'allow', extra: {} },
    { name: 'rest', effect: 'deny', extra: {} },
  ]),
  policy(
    'cluster-admins',
    ['cluster-admins'],
    [
      { name: 'join-tokens', k8s: { verbs: ['create'], resources: ['secrets/bootstrap-token'], namespaces: ['kube-system'] }, effect: 'allow', extra: {} },
      { name: 'system-secrets', k8s: { verbs: ['create', 'update', 'patch'], resources: ['secrets'], namespaces: ['kube-system'] }, effect: 'allow', extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
    { masking: { mode: 'off' } },
  ),
];

/** A bootstrap token Secret as `kubectl create -f` sends it (JSON; the stand-in reads no protobuf bodies). */
const bootstrapSecret = (id: string): string =>
  JSON.stringify({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: `bootstrap-token-${id}`, namespace: 'kube-system' },
    type: 'bootstrap.kubernetes.io/token',
    stringData: { 'token-id': id, 'token-secret': '0123456789abcdef', 'usage-bootstrap-authentication': 'true', 'auth-extra-groups': 'system:bootstrappers:kubeadm:default-node-token' },
  });

describe('bootstrap tokens are credentials', () => {
  let stack: K8sStack;
  let admin: Connection;
  let via: { port: number; ca: string; token: string };

  before(async () => {
    stack = await startK8sStack({ policies: POLICIES });
    admin = await stack.connectAs('admin-1', ['cluster-admins']);
    via = { port: stack.main.port, ca: stack.main.endpoint.caPem, token: stack.main.session.secret };
    stack.api.put('secrets', { metadata: { name: 'settings', namespace: 'kube-system' }, type: 'Opaque', data: { mode: Buffer.from('a').toString('base64') } });
  });
  after(async () => {
    await admin?.close();
    await stack?.close();
  });

  test('under a rule that lets it write Secrets in kube-system, an agent cannot make a bootstrap token in any form; a plain Secret goes through (control)', async () => {
    const from = stack.api.requests.length;
    const made = await stack.kubectlIn(['create', '--validate=false', '-f', '-'], bootstrapSecret('abcdef'));
    assert.notEqual(made.code, 0, made.stdout);
    assert.match(made.stderr, /bootstrap\.kubernetes\.io\/token is a bootstrap token the API server accepts as a credential/);
    assert.match(made.stderr, /only a rule that allows create secrets\/bootstrap-token by name may make one/);
    // The type spelled with JSON escapes; a server-side apply (which creates); a JSON Patch turning a Secret into one; protobuf.
    const doc = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'bootstrap-token-bbbbbb' }, type: 'bootstrap.kubernetes.io/token', stringData: { 'token-id': 'bbbbbb', 'token-secret': '0123456789abcdef', 'usage-bootstrap-authentication': 'true' } };
    const escaped = await request(via, 'POST', '/api/v1/namespaces/kube-system/secrets', { 'Content-Type': 'application/json' }, 5_000, JSON.stringify(doc).replace('bootstrap.kubernetes.io/token', 'bootstrap.kubernetes.io\\/tok\\u0065n'));
    assert.equal(escaped.status, 403, escaped.text);
    const yaml = 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: bootstrap-token-cccccc\ntype: "bootstrap.kubernetes.io/token"\nstringData: {token-id: cccccc, token-secret: 0123456789abcdef, usage-bootstrap-authentication: "true"}\n';
    const apply = await request(via, 'PATCH', '/api/v1/namespaces/kube-system/secrets/bootstrap-token-cccccc?fieldManager=agent&force=true', { 'Content-Type': 'application/apply-patch+yaml' }, 5_000, yaml);
    assert.equal(apply.status, 403, apply.text);
    const patch = await request(via, 'PATCH', '/api/v1/namespaces/kube-system/secrets/settings', { 'Content-Type': 'application/json-patch+json' }, 5_000, JSON.stringify([{ op: 'replace', path: '/type', value: 'bootstrap.kubernetes.io/token' }]));
    assert.equal(patch.status, 403, patch.text);
    const proto = await request(via, 'POST', '/api/v1/namespaces/kube-system/secrets', { 'Content-Type': 'application/vnd.kubernetes.protobuf' }, 5_000, Buffer.concat([Buffer.from('k8s\0', 'latin1'), Buffer.from([0x0a, 0x08]), Buffer.from('\n\x02v1\x12\x06Secret', 'latin1'), Buffer.from([0x2a, 0x1d]), Buffer.from('bootstrap.kubernetes.io/token', 'latin1')]));
    assert.equal(proto.status, 403, proto.text);
    assert.deepEqual(stack.api.requests.slice(from).filter((q) => q.method !== 'GET'), [], 'no write reached the API server');
    for (const id of ['abcdef', 'bbbbbb', 'cccccc']) assert.equal(stack.api.get('secrets', 'kube-system', `bootstrap-token-${id}`), undefined);
    assert.equal(stack.api.get('secrets', 'kube-system', 'settings')?.['type'], 'Opaque');
    // CONTROL: the same rule creates a plain Secret.
    const plain = await stack.kubectlIn(['create', '--validate=false', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'app-settings', namespace: 'kube-system' }, type: 'Opaque', stringData: { mode: 'prod' } }));
    assert.equal(plain.code, 0, plain.stderr);
    assert.ok(stack.api.get('secrets', 'kube-system', 'app-settings'));
  });

  test('a rule naming secrets/bootstrap-token literally lets an administrator make one (control)', async () => {
    const made = await stack.kubectlIn(['create', '--validate=false', '-f', '-'], bootstrapSecret('dddddd'), { kubeconfig: admin.kubeconfig });
    assert.equal(made.code, 0, made.stderr);
    assert.equal(stack.api.get('secrets', 'kube-system', 'bootstrap-token-dddddd')?.['type'], 'bootstrap.kubernetes.io/token');
  });
});
