/**
 * Fail closed: once the audit store cannot write, a request whose intent could not be
 * made durable is not forwarded, and every later request is answered 503 without
 * reaching the API server. The failure is real: the audit journal's segment is made immutable
 * (chattr +i), so the broker's next write gets EPERM from the kernel, as a failing disk
 * would give it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { freezeAuditJournal } from '../helpers/audit-faults.js';
import { startK8sStack, type K8sStack } from './stack.js';

describe('kubernetes: audit store failure', () => {
  let stack: K8sStack;
  let thaw: (() => void) | undefined;
  before(async () => {
    stack = await startK8sStack();
    stack.api.put('pods', { metadata: { name: 'web-1', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx' }] } });
    stack.api.put('secrets', { metadata: { name: 'db', namespace: 'default' }, data: { password: Buffer.from('hunter2').toString('base64') } });
  });
  after(async () => {
    thaw?.(); // before the broker closes: it deletes the journal
    await stack?.close();
  });

  test('the unrecorded request never reaches the cluster, and later requests get 503 before anything reaches the cluster', async () => {
    const ok = await stack.kubectl(['get', 'pods']);
    assert.equal(ok.code, 0, ok.stderr);

    const path = stack.config.store.kind === 'sqlite' ? stack.config.store.path : '';
    thaw = freezeAuditJournal(path);
    const before = stack.api.requests.length;

    // The request's intent cannot be made durable, so it is never forwarded.
    const unrecorded = await stack.kubectl(['get', 'namespaces', '-o', 'name']);
    assert.notEqual(unrecorded.code, 0);
    assert.ok(!unrecorded.stdout.includes('namespace/default'), 'the response was withheld');
    assert.ok(stack.broker.audit.failed, 'the store is marked failed');
    assert.equal(stack.api.requests.length, before, 'the unrecorded request did not reach the API server');

    const refused = await stack.kubectl(['get', 'secret', 'db', '-o', 'yaml']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /audit log is unavailable, so requests are refused/);
    assert.equal(stack.api.requests.length, before, 'nothing reached the API server');
  });
});
