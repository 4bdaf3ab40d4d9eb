/**
 * Fail closed: once the audit store cannot write, a response whose event could not be
 * made durable does not complete, and every later request is answered 503 without
 * reaching the API server. The failure is real: SQLite aborting the store's insert (a
 * trigger added from a second connection, as a damaged or full database would).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { startK8sStack, type K8sStack } from './stack.js';

describe('kubernetes: audit store failure', () => {
  let stack: K8sStack;
  before(async () => {
    stack = await startK8sStack();
    stack.api.put('pods', { metadata: { name: 'web-1', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx' }] } });
    stack.api.put('secrets', { metadata: { name: 'db', namespace: 'default' }, data: { password: Buffer.from('hunter2').toString('base64') } });
  });
  after(async () => {
    await stack?.close();
  });

  test('the unrecorded response does not complete, and later requests get 503 before anything reaches the cluster', async () => {
    const ok = await stack.kubectl(['get', 'pods']);
    assert.equal(ok.code, 0, ok.stderr);

    const path = stack.config.store.kind === 'sqlite' ? stack.config.store.path : '';
    const db = new DatabaseSync(path);
    db.exec('PRAGMA busy_timeout = 10000');
    db.exec(`CREATE TRIGGER poison BEFORE INSERT ON audit_events WHEN NEW.type = 'k8s.request'
      BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END`);
    db.close();

    // Namespaces are streamed through unmodified: the end of the body waits for the event.
    const unrecorded = await stack.kubectl(['get', 'namespaces', '-o', 'name']);
    assert.notEqual(unrecorded.code, 0);
    assert.ok(!unrecorded.stdout.includes('namespace/default'), 'the response was withheld');
    assert.ok(stack.broker.audit.failed, 'the store is marked failed');

    const before = stack.api.requests.length;
    const refused = await stack.kubectl(['get', 'secret', 'db', '-o', 'yaml']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /audit log is unavailable, so requests are refused/);
    assert.equal(stack.api.requests.length, before, 'nothing reached the API server');
  });
});
