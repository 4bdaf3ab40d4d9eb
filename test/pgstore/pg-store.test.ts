/**
 * The PostgreSQL store on a real PostgreSQL 15: migrations when several brokers start at
 * once, one global chain written by two stores (two brokers) at once, group commit, fail
 * closed while the database is down and service again once it is back, retention,
 * receipts shared between brokers, and crash recovery reading only its own broker's events.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { eventually } from '../helpers/eventually.js';
import { openPostgresStore, type PostgresStore } from '../../src/broker/pgstore/audit-store.js';
import { PG_SCHEMA_VERSION } from '../../src/broker/pgstore/schema.js';
import { verifyStore, type NewAuditEvent } from '../../src/broker/audit/store.js';
import { recoverInterrupted } from '../../src/broker/audit/interrupted.js';
import { silentLogger } from '../../src/broker/log.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';

let server: PgServer;
const open: PostgresStore[] = [];

before(async () => {
  server = await startPostgres();
});

after(async () => {
  for (const s of open) await s.close();
  await server.stop();
});

async function fresh(db: string): Promise<string> {
  await server.psql(`CREATE DATABASE ${db} OWNER app`, { database: 'postgres' });
  return server.url().replace(/\/app$/, `/${db}`);
}

async function openStore(url: string, brokerId: string): Promise<PostgresStore> {
  const s = await openPostgresStore(url, { brokerId, logger: silentLogger, reconnectMinMs: 20, reconnectMaxMs: 200, timeoutMs: 5000 });
  open.push(s);
  return s;
}

const ev = (i: number, session = 'pgs_a'): NewAuditEvent => ({ session, actor: null, target: 'db', type: 'query', detail: { id: i }, decision: null, outcome: null });

test('two brokers starting on an empty database at once both migrate, once', async () => {
  const url = await fresh('mig');
  const [a, b] = await Promise.all([openStore(url, 'brk_aaaaaaaaaaaa'), openStore(url, 'brk_bbbbbbbbbbbb')]);
  assert.equal(a.head().seq, 0);
  assert.equal(b.head().seq, 0);
  const versions = await server.psql('SELECT version FROM agentgate_schema ORDER BY version', { database: 'mig' });
  assert.deepEqual(versions.trim().split('\n').map(Number), Array.from({ length: PG_SCHEMA_VERSION }, (_, i) => i + 1));
  // A third start on the migrated schema changes nothing.
  await openStore(url, 'brk_cccccccccccc');
  assert.equal((await server.psql('SELECT count(*) FROM agentgate_schema', { database: 'mig' })).trim(), String(PG_SCHEMA_VERSION));
});

test('two brokers append at once: one chain, every event once, group commit batches', async () => {
  const url = await fresh('chain');
  const a = await openStore(url, 'brk_aaaaaaaaaaaa');
  const b = await openStore(url, 'brk_bbbbbbbbbbbb');
  const N = 600;
  const writes: Promise<AuditRecord>[] = [];
  // Bursts from both sides in the same turns of the event loop: each store's burst is one
  // transaction, and the two stores' transactions interleave on the chain lock.
  for (let round = 0; round < 6; round++) {
    for (let i = 0; i < N / 6; i++) {
      writes.push(a.append(ev(round * 1000 + i, 'pgs_a')));
      writes.push(b.append(ev(round * 1000 + i, 'pgs_b')));
    }
    await new Promise<void>((r) => setImmediate(r));
  }
  const records = await Promise.all(writes);
  const seqs = records.map((r) => r.seq).sort((x, y) => x - y);
  assert.deepEqual(seqs, Array.from({ length: 2 * N }, (_, i) => i + 1));
  const result = await verifyStore(a);
  assert.equal(result.ok, true);
  assert.equal(result.ok && result.count, 2 * N);
  assert.ok(a.stats().transactions < N, `group commit: ${a.stats().transactions} transactions for ${N} events`);
  // Each store reads the other's events; the broker filter keeps only its own.
  let mine = 0;
  for await (const r of b.read({ broker: 'brk_aaaaaaaaaaaa' })) {
    assert.equal(r.session, 'pgs_a');
    mine++;
  }
  assert.equal(mine, N);
  assert.equal((await b.refreshHead()).seq, 2 * N);
});

test('database down: appends refused with a reason; back up: accepted again without reopening', async () => {
  const url = await fresh('outage');
  const s = await openStore(url, 'brk_aaaaaaaaaaaa');
  await s.append(ev(1));
  await server.halt();
  await assert.rejects(s.append(ev(2)), (e: Error & { code?: string }) => e.code === 'AG_AUDIT_WRITE_FAILED' && /PostgreSQL audit store cannot be written/.test(e.message));
  assert.ok(s.failed, 'the store says it failed');
  await assert.rejects(s.append(ev(3)), (e: Error & { code?: string }) => e.code === 'AG_AUDIT_WRITE_FAILED');
  await server.restart();
  await eventually('the store to reconnect', () => s.failed === undefined, 15_000);
  const r = await s.append(ev(4));
  assert.equal(r.seq, 2);
  const result = await verifyStore(s);
  assert.equal(result.ok && result.count, 2);
  assert.equal(s.stats().outages, 1);
});

test('retention: a signed checkpoint first, then the old events; the rest still verifies', async () => {
  const url = await fresh('retention');
  const s = await openStore(url, 'brk_aaaaaaaaaaaa');
  for (let i = 0; i < 10; i++) await s.append({ ...ev(i), time: new Date(Date.UTC(2024, 0, 1 + i)) });
  const r = await s.prune!({ before: new Date(Date.UTC(2024, 0, 6)), chunk: 2, sign: () => Promise.resolve({ payloadType: 't', payload: '', signatures: [] }) });
  assert.equal(r.deleted, 5);
  assert.equal(r.checkpoint?.seq, 5);
  await assert.rejects(server.psql('DELETE FROM audit_events WHERE seq = 10', { database: 'retention' }), /append-only/);
  const other = await openStore(url, 'brk_bbbbbbbbbbbb');
  const v = await verifyStore(other);
  assert.equal(v.ok && v.count, 5);
  assert.equal(other.checkpointAt(5)?.hash, r.checkpoint?.hash);
});

test('receipts written through one broker are read through another', async () => {
  const url = await fresh('receipts');
  const a = await openStore(url, 'brk_aaaaaaaaaaaa');
  const b = await openStore(url, 'brk_bbbbbbbbbbbb');
  const envelope = { payloadType: 'application/vnd.in-toto+json', payload: 'e30=', signatures: [] };
  await a.receipts.put({ session: 'pgs_1', connectSession: 'ags_1', sub: 'u', target: 'db', issuedAt: '2024-01-01T00:00:00.000Z', envelope });
  await a.receipts.put({ session: 'pgs_1', connectSession: 'ags_1', sub: 'u', target: 'db', issuedAt: '2025-01-01T00:00:00.000Z', envelope });
  assert.deepEqual((await b.receipts.get('pgs_1'))?.issuedAt, '2024-01-01T00:00:00.000Z');
  assert.equal((await b.receipts.listForConnect('ags_1', 'u')).length, 1);
  assert.equal((await b.receipts.listForConnect('ags_1', 'v')).length, 0);
});

test('crash recovery closes only the sessions its own broker left open', async () => {
  const url = await fresh('recovery');
  const dirA = await mkdtemp(join(tmpdir(), 'ag-pg-a-'));
  const dirB = await mkdtemp(join(tmpdir(), 'ag-pg-b-'));
  try {
    const a = await openStore(url, 'brk_aaaaaaaaaaaa');
    const b = await openStore(url, 'brk_bbbbbbbbbbbb');
    await recoverInterrupted({ audit: a, stateDir: dirA, logger: silentLogger, brokerId: a.brokerId });
    await recoverInterrupted({ audit: b, stateDir: dirB, logger: silentLogger, brokerId: b.brokerId });
    const actor = { sub: 'u', name: 'u', kind: 'agent' as const, groups: [] };
    const start = (session: string): NewAuditEvent => ({ session, actor, target: 'db', type: 'session.start', detail: { protocol: 'postgres' }, decision: null, outcome: null });
    await a.append(start('pgs_on_a'));
    await a.append({ session: 'pgs_on_a', actor, target: 'db', type: 'query.intent', detail: { id: 1, sql: 'select 1' }, decision: { effect: 'allow', rule: 'r' }, outcome: null });
    await b.append(start('pgs_on_b'));
    // A "crashes" (its marker stays) and starts again: B's live session is not A's to close.
    const again = await openStore(url, 'brk_aaaaaaaaaaaa');
    const r = await recoverInterrupted({ audit: again, stateDir: dirA, logger: silentLogger, brokerId: again.brokerId });
    assert.deepEqual(r, { sessions: 1, unknown: 1 });
    const ends: AuditRecord[] = [];
    for await (const e of again.read({})) if (e.type === 'session.end') ends.push(e);
    assert.deepEqual(ends.map((e) => e.session), ['pgs_on_a']);
    assert.equal((await verifyStore(again)).ok, true);
  } finally {
    await rm(dirA, { recursive: true, force: true });
    await rm(dirB, { recursive: true, force: true });
  }
});

test('the schema refuses rewriting history', async () => {
  const url = await fresh('immutable');
  const s = await openStore(url, 'brk_aaaaaaaaaaaa');
  await s.append(ev(1));
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await assert.rejects(c.query("UPDATE audit_events SET type = 'x'"), /append-only/);
    await assert.rejects(c.query('DELETE FROM audit_events'), /append-only/);
  } finally {
    await c.end();
  }
});
