/**
 * Wave 9 red team, Kubernetes (ids k9-NN).
 *
 * - Text cut where the client chooses, by other routes than `pods/log`: the kubelet's own
 *   log endpoint through `nodes/{node}/proxy/containerLogs/…` takes the same `tailLines`
 *   and `limitBytes`, and a file server behind `pods/proxy` honours the client's `Range`.
 *   A value cut there has lost the shape a detector knows.
 * - Credentials handed out by a rule that never named them: a rule naming no resources
 *   (`verbs: [create]` in a namespace) or a glob (`certificates.k8s.io/*\/*`) let through a
 *   TokenRequest (`kubectl create token`) or a CSR approval.
 * - A bare resource name in an allow rule (`configmaps`) granted the same plural in any API
 *   group: a custom resource or an aggregated API named like a built-in one.
 *
 * Each leak case has a control: the same request straight to the stand-in, as an identity
 * whose policy has masking off, or under a rule that names what it grants.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rawRequest as request, startK8sStack, TARGET, type Connection, type K8sStack } from './stack.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';

/** A value the credential detectors find whole (a GitHub token's shape: ghp_ and 36). */
const GH_TOKEN = 'ghp_k9R4nd0mT0k3nV4lu3ABCDEFGHIJKLMNOPQR';
/** The first 24 characters after ghp_: too short for the detector, most of the token. */
const GH_PIECE = GH_TOKEN.slice(0, 28);
const KEY_BODY = ['MIIEowIBAAKCAQEAk9r3nd0mK3yB0dyL1n3One0123456789abcdefghijklmnop', 'Zk9w4v3Body2Line0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkl', 'Zm9vYmFyLastLine9x=='];
const PEM = `-----BEGIN RSA PRIVATE KEY-----\n${KEY_BODY.join('\n')}\n-----END RSA PRIVATE KEY-----\n`;
const LOG = `starting\nusing token ${GH_TOKEN}\nloading key\n${PEM}ready\n`;
/** limitBytes that ends the log inside the token. */
const CUT_IN_TOKEN = `starting\nusing token ${GH_PIECE}`.length;
/** A file the pod's HTTP server serves, and the byte range that ends inside its token. */
const FILE = `# app settings\nusing token ${GH_TOKEN}\nmode: prod\n`;
const RANGE_IN_TOKEN = `bytes=0-${`# app settings\nusing token ${GH_PIECE}`.length - 1}`;

const policy = (name: string, groups: string[], rules: PolicyConfig['rules'], extra: Partial<PolicyConfig> = {}): PolicyConfig => ({ name, subjects: { groups }, targets: [TARGET], rules, ...extra });
const POLICIES: PolicyConfig[] = [
  policy('agents-k8s', ['ai-agents'], [
    { name: 'node-logs', k8s: { verbs: ['proxy'], resources: ['nodes'] }, effect: 'allow', extra: {} },
    { name: 'pod-http', k8s: { verbs: ['proxy'], resources: ['pods'] }, effect: 'allow', extra: {} },
    { name: 'config-reads', k8s: { verbs: ['get', 'list'], resources: ['configmaps', 'controllerrevisions'] }, effect: 'allow', extra: {} },
    { name: 'widgets', k8s: { verbs: ['get', 'list'], resources: ['*/widgets'] }, effect: 'allow', extra: {} },
    // "Anything may be created in ci" and "every certificates.k8s.io subresource may be written".
    { name: 'ci-create', k8s: { verbs: ['create'], namespaces: ['ci'] }, effect: 'allow', extra: {} },
    { name: 'csr-subresources', k8s: { verbs: ['update', 'patch'], resources: ['certificates.k8s.io/*/*'] }, effect: 'allow', extra: {} },
    { name: 'rest', effect: 'deny', extra: {} },
  ]),
  policy(
    'oncall-unmasked',
    ['breakglass'],
    [
      { name: 'ci-create', k8s: { verbs: ['create', 'patch'], namespaces: ['ci'] }, effect: 'allow', extra: {} },
      { name: 'default-secrets', k8s: { verbs: ['create'], resources: ['secrets'], namespaces: ['default'] }, effect: 'allow', extra: {} },
      { name: 'default-tokens', k8s: { verbs: ['create'], resources: ['serviceaccounts/token'], namespaces: ['default'] }, effect: 'allow', extra: {} },
      { name: 'read', k8s: { verbs: ['get', 'list', 'watch', 'proxy'] }, effect: 'allow', extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
    { masking: { mode: 'off' } },
  ),
];

/** A Secret the token controller fills with a long-lived token for the service account it names. */
const SAT_SECRET = (name: string, ns: string): Record<string, unknown> => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns, annotations: { 'kubernetes.io/service-account.name': 'builder' } }, type: 'kubernetes.io/service-account-token' });
const TOKEN_REQUEST = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: ['api'] } });

describe('wave 9: text cut by other routes, credentials a rule never named, bare names in other groups', () => {
  let stack: K8sStack;
  let breakglass: Connection;
  let via: { port: number; ca: string; token: string };
  let glassVia: { port: number; ca: string; token: string };
  let straight: { port: number; ca: string; token: string };
  const nodeLog = (query: string): string => `/api/v1/nodes/node-1/proxy/containerLogs/default/web/web?${query}`;
  const filePath = '/api/v1/namespaces/default/pods/files/proxy/settings.txt';
  const seenSince = (from: number): { method: string; url: string; headers: Record<string, unknown> }[] => stack.api.requests.slice(from);

  before(async () => {
    stack = await startK8sStack({ policies: POLICIES });
    breakglass = await stack.connectAs('oncall-1', ['breakglass']);
    stack.api.put('pods', { metadata: { name: 'web', namespace: 'default' }, spec: { containers: [{ name: 'web', image: 'web:1' }] } });
    stack.api.setLog('default', 'web', [LOG]);
    stack.api.put('pods', { metadata: { name: 'files', namespace: 'default' }, spec: { containers: [{ name: 'nginx', image: 'nginx:1' }] } });
    stack.api.setProxy('default', 'files', { status: 200, headers: { 'content-type': 'text/plain' }, body: FILE });
    stack.api.put('configmaps', { metadata: { name: 'app', namespace: 'default' }, data: { mode: 'prod' } });
    for (const ns of ['default', 'ci']) stack.api.put('serviceaccounts', { metadata: { name: 'builder', namespace: ns } });
    via = { port: stack.main.port, ca: stack.main.endpoint.caPem, token: stack.main.session.secret };
    glassVia = { port: breakglass.port, ca: breakglass.endpoint.caPem, token: breakglass.session.secret };
    straight = { port: Number(new URL(stack.api.url).port), ca: stack.api.caPem, token: stack.api.token };
  });
  after(async () => {
    await breakglass?.close();
    await stack?.close();
  });

  test('k9-00 CONTROL: straight to the API server, the node log cut and the byte range show the pieces; through agentgate the whole log and file are masked, kept around the values', async () => {
    const cutEnd = await request(straight, 'GET', nodeLog(`limitBytes=${CUT_IN_TOKEN}`));
    assert.equal(cutEnd.text, `starting\nusing token ${GH_PIECE}`);
    const cutStart = await request(straight, 'GET', nodeLog('tailLines=4'));
    assert.equal(cutStart.text, `${KEY_BODY.slice(1).join('\n')}\n-----END RSA PRIVATE KEY-----\nready\n`);
    const ranged = await request(straight, 'GET', filePath, { Range: RANGE_IN_TOKEN });
    assert.equal(ranged.status, 206);
    assert.ok(ranged.text.endsWith(GH_PIECE), ranged.text);
    const whole = await request(via, 'GET', nodeLog(''));
    assert.equal(whole.status, 200, whole.text);
    assert.ok(!whole.text.includes(GH_PIECE) && !KEY_BODY.some((l) => whole.text.includes(l)), whole.text);
    assert.match(whole.text, /^starting\nusing token \S+\nloading key\n[\s\S]*ready\n$/);
    const file = await request(via, 'GET', filePath);
    assert.equal(file.status, 200, file.text);
    assert.ok(file.text.startsWith('# app settings\nusing token ') && file.text.endsWith('\nmode: prod\n') && !file.text.includes(GH_PIECE), file.text);
    // The identity with masking off gets the cut pieces as they are.
    const glass = await stack.kubectl(['get', '--raw', nodeLog(`limitBytes=${CUT_IN_TOKEN}`)], { kubeconfig: breakglass.kubeconfig });
    assert.equal(glass.stdout, `starting\nusing token ${GH_PIECE}`, glass.stderr);
    const glassRange = await request(glassVia, 'GET', filePath, { Range: RANGE_IN_TOKEN });
    assert.equal(glassRange.status, 206);
    assert.ok(glassRange.text.endsWith(GH_PIECE), glassRange.text);
  });

  test('k9-01 the kubelet log through nodes/proxy with limitBytes ending inside a token: the cut last line goes out masked whole', async () => {
    for (const n of [CUT_IN_TOKEN, CUT_IN_TOKEN - 6, CUT_IN_TOKEN + 9]) {
      const r = await request(via, 'GET', nodeLog(`limitBytes=${n}`));
      assert.equal(r.status, 200, r.text);
      assert.ok(r.text.startsWith('starting\n') && !r.text.includes('ghp_'), `limitBytes=${n}: ${r.text}`);
    }
    // Any spelling of the parameter the kubelet's parser might take.
    const odd = await request(via, 'GET', `${nodeLog(`limitBytes=${CUT_IN_TOKEN}`)}&LIMITBYTES=1`);
    assert.ok(!odd.text.includes('ghp_'), odd.text);
    const k = await stack.kubectl(['get', '--raw', nodeLog(`limitBytes=${CUT_IN_TOKEN}`)]);
    assert.equal(k.code, 0, k.stderr);
    assert.ok(k.stdout.startsWith('starting\n') && !k.stdout.includes('ghp_k9'), k.stdout);
  });

  test('k9-02 the kubelet log through nodes/proxy with tailLines starting inside a PEM key: the body lines before its END are masked whole with it', async () => {
    for (const n of [2, 3, 4, 5]) {
      const r = await request(via, 'GET', nodeLog(`tailLines=${n}`));
      assert.equal(r.status, 200, r.text);
      assert.ok(!KEY_BODY.some((l) => r.text.includes(l)), `tailLines=${n}: ${r.text}`);
      assert.ok(r.text.endsWith('\nready\n'), r.text);
    }
  });

  test('k9-03 a byte range through pods/proxy ending inside a token: the pod is asked for the whole file, which goes out masked', async () => {
    const from = stack.api.requests.length;
    for (const range of [RANGE_IN_TOKEN, 'bytes=15-50']) {
      const r = await request(via, 'GET', filePath, { Range: range, 'If-Range': 'x' });
      assert.equal(r.status, 200, r.text);
      assert.ok(!r.text.includes('ghp_'), `${range}: ${r.text}`);
      assert.ok(r.text.endsWith('\nmode: prod\n'), r.text);
    }
    const sent = seenSince(from);
    assert.equal(sent.length, 2);
    for (const s of sent) assert.ok(s.headers['range'] === undefined && s.headers['if-range'] === undefined, JSON.stringify(s.headers));
  });

  test('k9-04 kubectl create token under a rule naming no resources (`verbs: [create]` in ci) is refused before the API server, masked or not; a rule naming serviceaccounts/token mints one', async () => {
    const issued = stack.api.tokensIssued.length;
    const from = stack.api.requests.length;
    const agent = await stack.kubectl(['create', 'token', 'builder', '-n', 'ci']);
    assert.notEqual(agent.code, 0, agent.stdout);
    assert.match(agent.stderr, /rule rest denies create serviceaccounts\/token/);
    const glass = await stack.kubectl(['create', 'token', 'builder', '-n', 'ci'], { kubeconfig: breakglass.kubeconfig });
    assert.notEqual(glass.code, 0, glass.stdout);
    assert.match(glass.stderr, /rule rest denies create serviceaccounts\/token/);
    const raw = await request(via, 'POST', '/api/v1/namespaces/ci/serviceaccounts/builder/token', { 'Content-Type': 'application/json' }, 5_000, TOKEN_REQUEST);
    assert.equal(raw.status, 403, raw.text);
    assert.equal(stack.api.tokensIssued.length, issued, 'no token was minted');
    assert.deepEqual(seenSince(from).filter((q) => q.method === 'POST'), []);
    // CONTROL: the same rule still creates other things in ci (a ConfigMap reaches the API server).
    const cm = await request(via, 'POST', '/api/v1/namespaces/ci/configmaps', { 'Content-Type': 'application/json' }, 5_000, JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'made', namespace: 'ci' }, data: { a: 'b' } }));
    assert.equal(cm.status, 201, cm.text);
    // CONTROL: a rule that names serviceaccounts/token mints one, in the clear for masking off.
    const named = await stack.kubectl(['create', 'token', 'builder', '-n', 'default'], { kubeconfig: breakglass.kubeconfig });
    assert.equal(named.code, 0, named.stderr);
    assert.equal(stack.api.tokensIssued.length, issued + 1);
    assert.equal(named.stdout.trim(), stack.api.tokensIssued[issued]);
  });

  test('k9-05 a CSR approval under a glob (`certificates.k8s.io/*/*`) is refused before the API server; the glob still grants the other subresources', async () => {
    const csr = '/apis/certificates.k8s.io/v1/certificatesigningrequests/agent-csr';
    const body = JSON.stringify({ apiVersion: 'certificates.k8s.io/v1', kind: 'CertificateSigningRequest', metadata: { name: 'agent-csr' }, status: { conditions: [{ type: 'Approved', status: 'True', reason: 'agent' }] } });
    const from = stack.api.requests.length;
    for (const method of ['PUT', 'PATCH']) {
      const r = await request(via, method, `${csr}/approval`, { 'Content-Type': method === 'PUT' ? 'application/json' : 'application/merge-patch+json' }, 5_000, body);
      assert.equal(r.status, 403, `${method}: ${r.text}`);
      assert.match(r.text, /rule rest denies (update|patch) certificates\.k8s\.io\/certificatesigningrequests\/approval/);
    }
    assert.deepEqual(seenSince(from), []);
    // CONTROL: the rule matches the status subresource: that request reaches the API server.
    const status = await request(via, 'PUT', `${csr}/status`, { 'Content-Type': 'application/json' }, 5_000, body);
    assert.notEqual(status.status, 403, status.text);
    assert.deepEqual(seenSince(from).map((q) => q.method), ['PUT']);
  });

  test('k9-06 a bare `configmaps` in an allow rule does not grant configmaps of another API group (a CRD or aggregated API); the core one, apps/controllerrevisions and a group named in the rule go through', async () => {
    const from = stack.api.requests.length;
    for (const path of ['/apis/evil.example.com/v1/namespaces/default/configmaps', '/apis/evil.example.com/v1/namespaces/default/configmaps/app', '/apis/configmaps.io/v1/configmaps']) {
      const r = await request(via, 'GET', path);
      assert.equal(r.status, 403, `${path}: ${r.text}`);
      assert.match(r.text, /rule rest denies (get|list) evil\.example\.com\/configmaps|rule rest denies list configmaps\.io\/configmaps/);
    }
    assert.deepEqual(seenSince(from), []);
    // CONTROLS: the core ConfigMaps, a built-in group's resource by its bare name, and another group named in the rule.
    const k = await stack.kubectl(['get', 'configmaps', '-o', 'name']);
    assert.equal(k.code, 0, k.stderr);
    assert.match(k.stdout, /configmap\/app/);
    const revisions = await request(via, 'GET', '/apis/apps/v1/namespaces/default/controllerrevisions');
    assert.equal(revisions.status, 200, revisions.text);
    const before = stack.api.requests.length;
    const widgets = await request(via, 'GET', '/apis/evil.example.com/v1/namespaces/default/widgets');
    assert.notEqual(widgets.status, 403, widgets.text);
    assert.equal(seenSince(before).length, 1);
  });

  test('k9-07 a Secret of type service-account-token under a rule that never named tokens (create in ci): refused before the API server in every form (kubectl create, raw JSON with escapes, server-side apply YAML); a plain Secret and a rule allowing the TokenRequest go through', async () => {
    const issued = stack.api.tokensIssued.length;
    const from = stack.api.requests.length;
    const create = await stack.kubectlIn(['create', '--validate=false', '-f', '-'], JSON.stringify(SAT_SECRET('minted', 'ci')), { kubeconfig: breakglass.kubeconfig });
    assert.notEqual(create.code, 0, create.stdout);
    assert.match(create.stderr, /service-account-token is a token for the service account it names, and rule rest denies create serviceaccounts\/token "builder"/);
    const masked = await stack.kubectlIn(['create', '--validate=false', '-f', '-'], JSON.stringify(SAT_SECRET('minted', 'ci')));
    assert.notEqual(masked.code, 0, masked.stdout);
    // The type spelled with JSON escapes, and the server-side apply of a YAML manifest (which creates).
    const escaped = JSON.stringify(SAT_SECRET('minted2', 'ci')).replace('kubernetes.io/service-account-token', 'kubernetes.io\\/service-account\\u002dtoken');
    const raw = await request(glassVia, 'POST', '/api/v1/namespaces/ci/secrets', { 'Content-Type': 'application/json' }, 5_000, escaped);
    assert.equal(raw.status, 403, raw.text);
    const yaml = 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: minted3\n  annotations: {kubernetes.io/service-account.name: builder}\ntype: "kubernetes.io/service-account-token"\n';
    const apply = await request(glassVia, 'PATCH', '/api/v1/namespaces/ci/secrets/minted3?fieldManager=agent&force=true', { 'Content-Type': 'application/apply-patch+yaml' }, 5_000, yaml);
    assert.equal(apply.status, 403, apply.text);
    // Protobuf (what typed clients send) holds strings verbatim: one naming the type cannot be read for its account, so it is refused.
    const proto = await request(glassVia, 'POST', '/api/v1/namespaces/ci/secrets', { 'Content-Type': 'application/vnd.kubernetes.protobuf' }, 5_000, Buffer.concat([Buffer.from('k8s\0', 'latin1'), Buffer.from([0x0a, 0x08]), Buffer.from('\n\x02v1\x12\x06Secret', 'latin1'), Buffer.from([0x2a, 0x23]), Buffer.from('kubernetes.io/service-account-token', 'latin1')]));
    assert.equal(proto.status, 403, proto.text);
    const cbor = await request(glassVia, 'POST', '/api/v1/namespaces/ci/secrets', { 'Content-Type': 'application/cbor' }, 5_000, Buffer.from([0xa1, 0x64, 0x74, 0x79, 0x70, 0x65]));
    assert.equal(cbor.status, 403, cbor.text);
    assert.deepEqual(seenSince(from).filter((q) => q.method !== 'GET'), []);
    assert.equal(stack.api.tokensIssued.length, issued, 'no token was minted');
    assert.equal(stack.api.get('secrets', 'ci', 'minted'), undefined);
    // CONTROL: a plain Secret under the same rule is created.
    const plain = await request(glassVia, 'POST', '/api/v1/namespaces/ci/secrets', { 'Content-Type': 'application/json' }, 5_000, JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'plain' }, type: 'Opaque', stringData: { a: 'b' } }));
    assert.equal(plain.status, 201, plain.text);
    // CONTROL: where the policy allows the TokenRequest, the Secret is created and the controller fills it (read back in the clear: masking off).
    const allowed = await stack.kubectlIn(['create', '--validate=false', '-f', '-'], JSON.stringify(SAT_SECRET('minted', 'default')), { kubeconfig: breakglass.kubeconfig });
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.equal(stack.api.tokensIssued.length, issued + 1);
    const back = await stack.kubectl(['get', 'secret', 'minted', '-n', 'default', '-o', 'jsonpath={.data.token}'], { kubeconfig: breakglass.kubeconfig });
    assert.equal(Buffer.from(back.stdout, 'base64').toString('utf8'), stack.api.tokensIssued[issued]);
  });
});
