/**
 * `agentgate broker migrate` (the real CLI) from a SQLite store with pruned history (a
 * retention checkpoint) and a receipt, into an empty PostgreSQL 15 store: the chain
 * verifies on both sides with the same head; a second run, or a damaged source, copies nothing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DatabaseSync } from 'node:sqlite';
import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { makeTempDir, type TempDir } from '../broker/fixtures.js';
import { openSqliteAuditStore } from '../../src/broker/audit/sqlite-store.js';
import { openSqliteReceiptStore } from '../../src/broker/receipts/store.js';
import { openPostgresStore } from '../../src/broker/pgstore/audit-store.js';
import { verifyStore, type NewAuditEvent } from '../../src/broker/audit/store.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

let server: PgServer;
let tmp: TempDir;

before(async () => {
  [server, tmp] = await Promise.all([startPostgres(), makeTempDir('agentgate-migrate-')]);
});

after(async () => {
  await server.stop();
  await tmp.remove();
});

function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env['PATH'], HOME: tmp.path, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

const ev = (i: number, day: number): NewAuditEvent => ({ session: `pgs_${i % 3}`, actor: null, target: 'db', type: 'query', detail: { id: i, sql: `select ${i}` }, decision: null, outcome: null, time: new Date(Date.UTC(2024, 0, day)) });

test('SQLite → PostgreSQL: events, checkpoint and receipts copied; the chain verifies on both sides', async () => {
  const dir = join(tmp.path, 'state');
  const from = join(dir, 'audit.db');
  const lite = await openSqliteAuditStore(from);
  for (let i = 0; i < 1200; i++) await lite.append(ev(i, 1 + Math.floor(i / 100)));
  const pruned = await lite.prune({ before: new Date(Date.UTC(2024, 0, 3)), sign: () => Promise.resolve({ payloadType: 't', payload: '', signatures: [] }) });
  assert.equal(pruned.deleted, 200);
  const head = lite.head();
  await lite.close();
  const receipts = openSqliteReceiptStore(join(dir, 'receipts.db'));
  await receipts.put({ session: 'pgs_0', connectSession: 'ags_1', sub: 'u', target: 'db', issuedAt: '2024-01-02T00:00:00.000Z', envelope: { payloadType: 'p', payload: 'e30=', signatures: [] } });
  receipts.close();

  const url = server.url();
  const r = await cli(['broker', 'migrate', '--from', from, '--json'], { AGENTGATE_STORE_URL: url });
  assert.equal(r.code, 0, r.err);
  assert.ok(!r.out.includes(server.password) && !r.err.includes(server.password), 'the store URL stays out of the output');
  const summary = JSON.parse(r.out) as { events: number; checkpoints: number; receipts: number; head: { seq: number; hash: string } };
  assert.deepEqual(summary, { events: 1000, checkpoints: 1, receipts: 1, head });

  const pgStore = await openPostgresStore(url, { brokerId: 'brk_000000000001' });
  try {
    const v = await verifyStore(pgStore);
    assert.equal(v.ok && v.count, 1000);
    assert.deepEqual(pgStore.head(), head);
    assert.equal(pgStore.checkpointAt(200)?.seq, 200);
    assert.equal((await pgStore.receipts.get('pgs_0'))?.connectSession, 'ags_1');
    // A broker on the migrated store continues the same chain.
    const next = await pgStore.append(ev(5000, 20));
    assert.equal(next.seq, head.seq + 1);
    assert.equal(next.prev, head.hash);
  } finally {
    await pgStore.close();
  }

  // Again: the target is no longer empty, nothing is copied.
  const again = await cli(['broker', 'migrate', '--from', from], { AGENTGATE_STORE_URL: url });
  assert.equal(again.code, 1);
  assert.match(again.err, /already holds audit events; nothing was copied/);
});

test('a damaged SQLite chain is not copied', async () => {
  const from = join(tmp.path, 'damaged', 'audit.db');
  const lite = await openSqliteAuditStore(from, { sync: 'full' });
  for (let i = 0; i < 10; i++) await lite.append(ev(i, 1));
  await lite.close();
  const db = new DatabaseSync(from);
  db.exec("DROP TRIGGER audit_events_no_update; UPDATE audit_events SET event = replace(event, 'select 4', 'select 5') WHERE seq = 5");
  db.close();
  await server.psql('CREATE DATABASE fresh OWNER app', { database: 'postgres' });
  const url = server.url().replace(/\/app$/, '/fresh');
  const r = await cli(['broker', 'migrate', '--from', from], { AGENTGATE_STORE_URL: url });
  assert.equal(r.code, 1);
  assert.match(r.err, /does not verify at seq 5/);
  assert.equal((await server.psql('SELECT count(*) FROM pg_tables WHERE tablename = $$audit_events$$', { database: 'fresh' })).trim(), '0');
});
