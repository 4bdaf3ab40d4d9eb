/**
 * Wave 5 red team, Kubernetes (ids w5k-NN): an agent that may read everything (masked)
 * looks for a representation of a Secret's value that masking does not rewrite: another
 * media type or encoding, a Table or watch stream, kubectl's output formats, a copy of the
 * object inside another object, a configuration file in a ConfigMap, path spellings,
 * impersonation, dryRun, subresource writes, another API group's `secrets`.
 *
 * Each leak case has a control: the same request straight to the stand-in API server (no
 * agentgate) has the value in the clear. The stand-in speaks JSON only (no protobuf, no
 * gzip): where agentgate's answer is to narrow the request (Accept, Accept-Encoding), the
 * case asserts on what reached the stand-in.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rawRequest as request, startK8sStack, TARGET, type K8sStack } from './stack.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import type { Identity } from '../../src/broker/identity/types.js';
import { ObjectMasker } from '../../src/broker/kubernetes/mask.js';
import { createValueMasker } from '../../src/broker/kubernetes/value-mask.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const PASSWORD = 'w5k-hunter2-cleartext';
const TOKEN = 'w5k-api-token-0f9e8d7c';
const CM_PASSWORD = 'w5k-cm-db-pass-31337';
const CM_ENV_PASSWORD = 'w5k-cm-dotenv-pass-4242';
const CM_YAML_PASSWORD = 'w5k-cm-yaml-pass-777';
const ARG_PASSWORD = 'w5k-arg-pass-5150';
const ARG_TOKEN = 'w5k-arg-token-8086';
const SCRIPT_PASSWORD = 'w5k-script-pass-6502';
const ANNOTATION_PASSWORD = 'w5k-annotation-pass-68000';
/** Every form a leaked value could take in a response: the text, its base64, JSON-escaped base64. */
const LEAKS = [PASSWORD, b64(PASSWORD), TOKEN, b64(TOKEN)];

const policy = (rules: PolicyConfig['rules']): PolicyConfig[] => [{ name: 'agents-k8s', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules }];
const POLICIES = policy([
  { name: 'locked', k8s: { resources: ['secrets'], namespaces: ['locked'] }, effect: 'deny', extra: {} },
  { name: 'read', k8s: { verbs: ['get', 'list', 'watch'] }, effect: 'allow', extra: {} },
  { name: 'tend-pods', k8s: { verbs: ['patch', 'update'], resources: ['pods', 'apps/deployments'] }, effect: 'allow', extra: {} },
  { name: 'delete-held', k8s: { verbs: ['delete'] }, effect: 'review', approvers: { groups: ['sre'], count: 1 }, extra: {} },
  { name: 'rest', effect: 'deny', extra: {} },
]);

describe('wave 5: masked values in other representations', () => {
  let stack: K8sStack;
  let via: { port: number; ca: string; token: string };
  let straight: { port: number; ca: string; token: string };
  /** What reached the stand-in since `from`. */
  const seenSince = (from: number): { method: string; url: string; headers: Record<string, unknown> }[] => stack.forwarded(from);
  const noLeak = (text: string, what: string): void => {
    for (const l of LEAKS) assert.ok(!text.includes(l), `${what}: ${l} in the clear:\n${text.slice(0, 1500)}`);
  };

  before(async () => {
    stack = await startK8sStack({ policies: POLICIES });
    const secret = {
      metadata: {
        name: 'db',
        namespace: 'default',
        annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'default' }, data: { password: b64(PASSWORD) } }) },
      },
      type: 'Opaque',
      data: { password: b64(PASSWORD), token: b64(TOKEN) },
    };
    stack.api.put('secrets', secret);
    stack.api.put('secrets', { ...secret, metadata: { name: 'db', namespace: 'locked' } });
    // A copy of the Secret inside another object (a ControllerRevision stores any object in `data`).
    stack.api.put('controllerrevisions', { metadata: { name: 'rev-1', namespace: 'default' }, revision: 1, data: { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db' }, data: { password: b64(PASSWORD) }, stringData: { token: TOKEN } } });
    stack.api.put('configmaps', {
      metadata: { name: 'app-files', namespace: 'default' },
      data: {
        'application.properties': `server.port=8080\nspring.datasource.password=${CM_PASSWORD}\nlog.level=info\n`,
        'app.env': `MODE=production\nexport DB_PASSWORD="${CM_ENV_PASSWORD}"\n`,
        'config.yaml': `db:\n  host: db.internal\n  password: ${CM_YAML_PASSWORD}\n`,
        'secret.json': JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'copy' }, data: { password: b64(PASSWORD) } }),
        'settings.json': JSON.stringify({ db: { user: 'app', apiToken: TOKEN } }),
      },
    });
    // A pod whose container gets credentials on its command line, and an annotation holding one.
    stack.api.put('pods', {
      metadata: { name: 'cli-creds', namespace: 'default', annotations: { 'example.com/db-password': ANNOTATION_PASSWORD, 'example.com/owner': 'team-a' } },
      spec: {
        containers: [
          {
            name: 'app',
            image: 'app:1',
            command: ['sh', '-c', `export DB_PASSWORD=${SCRIPT_PASSWORD}\nexec /app --port 8080`],
            args: [`--db-password=${ARG_PASSWORD}`, '--api-token', ARG_TOKEN, '--port', '8080', '--log-level=info'],
          },
        ],
      },
      status: { phase: 'Running' },
    });
    via = { port: stack.main.port, ca: stack.main.endpoint.caPem, token: stack.main.session.secret };
    straight = { port: Number(new URL(stack.api.url).port), ca: stack.api.caPem, token: stack.api.token };
  });
  after(async () => {
    await stack?.close();
  });

  test('w5k-00 CONTROL: straight to the API server every value below is in the clear', async () => {
    const s = await request(straight, 'GET', '/api/v1/namespaces/default/secrets/db');
    assert.ok(s.text.includes(b64(PASSWORD)) && s.text.includes(b64(TOKEN)));
    const cr = await request(straight, 'GET', '/apis/apps/v1/namespaces/default/controllerrevisions/rev-1');
    assert.ok(cr.text.includes(b64(PASSWORD)) && cr.text.includes(TOKEN));
    const cm = await request(straight, 'GET', '/api/v1/namespaces/default/configmaps/app-files');
    for (const v of [CM_PASSWORD, CM_ENV_PASSWORD, CM_YAML_PASSWORD, TOKEN]) assert.ok(cm.text.includes(v), v);
    const w = await request(straight, 'GET', '/api/v1/namespaces/default/secrets?watch=1', {}, 1_000);
    assert.ok(w.text.includes(b64(PASSWORD)));
    const t = await request(straight, 'GET', '/api/v1/namespaces/default/secrets?includeObject=Object', { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' });
    assert.ok(t.text.includes(b64(PASSWORD)));
  });

  test('w5k-01 Accept: protobuf, */*, YAML and a protobuf Table: the API server is asked for JSON only, the answer is masked JSON', async () => {
    for (const accept of ['application/vnd.kubernetes.protobuf', '*/*', 'application/yaml', 'application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json', 'application/vnd.kubernetes.protobuf, application/json;q=0.1']) {
      const from = stack.api.requests.length;
      const r = await request(via, 'GET', '/api/v1/namespaces/default/secrets/db', { Accept: accept });
      assert.equal(r.status, 200, `${accept}: ${r.text}`);
      assert.match(String(r.headers['content-type']), /^application\/json/);
      noLeak(r.text, accept);
      const up = seenSince(from);
      assert.equal(up.length, 1);
      assert.ok(!/protobuf|yaml|\*\/\*/.test(String(up[0]?.headers['accept'])), `${accept} reached the API server as ${String(up[0]?.headers['accept'])}`);
    }
  });

  test('w5k-02 as=Table with includeObject=Object, and as=PartialObjectMetadata: the rows\' objects are masked', async () => {
    for (const [q, accept] of [
      ['?includeObject=Object', 'application/json;as=Table;v=v1;g=meta.k8s.io'],
      ['', 'application/json;as=Table;v=v1;g=meta.k8s.io'],
      ['', 'application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io'],
    ] as const) {
      const r = await request(via, 'GET', `/api/v1/namespaces/default/secrets${q}`, { Accept: accept });
      assert.equal(r.status, 200, r.text);
      noLeak(r.text, `${accept}${q}`);
    }
  });

  test('w5k-03 watch streams (?watch=1, =true, =TRUE, and an empty value the API server reads as true): every event masked', async () => {
    for (const q of ['watch=1', 'watch=true', 'watch=TRUE', 'watch=', 'watch=1&includeObject=Object']) {
      const r = await request(via, 'GET', `/api/v1/namespaces/default/secrets?${q}`, q.includes('includeObject') ? { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' } : {}, 1_500);
      assert.equal(r.status, 200, r.text);
      noLeak(r.text, q);
    }
  });

  test('w5k-04 Accept-Encoding gzip / br / *: the API server is asked for identity, the answer is plain masked JSON', async () => {
    for (const enc of ['gzip', 'br, gzip;q=1', '*']) {
      const from = stack.api.requests.length;
      const r = await request(via, 'GET', '/api/v1/namespaces/default/secrets/db', { 'Accept-Encoding': enc });
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-encoding'], undefined);
      noLeak(r.text, enc);
      assert.equal(seenSince(from)[0]?.headers['accept-encoding'], 'identity');
    }
  });

  test('w5k-05 kubectl get secret -o json / yaml / jsonpath / go-template, kubectl describe: no value in the clear', async () => {
    for (const args of [
      ['get', 'secret', 'db', '-o', 'json'],
      ['get', 'secret', 'db', '-o', 'yaml'],
      ['get', 'secret', 'db', '-o', 'jsonpath={.data.password}'],
      ['get', 'secret', 'db', '-o', 'go-template={{index .data "token" | base64decode}}'],
      ['get', 'secrets', '-o', 'wide'],
      ['get', 'secrets', '--watch', '--request-timeout=2s', '-o', 'json'],
      ['describe', 'secret', 'db'],
      ['describe', 'configmap', 'app-files'],
      ['get', '--raw', '/api/v1/namespaces/default/secrets/db?pretty=true'],
      ['get', 'controllerrevisions', '-o', 'yaml'],
    ]) {
      const r = await stack.kubectl(args);
      noLeak(r.stdout + r.stderr, args.join(' '));
      for (const v of [CM_PASSWORD, CM_ENV_PASSWORD, CM_YAML_PASSWORD]) assert.ok(!r.stdout.includes(v), `${args.join(' ')}: ${v}`);
    }
  });

  test('w5k-06 a Secret copied inside another object (a ControllerRevision\'s data) is masked as a Secret', async () => {
    const r = await request(via, 'GET', '/apis/apps/v1/namespaces/default/controllerrevisions/rev-1');
    assert.equal(r.status, 200, r.text);
    noLeak(r.text, 'controllerrevision');
    const doc = JSON.parse(r.text) as { data: { kind: string; data: { password: string } } };
    assert.equal(doc.data.kind, 'Secret', 'the copy is still there, masked');
    const list = await request(via, 'GET', '/apis/apps/v1/namespaces/default/controllerrevisions');
    noLeak(list.text, 'controllerrevision list');
  });

  test('w5k-07 a ConfigMap holding configuration files: secret-looking keys in properties, dotenv, YAML and JSON are masked; the rest is kept', async () => {
    const r = await request(via, 'GET', '/api/v1/namespaces/default/configmaps/app-files');
    assert.equal(r.status, 200, r.text);
    for (const v of [CM_PASSWORD, CM_ENV_PASSWORD, CM_YAML_PASSWORD, TOKEN, b64(PASSWORD)]) assert.ok(!r.text.includes(v), `${v} in the clear:\n${r.text}`);
    const data = (JSON.parse(r.text) as { data: Record<string, string> }).data;
    assert.match(data['application.properties'] ?? '', /^server\.port=8080$/m);
    assert.match(data['application.properties'] ?? '', /^log\.level=info$/m);
    assert.match(data['config.yaml'] ?? '', /^ {2}host: db\.internal$/m);
    assert.match(data['app.env'] ?? '', /^MODE=production$/m);
    assert.equal((JSON.parse(data['settings.json'] ?? '{}') as { db: { user: string } }).db.user, 'app');
  });

  test('w5k-14 credentials on a container\'s command line (--flag=value, --flag value, a sh -c script) and in an annotation are masked by their name; the rest is kept', async () => {
    const c = await request(straight, 'GET', '/api/v1/namespaces/default/pods/cli-creds');
    for (const v of [ARG_PASSWORD, ARG_TOKEN, SCRIPT_PASSWORD, ANNOTATION_PASSWORD]) assert.ok(c.text.includes(v), `control: ${v}`);
    for (const path of ['/api/v1/namespaces/default/pods/cli-creds', '/api/v1/namespaces/default/pods', '/api/v1/namespaces/default/pods?watch=1']) {
      const r = await request(via, 'GET', path, {}, 1_500);
      assert.equal(r.status, 200, r.text);
      for (const v of [ARG_PASSWORD, ARG_TOKEN, SCRIPT_PASSWORD, ANNOTATION_PASSWORD]) assert.ok(!r.text.includes(v), `${path}: ${v} in the clear`);
    }
    const r = await request(via, 'GET', '/api/v1/namespaces/default/pods/cli-creds');
    const pod = JSON.parse(r.text) as { metadata: { annotations: Record<string, string> }; spec: { containers: { args: string[]; command: string[] }[] } };
    const args = pod.spec.containers[0]?.args ?? [];
    assert.deepEqual([args[0]?.startsWith('--db-password='), args[1], args[3], args[4], args[5]], [true, '--api-token', '--port', '8080', '--log-level=info']);
    assert.match(pod.spec.containers[0]?.command[2] ?? '', /exec \/app --port 8080/);
    assert.equal(pod.metadata.annotations['example.com/owner'], 'team-a');
  });

  test('w5k-08 path spellings: "..", "%2e%2e", "//", "%2F", "./" are refused before the API server; a trailing slash or a case change never reaches a Secret unmasked', async () => {
    for (const p of [
      '/api/v1/namespaces/default/pods/../secrets/db',
      '/api/v1/namespaces/default/pods/%2e%2e/secrets/db',
      '/api/v1/namespaces/default//secrets/db',
      '//api/v1/namespaces/default/secrets/db',
      '/api/v1/namespaces/default/secrets%2Fdb',
      '/api/v1/namespaces/default/./secrets/db',
      '/api/v1/namespaces/locked/pods/..%2Fsecrets/db',
    ]) {
      const from = stack.api.requests.length;
      const r = await request(via, 'GET', p);
      assert.equal(r.status, 400, `${p}: ${r.status} ${r.text}`);
      assert.equal(seenSince(from).length, 0, `${p} reached the API server`);
    }
    for (const p of ['/api/v1/namespaces/default/secrets/db/', '/api/v1/namespaces/default/SECRETS/db', '/API/v1/namespaces/default/secrets/db', '/api/v1/namespaces/default/secrets/db?pretty=1&watch=0']) {
      const r = await request(via, 'GET', p);
      noLeak(r.text, p);
    }
    const locked = await request(via, 'GET', '/api/v1/namespaces/locked/secrets/db/');
    assert.equal(locked.status, 403, locked.text);
  });

  test('w5k-09 impersonation headers in any spelling are refused before the API server', async () => {
    for (const h of <Record<string, string>[]>[{ 'Impersonate-User': 'system:admin' }, { 'impersonate-group': 'system:masters' }, { 'Impersonate-Uid': '0' }, { 'Impersonate-Extra-Scopes': 'all' }, { 'IMPERSONATE-USER': 'admin' }]) {
      const from = stack.api.requests.length;
      const r = await request(via, 'GET', '/api/v1/namespaces/default/pods', h);
      assert.equal(r.status, 403, JSON.stringify(h));
      assert.match(r.text, /impersonation/);
      assert.equal(seenSince(from).length, 0);
    }
  });

  test('w5k-10 ?dryRun=All does not change the decision: a held delete and a denied create are not forwarded', async () => {
    const from = stack.api.requests.length;
    const del = await request(via, 'DELETE', '/api/v1/namespaces/default/secrets/db?dryRun=All');
    assert.equal(del.status, 403, del.text);
    assert.match(del.text, /approval required/);
    const create = await request(via, 'POST', '/api/v1/namespaces/default/secrets?dryRun=All', { 'Content-Type': 'application/json' }, 5_000, JSON.stringify({ metadata: { name: 'new' }, stringData: { a: 'b' } }));
    assert.equal(create.status, 403, create.text);
    assert.equal(seenSince(from).length, 0);
    assert.ok(stack.api.get('secrets', 'default', 'db'));
  });

  test('w5k-11 subresource writes under a `patch pods, apps/deployments` grant: status, scale, binding, eviction, ephemeralcontainers are refused before the API server', async () => {
    for (const [method, p] of [
      ['PATCH', '/api/v1/namespaces/default/pods/web-1/status'],
      ['PATCH', '/api/v1/namespaces/default/pods/web-1/ephemeralcontainers'],
      ['PATCH', '/apis/apps/v1/namespaces/default/deployments/web/scale'],
      ['PUT', '/apis/apps/v1/namespaces/default/deployments/web/status'],
      ['POST', '/api/v1/namespaces/default/pods/web-1/binding'],
      ['POST', '/api/v1/namespaces/default/pods/web-1/eviction'],
    ] as const) {
      const from = stack.api.requests.length;
      const r = await request(via, method, p, { 'Content-Type': 'application/merge-patch+json' }, 5_000, '{}');
      assert.equal(r.status, 403, `${method} ${p}: ${r.text}`);
      assert.equal(seenSince(from).length, 0, `${method} ${p} reached the API server`);
    }
  });

  test('w5k-12 `secrets` of another API group (an aggregated API or a CRD) meets the rules about secrets', async () => {
    const from = stack.api.requests.length;
    const r = await request(via, 'GET', '/apis/evil.example.com/v1/namespaces/locked/secrets/db');
    assert.equal(r.status, 403, r.text);
    assert.equal(seenSince(from).length, 0);
  });
});

describe('wave 5: masking of metadata-only lists (the object masker, as the proxy runs it)', () => {
  const ID: Identity = { sub: 'a', groups: ['g'], kind: 'agent', issuer: 'x', expiresAt: 0 };
  const masker = (kind: string): ObjectMasker => {
    const vm = createValueMasker({ masking: {}, policies: [{ name: 'p', subjects: { groups: ['g'] }, targets: ['k'], rules: [{ name: 'r', effect: 'allow', extra: {} }] }] }, ID, 'k', Buffer.alloc(32, 7));
    assert.ok(vm);
    return new ObjectMasker(vm, kind);
  };

  test('w5k-13 a PartialObjectMetadataList of Secrets: a last-applied copy without its own kind is masked as a Secret (the list names the form, not the kind)', () => {
    const applied = JSON.stringify({ metadata: { name: 'db' }, data: { password: b64(PASSWORD) } });
    const doc = {
      kind: 'PartialObjectMetadataList',
      apiVersion: 'meta.k8s.io/v1',
      items: [{ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: { name: 'db', annotations: { 'kubectl.kubernetes.io/last-applied-configuration': applied } } }],
    };
    masker('Secret').document(doc);
    assert.ok(!JSON.stringify(doc).includes(b64(PASSWORD)), JSON.stringify(doc));
  });
});
