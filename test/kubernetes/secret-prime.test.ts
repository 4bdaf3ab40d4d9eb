/**
 * Secret values known before any session read them (kubernetes/secret-primer.ts): the broker
 * lists the Secrets of a namespace with its own credential before a masked request there is
 * forwarded, so a plain password (no shape a detector knows) echoed by an Event, a ConfigMap
 * or a log is masked for an agent whose policy does not even let it read Secrets. Real
 * kubectl, the API server stand-in, the real broker. Before, each echo went out in the clear
 * (an echo read before its Secret passed through a response was judged by detectors alone).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { startK8sStack, TARGET, type Connection, type K8sStack } from './stack.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { SecretPrimer } from '../../src/broker/kubernetes/secret-primer.js';
import { KnownSecrets } from '../../src/broker/kubernetes/known-secrets.js';
import type { K8sUpstream } from '../../src/broker/kubernetes/upstream.js';
import { silentLogger } from '../../src/broker/log.js';
import { startKubeApiServer } from '../helpers/kube-apiserver.js';
import { eventually } from '../helpers/eventually.js';

/** Plain passwords: nothing a detector recognises. */
const PLAIN = 'prime-plain-pass-5813';
const OTHER = 'other-ns-pass-9027';
/** A Secret created after the broker listed its namespace. */
const LATER = 'rotated-plain-pass-3361';
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

const POLICIES: PolicyConfig[] = [
  {
    name: 'agents-k8s',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    // Reads of everything but Secrets: the agent never sees one, masked or not.
    rules: [{ name: 'read-no-secrets', k8s: { verbs: ['get', 'list', 'watch'], resources: ['pods', 'pods/log', 'events', 'configmaps', 'namespaces'] }, effect: 'allow', extra: {} }],
  },
  { name: 'unmasked', subjects: { groups: ['breakglass'] }, targets: [TARGET], masking: { mode: 'off' }, rules: [{ name: 'all-unmasked', effect: 'allow', extra: {} }] },
];

describe('Secret values are known before a session reads them', () => {
  let stack: K8sStack;
  let breakglass: Connection;

  before(async () => {
    stack = await startK8sStack({ policies: POLICIES });
    breakglass = await stack.connectAs('oncall-1', ['breakglass']);
    stack.api.put('secrets', { metadata: { name: 'db', namespace: 'default' }, type: 'Opaque', data: { password: b64(PLAIN), user: b64('postgres') } });
    stack.api.put('secrets', { metadata: { name: 'svc', namespace: 'other' }, type: 'Opaque', data: { password: b64(OTHER) } });
    stack.api.put('pods', { metadata: { name: 'db-0', namespace: 'default' }, spec: { containers: [{ name: 'db', image: 'postgres:16' }] } });
    stack.api.setLog('default', 'db-0', ['starting\n', `retrying with ${PLAIN}\n`, 'ready\n']);
    stack.api.put('events', { metadata: { name: 'db-0.1', namespace: 'default' }, involvedObject: { kind: 'Pod', name: 'db-0', namespace: 'default' }, reason: 'Unhealthy', type: 'Warning', message: `db login rejected: ${PLAIN} is not valid` });
    stack.api.put('configmaps', { metadata: { name: 'app', namespace: 'default' }, data: { note: `fallback ${PLAIN}`, copy: b64(PLAIN) } });
    stack.api.put('configmaps', { metadata: { name: 'svc', namespace: 'other' }, data: { note: `uses ${OTHER}` } });
  });
  after(async () => {
    await stack?.close();
  });

  const reads = async (kubeconfig?: string): Promise<string> => {
    const o = kubeconfig !== undefined ? { kubeconfig } : {};
    const outs = await Promise.all([
      stack.kubectl(['logs', 'db-0'], o),
      stack.kubectl(['get', 'events', '-o', 'json'], o),
      stack.kubectl(['get', 'configmap', 'app', '-o', 'yaml'], o),
      stack.kubectl(['get', 'configmaps', '-A', '-o', 'json'], o),
    ]);
    for (const r of outs) assert.equal(r.code, 0, r.stderr);
    return outs.map((r) => r.stdout).join('\n');
  };

  test('an agent that may not read Secrets gets every echo of one masked; the unmasked identity sees them (control)', async () => {
    // The agent first: nothing has carried either Secret through the broker yet.
    const agent = await reads();
    for (const v of [PLAIN, b64(PLAIN), OTHER]) assert.equal(agent.includes(v), false, `${v} reached the agent:\n${agent}`);
    // The rest of each echo is kept, and a short value (a user name) masks nothing.
    for (const kept of ['retrying with ', 'db login rejected: ', 'fallback ', 'uses ', 'ready']) assert.ok(agent.includes(kept), `${kept} kept`);
    // The agent could not read the Secret itself.
    const denied = await stack.kubectl(['get', 'secret', 'db']);
    assert.notEqual(denied.code, 0);
    // CONTROL: the echoes are really there.
    const glass = await reads(breakglass.kubeconfig);
    for (const v of [PLAIN, b64(PLAIN), OTHER]) assert.ok(glass.includes(v), `control: ${v}`);
    // The broker listed with its own credential, leaving Helm releases out: the request across
    // namespaces listed them all, and the reads of `default` shared a listing (their own, or
    // the one across namespaces when that came first: the four kubectl run concurrently).
    const listings = stack.api.brokerRequests.filter((r) => r.method === 'GET' && /\/api\/v1\/(namespaces\/default\/)?secrets\?fieldSelector=type!%3Dhelm\.sh%2Frelease\.v1$/.test(r.url));
    const seen = JSON.stringify(stack.api.brokerRequests.filter((r) => r.url.includes('secrets')).map((r) => r.url));
    assert.equal(listings.filter((r) => r.url.startsWith('/api/v1/secrets')).length, 1, `every namespace listed once: ${seen}`);
    assert.ok(listings.filter((r) => r.url.startsWith('/api/v1/namespaces/default/secrets')).length <= 1, `default listed at most once: ${seen}`);
    assert.equal(stack.api.brokerRequests.filter((r) => r.method === 'GET' && r.url.includes('secrets') && !r.url.includes('&watch=1&')).length, listings.length, `no other listing: ${seen}`);
  });

  test('a Secret created after the listing is learnt from the watch: its echo, read at once, is masked with no new listing', async () => {
    const listed = (): number => stack.api.brokerRequests.filter((r) => r.method === 'GET' && /\/secrets\?fieldSelector=[^&]*$/.test(r.url)).length;
    const before = listed();
    await eventually('the broker to watch Secrets', () => stack.api.watchers('secrets') >= 1);
    const watched = stack.api.brokerRequests.filter((r) => /\/api\/v1\/(namespaces\/default\/)?secrets\?fieldSelector=type!%3Dhelm\.sh%2Frelease\.v1&watch=1&allowWatchBookmarks=true&timeoutSeconds=60&resourceVersion=\d+$/.test(r.url));
    assert.ok(watched.length >= 1, 'watched from the listing\'s resourceVersion, Helm releases left out');
    // A rotation the agent never sees: the new password goes straight into a ConfigMap.
    stack.api.put('secrets', { metadata: { name: 'rotated', namespace: 'default' }, type: 'Opaque', data: { password: b64(LATER) } });
    stack.api.put('configmaps', { metadata: { name: 'rotated-note', namespace: 'default' }, data: { note: `now ${LATER}` } });
    const agent = await stack.kubectl(['get', 'configmap', 'rotated-note', '-o', 'yaml']);
    assert.equal(agent.code, 0, agent.stderr);
    assert.equal(agent.stdout.includes(LATER), false, `${LATER} reached the agent:\n${agent.stdout}`);
    assert.ok(agent.stdout.includes('note: now '), agent.stdout);
    // CONTROL: the echo is there.
    const glass = await stack.kubectl(['get', 'configmap', 'rotated-note', '-o', 'yaml'], { kubeconfig: breakglass.kubeconfig });
    assert.ok(glass.stdout.includes(LATER), 'control: the echo is there');
    assert.equal(listed(), before, 'learnt without listing again');
  });
});

test('a broker that may not list Secrets goes on (detectors only) and says so once per period', async () => {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits++;
    res.writeHead(403, { 'content-type': 'application/json' }).end('{"kind":"Status","code":403}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const pool = new Pool(origin);
  const warnings: string[] = [];
  const logger = { ...silentLogger, warn: (msg: string) => warnings.push(msg), child: () => logger };
  try {
    const known = new KnownSecrets();
    const primer = new SecretPrimer(known, logger);
    const up = { target: { name: 't' }, basePath: '', pool, authorization: undefined } as unknown as K8sUpstream;
    await primer.prime(up, 'default');
    await primer.prime(up, 'default');
    assert.equal(hits, 1, 'listed once in the period');
    assert.equal(known.size, 0);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /may not list Secrets/);
  } finally {
    await pool.close();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('the watch is resumed from the last version it saw: a Secret created while it was down is still learnt, with one listing', async () => {
  const api = await startKubeApiServer();
  const pool = new Pool(api.url, { connect: { ca: api.caPem } });
  let clock = 1_000_000;
  const known = new KnownSecrets();
  const primer = new SecretPrimer(known, silentLogger, () => clock);
  const up = { target: { name: 't' }, basePath: '', pool, authorization: `Bearer ${api.token}` } as unknown as K8sUpstream;
  const knows = (v: string): boolean => known.replaceIn(`x ${v} x`, () => '*') !== undefined;
  try {
    api.put('secrets', { metadata: { name: 'a', namespace: 'default' }, type: 'Opaque', data: { password: b64('first-pass-1111') } });
    await primer.prime(up, 'default');
    assert.ok(knows('first-pass-1111'), 'listed');
    await eventually('the watch to open', () => api.watchers('secrets') === 1);
    api.put('secrets', { metadata: { name: 'b', namespace: 'default' }, type: 'Opaque', data: { password: b64('second-pass-2222') } });
    await eventually('the watch to announce b', () => knows('second-pass-2222'));
    // Another namespace is not covered by this watch.
    api.put('secrets', { metadata: { name: 'x', namespace: 'other' }, type: 'Opaque', data: { password: b64('other-pass-9999') } });
    // The server ends the watch; a Secret is created before the broker watches again.
    clock += 5_000;
    const ended = api.watchesEnded;
    api.endWatches();
    await eventually('the first watch to end', () => api.watchesEnded > ended);
    api.put('secrets', { metadata: { name: 'c', namespace: 'default' }, type: 'Opaque', data: { password: b64('third-pass-3333') } });
    await eventually('the resumed watch to replay c', () => knows('third-pass-3333'));
    assert.equal(knows('other-pass-9999'), false, 'another namespace is not learnt by this watch');
    // Long after the period, the open watch keeps the namespace current: no new listing.
    clock += 10 * 30_000;
    await primer.prime(up, 'default');
    const listings = api.brokerRequests.filter((r) => r.method === 'GET' && /secrets\?fieldSelector=[^&]*$/.test(r.url));
    assert.equal(listings.length, 1, 'one listing');
    const resumed = api.brokerRequests.filter((r) => /&watch=1&/.test(r.url));
    assert.equal(resumed.length, 2, 'watched, then resumed (no listing)');
    assert.notEqual(resumed[0]?.url, resumed[1]?.url, 'resumed from a later version');
    assert.equal(primer.watching, 1);

    // 1,001 other changes while no Secret changes (the watch's version stays behind), then
    // the server ends the watch: its version is older than the server keeps, so the resume
    // is answered 410. The next masked request lists again at once (no period to wait out),
    // learning what changed meanwhile.
    clock += 5_000;
    for (let i = 0; i < 1_001; i++) api.put('configmaps', { metadata: { name: `churn-${i}`, namespace: 'other' }, data: {} });
    api.endWatches();
    await eventually('the expired watch to stop', () => primer.watching === 0);
    api.put('secrets', { metadata: { name: 'd', namespace: 'default' }, type: 'Opaque', data: { password: b64('fourth-pass-4444') } });
    assert.equal(knows('fourth-pass-4444'), false, 'no watch announced it');
    await primer.prime(up, 'default');
    assert.ok(knows('fourth-pass-4444'), 'listed again at once');
    assert.equal(api.brokerRequests.filter((r) => r.method === 'GET' && /secrets\?fieldSelector=[^&]*$/.test(r.url)).length, 2, 'a second listing');
    await eventually('a new watch', () => primer.watching === 1);
  } finally {
    primer.close();
    await pool.close().catch(() => {});
    await api.close();
  }
  assert.equal(primer.watching, 0);
});
