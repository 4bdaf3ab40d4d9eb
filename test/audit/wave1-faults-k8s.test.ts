/**
 * Audit completeness under faults, wave 1, Kubernetes: a request's outcome is durable before
 * the client sees its answer complete. The store is slowed for real where it matters: a
 * wrapper around the broker's SQLite store holds the `k8s.request` outcome append (as a slow
 * disk or a held lock would) while the client's raw HTTPS connection is watched.
 *
 * wf1-05 An answer with no body (204 from a pod's HTTP server through pods/proxy): its head
 *        was flushed before the outcome was recorded, and a head with no body to follow is
 *        the whole answer, so the client had a complete 204 while the log held only the
 *        intent.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import tls from 'node:tls';
import { openSqliteAuditStore } from '../../src/broker/audit/sqlite-store.js';
import type { AuditStore, NewAuditEvent } from '../../src/broker/audit/store.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { eventually } from '../helpers/eventually.js';
import { TARGET, startK8sStack, type Connection, type K8sStack } from '../kubernetes/stack.js';

const POLICIES: PolicyConfig[] = [{ name: 'agents-k8s', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: [{ name: 'all', effect: 'allow', extra: {} }] }];

/** The broker's store, with `k8s.request` outcomes held while `holding` is set. */
interface Gate {
  holding: boolean;
  /** Outcome appends waiting to go through. */
  held: (() => void)[];
  release(): void;
}

function gated(store: AuditStore, gate: Gate): AuditStore {
  const append = (e: NewAuditEvent): Promise<AuditRecord> => {
    if (!gate.holding || e.type !== 'k8s.request' || e.outcome === null) return store.append(e);
    return new Promise<void>((resolve) => gate.held.push(resolve)).then(() => store.append(e));
  };
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'append') return append;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** A raw HTTP/1.1 exchange through the session's listener: what arrived, live. */
function open(conn: Connection, request: string): { received: () => string; done: Promise<void>; close(): void } {
  const socket = tls.connect({ host: '127.0.0.1', port: conn.port, ca: conn.endpoint.caPem });
  let received = '';
  socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
  socket.on('error', () => {});
  const done = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.once('secureConnect', () => socket.write(request.replace('{AUTH}', `Authorization: Bearer ${conn.session.secret}`)));
  return { received: () => received, done, close: () => socket.destroy() };
}

const post = (path: string): string => `POST ${path} HTTP/1.1\r\nHost: x\r\n{AUTH}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`;

describe('wave 1 faults: a Kubernetes answer and its outcome', { timeout: 120_000 }, () => {
  let stack: K8sStack;
  let store: AuditStore | undefined;
  const gate: Gate = {
    holding: false,
    held: [],
    release() {
      this.holding = false;
      for (const r of this.held.splice(0)) r();
    },
  };
  before(async () => {
    stack = await startK8sStack({
      policies: POLICIES,
      audit: async (stateDir) => {
        store = gated(await openSqliteAuditStore(join(stateDir, 'agentgate.db')), gate);
        return store;
      },
    });
    stack.api.put('pods', { metadata: { name: 'web-1', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx' }] } });
    stack.api.setProxy('default', 'web-1', { status: 204, headers: {}, body: '' });
  });
  after(async () => {
    gate.release();
    await stack?.close();
    await store?.close();
  });

  test('control: with the store answering, the 204 arrives and its outcome is on record', async () => {
    const x = open(stack.main, post('/api/v1/namespaces/default/pods/web-1/proxy/control'));
    await x.done;
    assert.match(x.received(), /^HTTP\/1\.1 204 /);
    const events = await stack.events();
    assert.equal(events.find((e) => e.type === 'k8s.request' && String(e.detail['path']).includes('/proxy/control'))?.outcome?.status, 'ok');
  });

  test('wf1-05: a 204 is not answered while its outcome is not durable', async () => {
    gate.holding = true;
    const x = open(stack.main, post('/api/v1/namespaces/default/pods/web-1/proxy/run'));
    // The API server answered and the broker is recording the outcome, which the store holds.
    await eventually('the outcome append to be held', () => gate.held.length === 1);
    const seen = await Promise.race([eventually('an answer', () => x.received() || undefined, 1_500).catch(() => ''), x.done.then(() => 'closed')]);
    assert.equal(seen, '', 'nothing of the answer reached the client before its outcome was recorded');
    gate.release();
    await x.done;
    assert.match(x.received(), /^HTTP\/1\.1 204 /, 'once recorded, the answer goes out');
    const events = await stack.events();
    assert.equal(events.find((e) => e.type === 'k8s.request' && String(e.detail['path']).includes('/proxy/run'))?.outcome?.status, 'ok');
  });
});
