/**
 * Wave 10 red team, Kubernetes (ids k10-NN).
 *
 * - The values the broker learns from Secrets (known-secrets.ts, filled by the Secret watch
 *   of secret-primer.ts and by every response that carries a Secret) were kept up to 4096,
 *   the oldest forgotten first. An agent allowed to create Secrets in its own namespace
 *   wrote one with thousands of keys: the watch announced it, its junk values pushed the
 *   database password out, and the password's echo in a ConfigMap went out in the clear.
 *   Now nothing is forgotten silently: the store holds far more, and a target whose store
 *   is full refuses masked requests (it can no longer say what to mask).
 *
 * - The Secret watch was capped at 64 namespaces per target; past the cap a namespace was
 *   listed once per 30 s. The agent's own reads in 64 namespaces of its choosing (they need
 *   not exist) took every watch; a password rotated in `default` a moment after its listing
 *   was then unknown for the period, and its echo went out in the clear. Now a listing with
 *   no watch is not reused: the next masked request lists again.
 *
 * Real kubectl, the API server stand-in, the real broker. Each case has a control: the same
 * read by an identity whose policy has masking off.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { eventually, startK8sStack, TARGET, type Connection, type K8sStack } from './stack.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';

/** A plain password: nothing a detector recognises, known only because a Secret holds it. */
const PLAIN = 'k10-plain-db-pass-7731';
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

const POLICIES: PolicyConfig[] = [
  {
    name: 'agents-k8s',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'reads', k8s: { verbs: ['get', 'list', 'watch'], resources: ['configmaps', 'pods', 'events'] }, effect: 'allow', extra: {} },
      // Its own scratch namespace: it may make (plain) Secrets there.
      { name: 'sandbox-secrets', k8s: { verbs: ['create'], resources: ['secrets'], namespaces: ['sandbox'] }, effect: 'allow', extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
  { name: 'unmasked', subjects: { groups: ['breakglass'] }, targets: [TARGET], masking: { mode: 'off' }, rules: [{ name: 'all-unmasked', effect: 'allow', extra: {} }] },
];

/** A Secret manifest of `n` distinct values of the kind the broker keeps (8+ characters, two kinds). */
function floodSecret(name: string, n: number): string {
  const data: Record<string, string> = {};
  for (let i = 0; i < n; i++) data[`k${i}`] = b64(`flood-${name}-${i}-x`);
  return JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'sandbox' }, type: 'Opaque', data });
}

describe('wave 10: the Secret values the broker learnt', () => {
  let stack: K8sStack;
  let glass: Connection;

  before(async () => {
    stack = await startK8sStack({ policies: POLICIES });
    glass = await stack.connectAs('oncall-1', ['breakglass']);
    stack.api.put('namespaces', { metadata: { name: 'sandbox' } });
    stack.api.put('secrets', { metadata: { name: 'db', namespace: 'default' }, type: 'Opaque', data: { password: b64(PLAIN) } });
    stack.api.put('configmaps', { metadata: { name: 'app', namespace: 'default' }, data: { note: `fallback ${PLAIN}` } });
  });
  after(async () => {
    await stack?.close();
  });

  const readEcho = () => stack.kubectl(['get', 'configmap', 'app', '-n', 'default', '-o', 'yaml']);
  const flood = async (name: string, n: number): Promise<void> => {
    const file = join(stack.tmp.path, `${name}.json`);
    await writeFile(file, floodSecret(name, n));
    const made = await stack.kubectl(['create', '--validate=false', '-f', file], { timeoutMs: 60_000 });
    assert.equal(made.code, 0, `the agent may create Secrets in sandbox: ${made.stderr}`);
    assert.ok(stack.api.get('secrets', 'sandbox', name), 'created');
  };

  test('k10-00 CONTROL: the echo is masked for the agent before any flood; the unmasked identity sees it', async () => {
    const agent = await readEcho();
    assert.equal(agent.code, 0, agent.stderr);
    assert.equal(agent.stdout.includes(PLAIN), false, agent.stdout);
    assert.ok(agent.stdout.includes('note: fallback '), agent.stdout);
    const seen = await stack.kubectl(['get', 'configmap', 'app', '-n', 'default', '-o', 'yaml'], { kubeconfig: glass.kubeconfig });
    assert.ok(seen.stdout.includes(PLAIN), 'control: the echo is there');
  });

  test('k10-01 a Secret of 3000 junk values the agent creates in its own namespace does not push the password out: its echo stays masked', async () => {
    await flood('junk-a', 3000);
    // The create's own answer carried the Secret through the broker: its values are learnt by now.
    const agent = await readEcho();
    assert.equal(agent.code, 0, agent.stderr);
    assert.equal(agent.stdout.includes(PLAIN), false, `the password reached the agent after the flood:\n${agent.stdout}`);
    assert.ok(agent.stdout.includes('note: fallback '), agent.stdout);
  });

  test('k10-02 a flood past what the broker can keep: masked requests are refused with a coded reason, never answered with the echo in the clear; unmasked identities go on', async () => {
    for (const name of ['junk-b', 'junk-c', 'junk-d', 'junk-e']) await flood(name, 8500);
    const agent = await readEcho();
    assert.equal(agent.stdout.includes(PLAIN), false, `the password reached the agent after the flood:\n${agent.stdout}`);
    assert.notEqual(agent.code, 0, `refused: ${agent.stdout}`);
    assert.match(agent.stderr, /more Secret values than agentgate keeps/);
    const seen = await stack.kubectl(['get', 'configmap', 'app', '-n', 'default', '-o', 'yaml'], { kubeconfig: glass.kubeconfig });
    assert.equal(seen.code, 0, seen.stderr);
    assert.ok(seen.stdout.includes(PLAIN), 'control: masking off is not refused');
  });
});

describe('wave 10: the Secret watch cap', () => {
  let stack: K8sStack;
  let glass: Connection;
  const ROTATED = 'k10-rotated-db-pass-4409';

  before(async () => {
    stack = await startK8sStack({ policies: POLICIES });
    glass = await stack.connectAs('oncall-1', ['breakglass']);
  });
  after(async () => {
    await stack?.close();
  });

  test('k10-03 64 watches taken by the agent\'s reads in namespaces of its own: a password rotated in default after its listing is still masked in its echo', async () => {
    // Every watch the broker may open, on namespaces the agent named.
    for (let i = 0; i < 64; i++) {
      const r = await stack.kubectl(['get', 'configmaps', '-n', `k10-ns-${i}`]);
      assert.equal(r.code, 0, r.stderr);
    }
    // default is listed (past the cap: no watch); the rotation lands right after.
    const first = await stack.kubectl(['get', 'configmaps', '-n', 'default']);
    assert.equal(first.code, 0, first.stderr);
    stack.api.put('secrets', { metadata: { name: 'db', namespace: 'default' }, type: 'Opaque', data: { password: b64(ROTATED) } });
    stack.api.put('configmaps', { metadata: { name: 'rotated-note', namespace: 'default' }, data: { note: `now ${ROTATED}` } });
    const agent = await stack.kubectl(['get', 'configmap', 'rotated-note', '-n', 'default', '-o', 'yaml']);
    assert.equal(agent.code, 0, agent.stderr);
    assert.equal(agent.stdout.includes(ROTATED), false, `the rotated password reached the agent:\n${agent.stdout}`);
    assert.ok(agent.stdout.includes('note: now '), agent.stdout);
    // CONTROL: the echo is there.
    const seen = await stack.kubectl(['get', 'configmap', 'rotated-note', '-n', 'default', '-o', 'yaml'], { kubeconfig: glass.kubeconfig });
    assert.ok(seen.stdout.includes(ROTATED), 'control: the echo is there');
    // The broker watched 64 namespaces: the cap was what left default without a watch.
    await eventually('64 watches of Secrets', () => stack.api.watchers('secrets') === 64);
  });
});
