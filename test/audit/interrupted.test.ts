/**
 * Crash recovery on a real SQLite store, without a broker: what a stop leaves open (intents
 * without outcomes, upgrades without a stream end, sessions without session.end) is closed
 * on the next start with `unknown` outcomes, and nothing else is touched. The end-to-end
 * case (a SIGKILLed broker under writers) is test/audit/crash-recovery.test.ts.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteAuditStore, type SqliteAuditStore } from '../../src/broker/audit/sqlite-store.js';
import { markCleanStop, recoverInterrupted } from '../../src/broker/audit/interrupted.js';
import { verifyStore, type NewAuditEvent } from '../../src/broker/audit/store.js';
import type { AuditActor, AuditRecord } from '../../src/shared/audit-hash.js';
import type { SessionSummary } from '../../src/broker/session-summary.js';
import { captureLogger } from '../broker/fixtures.js';

const dirs: string[] = [];
const stores: SqliteAuditStore[] = [];
after(async () => {
  await Promise.all(stores.map((s) => s.close()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const AGENT: AuditActor = { sub: 'agent-7', name: 'Agent Seven', groups: ['ai-agents'], kind: 'agent' };
const allow = { effect: 'allow' as const, rule: 'agents#1' };

async function fresh(): Promise<{ dir: string; store: SqliteAuditStore }> {
  const dir = mkdtempSync(join(tmpdir(), 'agentgate-interrupted-'));
  dirs.push(dir);
  const store = await openSqliteAuditStore(join(dir, 'agentgate.db'));
  stores.push(store);
  return { dir, store };
}

function ev(session: string, target: string, type: string, detail: NewAuditEvent['detail'], outcome: NewAuditEvent['outcome'] = null, decision: NewAuditEvent['decision'] = allow): NewAuditEvent {
  return { session, actor: AGENT, target, type, detail, decision, outcome };
}

async function all(store: SqliteAuditStore): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for await (const r of store.read({})) out.push(r);
  return out;
}

test('a first start finds no marker: nothing is appended, and the run is marked', async () => {
  const { dir, store } = await fresh();
  await store.append(ev('s1', 'pg', 'session.start', { protocol: 'postgres' }, { status: 'ok' }));
  const log = captureLogger();
  const r = await recoverInterrupted({ audit: store, stateDir: dir, logger: log.logger });
  assert.deepEqual(r, { sessions: 0, unknown: 0 });
  assert.equal((await all(store)).length, 1, 'an open session is not closed without a marker saying the last run died');
  assert.ok(existsSync(join(dir, 'broker.running')));
  markCleanStop(dir);
  assert.equal(existsSync(join(dir, 'broker.running')), false);
});

test('after a stop: open intents get unknown outcomes, open sessions end "broker stopped", receipts name the unknowns', async () => {
  const { dir, store } = await fresh();
  // Ended before the previous start: not the recovery's business even though it has no outcome pairs.
  await store.append(ev('old', 'pg', 'session.start', { protocol: 'postgres' }, { status: 'ok' }));
  await store.append(ev('old', 'pg', 'query.intent', { id: 1, sql: 'select 1' }));
  const log = captureLogger();
  await recoverInterrupted({ audit: store, stateDir: dir, logger: log.logger, pid: 1 });

  // The run that dies: one Postgres session with a finished and an unfinished statement,
  // one Kubernetes connection with an unfinished request and an exec stream still open, and
  // one session that ended cleanly.
  await store.append(ev('pg1', 'pg', 'session.start', { protocol: 'postgres', connect_session: 'cs1' }, { status: 'ok' }));
  await store.append(ev('pg1', 'pg', 'query.intent', { id: 1, sql: 'insert into t values (1)' }));
  await store.append(ev('pg1', 'pg', 'query', { id: 1, sql: 'insert into t values (1)' }, { status: 'ok', rows: 1 }));
  await store.append(ev('pg1', 'pg', 'query.intent', { id: 2, sql: 'insert into t values (2)' }));
  await store.append(ev('pg1', 'pg', 'query', { id: 3, sql: 'delete from t' }, { status: 'error' }, { effect: 'deny', rule: 'agents#2', reason: 'writes' }));
  await store.append(ev('k1', 'k8s', 'session.start', { protocol: 'kubernetes' }, { status: 'ok' }));
  await store.append(ev('k1', 'k8s', 'k8s.request.intent', { id: 1, method: 'DELETE', url: '/api/v1/namespaces/default/pods/web' }));
  await store.append(ev('k1', 'k8s', 'k8s.request', { id: 2, method: 'POST', url: '/api/v1/namespaces/default/pods/web/exec' }, null));
  await store.append(ev('done', 'pg', 'session.start', { protocol: 'postgres' }, { status: 'ok' }));
  await store.append(ev('done', 'pg', 'query.intent', { id: 1, sql: 'select 1' }));
  await store.append(ev('done', 'pg', 'session.end', { reason: 'client closed the connection' }, { status: 'ok' }, null));
  const before = (await all(store)).length;

  const receipts: SessionSummary[] = [];
  const r = await recoverInterrupted({
    audit: store,
    stateDir: dir,
    logger: log.logger,
    issue: async (s) => {
      receipts.push(s);
    },
  });
  assert.deepEqual(r, { sessions: 2, unknown: 3 });
  const added = (await all(store)).slice(before);
  const byType = (session: string, type: string): AuditRecord[] => added.filter((e) => e.session === session && e.type === type);

  const pgUnknown = byType('pg1', 'query');
  assert.equal(pgUnknown.length, 1);
  assert.equal(pgUnknown[0]?.detail['id'], 2);
  assert.equal(pgUnknown[0]?.outcome?.status, 'unknown');
  assert.equal(pgUnknown[0]?.detail['sql'], 'insert into t values (2)');
  assert.equal(typeof pgUnknown[0]?.detail['intent_seq'], 'number');
  const pgEnd = byType('pg1', 'session.end');
  assert.equal(pgEnd.length, 1);
  assert.equal(pgEnd[0]?.detail['reason'], 'broker stopped');
  assert.deepEqual([pgEnd[0]?.detail['statements'], pgEnd[0]?.detail['allowed'], pgEnd[0]?.detail['denied'], pgEnd[0]?.detail['unknown']], [3, 2, 1, 1]);

  assert.deepEqual(byType('k1', 'k8s.request').map((e) => [e.detail['id'], e.outcome?.status]), [[1, 'unknown']]);
  assert.deepEqual(byType('k1', 'k8s.stream.end').map((e) => [e.detail['id'], e.outcome?.status]), [[2, 'unknown']]);
  assert.equal(byType('k1', 'session.end')[0]?.detail['unknown'], 2);
  assert.deepEqual(added.filter((e) => e.session === 'done' || e.session === 'old'), [], 'ended sessions are left alone');

  assert.deepEqual(
    receipts.map((s) => [s.session, s.protocol, s.connectSession, s.unknown, s.statements]).sort(),
    [['k1', 'kubernetes', undefined, 2, 2], ['pg1', 'postgres', 'cs1', 1, 3]],
  );
  assert.match(log.text(), /stopped without ending its sessions/);
  assert.equal((await verifyStore(store)).ok, true, 'the appended events extend the chain');

  // A clean stop after this run: the next start has nothing to close.
  markCleanStop(dir);
  const again = await recoverInterrupted({ audit: store, stateDir: dir, logger: log.logger });
  assert.deepEqual(again, { sessions: 0, unknown: 0 });
});

test('an unreadable marker means a start cut short: the whole log is looked at', async () => {
  const { dir, store } = await fresh();
  await store.append(ev('pg1', 'pg', 'session.start', { protocol: 'postgres' }, { status: 'ok' }));
  await store.append(ev('pg1', 'pg', 'query.intent', { id: 1, sql: 'update t set v = 1' }));
  writeFileSync(join(dir, 'broker.running'), '{"seq":');
  const r = await recoverInterrupted({ audit: store, stateDir: dir, logger: captureLogger().logger });
  assert.deepEqual(r, { sessions: 1, unknown: 1 });
});
