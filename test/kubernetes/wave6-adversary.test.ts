/**
 * Wave 6 red team, Kubernetes (ids k6-NN): an agent with a read-only grant (and, where a
 * case needs it, a plausible write grant on ConfigMaps and pods) in a masked session looks
 * for values masking does not follow — configuration files in ConfigMaps written the ways
 * real ones are (YAML block scalars, nested blocks, anchors, JSON inside YAML, multi-line
 * dotenv and properties values, INI, URLs with a password) — writes built from masked output
 * that would store the masks in the cluster, token-minting subresources, and answers in
 * formats the masker cannot read.
 *
 * Each leak case has a control: the same request straight to the stand-in API server (no
 * agentgate), or as an identity whose policy has masking off, shows the value in the clear
 * or the write applied.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { rawRequest as request, startK8sStack, TARGET, type Connection, type K8sStack } from './stack.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { cbor } from '../helpers/kube-formats.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/** Values of the YAML file (k6-01). */
const YAML_SECRETS = ['k6-block-line-one', 'k6-block-line-two', 'k6-folded-part-one', 'k6-folded-part-two', 'k6-plain-next-line', 'k6-nested-prod', 'k6-nested-dev', 'k6-list-token-1', 'k6-anchor-value', 'k6-second-doc-token'];
/** Values of the other files (k6-02, k6-03). */
const EMBEDDED_SECRETS = ['k6-json-in-yaml', 'k6-flow-mapping', 'k6-quoted-json-token', 'k6-json-nested-primary', 'k6-json-key-list'];
const ENV_SECRETS = ['k6-crlf-pass', 'k6-crlf-block', 'k6-sep-pass', 'k6-env-single', 'k6-env-multi-one', 'k6-env-multi-two', 'k6-prop-cont-one', 'k6-prop-cont-two', 'k6-ini-pass', 'k6-ini-token'];
const URL_SECRETS = ['k6-url-pg-pass', 'k6-url-redis-pass', 'k6-url-env-pass', 'k6-url-arg-pass', 'k6-url-annotation-pass'];
const CM_PASSWORD = 'k6-writeback-db-pass';
const SECRET_PASSWORD = 'k6-secret-pass-9911';

const CONFIG_YAML = `db:
  host: db.internal
  password: |
    k6-block-line-one
    k6-block-line-two
  user: app
tls:
  key: >-
    k6-folded-part-one
    k6-folded-part-two
  port: 8443
secret:
  k6-plain-next-line
passwords:
  prod: k6-nested-prod
  dev: k6-nested-dev
api_tokens:
- k6-list-token-1
common: &dbpw k6-anchor-value
replica:
  password: *dbpw
---
second: doc
token: k6-second-doc-token
`;

const policy = (rules: PolicyConfig['rules']): PolicyConfig => ({ name: 'agents-k8s', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules });
const POLICIES: PolicyConfig[] = [
  policy([
    { name: 'locked', k8s: { resources: ['secrets'], namespaces: ['locked'] }, effect: 'deny', extra: {} },
    { name: 'read', k8s: { verbs: ['get', 'list', 'watch'] }, effect: 'allow', extra: {} },
    { name: 'tend-config', k8s: { verbs: ['create', 'update', 'patch'], resources: ['configmaps', 'pods'] }, effect: 'allow', extra: {} },
    { name: 'pod-http', k8s: { verbs: ['proxy'], resources: ['pods'] }, effect: 'allow', extra: {} },
    { name: 'ci-tokens', k8s: { verbs: ['create'], resources: ['serviceaccounts/token'], namespaces: ['ci'] }, effect: 'allow', extra: {} },
    { name: 'rest', effect: 'deny', extra: {} },
  ]),
  { name: 'unmasked', subjects: { groups: ['breakglass'] }, targets: [TARGET], masking: { mode: 'off' }, rules: [{ name: 'all-unmasked', effect: 'allow', extra: {} }] },
];

describe('wave 6: configuration files, write-back, tokens and formats', () => {
  let stack: K8sStack;
  let breakglass: Connection;
  let via: { port: number; ca: string; token: string };
  let straight: { port: number; ca: string; token: string };
  const seenSince = (from: number): { method: string; url: string; headers: Record<string, unknown> }[] => stack.api.requests.slice(from);
  const noneOf = (text: string, values: readonly string[], what: string): void => {
    for (const v of values) assert.ok(!text.includes(v) && !text.includes(b64(v)), `${what}: ${v} in the clear:\n${text.slice(0, 2000)}`);
  };
  const cmData = (name: string): Record<string, string> => (stack.api.get('configmaps', 'default', name)?.['data'] ?? {}) as Record<string, string>;
  const resetWriteBack = (): void => {
    stack.api.put('configmaps', { metadata: { name: 'db-settings', namespace: 'default' }, data: { mode: 'production', db_password: CM_PASSWORD, 'app.env': `MODE=production\nDB_PASSWORD=${CM_PASSWORD}\n` } });
  };

  before(async () => {
    stack = await startK8sStack({ policies: POLICIES });
    breakglass = await stack.connectAs('oncall-1', ['breakglass']);
    stack.api.put('configmaps', { metadata: { name: 'app-yaml', namespace: 'default' }, data: { 'config.yaml': CONFIG_YAML } });
    stack.api.put('configmaps', {
      metadata: { name: 'app-embedded', namespace: 'default' },
      data: {
        'app.yaml': `service:\n  creds: {"user": "app", "password": "k6-json-in-yaml"}\n  flow: {user: app, password: k6-flow-mapping, port: 5432}\n  quoted: '{"apiToken": "k6-quoted-json-token"}'\n  name: web\n`,
        'settings.json': JSON.stringify({ db: { host: 'db', passwords: { primary: 'k6-json-nested-primary' } }, api_keys: ['k6-json-key-list'], region: 'eu-west-1' }),
      },
    });
    stack.api.put('configmaps', {
      metadata: { name: 'app-env', namespace: 'default' },
      data: {
        'app.env': `MODE=production\nexport DB_PASSWORD='k6-env-single'\nexport API_TOKEN="k6-env-multi-one\nk6-env-multi-two"\nLOG_LEVEL=info\n`,
        'db.properties': `db.url=jdbc:postgresql://db/app\ndb.password=k6-prop-cont-one\\\n    k6-prop-cont-two\ndb.pool=10\n`,
        'win.yaml': 'mode: debug\r\ndb_password: k6-crlf-pass\r\napi_token: |\r\n  k6-crlf-block\r\nport: 80\r\nsecret_key: one\u2028k6-sep-pass\r\n',
        'app.ini': `[database]\nhost = db.internal\npassword = k6-ini-pass\n[cache]\nauth_token = k6-ini-token\nsize = 64\n`,
      },
    });
    stack.api.put('configmaps', {
      metadata: { name: 'app-urls', namespace: 'default', annotations: { 'example.com/upstream': 'amqp://queue:k6-url-annotation-pass@mq:5672/' } },
      data: { 'urls.env': `DATABASE_URL=postgres://app:k6-url-pg-pass@db.internal:5432/app\nREDIS_URL=redis://:k6-url-redis-pass@redis:6379/0\nHOMEPAGE=https://example.com:8443/path@x\n` },
    });
    stack.api.put('pods', {
      metadata: { name: 'url-pod', namespace: 'default' },
      spec: { containers: [{ name: 'app', image: 'app:1', args: ['--db=postgres://app:k6-url-arg-pass@db/app'], env: [{ name: 'DATABASE_URL', value: 'postgresql://app:k6-url-env-pass@db:5432/app?sslmode=require' }] }] },
    });
    stack.api.put('configmaps', {
      metadata: { name: 'app-nested', namespace: 'default' },
      data: { 'values.json': JSON.stringify({ env: 'MODE=prod\nDB_PASSWORD=k6-json-string-env\n', files: ['api_token: k6-json-array-yaml'], mode: 'prod' }) },
    });
    stack.api.put('pods', {
      metadata: { name: 'cfg-pod', namespace: 'default' },
      spec: { containers: [{ name: 'app', image: 'app:1', env: [{ name: 'APP_CONFIG', value: 'db:\n  password: k6-env-yaml-pass\n  host: db\n' }, { name: 'MODE', value: 'prod' }] }] },
    });
    stack.api.put('secrets', { metadata: { name: 'db', namespace: 'default' }, type: 'Opaque', data: { password: b64(SECRET_PASSWORD) } });
    stack.api.put('secrets', { metadata: { name: 'db', namespace: 'locked' }, type: 'Opaque', data: { password: b64(SECRET_PASSWORD) } });
    for (const ns of ['default', 'ci']) stack.api.put('serviceaccounts', { metadata: { name: 'builder', namespace: ns } });
    stack.api.put('pods', { metadata: { name: 'web', namespace: 'default' }, spec: { containers: [{ name: 'web', image: 'web:1' }] } });
    resetWriteBack();
    via = { port: stack.main.port, ca: stack.main.endpoint.caPem, token: stack.main.session.secret };
    straight = { port: Number(new URL(stack.api.url).port), ca: stack.api.caPem, token: stack.api.token };
  });
  after(async () => {
    await stack?.close();
  });

  test('k6-00 CONTROL: straight to the API server every value below is in the clear', async () => {
    for (const [name, values] of [
      ['app-yaml', YAML_SECRETS],
      ['app-embedded', EMBEDDED_SECRETS],
      ['app-env', ENV_SECRETS],
      ['app-urls', ['k6-url-pg-pass', 'k6-url-redis-pass', 'k6-url-annotation-pass']],
    ] as const) {
      const r = await request(straight, 'GET', `/api/v1/namespaces/default/configmaps/${name}`);
      for (const v of values) assert.ok(r.text.includes(v), `${name}: ${v}`);
    }
    const pod = await request(straight, 'GET', '/api/v1/namespaces/default/pods/url-pod');
    assert.ok(pod.text.includes('k6-url-arg-pass') && pod.text.includes('k6-url-env-pass'));
  });

  test('k6-01 YAML in a ConfigMap: block scalars (|, >-), a value on the next line, a nested map and a list under a secret key, an anchor a secret key aliases, a second document', async () => {
    for (const args of [
      ['get', 'configmap', 'app-yaml', '-o', 'yaml'],
      ['get', 'configmap', 'app-yaml', '-o', 'json'],
      ['get', 'configmaps', '-o', 'yaml'],
      ['get', '--raw', '/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1'],
    ]) {
      const r = await stack.kubectl(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      noneOf(r.stdout, YAML_SECRETS, args.join(' '));
    }
    const r = await request(via, 'GET', '/api/v1/namespaces/default/configmaps/app-yaml');
    const yaml = (JSON.parse(r.text) as { data: Record<string, string> }).data['config.yaml'] ?? '';
    // What is not a secret's is kept, line for line.
    for (const line of ['db:', '  host: db.internal', '  password: |', '  user: app', '  key: >-', '  port: 8443', 'replica:', '  password: *dbpw', '---', 'second: doc']) {
      assert.ok(yaml.split('\n').includes(line), `${line} kept:\n${yaml}`);
    }
  });

  test('k6-02 JSON and flow mappings inside YAML, and a JSON file whose secret keys hold an object or a list: masked by their keys, the rest kept', async () => {
    const r = await request(via, 'GET', '/api/v1/namespaces/default/configmaps/app-embedded');
    assert.equal(r.status, 200, r.text);
    noneOf(r.text, EMBEDDED_SECRETS, 'app-embedded');
    const data = (JSON.parse(r.text) as { data: Record<string, string> }).data;
    assert.match(data['app.yaml'] ?? '', /"user":"app"/);
    assert.match(data['app.yaml'] ?? '', /\{user: app, password: \*+, port: 5432\}/);
    assert.match(data['app.yaml'] ?? '', /^ {2}name: web$/m);
    const settings = JSON.parse(data['settings.json'] ?? '{}') as { db: { host: string }; region: string };
    assert.deepEqual([settings.db.host, settings.region], ['db', 'eu-west-1']);
  });

  test('k6-03 dotenv with export and a quoted value over two lines, a \\-continued properties value, INI sections, CRLF line ends and a U+2028 inside a value: masked whole, the rest kept', async () => {
    const r = await stack.kubectl(['get', 'configmap', 'app-env', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    noneOf(r.stdout, ENV_SECRETS, 'app-env');
    const data = (JSON.parse(r.stdout) as { data: Record<string, string> }).data;
    assert.match(data['app.env'] ?? '', /^MODE=production$/m);
    assert.match(data['app.env'] ?? '', /^LOG_LEVEL=info$/m);
    assert.match(data['db.properties'] ?? '', /^db\.pool=10$/m);
    assert.match(data['db.properties'] ?? '', /^db\.url=jdbc:postgresql:\/\/db\/app$/m);
    assert.match(data['app.ini'] ?? '', /^\[cache\]$/m);
    assert.match(data['app.ini'] ?? '', /^size = 64$/m);
    assert.equal(data['win.yaml'], 'mode: debug\r\ndb_password: ********\r\napi_token: |\r\n  ********\r\nport: 80\r\nsecret_key: ********\r\n', 'a CRLF file keeps its line ends');
  });

  test('k6-04 a password in a URL (postgres://user:PASS@host, redis://:PASS@host) is masked wherever it is: ConfigMap files, env values, container args, annotations', async () => {
    for (const path of ['/api/v1/namespaces/default/configmaps/app-urls', '/api/v1/namespaces/default/pods/url-pod', '/api/v1/namespaces/default/pods', '/api/v1/namespaces/default/configmaps?watch=1']) {
      const r = await request(via, 'GET', path, {}, 1_500);
      assert.equal(r.status, 200, r.text);
      noneOf(r.text, URL_SECRETS, path);
    }
    const cm = JSON.parse((await request(via, 'GET', '/api/v1/namespaces/default/configmaps/app-urls')).text) as { data: Record<string, string> };
    assert.match(cm.data['urls.env'] ?? '', /^DATABASE_URL=postgres:\/\/app:\*+@db\.internal:5432\/app$/m);
    assert.match(cm.data['urls.env'] ?? '', /^HOMEPAGE=https:\/\/example\.com:8443\/path@x$/m, 'a URL without a password is kept');
    const pod = JSON.parse((await request(via, 'GET', '/api/v1/namespaces/default/pods/url-pod')).text) as { spec: { containers: { env: { value: string }[] }[] } };
    assert.equal(pod.spec.containers[0]?.env[0]?.value, 'postgresql://app:********@db:5432/app?sslmode=require');
  });

  test('k6-05 write-back: get -o yaml | apply, | replace, | create under another name, and a patch carrying a mask are refused before the API server; the ConfigMap keeps its values', async () => {
    resetWriteBack();
    const got = await stack.kubectl(['get', 'configmap', 'db-settings', '-o', 'yaml']);
    assert.equal(got.code, 0, got.stderr);
    assert.ok(got.stdout.includes('********') && !got.stdout.includes(CM_PASSWORD), got.stdout);
    for (const [args, input] of [
      [['apply', '--validate=false', '-f', '-'], got.stdout],
      [['replace', '--validate=false', '-f', '-'], got.stdout],
      [['create', '--validate=false', '-f', '-'], got.stdout.replace(/name: db-settings/, 'name: db-settings-copy')],
      [['apply', '--server-side', '--validate=false', '-f', '-'], got.stdout],
      [['patch', 'configmap', 'db-settings', '--type=merge', '-p', '{"data":{"db_password":"********"}}'], ''],
      [['patch', 'configmap', 'db-settings', '-p', '{"data":{"app.env":"MODE=debug\\nDB_PASSWORD=****"}}'], ''],
    ] as const) {
      const from = stack.api.requests.length;
      const r = await stack.kubectlIn([...args], input);
      assert.notEqual(r.code, 0, `${args.join(' ')} succeeded: ${r.stdout}`);
      assert.match(r.stderr, /mask text/, `${args.join(' ')}: ${r.stderr} ${r.stdout} ${JSON.stringify(seenSince(from).map((q) => `${q.method} ${q.url}`))}`);
      const writes = seenSince(from).filter((q) => q.method !== 'GET');
      assert.deepEqual(writes, [], `${args.join(' ')} reached the API server`);
      assert.deepEqual(cmData('db-settings'), { mode: 'production', db_password: CM_PASSWORD, 'app.env': `MODE=production\nDB_PASSWORD=${CM_PASSWORD}\n` });
      assert.equal(stack.api.get('configmaps', 'default', 'db-settings-copy'), undefined);
    }
    const decisions = (await stack.events()).filter((e) => e.type === 'k8s.request' && /mask text/.test(String(e.decision?.reason)));
    assert.ok(decisions.length >= 6, 'each refusal is on record with its reason');
  });

  test('k6-06 write-back in base64 (binaryData), in a hash mask, in a protobuf or apply-YAML body, and bodies agentgate cannot read (CBOR, gzip, an unknown type) are refused before the API server', async () => {
    const cases: [string, string, Record<string, string>, string | Buffer][] = [
      ['POST', '/api/v1/namespaces/default/configmaps', { 'Content-Type': 'application/json' }, JSON.stringify({ metadata: { name: 'bin-copy' }, binaryData: { 'app.env': b64('MODE=production\nDB_PASSWORD=********\n') } })],
      ['PATCH', '/api/v1/namespaces/default/configmaps/db-settings', { 'Content-Type': 'application/merge-patch+json' }, JSON.stringify({ binaryData: { blob: b64('h:0123456789abcdef') } })],
      ['PUT', '/api/v1/namespaces/default/configmaps/db-settings', { 'Content-Type': 'application/cbor' }, cbor({ metadata: { name: 'db-settings' }, data: { db_password: '********' } })],
      // Protobuf holds strings verbatim: searched as bytes (a typed client's body, such as create token's, is read).
      ['PUT', '/api/v1/namespaces/default/configmaps/db-settings', { 'Content-Type': 'application/vnd.kubernetes.protobuf' }, Buffer.concat([Buffer.from([0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0f]), Buffer.from('\x12\x0b\x0a\x09db_passwd\x12\x08********', 'latin1')])],
      ['PUT', '/api/v1/namespaces/default/configmaps/db-settings', { 'Content-Type': 'application/x-yaml' }, 'metadata:\n  name: db-settings\ndata:\n  mode: debug\n'],
      ['PATCH', '/api/v1/namespaces/default/configmaps/db-settings', { 'Content-Type': 'application/merge-patch+json', 'Content-Encoding': 'gzip' }, Buffer.from([0x1f, 0x8b, 0x08, 0x00])],
      ['PATCH', '/api/v1/namespaces/default/configmaps/db-settings', { 'Content-Type': 'application/apply-patch+yaml' }, `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: db-settings\ndata:\n  db_password: "********"\n`],
    ];
    for (const [method, path, headers, body] of cases) {
      resetWriteBack();
      const from = stack.api.requests.length;
      const r = await request(via, method, path, headers, 5_000, body);
      assert.equal(r.status, 403, `${method} ${path} ${JSON.stringify(headers)}: ${r.status} ${r.text}`);
      assert.match(r.text, /mask/);
      assert.equal(seenSince(from).length, 0, `${method} ${path} ${JSON.stringify(headers)} reached the API server`);
      assert.equal(cmData('db-settings')['db_password'], CM_PASSWORD);
    }
    assert.equal(stack.api.get('configmaps', 'default', 'bin-copy'), undefined);
  });

  test('k6-07 writes that carry no mask go through: kubectl edit of a plain value, a patch, apply of a manifest of real values; the identity with masking off may apply what it read', async () => {
    resetWriteBack();
    const editor = join(stack.tmp.path, 'editor.sh');
    await writeFile(editor, '#!/bin/sh\nsed -i "s/^  mode: production$/  mode: debug/" "$1"\n');
    await chmod(editor, 0o700);
    const edit = await stack.kubectlIn(['edit', '--validate=false', 'configmap', 'db-settings'], '', { env: { KUBE_EDITOR: editor, EDITOR: editor } });
    assert.equal(edit.code, 0, `${edit.stdout}${edit.stderr}${JSON.stringify(stack.api.requests.slice(-3))}`);
    assert.deepEqual([cmData('db-settings')['mode'], cmData('db-settings')['db_password']], ['debug', CM_PASSWORD], 'the edit changed only what it edited');
    const patch = await stack.kubectl(['patch', 'configmap', 'db-settings', '--type=merge', '-p', '{"data":{"mode":"canary"}}']);
    assert.equal(patch.code, 0, patch.stderr);
    assert.equal(cmData('db-settings')['mode'], 'canary');
    const manifest = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fresh\n  namespace: default\ndata:\n  db_password: k6-fresh-real-value\n  mode: production\n';
    const apply = await stack.kubectlIn(['apply', '--validate=false', '-f', '-'], manifest);
    assert.equal(apply.code, 0, apply.stderr);
    assert.equal(cmData('fresh')['db_password'], 'k6-fresh-real-value');
    // As an identity that reads values in the clear, get | replace round-trips.
    resetWriteBack();
    const got = await stack.kubectl(['get', 'configmap', 'db-settings', '-o', 'yaml'], { kubeconfig: breakglass.kubeconfig });
    assert.ok(got.stdout.includes(CM_PASSWORD));
    const replace = await stack.kubectlIn(['replace', '--validate=false', '-f', '-'], got.stdout.replace('mode: production', 'mode: replaced'), { kubeconfig: breakglass.kubeconfig });
    assert.equal(replace.code, 0, replace.stderr);
    assert.deepEqual([cmData('db-settings')['mode'], cmData('db-settings')['db_password']], ['replaced', CM_PASSWORD]);
  });

  test('k6-08 kubectl create token: refused where the policy grants no token minting; where it does, the token in the TokenRequest is masked whole', async () => {
    const from = stack.api.requests.length;
    const denied = await stack.kubectl(['create', 'token', 'builder', '-n', 'default']);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /rule rest denies create serviceaccounts\/token/);
    assert.equal(seenSince(from).filter((q) => q.method === 'POST').length, 0, 'no token was minted');
    const issued = stack.api.tokensIssued.length;
    const r = await stack.kubectl(['create', 'token', 'builder', '-n', 'ci', '--duration=10m']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(stack.api.tokensIssued.length, issued + 1, 'the API server minted one');
    const token = stack.api.tokensIssued[issued] as string;
    assert.ok(!r.stdout.includes(token) && !r.stdout.includes(token.split('.')[2] as string), r.stdout);
    assert.equal(r.stdout.trim(), '********');
    const raw = await request(via, 'POST', '/api/v1/namespaces/ci/serviceaccounts/builder/token', { 'Content-Type': 'application/json' }, 5_000, JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: ['api'] } }));
    assert.equal(raw.status, 201, raw.text);
    const doc = JSON.parse(raw.text) as { status: { token: string; expirationTimestamp: string }; spec: { audiences: string[] } };
    assert.equal(doc.status.token, '********');
    assert.deepEqual(doc.spec.audiences, ['api']);
    assert.match(doc.status.expirationTimestamp, /^\d{4}-/);
  });

  test('k6-09 Accept: CBOR (and CBOR sequences for a watch), YAML Tables: the API server is asked for JSON only; the answer is masked JSON', async () => {
    for (const [path, accept] of [
      ['/api/v1/namespaces/default/secrets/db', 'application/cbor'],
      ['/api/v1/namespaces/default/secrets/db', 'application/cbor, application/json;q=0.5'],
      ['/api/v1/namespaces/default/secrets?watch=1', 'application/cbor-seq'],
      ['/api/v1/namespaces/default/secrets', 'application/yaml;as=Table;v=v1;g=meta.k8s.io, application/cbor;as=Table;v=v1;g=meta.k8s.io'],
    ] as const) {
      const from = stack.api.requests.length;
      const r = await request(via, 'GET', path, { Accept: accept }, 1_500);
      assert.equal(r.status, 200, `${accept}: ${r.text}`);
      assert.match(String(r.headers['content-type']), /^application\/json/);
      noneOf(r.text, [SECRET_PASSWORD], accept);
      const up = seenSince(from);
      assert.equal(up.length, 1);
      assert.ok(!/cbor|yaml|protobuf/.test(String(up[0]?.headers['accept'])), `${accept} reached the API server as ${String(up[0]?.headers['accept'])}`);
    }
  });

  test('k6-10 a pod proxy answering in a binary form (CBOR, protobuf, octet-stream), with an error status too, is refused; text and JSON are masked', async () => {
    const secretCbor = cbor({ kind: 'Secret', apiVersion: 'v1', metadata: { name: 'db' }, data: { password: Buffer.from(SECRET_PASSWORD, 'utf8') } });
    for (const [status, type, body] of [
      [200, 'application/cbor', secretCbor],
      [500, 'application/cbor', secretCbor],
      [503, 'application/vnd.kubernetes.protobuf', Buffer.concat([Buffer.from([0x6b, 0x38, 0x73, 0x00]), Buffer.from(SECRET_PASSWORD)])],
      [404, 'application/octet-stream', Buffer.from(`password=${SECRET_PASSWORD}`)],
    ] as const) {
      stack.api.setProxy('default', 'web', { status, headers: { 'content-type': type }, body });
      const control = await request(straight, 'GET', '/api/v1/namespaces/default/pods/web/proxy/config');
      assert.ok(control.text.includes(SECRET_PASSWORD), `control ${status} ${type}`);
      const r = await request(via, 'GET', '/api/v1/namespaces/default/pods/web/proxy/config');
      assert.equal(r.status, 502, `${status} ${type}: ${r.status} ${r.text}`);
      assert.match(r.text, /cannot mask/);
      assert.ok(!r.text.includes(SECRET_PASSWORD), `${status} ${type}`);
    }
    stack.api.setProxy('default', 'web', { status: 500, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'Secret', apiVersion: 'v1', metadata: { name: 'db' }, data: { password: b64(SECRET_PASSWORD) } }) });
    const json = await request(via, 'GET', '/api/v1/namespaces/default/pods/web/proxy/config');
    assert.equal(json.status, 500);
    noneOf(json.text, [SECRET_PASSWORD], 'a JSON error body');
    stack.api.setProxy('default', 'web', undefined);
  });

  test('k6-11 Secret paths spelled otherwise: "..", "//", an encoded "/" are refused; a percent-encoded letter or a trailing "/" still meets the rule about secrets', async () => {
    for (const p of ['/api/v1/namespaces/default/secrets/../secrets/db', '/api/v1/namespaces/default/secrets//db', '/api/v1/namespaces/default/secrets/db%2F..%2Fdb', '/api/v1/namespaces/locked/secrets/%2e%2e/db']) {
      const from = stack.api.requests.length;
      const r = await request(via, 'GET', p);
      assert.equal(r.status, 400, `${p}: ${r.status} ${r.text}`);
      assert.equal(seenSince(from).length, 0, `${p} reached the API server`);
    }
    for (const p of ['/api/v1/namespaces/locked/%73ecrets/db', '/api/v1/namespaces/locked/secrets/db/', '/api/v1/namespaces/%6cocked/secrets/db', '/api/v1/namespaces/locked/secrets?fieldSelector=metadata.name%3Ddb']) {
      const from = stack.api.requests.length;
      const r = await request(via, 'GET', p);
      assert.equal(r.status, 403, `${p}: ${r.status} ${r.text}`);
      assert.equal(seenSince(from).length, 0, `${p} reached the API server`);
    }
    const ok = await request(via, 'GET', '/api/v1/namespaces/default/%73ecrets/db');
    assert.equal(ok.status, 200, ok.text);
    noneOf(ok.text, [SECRET_PASSWORD], 'percent-encoded secrets');
  });

  test('k6-12 configuration text inside a JSON document\'s strings (a dotenv string, a YAML line in a list) and inside a container env value is masked line by line', async () => {
    const control = await request(straight, 'GET', '/api/v1/namespaces/default/configmaps/app-nested');
    assert.ok(control.text.includes('k6-json-string-env') && control.text.includes('k6-json-array-yaml'));
    const cm = await request(via, 'GET', '/api/v1/namespaces/default/configmaps/app-nested');
    noneOf(cm.text, ['k6-json-string-env', 'k6-json-array-yaml'], 'app-nested');
    const values = JSON.parse((JSON.parse(cm.text) as { data: Record<string, string> }).data['values.json'] ?? '{}') as { env: string; mode: string };
    assert.deepEqual([values.env.split('\n')[0], values.mode], ['MODE=prod', 'prod']);
    for (const path of ['/api/v1/namespaces/default/pods/cfg-pod', '/api/v1/namespaces/default/pods']) {
      const r = await request(via, 'GET', path);
      noneOf(r.text, ['k6-env-yaml-pass'], path);
    }
    const pod = JSON.parse((await request(via, 'GET', '/api/v1/namespaces/default/pods/cfg-pod')).text) as { spec: { containers: { env: { value: string }[] }[] } };
    assert.match(pod.spec.containers[0]?.env[0]?.value ?? '', /^ {2}host: db$/m);
    assert.equal(pod.spec.containers[0]?.env[1]?.value, 'prod');
  });

  test('k6-14 binaryData: a configuration file is masked line by line, bytes that are not text (a keystore) whole; a data value that is base64 of gzip (a Helm release) is masked whole', async () => {
    const release = gzipSync(Buffer.from(JSON.stringify({ name: 'web', manifest: `apiVersion: v1\nkind: Secret\nstringData:\n  db: k6-helm-release-pass\n` }))).toString('base64');
    const keystore = Buffer.concat([Buffer.from([0xfe, 0xed, 0xfe, 0xed, 0x00, 0x00, 0x00, 0x02]), Buffer.from('k6-keystore-pass')]);
    stack.api.put('configmaps', {
      metadata: { name: 'app-binary', namespace: 'default' },
      data: { release, mode: 'prod' },
      binaryData: { 'app.env': b64('MODE=prod\nDB_PASSWORD=k6-binary-env-pass\n'), 'keystore.jks': keystore.toString('base64'), 'plain.txt': b64('hello') },
    });
    const control = await request(straight, 'GET', '/api/v1/namespaces/default/configmaps/app-binary');
    assert.ok(control.text.includes(b64('MODE=prod\nDB_PASSWORD=k6-binary-env-pass\n')) && control.text.includes(keystore.toString('base64')) && control.text.includes(release));
    const r = await request(via, 'GET', '/api/v1/namespaces/default/configmaps/app-binary');
    assert.equal(r.status, 200, r.text);
    const cm = JSON.parse(r.text) as { data: Record<string, string>; binaryData: Record<string, string> };
    assert.equal(cm.data['release'], '********');
    assert.equal(cm.data['mode'], 'prod');
    assert.equal(Buffer.from(cm.binaryData['app.env'] ?? '', 'base64').toString('utf8'), 'MODE=prod\nDB_PASSWORD=********\n');
    assert.equal(Buffer.from(cm.binaryData['keystore.jks'] ?? '', 'base64').toString('utf8'), '********');
    assert.equal(cm.binaryData['plain.txt'], b64('hello'));
  });

  test('k6-15 a Secret manifest written as YAML in a ConfigMap (a document of several, a list item): its data and stringData are masked whatever their keys; other kinds are kept', async () => {
    const manifests = [
      'apiVersion: v1',
      'kind: ConfigMap',
      'metadata:',
      '  name: plain',
      'data:',
      '  db: k6-keep-configmap-value',
      '---',
      'apiVersion: v1',
      'kind: Secret',
      'metadata:',
      '  name: db',
      'data:',
      `  db: ${b64('k6-manifest-data-pass')}`,
      'stringData:',
      '  conn: k6-manifest-string-pass',
      '---',
      'apiVersion: v1',
      'kind: List',
      'items:',
      '- apiVersion: v1',
      '  data:',
      `    db: ${b64('k6-manifest-item-pass')}`,
      '  kind: Secret',
      '- kind: ConfigMap',
      '  data:',
      '    db: k6-keep-item-value',
      '',
    ].join('\n');
    stack.api.put('configmaps', { metadata: { name: 'app-manifests', namespace: 'default' }, data: { 'manifests.yaml': manifests } });
    const control = await request(straight, 'GET', '/api/v1/namespaces/default/configmaps/app-manifests');
    assert.ok(control.text.includes('k6-manifest-string-pass') && control.text.includes(b64('k6-manifest-data-pass')));
    const r = await stack.kubectl(['get', 'configmap', 'app-manifests', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    noneOf(r.stdout, ['k6-manifest-data-pass', 'k6-manifest-string-pass', 'k6-manifest-item-pass'], 'app-manifests');
    const text = (JSON.parse(r.stdout) as { data: Record<string, string> }).data['manifests.yaml'] ?? '';
    assert.match(text, /^ {2}db: k6-keep-configmap-value$/m);
    assert.match(text, /^ {4}db: k6-keep-item-value$/m);
  });

  test('k6-13 kubectl apply --dry-run=server -o yaml and kubectl diff of a Secret manifest: refused before the API server (a masked session may not patch Secrets), nothing echoed', async () => {
    const file = join(stack.tmp.path, 'secret.yaml');
    await writeFile(file, 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: default\nstringData:\n  username: app\n');
    for (const args of [
      ['apply', '--validate=false', '--dry-run=server', '-o', 'yaml', '-f', file],
      ['diff', '-f', file],
      ['apply', '--validate=false', '--server-side', '--dry-run=server', '-o', 'yaml', '-f', file],
    ]) {
      const from = stack.api.requests.length;
      const r = await stack.kubectl(args);
      assert.notEqual(r.code, 0, `${args.join(' ')}: ${r.stdout}`);
      assert.match(r.stderr, /may not update or patch Secrets/, `${args.join(' ')}: ${r.stderr}`);
      noneOf(r.stdout + r.stderr, [SECRET_PASSWORD], args.join(' '));
      assert.deepEqual(seenSince(from).filter((q) => q.method !== 'GET'), [], `${args.join(' ')} reached the API server`);
    }
  });
});
