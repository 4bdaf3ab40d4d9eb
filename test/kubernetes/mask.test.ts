/**
 * Masking of Kubernetes objects: Secret values always (kept valid base64), ConfigMap and
 * env values when a detector or a name pattern flags them, in every shape a response
 * takes (object, list, Table rows, watch events) and in the last-applied annotation.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { answerWithin } from '../helpers/hang-guard.js';
import { maskedKind, ObjectMasker } from '../../src/broker/kubernetes/mask.js';
import { createValueMasker } from '../../src/broker/kubernetes/value-mask.js';
import { parseRequestInfo } from '../../src/broker/kubernetes/request-info.js';
import type { MaskingConfig, PolicyConfig } from '../../src/broker/config/types.js';
import type { Identity } from '../../src/broker/identity/types.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string): string => Buffer.from(s, 'base64').toString('utf8');
const AWS = 'AKIAIOSFODNN7EXAMPLE';
const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJl';

const KEY = Buffer.alloc(32, 7);
const ID: Identity = { sub: 'a', groups: ['g'], kind: 'agent', issuer: 'x', expiresAt: 0 };
const policies = (masking?: PolicyConfig['masking']): PolicyConfig[] => [
  { name: 'p', subjects: { groups: ['g'] }, targets: ['k'], rules: [{ name: 'p#1', effect: 'allow', extra: {} }], ...(masking ? { masking } : {}) },
];

/** A masker for target `k` with this masking config (none: the defaults). */
function masker(m: Partial<MaskingConfig> | undefined = undefined, kind = 'Secret', policyMasking?: PolicyConfig['masking']): ObjectMasker {
  const masking: Record<string, MaskingConfig> = m ? { k: { columns: [], detectors: [], style: 'full', ...m } } : {};
  const vm = createValueMasker({ masking, policies: policies(policyMasking) }, ID, 'k', KEY);
  assert.ok(vm);
  return new ObjectMasker(vm, kind);
}

const secret = (): Record<string, unknown> => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'db', namespace: 'default' },
  type: 'Opaque',
  data: { password: b64('hunter2'), user: b64('app') },
  stringData: { token: 'plain-token' },
});

describe('kubernetes masking', () => {
  test('which requests are masked: object responses of secrets, configmaps, pods and pod templates', () => {
    const kind = (m: string, u: string): string | undefined => maskedKind(parseRequestInfo(m, u));
    assert.equal(kind('GET', '/api/v1/namespaces/default/secrets/db'), 'Secret');
    assert.equal(kind('GET', '/api/v1/secrets?watch=1'), 'Secret');
    assert.equal(kind('POST', '/api/v1/namespaces/default/configmaps'), 'ConfigMap');
    assert.equal(kind('GET', '/api/v1/namespaces/default/pods/web/status'), 'Pod');
    assert.equal(kind('GET', '/apis/apps/v1/namespaces/default/deployments'), 'Deployment');
    assert.equal(kind('GET', '/apis/batch/v1/namespaces/default/cronjobs/nightly'), 'CronJob');
    assert.equal(kind('GET', '/api/v1/namespaces/default/pods/web/log'), undefined);
    assert.equal(kind('GET', '/apis/apps/v1/namespaces/default/deployments/web/scale'), undefined);
    assert.equal(kind('GET', '/api/v1/namespaces/default/services'), undefined);
    assert.equal(kind('GET', '/api'), undefined);
  });

  test('every Secret value is masked, and data stays valid base64', () => {
    const doc = secret();
    const m = masker();
    m.document(doc);
    const data = doc['data'] as Record<string, string>;
    assert.equal(unb64(data['password'] as string), '********');
    assert.equal(unb64(data['user'] as string), '********');
    assert.deepEqual(doc['stringData'], { token: '********' });
    assert.equal(m.count, 3);
    assert.ok(!JSON.stringify(doc).includes(b64('hunter2')));
  });

  test('styles: null, hash and partial', () => {
    const nul = secret();
    masker({ style: 'null' }).document(nul);
    assert.deepEqual(nul['data'], { password: null, user: null });
    const hashed = secret();
    masker({ style: 'hash' }).document(hashed);
    const h = unb64((hashed['data'] as Record<string, string>)['password'] as string);
    assert.match(h, /^h:[0-9a-f]{16}$/);
    const again = secret();
    masker({ style: 'hash' }).document(again);
    assert.equal(unb64((again['data'] as Record<string, string>)['password'] as string), h, 'keyed hashes are stable');
    // A partial mask of a Secret keeps nothing; of a detected span, its last characters.
    const partialSecret = secret();
    masker({ style: 'partial' }).document(partialSecret);
    assert.equal(unb64((partialSecret['data'] as Record<string, string>)['password'] as string), '********');
    const partial = { kind: 'ConfigMap', metadata: { name: 'c' }, data: { creds: `id=${AWS}` } };
    masker({ style: 'partial', detectors: ['aws_key'] }, 'ConfigMap').document(partial);
    assert.equal(partial.data.creds, 'id=****MPLE');
  });

  test('ConfigMap values: the spans detectors find, and whole values under secret-looking or configured names', () => {
    const pem = '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----';
    const cm = {
      kind: 'ConfigMap',
      metadata: { name: 'c' },
      data: { region: 'eu-west-1', 'app.properties': `region=eu\naws.id=${AWS}\n`, DB_PASSWORD: 'short', bearer: JWT, owner: 'ops@example.com' },
      binaryData: { 'tls.pem': b64(pem), logo: b64('png') },
    };
    const m = masker(undefined, 'ConfigMap');
    m.document(cm);
    assert.deepEqual(cm.data, { region: 'eu-west-1', 'app.properties': 'region=eu\naws.id=********\n', DB_PASSWORD: '********', bearer: '********', owner: 'ops@example.com' });
    assert.equal(unb64(cm.binaryData['tls.pem']), '********');
    assert.equal(unb64(cm.binaryData.logo), 'png');
    assert.equal(m.count, 4);
    // Configured: detectors widen (email) and name patterns mask whole values.
    const cm2 = { kind: 'ConfigMap', metadata: { name: 'c' }, data: { owner: 'ops@example.com', region: 'eu-west-1' } };
    masker({ detectors: ['email'], columns: ['region'] }, 'ConfigMap').document(cm2);
    assert.deepEqual(cm2.data, { owner: '********', region: '********' });
  });

  test('container env values in pods and pod templates', () => {
    const podSpec = (): Record<string, unknown> => ({
      containers: [{ name: 'app', env: [{ name: 'AWS_KEY', value: AWS }, { name: 'MODE', value: 'prod' }, { name: 'FROM_SECRET', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } }] }],
      initContainers: [{ name: 'init', env: [{ name: 'T', value: JWT }] }],
    });
    const pod = { kind: 'Pod', metadata: { name: 'p' }, spec: podSpec() };
    const m = masker(undefined, 'Pod');
    m.document(pod);
    const env = (pod.spec['containers'] as { env: { name: string; value?: string }[] }[])[0]?.env ?? [];
    assert.deepEqual(env.map((e) => e.value), ['********', 'prod', undefined]);
    assert.equal(m.count, 2);
    const deploy = { kind: 'Deployment', metadata: { name: 'd' }, spec: { template: { spec: podSpec() } } };
    const cron = { kind: 'CronJob', metadata: { name: 'c' }, spec: { jobTemplate: { spec: { template: { spec: podSpec() } } } } };
    const dm = masker(undefined, 'Deployment');
    dm.document(deploy);
    const cm = masker(undefined, 'CronJob');
    cm.document(cron);
    assert.equal(dm.count, 2);
    assert.equal(cm.count, 2);
    assert.ok(!JSON.stringify([deploy, cron]).includes(AWS));
  });

  test('lists (items carry no kind), Tables with full objects or metadata, and watch events', () => {
    const list = { kind: 'SecretList', apiVersion: 'v1', metadata: {}, items: [{ metadata: { name: 'a' }, data: { k: b64('v1') } }, { metadata: { name: 'b' }, data: { k: b64('v2') } }] };
    const lm = masker();
    lm.document(list);
    assert.equal(lm.count, 2);
    assert.ok(!JSON.stringify(list).includes(b64('v1')));

    const lastApplied = JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'a' }, data: { k: b64('applied-secret') } });
    const table = {
      kind: 'Table',
      apiVersion: 'meta.k8s.io/v1',
      columnDefinitions: [],
      rows: [
        { cells: ['a', 'Opaque', 1, '5m'], object: { ...secret() } },
        { cells: ['b', 'Opaque', 1, '5m'], object: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: { name: 'b', annotations: { 'kubectl.kubernetes.io/last-applied-configuration': lastApplied, team: 'x' } } } },
      ],
    };
    const tm = masker();
    tm.document(table);
    const text = JSON.stringify(table);
    assert.ok(!text.includes(b64('hunter2')) && !text.includes(b64('applied-secret')));
    assert.ok(text.includes('"team":"x"'));
    assert.equal(tm.count, 4);

    const event = { type: 'MODIFIED', object: secret() };
    const em = masker();
    em.document(event);
    assert.equal(em.count, 3);
    assert.equal(event.type, 'MODIFIED');
  });

  test('an unreadable last-applied annotation is masked whole', () => {
    const s = { kind: 'Secret', metadata: { name: 'a', annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{not json password=hunter2' } } };
    masker().document(s);
    assert.equal(s.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration'], '********');
  });

  test('policy masking: off leaves values alone; extend adds detectors and keeps the stricter style', () => {
    assert.equal(createValueMasker({ masking: {}, policies: policies({ mode: 'off' }) }, ID, 'k', KEY), undefined);
    const cm = (): { kind: string; metadata: { name: string }; data: Record<string, string> } => ({ kind: 'ConfigMap', metadata: { name: 'c' }, data: { owner: 'ops@example.com' } });
    const plain = cm();
    masker({ style: 'partial' }, 'ConfigMap').document(plain);
    assert.equal(plain.data['owner'], 'ops@example.com');
    const extended = cm();
    masker({ style: 'partial' }, 'ConfigMap', { mode: 'extend', rules: { columns: [], detectors: ['email'], style: 'full' } }).document(extended);
    assert.equal(extended.data['owner'], '********');
    const s = secret();
    masker({ style: 'partial' }, 'Secret', { mode: 'extend', rules: { columns: [], detectors: [], style: 'hash' } }).document(s);
    assert.match(unb64((s['data'] as Record<string, string>)['password'] as string), /^h:/);
  });

  // These shapes made the line, flow-pair and URL patterns backtrack quadratically or worse
  // (hours at this size).
  test('adversarial ConfigMap text is masked in linear time: long blank runs, `+`-separated words, many `://`, unterminated Go-printed env vars', async () => {
    const blanks = ' '.repeat(200_000);
    const data = {
      'app.env': `region: eu${blanks}x\npassword: hunter2${blanks}\n`,
      'flow.yaml': `conf: {user: app, password: pw${blanks}x, region: ${blanks}eu}\n`,
      words: 'a+'.repeat(200_000),
      urls: `${'x://a'.repeat(50_000)} postgres://app:pw@db/app`,
    };
    // Free text swept for Go-printed env vars (a refused pod update's diff): quoted parts that never close.
    const notes = {
      'example.com/open-name': `Name: "${'a'.repeat(200_000)}`,
      'example.com/open-value': `Name: "DB_PASSWORD", Value: "${'b'.repeat(200_000)}`,
      'example.com/many': `${'Name: "x", Value: '.repeat(20_000)}{Name: "API_TOKEN", Value: "t0k"}`,
    };
    const out = await answerWithin<typeof data & { notes: typeof notes }>(
      `(async () => {
        const w = workerData;
        const { ObjectMasker } = await import(w.mask);
        const { createValueMasker } = await import(w.values);
        const cm = { kind: 'ConfigMap', metadata: { name: 'c', annotations: w.notes }, data: w.data };
        new ObjectMasker(createValueMasker({ masking: {}, policies: w.policies }, w.id, 'k', Buffer.from(w.key)), 'ConfigMap').document(cm);
        parentPort.postMessage({ ...cm.data, notes: cm.metadata.annotations });
      })();`,
      {
        mask: new URL('../../src/broker/kubernetes/mask.js', import.meta.url).href,
        values: new URL('../../src/broker/kubernetes/value-mask.js', import.meta.url).href,
        policies: policies(),
        id: ID,
        key: KEY,
        data,
        notes,
      },
    );
    assert.equal(out['app.env'], `region: eu${blanks}x\npassword: ********\n`);
    assert.ok(!out['flow.yaml'].includes('pw'), "the flow mapping's password is masked");
    assert.ok(out['flow.yaml'].includes(`region: ${blanks}eu}`), 'the other pair stays as written');
    assert.equal(out.words, data.words);
    assert.ok(out.urls.endsWith(' postgres://app:********@db/app'), out.urls.slice(-40));
    assert.equal(out.notes['example.com/open-name'], notes['example.com/open-name']);
    assert.equal(out.notes['example.com/open-value'], notes['example.com/open-value']);
    assert.ok(out.notes['example.com/many'].endsWith('{Name: "API_TOKEN", Value: "********"}'), out.notes['example.com/many'].slice(-60));
  });
});
