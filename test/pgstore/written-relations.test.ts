/**
 * Write taint shared by brokers on one PostgreSQL store (pgstore/written-relations.ts), on a
 * real PostgreSQL 15: a name one broker saves reaches the others by its notification before
 * the save resolves for the writer's statement; with a broker's notifications lost, every
 * statement there waits for a reload and then knows the name; names a broker's state dir
 * held alone are added to the store; the table is append-only.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { eventually } from '../helpers/eventually.js';
import { openPostgresStore, type PostgresStore } from '../../src/broker/pgstore/audit-store.js';
import type { SharedWrittenRelations } from '../../src/broker/pgstore/written-relations.js';
import { writeRecorder } from '../../src/broker/masking/written-relations.js';
import { loadSqlParser } from '../../src/broker/policy/sql-classify.js';
import { silentLogger } from '../../src/broker/log.js';

let server: PgServer;
const stores: PostgresStore[] = [];
const shared: SharedWrittenRelations[] = [];

before(async () => {
  server = await startPostgres();
  await loadSqlParser();
});

after(async () => {
  for (const s of shared) await s.close();
  for (const s of stores) await s.close();
  await server.stop();
});

async function broker(id: string, retryMs = 1000): Promise<SharedWrittenRelations> {
  const store = await openPostgresStore(server.url(), { brokerId: id, logger: silentLogger });
  stores.push(store);
  const w = await store.shareWrittenRelations({ retryMs });
  shared.push(w);
  return w;
}

/** Ends every LISTEN connection of the written-relations channel (as a network drop would). */
async function dropListeners(): Promise<void> {
  const n = await server.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = 'LISTEN agentgate_written_relations'");
  assert.ok(Number(n.trim()) >= 1, 'a listener was connected');
}

test('a name saved through A is known to B by notification; the table holds it once, append-only', async () => {
  const a = await broker('brk_wraaaaaaaaaa');
  const b = await broker('brk_wrbbbbbbbbbb');
  assert.equal(a.listening() && b.listening(), true);
  const wa = a.open('pg');
  const wb = b.open('pg');
  const other = b.open('pg-other');
  assert.equal(wb.fresh(), undefined, 'with its listener up, B need not reload');
  const before = wb.version;
  wa.add(['scratch_copy']);
  await wa.flush();
  await eventually('B learns the name', () => wb.has('scratch_copy'));
  assert.ok(wb.version > before, 'what B resolved under the older list is stale');
  assert.equal(other.has('scratch_copy'), false, 'taint is per target');
  // A name saved again (through B) is not inserted twice.
  wb.add(['scratch_copy', 'second']);
  await wb.flush();
  await eventually('A learns the second name', () => wa.has('second'));
  assert.equal((await server.psql("SELECT string_agg(name || '@' || target, ',' ORDER BY name) FROM written_relations")).trim(), 'scratch_copy@pg,second@pg');
  await assert.rejects(server.psql("DELETE FROM written_relations WHERE name = 'second'"), /append-only/);
  // A broker that starts later loads every name.
  const c = await broker('brk_wrcccccccccc');
  assert.deepEqual(c.open('pg').names().sort(), ['scratch_copy', 'second']);
});

test('with its notifications lost, B makes every statement wait for a reload, then knows the names', async () => {
  const a = await broker('brk_wrdddddddddd');
  // B retries its listener only after a minute: it stays without notifications for this test.
  const b = await broker('brk_wreeeeeeeeee', 60_000);
  const wa = a.open('pg2');
  const wb = b.open('pg2');
  await dropListeners();
  await eventually('B notices its listener is gone', () => !b.listening());
  wa.add(['copied_while_deaf']);
  await wa.flush();
  // B cannot have learnt it: no notification, no reload yet.
  assert.equal(wb.has('copied_while_deaf'), false);
  const recorder = writeRecorder(wb, () => Promise.resolve('none'));
  const waited = recorder('select * from copied_while_deaf');
  assert.ok(waited instanceof Promise, 'the statement waits for the reload');
  await waited;
  assert.equal(wb.has('copied_while_deaf'), true, 'the reload brought the name');
  // Judged again right after its wait, the same statement goes on (no endless wait)…
  assert.equal(recorder('select * from copied_while_deaf'), undefined);
  // …and the next one waits again while B is still without notifications.
  assert.ok(recorder('select 1') instanceof Promise);
  // A, whose listener came back (1 s retry), reloaded what it may have missed and is current.
  await eventually('A listens again', () => a.listening(), 15_000);
  assert.equal(wa.fresh(), undefined);
});

test('names a broker’s state dir held before the store are added to it and reach the others', async () => {
  const a = await broker('brk_wrffffffffff');
  const b = await broker('brk_wrgggggggggg');
  const wb = b.open('pg3');
  const wa = a.open('pg3', ['from_state_dir']);
  assert.equal(wa.has('from_state_dir'), true);
  await eventually('B learns the state dir’s name', () => wb.has('from_state_dir'));
  assert.equal((await server.psql("SELECT count(*) FROM written_relations WHERE target = 'pg3' AND name = 'from_state_dir'")).trim(), '1');
});
