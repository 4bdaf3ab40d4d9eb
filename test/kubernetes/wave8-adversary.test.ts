/**
 * Wave 8 red team, Kubernetes (ids k8-NN): a read-only identity that may read pod logs
 * asks the API server to cut them where it likes. The kubelet's `tailLines` (and
 * `sinceTime`, `sinceSeconds`) start a log at a line of the client's choosing, `limitBytes`
 * ends it at a byte of the client's choosing: a value cut there has lost the shape a
 * detector knows (a PEM key's BEGIN line, a GitHub token's full length), so a scanner that
 * judges the cut text as if it were whole lets the piece through.
 *
 * And a Secret value of no shape a detector knows is echoed by the cluster where no masker
 * reads it as a Secret's (an Event's message, a ConfigMap, a log line): masked by provenance
 * once a response has carried the Secret.
 *
 * Each leak case has a control: the same request straight to the stand-in (no agentgate)
 * or as an identity whose policy has masking off shows the piece in the clear.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rawRequest as request, startK8sStack, TARGET, type Connection, type K8sStack } from './stack.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';

/** A value the credential detectors find whole (a GitHub token's shape: ghp_ and 36). */
const GH_TOKEN = 'ghp_k8R4nd0mT0k3nV4lu3ABCDEFGHIJKLMNOPQR';
/** The first 24 characters after ghp_: too short for the detector, most of the token. */
const GH_PIECE = GH_TOKEN.slice(0, 28);
/** A PEM key's body lines: base64, nothing a detector knows without the BEGIN line. */
const KEY_BODY = ['MIIEowIBAAKCAQEAk8r3nd0mK3yB0dyL1n3One0123456789abcdefghijklmnop', 'Zk8w4v3Body2Line0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkl', 'Zm9vYmFyLastLine3x=='];
const PEM = `-----BEGIN RSA PRIVATE KEY-----\n${KEY_BODY.join('\n')}\n-----END RSA PRIVATE KEY-----\n`;
/** The log: the token on its own line after a first one; the key block; a last line. */
const TOKEN_LINE = `using token ${GH_TOKEN}\n`;
const LOG = `starting\n${TOKEN_LINE}loading key\n${PEM}ready\n`;
/** limitBytes that ends the log inside the token, 24 characters after its ghp_. */
const CUT_IN_TOKEN = `starting\nusing token ${GH_PIECE}`.length;

/** A Secret value of no shape a detector knows (a plain password), and what echoes it. */
const PLAIN = 'k8-plain-pass-4471';
const ECHOES = {
  event: `db login rejected: ${PLAIN} is not valid for user app`,
  note: `fallback credentials ${PLAIN}`,
  log: `retrying with ${PLAIN}\n`,
};
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

const policy = (rules: PolicyConfig['rules']): PolicyConfig => ({ name: 'agents-k8s', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules });
const POLICIES: PolicyConfig[] = [
  policy([
    { name: 'read', k8s: { verbs: ['get', 'list', 'watch'] }, effect: 'allow', extra: {} },
    // A scratch namespace's ConfigMaps, every verb: a rule naming no verbs.
    { name: 'sandbox-cms', k8s: { resources: ['configmaps'], namespaces: ['sandbox'] }, effect: 'allow', extra: {} },
    { name: 'rest', effect: 'deny', extra: {} },
  ]),
  { name: 'unmasked', subjects: { groups: ['breakglass'] }, targets: [TARGET], masking: { mode: 'off' }, rules: [{ name: 'all-unmasked', effect: 'allow', extra: {} }] },
];

describe('wave 8: logs cut where the client asks, Secret values echoed elsewhere', () => {
  let stack: K8sStack;
  let breakglass: Connection;
  let via: { port: number; ca: string; token: string };
  let straight: { port: number; ca: string; token: string };
  const logPath = (query: string): string => `/api/v1/namespaces/default/pods/web/log?${query}`;

  before(async () => {
    stack = await startK8sStack({ policies: POLICIES });
    breakglass = await stack.connectAs('oncall-1', ['breakglass']);
    stack.api.put('pods', { metadata: { name: 'web', namespace: 'default' }, spec: { containers: [{ name: 'web', image: 'web:1' }] } });
    stack.api.setLog('default', 'web', [LOG]);
    stack.api.put('secrets', { metadata: { name: 'db', namespace: 'default' }, type: 'Opaque', data: { password: b64(PLAIN), user: b64('postgres') } });
    stack.api.put('pods', { metadata: { name: 'db-0', namespace: 'default' }, spec: { containers: [{ name: 'db', image: 'postgres:16' }] } });
    stack.api.put('events', { metadata: { name: 'db-0.1', namespace: 'default', annotations: { 'example.com/last-attempt': b64(PLAIN) } }, involvedObject: { kind: 'Pod', name: 'db-0', namespace: 'default' }, reason: 'Unhealthy', type: 'Warning', message: ECHOES.event });
    stack.api.put('configmaps', { metadata: { name: 'app', namespace: 'default' }, data: { note: ECHOES.note } });
    stack.api.setLog('default', 'db-0', ['starting\n', ECHOES.log, 'ready\n']);
    via = { port: stack.main.port, ca: stack.main.endpoint.caPem, token: stack.main.session.secret };
    straight = { port: Number(new URL(stack.api.url).port), ca: stack.api.caPem, token: stack.api.token };
  });
  after(async () => {
    await stack?.close();
  });

  test('k8-00 CONTROL: straight to the API server, limitBytes ends the log inside the token and tailLines starts it inside the key, both in the clear', async () => {
    const cutEnd = await request(straight, 'GET', logPath(`limitBytes=${CUT_IN_TOKEN}`));
    assert.equal(cutEnd.text, `starting\nusing token ${GH_PIECE}`);
    const cutStart = await request(straight, 'GET', logPath('tailLines=4'));
    assert.equal(cutStart.text, `${KEY_BODY.slice(1).join('\n')}\n-----END RSA PRIVATE KEY-----\nready\n`);
    // Through agentgate, the whole log is masked as it should be: the detectors know both whole.
    const whole = await request(via, 'GET', logPath(''));
    assert.equal(whole.status, 200);
    assert.ok(!whole.text.includes(GH_PIECE) && !KEY_BODY.some((l) => whole.text.includes(l)), whole.text);
    assert.match(whole.text, /^starting\nusing token \S+\nloading key\n\S+/);
    // An identity whose policy has masking off gets the cut pieces as they are (no false masking of its own).
    const glass = await stack.kubectl(['logs', 'web', '--limit-bytes', String(CUT_IN_TOKEN)], { kubeconfig: breakglass.kubeconfig });
    assert.equal(glass.stdout, `starting\nusing token ${GH_PIECE}`, glass.stderr);
  });

  test('k8-01 limitBytes ending inside a token: the cut last line goes out masked whole, the lines before it as they are', async () => {
    for (const n of [CUT_IN_TOKEN, CUT_IN_TOKEN - 6, CUT_IN_TOKEN + 9]) {
      const r = await request(via, 'GET', logPath(`limitBytes=${n}`));
      assert.equal(r.status, 200);
      assert.ok(!r.text.includes(GH_TOKEN.slice(0, n - 'starting\nusing token '.length)), `limitBytes=${n}: ${r.text}`);
      assert.ok(r.text.startsWith('starting\n'), r.text);
      assert.ok(!r.text.includes('ghp_'), r.text);
    }
    const k = await stack.kubectl(['logs', 'web', '--limit-bytes', String(CUT_IN_TOKEN)]);
    assert.equal(k.code, 0, k.stderr);
    assert.ok(k.stdout.startsWith('starting\n') && !k.stdout.includes('ghp_k8'), k.stdout);
  });

  test('k8-02 tailLines starting inside a PEM key: the body lines before its END are masked whole with it, the lines after it kept', async () => {
    for (const n of [2, 3, 4, 5]) {
      const r = await request(via, 'GET', logPath(`tailLines=${n}`));
      assert.equal(r.status, 200);
      assert.ok(!KEY_BODY.some((l) => r.text.includes(l)), `tailLines=${n}: ${r.text}`);
      assert.ok(r.text.endsWith('\nready\n'), r.text);
    }
    const k = await stack.kubectl(['logs', 'web', '--tail', '3']);
    assert.equal(k.code, 0, k.stderr);
    assert.ok(!KEY_BODY.some((l) => k.stdout.includes(l)) && k.stdout.endsWith('\nready\n'), k.stdout);
    // Lines that look like a key's body but are followed by no END line are ordinary text.
    stack.api.setLog('default', 'web', [`Zm9v\nYmFy\nstarted in 3s\n${KEY_BODY[0]}\n${KEY_BODY[1]}\ndone\n`]);
    try {
      const plain = await request(via, 'GET', logPath('tailLines=3'));
      assert.equal(plain.text, `${KEY_BODY[0]}\n${KEY_BODY[1]}\ndone\n`);
      const start = await request(via, 'GET', logPath('tailLines=6'));
      assert.equal(start.text, `Zm9v\nYmFy\nstarted in 3s\n${KEY_BODY[0]}\n${KEY_BODY[1]}\ndone\n`);
    } finally {
      stack.api.setLog('default', 'web', [LOG]);
    }
  });

  test('k8-03 a Secret value of no known shape echoed elsewhere (an Event message, an annotation in base64, a ConfigMap, a log line, a Table cell, a watch) is masked once a response carried the Secret', async () => {
    const everywhere = async (kubeconfig?: string): Promise<string> => {
      const o = kubeconfig !== undefined ? { kubeconfig } : {};
      const outs = await Promise.all([
        stack.kubectl(['get', 'events', '-o', 'json'], o),
        stack.kubectl(['get', 'events'], o),
        stack.kubectl(['get', 'configmap', 'app', '-o', 'yaml'], o),
        stack.kubectl(['logs', 'db-0'], o),
        stack.kubectl(['get', 'pod', 'db-0', '-o', 'json'], o),
      ]);
      for (const r of outs) assert.equal(r.code, 0, r.stderr);
      return outs.map((r) => r.stdout).join('\n');
    };
    // CONTROL: the identity with masking off reads the Secret and then sees every echo.
    const secretGlass = await stack.kubectl(['get', 'secret', 'db', '-o', 'yaml'], { kubeconfig: breakglass.kubeconfig });
    assert.ok(secretGlass.stdout.includes(b64(PLAIN)), secretGlass.stdout);
    const glass = await everywhere(breakglass.kubeconfig);
    for (const echo of [ECHOES.event, ECHOES.note, ECHOES.log, b64(PLAIN)]) assert.ok(glass.includes(echo.trim()), `control: ${echo}`);

    // The agent reads the Secret (masked), then everything that echoes it.
    const secret = await stack.kubectl(['get', 'secret', 'db', '-o', 'yaml']);
    assert.equal(secret.code, 0, secret.stderr);
    assert.ok(!secret.stdout.includes(b64(PLAIN)), secret.stdout);
    const seen = await everywhere();
    assert.ok(!seen.includes(PLAIN) && !seen.includes(b64(PLAIN)), seen);
    // The rest of each echo is kept, and a short Secret value (a user name) masks nothing elsewhere.
    assert.ok(seen.includes('db login rejected: ') && seen.includes('fallback credentials ') && seen.includes('retrying with '), seen);
    assert.ok(seen.includes('postgres:16'), seen);
    const watch = await request(via, 'GET', '/api/v1/namespaces/default/events?watch=1', {}, 1_000);
    assert.ok(watch.text.includes('db login rejected') && !watch.text.includes(PLAIN), watch.text);
  });

  test('k8-04 a method the API server maps to no verb (OPTIONS, PROPFIND, TRACE, MKCOL) is refused with 405 before the API server, even where a rule naming no verbs matches', async () => {
    const path = '/api/v1/namespaces/sandbox/configmaps/scratch';
    // CONTROL: the rule matches this path (a GET reaches the API server), and the API server takes any method.
    const forwarded = (from: number): typeof stack.api.requests => stack.forwarded(from);
    let from = stack.api.requests.length;
    const get = await request(via, 'GET', path);
    assert.equal(get.status, 404, get.text);
    assert.deepEqual(forwarded(from).map((r) => r.method), ['GET']);
    const direct = await request(straight, 'PROPFIND', path);
    assert.notEqual(direct.status, 0);
    for (const method of ['OPTIONS', 'PROPFIND', 'TRACE', 'MKCOL']) {
      from = stack.api.requests.length;
      const r = await request(via, method, path);
      assert.equal(r.status, 405, `${method}: ${r.status} ${r.text}`);
      const status = JSON.parse(r.text) as { kind: string; reason: string; message: string };
      assert.equal(status.kind, 'Status');
      assert.equal(status.reason, 'MethodNotAllowed');
      assert.match(status.message, new RegExp(`method ${method} is not one the Kubernetes API maps to a verb`));
      assert.deepEqual(forwarded(from), [], `${method} reached the API server`);
    }
  });
});
