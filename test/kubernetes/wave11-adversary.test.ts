/**
 * Wave 11 red team, Kubernetes (ids k11-NN): a Secret's value echoed by the cluster in an
 * escaped form. Known values (known-secrets.ts) were matched as they are and as the base64
 * a Secret's `data` holds; the cluster and the programs in it seldom echo a value as it is
 * when it holds a quote, a backslash or `&<>`:
 * - the kubelet and the container runtime quote it Go-style (`%q`): a container whose
 *   command is `$(DB_PASSWORD)` (env from the Secret, which the kubelet expands) fails with
 *   `exec: "pa\"ss…": executable file not found`, in an Event's message and in the pod's
 *   `status.containerStatuses[].state.waiting.message`. An agent that may create pods in its
 *   own namespace but not read its Secrets writes exactly that pod.
 * - a structured logger writes it as a JSON string, and Go's encoding/json escapes `&<>` as
 *   `\u0026 \u003c \u003e`: a log line, or a JSON file kept in a ConfigMap.
 * - a client puts it in a URL, percent-encoded: an access log, a proxied error page.
 * - a tool prints it as hex.
 * Through agentgate the known value was not found in any of these, so it went out in the
 * clear, while the same value plain was masked (k8-03).
 *
 * - a log line holding an escape inside a key's BEGIN marker (a coloured match) had the
 *   marker masked alone and the key's body relayed (the scanner is SSH's, see SSH wave 8).
 * k11-03 is a must-hold check (it passed before the fix: a JSON file is read as JSON).
 *
 * Each case has a control: the identity whose policy has masking off sees the escaped value
 * (and the Secret). Plain text around the values is kept; a short Secret value masks nothing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startK8sStack, TARGET, type Connection, type K8sStack } from './stack.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';

/** A password with a quote, a backslash and `&<>`: of no shape a detector knows. */
const VALUE = 'Wv7"q&<z>\\9pK-k11';
/** Go's %q (strconv.Quote) of it, without the quotes: `"` and `\` escaped. */
const GO_QUOTED = JSON.stringify(VALUE).slice(1, -1);
/** Go's encoding/json of it (HTML escaping on, the default): `&<>` as \u escapes too. */
const GO_JSON = GO_QUOTED.replace(/&/g, '\\u0026').replace(/</g, '\\u003c').replace(/>/g, '\\u003e');
const URL_FORM = encodeURIComponent(VALUE);
const HEX = Buffer.from(VALUE, 'utf8').toString('hex');
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

const RUNTIME_ERROR = `failed to create containerd task: failed to start shim: exec: "${GO_QUOTED}": executable file not found in $PATH: unknown`;
const EVENT_MESSAGE = `Error: ${RUNTIME_ERROR}`;
const LOG_LINES = [`{"level":"info","msg":"connecting to db with ${GO_JSON}","attempt":1}\n`, `10.0.0.7 - - "GET /login?next=%2Fhome&pw=${URL_FORM} HTTP/1.1" 401\n`, `debug: credential bytes ${HEX}\n`];
/** A key's body, nothing a detector knows without its BEGIN line; a log that prints it with the BEGIN line coloured (grep --color, a colouring logger). */
const KEY_BODY = ['MIIEowIBAAKCAQEAk11ColourBody1Line0123456789abcdefghijklmnopqrstu', 'Zk8w4v3Body2Line0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkl', 'Zm9vYmFyLastLine3x=='];
const COLOURED_KEY = `loading key\n-----BEGIN RSA \x1b[01;31m\x1b[KPRIVATE\x1b[m\x1b[K KEY-----\n${KEY_BODY.join('\n')}\n-----END RSA PRIVATE KEY-----\nready\n`;
const CONFIG_FILE = `{"upstream":{"url":"https://db.internal","note":"${GO_JSON}"}}`;

const policy = (rules: PolicyConfig['rules']): PolicyConfig => ({ name: 'agents-k8s', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules });
const POLICIES: PolicyConfig[] = [
  policy([
    // The agent never reads a Secret: every echo below is the only way the value comes to it.
    { name: 'no-secrets', k8s: { resources: ['secrets'] }, effect: 'deny', extra: {} },
    { name: 'read', k8s: { verbs: ['get', 'list', 'watch'] }, effect: 'allow', extra: {} },
    { name: 'rest', effect: 'deny', extra: {} },
  ]),
  { name: 'unmasked', subjects: { groups: ['breakglass'] }, targets: [TARGET], masking: { mode: 'off' }, rules: [{ name: 'all-unmasked', effect: 'allow', extra: {} }] },
];

describe('wave 11: a Secret value echoed escaped (Go-quoted, JSON, percent-encoded, hex) is still the Secret', () => {
  let stack: K8sStack;
  let glass: Connection;

  before(async () => {
    stack = await startK8sStack({ policies: POLICIES });
    glass = await stack.connectAs('oncall-1', ['breakglass']);
    stack.api.put('namespaces', { metadata: { name: 'sandbox' } });
    stack.api.put('secrets', { metadata: { name: 'db', namespace: 'sandbox' }, type: 'Opaque', data: { password: b64(VALUE), user: b64('app') } });
    // The agent's pod: its command is the Secret's value, which the kubelet expands and the runtime cannot run.
    stack.api.put('pods', {
      metadata: { name: 'probe', namespace: 'sandbox' },
      spec: { containers: [{ name: 'app', image: 'busybox:1.36', command: ['$(DB_PASSWORD)'], env: [{ name: 'DB_PASSWORD', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } }] }] },
      status: { phase: 'Pending', containerStatuses: [{ name: 'app', ready: false, restartCount: 2, image: 'busybox:1.36', state: { waiting: { reason: 'CreateContainerError', message: RUNTIME_ERROR } } }] },
    });
    stack.api.put('events', { metadata: { name: 'probe.17a', namespace: 'sandbox' }, involvedObject: { kind: 'Pod', name: 'probe', namespace: 'sandbox' }, reason: 'Failed', type: 'Warning', message: EVENT_MESSAGE });
    stack.api.put('pods', { metadata: { name: 'web', namespace: 'sandbox' }, spec: { containers: [{ name: 'web', image: 'web:1' }] } });
    stack.api.setLog('sandbox', 'web', ['starting\n', ...LOG_LINES, 'ready\n']);
    stack.api.put('pods', { metadata: { name: 'keys', namespace: 'sandbox' }, spec: { containers: [{ name: 'keys', image: 'keys:1' }] } });
    stack.api.setLog('sandbox', 'keys', [COLOURED_KEY]);
    stack.api.put('configmaps', { metadata: { name: 'web-config', namespace: 'sandbox' }, data: { 'settings.json': CONFIG_FILE } });
  });
  after(async () => {
    await stack?.close();
  });

  const reads = (kubeconfig?: string): Promise<string> => {
    const o = kubeconfig !== undefined ? { kubeconfig } : {};
    return Promise.all([
      stack.kubectl(['-n', 'sandbox', 'get', 'events', '-o', 'json'], o),
      stack.kubectl(['-n', 'sandbox', 'get', 'events'], o),
      stack.kubectl(['-n', 'sandbox', 'get', 'pod', 'probe', '-o', 'json'], o),
      stack.kubectl(['-n', 'sandbox', 'describe', 'pod', 'probe'], o),
      stack.kubectl(['-n', 'sandbox', 'logs', 'web'], o),
      stack.kubectl(['-n', 'sandbox', 'get', 'configmap', 'web-config', '-o', 'json'], o),
    ]).then((outs) => {
      for (const r of outs) assert.equal(r.code, 0, r.stderr);
      return outs.map((r) => r.stdout).join('\n');
    });
  };

  test('k11-00 CONTROL: with masking off every escaped echo of the Secret is there; the Secret holds the value', async () => {
    const secret = await stack.kubectl(['-n', 'sandbox', 'get', 'secret', 'db', '-o', 'jsonpath={.data.password}'], { kubeconfig: glass.kubeconfig });
    assert.equal(secret.code, 0, secret.stderr);
    assert.equal(Buffer.from(secret.stdout, 'base64').toString('utf8'), VALUE);
    const seen = await reads(glass.kubeconfig);
    for (const form of [GO_QUOTED, URL_FORM, HEX]) assert.ok(seen.includes(form), `control: ${form} in ${seen}`);
    // kubectl prints JSON as the API server's JSON reads: the log and the ConfigMap file keep Go's \u escapes.
    assert.ok(seen.includes(GO_JSON), `control: ${GO_JSON}`);
  });

  test('k11-01 the runtime error quoting the expanded command (Go %q): the Event message and the pod status mask the value', async () => {
    const outs = await Promise.all([
      stack.kubectl(['-n', 'sandbox', 'get', 'events', '-o', 'json']),
      stack.kubectl(['-n', 'sandbox', 'get', 'events']),
      stack.kubectl(['-n', 'sandbox', 'get', 'pod', 'probe', '-o', 'json']),
      stack.kubectl(['-n', 'sandbox', 'describe', 'pod', 'probe']),
    ]);
    for (const r of outs) assert.equal(r.code, 0, r.stderr);
    const seen = outs.map((r) => r.stdout).join('\n');
    assert.ok(!seen.includes(GO_QUOTED), `the Go-quoted value in the clear: ${seen}`);
    assert.ok(!seen.includes(JSON.stringify(GO_QUOTED).slice(1, -1)), 'the Go-quoted value as JSON in the clear');
    assert.ok(seen.includes('executable file not found in $PATH'), seen);
    assert.ok(seen.includes('CreateContainerError'), seen);
  });

  test('k11-02 a structured log line (Go JSON, \\u0026 for &), an access log (percent-encoded), a hex dump: masked in the log stream', async () => {
    const r = await stack.kubectl(['-n', 'sandbox', 'logs', 'web']);
    assert.equal(r.code, 0, r.stderr);
    for (const form of [GO_JSON, URL_FORM, HEX]) assert.ok(!r.stdout.includes(form), `${form} in the clear: ${r.stdout}`);
    assert.match(r.stdout, /^starting\n\{"level":"info","msg":"connecting to db with .*","attempt":1\}\n10\.0\.0\.7 - - "GET \/login\?next=%2Fhome&pw=.* HTTP\/1\.1" 401\ndebug: credential bytes .*\nready\n$/);
  });

  test('k11-03 must hold: a JSON file in a ConfigMap holding the value as Go JSON writes it: masked, the rest of the file kept', async () => {
    const r = await stack.kubectl(['-n', 'sandbox', 'get', 'configmap', 'web-config', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(GO_JSON) && !r.stdout.includes(JSON.stringify(GO_JSON).slice(1, -1)), r.stdout);
    assert.ok(r.stdout.includes('https://db.internal'), r.stdout);
  });

  test('k11-05 a log printing a key with its BEGIN line coloured (an escape inside the marker): the key body is masked, the lines around it kept', async () => {
    const glassLog = await stack.kubectl(['-n', 'sandbox', 'logs', 'keys'], { kubeconfig: glass.kubeconfig });
    assert.equal(glassLog.stdout, COLOURED_KEY, 'control: the log holds the key');
    const r = await stack.kubectl(['-n', 'sandbox', 'logs', 'keys']);
    assert.equal(r.code, 0, r.stderr);
    for (const line of KEY_BODY) assert.ok(!r.stdout.includes(line), `the key body in the clear: ${JSON.stringify(r.stdout)}`);
    assert.ok(r.stdout.startsWith('loading key\n') && r.stdout.endsWith('ready\n'), r.stdout);
  });

  test('k11-04 what the agent reads is usable: pods, events and logs without a Secret value pass as they are', async () => {
    const pods = await stack.kubectl(['-n', 'sandbox', 'get', 'pods']);
    assert.equal(pods.code, 0, pods.stderr);
    assert.match(pods.stdout, /probe/);
    assert.match(pods.stdout, /web/);
    const all = await reads();
    assert.ok(all.includes('starting\n') && all.includes('ready\n') && all.includes('busybox:1.36'), all);
    // A Secret value too short to be told from ordinary text (the user name `app`) masks nothing.
    assert.ok(all.includes('"name": "app"'), all);
  });
});
