/**
 * Wave 7 red team, Kubernetes (ids k7-NN): the encodings and formats of responses that
 * carry Secrets. The stand-in API server answers as a real one does here (`negotiates`):
 * protobuf with the `k8s\0` magic and a Secret's data as raw bytes, CBOR with the
 * self-describing tag, YAML, Tables and metadata-only forms, gzip past 128 KiB when the
 * client accepts it, watches framed in their format — and, as a fault, answers in a form or
 * a coding nobody asked for. An agent in a masked session asks for every form and coding it
 * can name, streams and pages the answers so values split anywhere, and looks for copies of
 * values masking does not follow (a last-applied copy in a pod template, managedFields keys).
 *
 * Each leak case has a control: the same request straight to the stand-in (no agentgate)
 * shows the value in the clear.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { rawRequest as request, startK8sStack, TARGET, type Answer, type Connection, type K8sStack } from './stack.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

const SECRET = 'k7-secret-pass-4471';
const TOKEN = 'k7-api-token-8812';
/** A value the credential detectors find (a GitHub token's shape). */
const GH_TOKEN = 'ghp_k7R4nd0mT0k3nV4lu3ABCDEFGHIJKLMNOPQR';
const APPLIED_PASS = 'k7-last-applied-pass-3390';
const ENV_PASS = 'k7-env-pass-6620';
const ALL = [SECRET, TOKEN, APPLIED_PASS];

const policy = (rules: PolicyConfig['rules']): PolicyConfig => ({ name: 'agents-k8s', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules });
const POLICIES: PolicyConfig[] = [
  policy([
    { name: 'read', k8s: { verbs: ['get', 'list', 'watch'] }, effect: 'allow', extra: {} },
    { name: 'tend-pods', k8s: { verbs: ['patch'], resources: ['pods'] }, effect: 'allow', extra: {} },
    { name: 'rest', effect: 'deny', extra: {} },
  ]),
  { name: 'unmasked', subjects: { groups: ['breakglass'] }, targets: [TARGET], masking: { mode: 'off' }, rules: [{ name: 'all-unmasked', effect: 'allow', extra: {} }] },
];

/** A Secret manifest as `kubectl apply` records it in the last-applied annotation. */
const APPLIED_SECRET = JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db-creds', namespace: 'default' }, type: 'Opaque', data: { password: b64(APPLIED_PASS) } });

/** Request headers the API server saw for each request since `from`. */
type Seen = { method: string; url: string; headers: Record<string, unknown> };

describe('wave 7: encodings and formats of responses that carry Secrets', () => {
  let stack: K8sStack;
  let breakglass: Connection;
  let via: { port: number; ca: string; token: string };
  let unmasked: { port: number; ca: string; token: string };
  let straight: { port: number; ca: string; token: string };
  const seenSince = (from: number): Seen[] => stack.forwarded(from);
  /** No value in the clear: as text, as base64, or as the raw bytes a binary form carries. */
  const noneOf = (text: string, values: readonly string[], what: string): void => {
    for (const v of values) assert.ok(!text.includes(v) && !text.includes(b64(v)), `${what}: ${v} in the clear:\n${text.slice(0, 1500)}`);
  };
  const carries = (text: string, v: string): boolean => text.includes(v) || text.includes(b64(v));
  /** A Secret past the 128 KiB the real server starts compressing at, there for one case. */
  const withBig = async (fn: () => Promise<void>): Promise<void> => {
    stack.api.put('secrets', { metadata: { name: 'big', namespace: 'default' }, type: 'Opaque', data: { password: b64(SECRET), 'ca.bundle': b64('x'.repeat(200_000)) } });
    try {
      await fn();
    } finally {
      stack.api.remove('secrets', 'default', 'big');
    }
  };
  /** A watch through kubectl, killed once `until` shows in its output (or after 10 s). */
  const kubectlWatch = (args: string[], until: RegExp): Promise<string> =>
    new Promise((resolve) => {
      const child = stack.spawnKubectl(args);
      let out = '';
      const done = (): void => {
        clearTimeout(timer);
        child.kill();
        resolve(out);
      };
      const timer = setTimeout(done, 10_000);
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString('utf8');
        if (until.test(out)) done();
      });
      child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
    });
  /** The refusal of an answer agentgate cannot read, as the client gets it. */
  const refusedUnreadable = (r: Answer, what: string): void => {
    assert.equal(r.status, 502, `${what}: ${r.status} ${r.text.slice(0, 300)}`);
    const status = JSON.parse(r.text) as { kind: string; reason: string; message: string };
    assert.equal(status.kind, 'Status');
    assert.equal(status.reason, 'InternalError');
    assert.match(status.message, /cannot mask .*request JSON/s, what);
  };

  before(async () => {
    stack = await startK8sStack({ policies: POLICIES });
    stack.api.negotiates = true;
    breakglass = await stack.connectAs('oncall-1', ['breakglass']);
    stack.api.put('secrets', { metadata: { name: 'db', namespace: 'default', annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'default' }, data: { password: b64(SECRET), token: b64(TOKEN) } }) } }, type: 'Opaque', data: { password: b64(SECRET), token: b64(TOKEN) } });
    stack.api.put('secrets', { metadata: { name: 'cache', namespace: 'default' }, type: 'Opaque', data: { token: b64(TOKEN) } });
    stack.api.put('pods', { metadata: { name: 'web', namespace: 'default' }, spec: { containers: [{ name: 'web', image: 'web:1' }] } });
    stack.api.setLog('default', 'web', [`starting\nusing token ${GH_TOKEN}\n`, 'ready\n']);
    via = { port: stack.main.port, ca: stack.main.endpoint.caPem, token: stack.main.session.secret };
    unmasked = { port: breakglass.port, ca: breakglass.endpoint.caPem, token: breakglass.session.secret };
    straight = { port: Number(new URL(stack.api.url).port), ca: stack.api.caPem, token: stack.api.token };
  });
  after(async () => {
    await stack?.close();
  });

  test('k7-00 CONTROL: straight to the API server, protobuf, CBOR, YAML, a gzip answer and a protobuf watch carry the Secret in the clear', async () => {
    const proto = await request(straight, 'GET', '/api/v1/namespaces/default/secrets/db', { Accept: 'application/vnd.kubernetes.protobuf' });
    assert.equal(proto.headers['content-type'], 'application/vnd.kubernetes.protobuf');
    assert.ok(proto.text.startsWith('k8s\0'), 'the protobuf magic');
    assert.ok(proto.text.includes(SECRET) && proto.text.includes(TOKEN), 'protobuf carries Secret data as raw bytes');
    const cbor = await request(straight, 'GET', '/api/v1/namespaces/default/secrets/db', { Accept: 'application/cbor' });
    assert.equal(cbor.headers['content-type'], 'application/cbor');
    assert.ok(cbor.text.startsWith('\xd9\xd9\xf7'), 'the CBOR self-describing tag');
    assert.ok(cbor.text.includes(SECRET));
    const yaml = await request(straight, 'GET', '/api/v1/namespaces/default/secrets/db', { Accept: 'application/yaml' });
    assert.ok(yaml.text.includes(`password: ${b64(SECRET)}`), yaml.text);
    await withBig(async () => {
      const gz = await request(straight, 'GET', '/api/v1/namespaces/default/secrets/big', { 'Accept-Encoding': 'gzip' });
      assert.equal(gz.headers['content-encoding'], 'gzip');
      assert.ok(gunzipSync(Buffer.from(gz.text, 'latin1')).toString('utf8').includes(b64(SECRET)));
    });
    const watch = await request(straight, 'GET', '/api/v1/namespaces/default/secrets?watch=1', { Accept: 'application/vnd.kubernetes.protobuf;stream=watch' }, 1_000);
    assert.match(String(watch.headers['content-type']), /protobuf;stream=watch/);
    assert.ok(watch.text.includes(SECRET));
    const table = await request(straight, 'GET', '/api/v1/namespaces/default/secrets?includeObject=Object', { Accept: 'application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io' });
    assert.ok(table.text.startsWith('k8s\0') && table.text.includes('Table') && table.text.includes(SECRET));
  });

  test('k7-01 Accept in every spelling (protobuf, Tables, metadata-only, YAML, CBOR, */*, q-values, several headers, mixed case, quoted parameters): the API server is asked for JSON only and the answer is masked JSON in the form asked for', async () => {
    const cases: [accept: string | string[], path: string, form: string][] = [
      ['application/vnd.kubernetes.protobuf', '/api/v1/namespaces/default/secrets/db', 'Secret'],
      ['application/vnd.kubernetes.protobuf, */*', '/api/v1/namespaces/default/secrets/db', 'Secret'],
      ['APPLICATION/VND.KUBERNETES.PROTOBUF', '/api/v1/namespaces/default/secrets/db', 'Secret'],
      ['application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io', '/api/v1/namespaces/default/secrets?includeObject=Object', 'Table'],
      ['application/json;as=Table;v=v1;g=meta.k8s.io', '/api/v1/namespaces/default/secrets?includeObject=Object', 'Table'],
      ['application/json;as="Table";v="v1";g="meta.k8s.io"', '/api/v1/namespaces/default/secrets?includeObject=Object', 'Table'],
      ['application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io', '/api/v1/namespaces/default/secrets', 'PartialObjectMetadataList'],
      ['application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io', '/api/v1/namespaces/default/secrets/db', 'PartialObjectMetadata'],
      ['application/yaml', '/api/v1/namespaces/default/secrets/db', 'Secret'],
      ['application/cbor', '/api/v1/namespaces/default/secrets/db', 'Secret'],
      ['*/*', '/api/v1/namespaces/default/secrets/db', 'Secret'],
      ['application/*', '/api/v1/namespaces/default/secrets/db', 'Secret'],
      // JSON refused outright, protobuf preferred: JSON is still the only thing asked for.
      ['application/json;q=0, application/vnd.kubernetes.protobuf', '/api/v1/namespaces/default/secrets/db', 'Secret'],
      ['application/yaml;q=0.9, application/cbor;q=0.8, application/json;q=0.1', '/api/v1/namespaces/default/secrets/db', 'Secret'],
      // Two Accept header lines.
      [['application/vnd.kubernetes.protobuf', 'application/cbor;q=0.5'], '/api/v1/namespaces/default/secrets/db', 'Secret'],
      // A comma inside a quoted parameter: one range, not two.
      ['application/json;x="a, application/vnd.kubernetes.protobuf"', '/api/v1/namespaces/default/secrets/db', 'Secret'],
      ['text/html, application/xhtml+xml', '/api/v1/namespaces/default/secrets/db', 'Secret'],
    ];
    for (const [accept, path, form] of cases) {
      const control = await request(straight, 'GET', path, { Accept: accept });
      const what = JSON.stringify(accept);
      assert.ok(control.status === 406 || carries(control.text, SECRET), `control ${what}: ${control.status}`);
      const from = stack.api.requests.length;
      const r = await request(via, 'GET', path, { Accept: accept });
      assert.equal(r.status, 200, `${what}: ${r.text.slice(0, 300)}`);
      assert.match(String(r.headers['content-type']), /^application\/json/, what);
      const doc = JSON.parse(r.text) as { kind: string };
      assert.equal(doc.kind, form, what);
      noneOf(r.text, ALL, what);
      const up = seenSince(from);
      assert.equal(up.length, 1);
      const asked = String(up[0]?.headers['accept']);
      assert.ok(!/protobuf|yaml|cbor|\*|"/i.test(asked), `${what} reached the API server as ${asked}`);
    }
  });

  test('k7-02 kubectl preferring CBOR (client-go feature gates) and kubectl describe: masked; the same kubectl as an unmasked identity sees the value', async () => {
    const cborEnv = { KUBE_FEATURE_ClientsAllowCBOR: 'true', KUBE_FEATURE_ClientsPreferCBOR: 'true' };
    const from = stack.api.requests.length;
    const r = await stack.kubectlIn(['get', 'secret', 'db', '-o', 'json', '-v=8'], '', { env: cborEnv });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Accept: application\/cbor, \*\/\*/, 'kubectl asked for CBOR');
    noneOf(r.stderr, ALL, 'kubectl\'s own log of the answer');
    const got = JSON.parse(r.stdout) as { data: Record<string, string> };
    assert.deepEqual(Object.keys(got.data).sort(), ['password', 'token']);
    noneOf(r.stdout, ALL, 'kubectl with CBOR preferred');
    assert.ok(seenSince(from).every((q) => !/cbor|protobuf/.test(String(q.headers['accept']))), 'only JSON was asked for');
    const d = await stack.kubectl(['describe', 'secret', 'db', '-v=8']);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stderr, /Accept: application\/vnd\.kubernetes\.protobuf,application\/json/, 'kubectl describe asked for protobuf');
    noneOf(d.stderr, ALL, 'kubectl describe\'s own log of the answer');
    assert.match(d.stdout, /password:\s+\d+ bytes/);
    noneOf(d.stdout, ALL, 'kubectl describe');
    // Control: the unmasked identity, through agentgate, reads the value (asked as kubectl asks).
    const open = await request(unmasked, 'GET', '/api/v1/namespaces/default/secrets/db', { Accept: 'application/json' });
    assert.ok(open.text.includes(b64(SECRET)));
  });

  test('k7-03 Accept-Encoding gzip, deflate, br, identity;q=0 on an answer past 128 KiB: the API server is asked for identity; the answer is plain masked JSON', async () => {
    await withBig(async () => {
      for (const enc of ['gzip', 'deflate', 'br', 'gzip;q=1, identity;q=0', 'identity;q=0', '*;q=1']) {
        const from = stack.api.requests.length;
        const r = await request(via, 'GET', '/api/v1/namespaces/default/secrets/big', { 'Accept-Encoding': enc });
        assert.equal(r.status, 200, `${enc}: ${r.text.slice(0, 200)}`);
        assert.equal(r.headers['content-encoding'], undefined, enc);
        const doc = JSON.parse(r.text) as { data: Record<string, string> };
        assert.equal(Buffer.from(doc.data['password'] ?? '', 'base64').toString('utf8'), '********', enc);
        noneOf(r.text, [SECRET], enc);
        assert.equal(seenSince(from)[0]?.headers['accept-encoding'], 'identity', enc);
      }
    });
  });

  test('k7-04 an API server answering in a form or a coding it was not asked for (protobuf, CBOR, YAML, gzip, br, deflate, a gzip transfer coding) is refused, never relayed: objects, watches and logs', async () => {
    const faults: NonNullable<K8sStack['api']['answerAs']>[] = [
      { format: 'protobuf' },
      { format: 'cbor' },
      { format: 'yaml' },
      { contentEncoding: 'gzip' },
      { contentEncoding: 'br' },
      { contentEncoding: 'deflate' },
      { transferEncoding: 'gzip' },
    ];
    try {
      for (const fault of faults) {
        const what = JSON.stringify(fault);
        stack.api.answerAs = fault;
        const control = await request(straight, 'GET', '/api/v1/namespaces/default/secrets/db');
        assert.equal(control.status, 200, what);
        for (const path of ['/api/v1/namespaces/default/secrets/db', '/api/v1/namespaces/default/secrets?watch=1']) {
          const r = await request(via, 'GET', path, {}, 1_500);
          refusedUnreadable(r, `${what} ${path}`);
          noneOf(r.text, ALL, `${what} ${path}`);
        }
        if (fault.format === undefined) {
          // A log is text/plain: compressed, its bytes cannot be scanned.
          const control = await request(straight, 'GET', '/api/v1/namespaces/default/pods/web/log');
          const plain = fault.transferEncoding ? gunzipSync(Buffer.from(control.text, 'latin1')).toString('utf8') : '';
          if (fault.transferEncoding) assert.ok(plain.includes(GH_TOKEN), 'control: the log carries the token, compressed');
          const r = await request(via, 'GET', '/api/v1/namespaces/default/pods/web/log');
          refusedUnreadable(r, `${what} log`);
        }
      }
      const events = (await stack.events()).filter((e) => e.type === 'k8s.request' && typeof e.detail['unreadable_answer'] === 'string');
      assert.ok(events.some((e) => /transfer-encoding gzip, chunked/.test(String(e.detail['unreadable_answer']))), 'the refusal names what came, on record');
    } finally {
      stack.api.answerAs = undefined;
    }
    // Answered as asked again, the same requests go through.
    const r = await request(via, 'GET', '/api/v1/namespaces/default/pods/web/log');
    assert.equal(r.status, 200);
    assert.ok(r.text.includes('ready') && !r.text.includes(GH_TOKEN), r.text);
  });

  test('k7-05 watches: protobuf framing asked, sendInitialEvents with a bookmark carrying the object, events split into 7-byte pieces: every event masked; kubectl get secrets -w -o yaml too', async () => {
    stack.api.fatBookmarks = true;
    stack.api.splitWrites = 7;
    try {
      const q = '/api/v1/namespaces/default/secrets?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true';
      const control = await request(straight, 'GET', q, {}, 1_500);
      assert.match(control.text, /"type":"BOOKMARK"/);
      const bookmark = control.text.split('\n').find((l) => l.includes('"BOOKMARK"')) ?? '';
      assert.ok(bookmark.includes(b64(SECRET)), 'control: the bookmark carries the object');
      for (const accept of ['application/vnd.kubernetes.protobuf;stream=watch', 'application/json;stream=watch', 'application/cbor-seq']) {
        const r = await request(via, 'GET', q, { Accept: accept }, 2_000);
        assert.equal(r.status, 200, accept);
        const events = r.text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { type: string; object: { metadata: { name?: string } } });
        assert.deepEqual(
          events.map((e) => `${e.type}:${e.object.metadata.name ?? ''}`),
          ['ADDED:cache', 'ADDED:db', 'BOOKMARK:db'],
          accept,
        );
        noneOf(r.text, ALL, accept);
      }
      const out = await kubectlWatch(['get', 'secrets', '-w', '-o', 'yaml'], /name: db[\s\S]*name: cache|name: cache[\s\S]*name: db/);
      assert.match(out, /name: db/);
      noneOf(out, ALL, 'kubectl get secrets -w -o yaml');
    } finally {
      stack.api.fatBookmarks = false;
      stack.api.splitWrites = undefined;
    }
  });

  test('k7-06 a chunked list (limit/continue) written in 5-byte pieces, so each Secret splits across HTTP chunks: kubectl --chunk-size=1 and raw pages are masked', async () => {
    stack.api.splitWrites = 5;
    try {
      const control = await request(straight, 'GET', '/api/v1/namespaces/default/secrets?limit=1');
      const page = JSON.parse(control.text) as { metadata: { continue?: string }; items: unknown[] };
      assert.equal(page.items.length, 1);
      assert.ok(page.metadata.continue, 'the first page says where the next begins');
      const second = await request(straight, 'GET', `/api/v1/namespaces/default/secrets?limit=1&continue=${page.metadata.continue}`);
      assert.ok(second.text.includes(b64(SECRET)), 'control: the second page carries the value');
      const r = await request(via, 'GET', `/api/v1/namespaces/default/secrets?limit=1&continue=${page.metadata.continue}`);
      assert.equal(r.status, 200);
      noneOf(r.text, ALL, 'second page');
      const from = stack.api.requests.length;
      const k = await stack.kubectl(['get', 'secrets', '--chunk-size=1', '-o', 'json']);
      assert.equal(k.code, 0, k.stderr);
      assert.deepEqual((JSON.parse(k.stdout) as { items: { metadata: { name: string } }[] }).items.map((i) => i.metadata.name), ['cache', 'db']);
      noneOf(k.stdout, ALL, 'kubectl --chunk-size=1');
      assert.ok(seenSince(from).filter((q) => q.url.includes('continue=')).length >= 1, 'kubectl paged');
    } finally {
      stack.api.splitWrites = undefined;
    }
  });

  test('k7-07 a last-applied copy of a Secret in a pod template (an operator copied the annotations) is masked as a Secret; the pod\'s own copy too', async () => {
    const template = { metadata: { labels: { app: 'api' }, annotations: { 'kubectl.kubernetes.io/last-applied-configuration': APPLIED_SECRET } }, spec: { containers: [{ name: 'api', image: 'api:1' }] } };
    stack.api.put('controllerrevisions', { metadata: { name: 'api-5c7', namespace: 'default' }, revision: 2, data: { spec: { template } } });
    stack.api.put('pods', { metadata: { name: 'api-0', namespace: 'default', annotations: template.metadata.annotations }, spec: template.spec });
    const control = await request(straight, 'GET', '/apis/apps/v1/namespaces/default/controllerrevisions/api-5c7');
    assert.ok(control.text.includes(b64(APPLIED_PASS)), 'control: the copy is in the clear');
    for (const args of [
      ['get', 'controllerrevision', 'api-5c7', '-o', 'yaml'],
      ['get', 'controllerrevisions', '-o', 'json'],
      ['get', 'pod', 'api-0', '-o', 'yaml'],
    ]) {
      const r = await stack.kubectl(args);
      assert.equal(r.code, 0, r.stderr);
      noneOf(r.stdout, [APPLIED_PASS], args.join(' '));
      assert.match(r.stdout, /last-applied-configuration/, `${args.join(' ')}: the annotation is kept`);
    }
    const r = await request(via, 'GET', '/apis/apps/v1/namespaces/default/controllerrevisions/api-5c7');
    const annotation = (JSON.parse(r.text) as { data: { spec: { template: { metadata: { annotations: Record<string, string> } } } } }).data.spec.template.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration'] ?? '';
    const copy = JSON.parse(annotation) as { kind: string; data: Record<string, string>; metadata: { name: string } };
    assert.deepEqual([copy.kind, copy.metadata.name, Buffer.from(copy.data['password'] ?? '', 'base64').toString('utf8')], ['Secret', 'db-creds', '********']);
  });

  test('k7-08 managedFields record a set\'s members as keys (`v:"…"`): a token there is masked like the value it copies; other keys are kept', async () => {
    const fields = { 'f:metadata': { 'f:labels': { '.': {}, 'f:app': {} } }, 'f:spec': { 'f:containers': { 'k:{"name":"app"}': { '.': {}, 'f:args': { [`v:"--token=${GH_TOKEN}"`]: {}, 'v:"--verbose"': {} } } } } };
    stack.api.put('pods', {
      metadata: { name: 'ssa-pod', namespace: 'default', labels: { app: 'ssa' }, managedFields: [{ manager: 'operator', operation: 'Apply', apiVersion: 'v1', fieldsType: 'FieldsV1', fieldsV1: fields }] },
      spec: { containers: [{ name: 'app', image: 'app:1', args: [`--token=${GH_TOKEN}`, '--verbose'] }] },
    });
    const control = await request(straight, 'GET', '/api/v1/namespaces/default/pods/ssa-pod');
    assert.ok(control.text.includes(`v:\\"--token=${GH_TOKEN}\\"`), 'control: the key carries the token');
    const r = await stack.kubectl(['get', 'pod', 'ssa-pod', '-o', 'json', '--show-managed-fields']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(GH_TOKEN), r.stdout);
    const pod = JSON.parse(r.stdout) as { metadata: { managedFields: { fieldsV1: Record<string, Record<string, Record<string, Record<string, Record<string, unknown>>>>> }[] }; spec: { containers: { args: string[] }[] } };
    const args = pod.metadata.managedFields[0]?.fieldsV1['f:spec']?.['f:containers']?.['k:{"name":"app"}']?.['f:args'] ?? {};
    assert.deepEqual(Object.keys(args).length, 2);
    assert.ok('v:"--verbose"' in args, 'an ordinary key is kept');
    assert.ok(Object.keys(args).some((k) => k.startsWith('v:"--token=') && k.includes('*')), JSON.stringify(args));
    assert.equal(pod.spec.containers[0]?.args[1], '--verbose');
  });

  test('k7-09 kubectl get --raw with ?pretty=true, a fieldSelector and a metadata-only list: masked', async () => {
    for (const path of ['/api/v1/namespaces/default/secrets/db?pretty=true', '/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Ddb&pretty=true', '/api/v1/secrets?pretty=true']) {
      const control = await request(straight, 'GET', path);
      assert.ok(control.text.includes(b64(SECRET)) && control.text.includes('\n  '), `control ${path}`);
      const r = await stack.kubectl(['get', '--raw', path]);
      assert.equal(r.code, 0, r.stderr);
      noneOf(r.stdout, ALL, path);
      assert.ok(JSON.parse(r.stdout), path);
    }
  });

  test('k7-10 masking off: the same forms and codings pass through untouched (no false denial)', async () => {
    for (const [headers, check] of [
      [{ Accept: 'application/vnd.kubernetes.protobuf' }, (a: Answer) => a.text.startsWith('k8s\0') && a.text.includes(SECRET)],
      [{ Accept: 'application/cbor' }, (a: Answer) => a.text.startsWith('\xd9\xd9\xf7') && a.text.includes(SECRET)],
    ] as const) {
      const r = await request(unmasked, 'GET', '/api/v1/namespaces/default/secrets/db', headers);
      assert.equal(r.status, 200);
      assert.ok(check(r), JSON.stringify(headers));
    }
    await withBig(async () => {
      const gz = await request(unmasked, 'GET', '/api/v1/namespaces/default/secrets/big', { 'Accept-Encoding': 'gzip' });
      assert.equal(gz.headers['content-encoding'], 'gzip');
      assert.ok(gunzipSync(Buffer.from(gz.text, 'latin1')).toString('utf8').includes(b64(SECRET)));
    });
  });

  test('k7-11 a refused pod update echoes the stored spec (a Go diff whose context prints the env): the env value is masked in the Status message and its causes, as in the pod itself', async () => {
    stack.api.put('pods', { metadata: { name: 'env-pod', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'app:1', env: [{ name: 'DB_PASSWORD', value: ENV_PASS }, { name: 'MODE', value: 'production' }] }], restartPolicy: 'Always' } });
    const patch = JSON.stringify({ spec: { restartPolicy: 'Never' } });
    const control = await request(straight, 'PATCH', '/api/v1/namespaces/default/pods/env-pod', { 'Content-Type': 'application/strategic-merge-patch+json' }, 5_000, patch);
    assert.equal(control.status, 422);
    assert.ok(control.text.includes(`{Name: \\"DB_PASSWORD\\", Value: \\"${ENV_PASS}\\"}`), `control: the diff prints the env value\n${control.text}`);
    const k = await stack.kubectl(['patch', 'pod', 'env-pod', '-p', patch]);
    assert.notEqual(k.code, 0);
    assert.match(k.stderr, /is invalid: spec: Forbidden: pod updates may not change fields/);
    assert.ok(!k.stderr.includes(ENV_PASS), k.stderr);
    assert.match(k.stderr, /Name: \\?"DB_PASSWORD\\?", Value: \\?"\*+\\?"/, k.stderr);
    assert.match(k.stderr, /Name: \\?"MODE\\?", Value: \\?"production\\?"/, 'a value no rule names is kept');
    const r = await request(via, 'PATCH', '/api/v1/namespaces/default/pods/env-pod', { 'Content-Type': 'application/strategic-merge-patch+json' }, 5_000, patch);
    assert.equal(r.status, 422);
    const st = JSON.parse(r.text) as { message: string; details: { causes: { message: string }[] } };
    assert.ok(!st.message.includes(ENV_PASS) && !st.details.causes[0]?.message.includes(ENV_PASS), r.text);
    assert.equal(stack.api.get('pods', 'default', 'env-pod')?.['spec'] !== undefined, true);
  });

  test('k7-12 a Secret manifest kept as a JSON string in another object (an operator\'s snapshot in a ControllerRevision) is masked as a Secret; other strings are kept', async () => {
    const manifest = JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db-creds', namespace: 'default' }, data: { password: b64(APPLIED_PASS) } });
    stack.api.put('controllerrevisions', { metadata: { name: 'snap-1', namespace: 'default' }, revision: 1, data: { manifest, note: '{"kind": "note", "text": "kept"}' } });
    const control = await request(straight, 'GET', '/apis/apps/v1/namespaces/default/controllerrevisions/snap-1');
    assert.ok(control.text.includes(b64(APPLIED_PASS)), 'control: in the clear');
    const r = await stack.kubectl(['get', 'controllerrevision', 'snap-1', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    noneOf(r.stdout, [APPLIED_PASS], 'the snapshot');
    const data = (JSON.parse(r.stdout) as { data: { manifest: string; note: string } }).data;
    const copy = JSON.parse(data.manifest) as { kind: string; data: Record<string, string> };
    assert.deepEqual([copy.kind, Buffer.from(copy.data['password'] ?? '', 'base64').toString('utf8')], ['Secret', '********']);
    assert.equal(data.note, '{"kind": "note", "text": "kept"}', 'a JSON string with nothing to mask is kept byte for byte');
  });
});
