/**
 * Retention: old events are pruned behind a signed checkpoint; the table still refuses any
 * delete no checkpoint covers; the store reopens and keeps chaining; an export made after
 * pruning starts at the checkpoint and verifies, signature included.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { ensureBrokerKeys, receiptJwks, type BrokerKeys } from '../../src/broker/keys.js';
import { openSqliteAuditStore, type SqliteAuditStore } from '../../src/broker/audit/sqlite-store.js';
import { CREATE_SCHEMA } from '../../src/broker/audit/sqlite-schema.js';
import { verifyStore, type AuditStore } from '../../src/broker/audit/store.js';
import { startRetention, DAY_MS } from '../../src/broker/audit/retention.js';
import { createFileKeySigner, signEnvelope } from '../../src/broker/receipts/signer.js';
import type { ReceiptSigner } from '../../src/broker/receipts/types.js';
import { CHECKPOINT_PAYLOAD_TYPE, statementBytes, verifyCheckpoint, type AuditCheckpoint } from '../../src/shared/receipt.js';
import { GENESIS_PREV, canonicalJson, sha256Hex } from '../../src/shared/audit-hash.js';
import { silentLogger } from '../../src/broker/log.js';
import { makeBrokerConfig, makeTempDir, waitFor, type TempDir } from '../broker/fixtures.js';
import { exportText, joinLines, lines, otherSigner, verifyText } from './fixtures.js';

let tmp: TempDir;
let keys: BrokerKeys;
let signer: ReceiptSigner;
let jwks: { keys: unknown[] };
const open: SqliteAuditStore[] = [];
let n = 0;

const sign = (cp: AuditCheckpoint) => signEnvelope(signer, CHECKPOINT_PAYLOAD_TYPE, statementBytes(cp));
const daysAgo = (d: number): Date => new Date(Date.now() - d * DAY_MS);

async function newStore(): Promise<{ store: SqliteAuditStore; path: string }> {
  const path = join(tmp.path, `audit-${++n}.db`);
  const store = await openSqliteAuditStore(path);
  open.push(store);
  return { store, path };
}

async function appendAt(store: AuditStore, count: number, time: Date): Promise<void> {
  for (let i = 0; i < count; i++) {
    await store.append({ type: 'query', session: 's1', actor: null, target: 'pg-prod', time, detail: { sql: `select ${i}` }, decision: null, outcome: { status: 'ok' } });
  }
}

describe('audit retention', () => {
  before(async () => {
    tmp = await makeTempDir('agentgate-retention-');
    keys = await ensureBrokerKeys(makeBrokerConfig(tmp.path));
    signer = createFileKeySigner(keys);
    jwks = receiptJwks(keys);
  });
  after(async () => {
    for (const s of open) await s.close().catch(() => {});
    await tmp?.remove();
  });

  test('prunes old events behind a signed checkpoint; the next export starts there and verifies', async () => {
    const { store, path } = await newStore();
    await appendAt(store, 6, daysAgo(40));
    await appendAt(store, 4, new Date());
    const before = [];
    for await (const r of store.read({ limit: 6 })) before.push(r);

    const r = await store.prune({ before: daysAgo(30), sign });
    assert.equal(r.deleted, 6);
    assert.equal(r.interrupted, false);
    assert.equal(r.checkpoint?.seq, 6);
    assert.equal(r.checkpoint?.hash, before[5]!.hash);
    const cp = verifyCheckpoint(r.checkpoint!.envelope, jwks);
    assert.deepEqual([cp.checkpoint.reason, cp.checkpoint.seq, cp.checkpoint.hash], ['retention', 6, before[5]!.hash]);
    assert.equal(cp.keyid, keys.receiptPublicJwk.kid);

    const left = [];
    for await (const e of store.read({})) left.push(e.seq);
    assert.deepEqual(left, [7, 8, 9, 10]);
    assert.deepEqual(await verifyStore(store), { ok: true, count: 4, head: store.head() });

    const text = await exportText(store, signer);
    const header = JSON.parse(lines(text)[0]!) as { anchor: { prev: string; first_seq: number; checkpoint: unknown } };
    assert.equal(header.anchor.first_seq, 7);
    assert.equal(header.anchor.prev, before[5]!.hash);
    assert.ok(header.anchor.checkpoint, 'the retention checkpoint rides in the header');
    const v = await verifyText(text, { jwks });
    assert.ok(v.ok, JSON.stringify(v));
    assert.equal(v.anchor, 'checkpoint');
    assert.equal(v.anchorSigned, true);

    // A checkpoint from another key, or one that does not match the anchor, is refused.
    const foreign = await exportText(store, signer);
    const fl = lines(foreign);
    const fh = JSON.parse(fl[0]!) as { anchor: { checkpoint: unknown } };
    fh.anchor.checkpoint = await signEnvelope(otherSigner(), CHECKPOINT_PAYLOAD_TYPE, statementBytes(cp.checkpoint));
    fl[0] = JSON.stringify(fh);
    const bad = await verifyText(joinLines(fl), { jwks });
    assert.ok(!bad.ok && bad.problem === 'bad signature' && /retention checkpoint: unknown key/.test(bad.message), JSON.stringify(bad));
    const ml = lines(foreign);
    const mh = JSON.parse(ml[0]!) as { anchor: { prev: string } };
    mh.anchor.prev = 'a'.repeat(64);
    ml[0] = JSON.stringify(mh);
    const moved = await verifyText(joinLines(ml), { jwks });
    assert.ok(!moved.ok && moved.problem === 'bad anchor' && /does not match its retention checkpoint/.test(moved.message), JSON.stringify(moved));

    // The table still refuses deletes no checkpoint covers, and checkpoints are append-only.
    const raw = new DatabaseSync(path);
    try {
      raw.exec('PRAGMA busy_timeout = 5000');
      assert.throws(() => raw.exec('DELETE FROM audit_events WHERE seq = 8'), /append-only: events are pruned only up to a signed checkpoint/);
      assert.throws(() => raw.exec('DELETE FROM audit_checkpoints'), /audit_checkpoints is append-only/);
      assert.throws(() => raw.exec("UPDATE audit_checkpoints SET hash = 'x'"), /append-only/);
      assert.throws(() => raw.exec("UPDATE audit_events SET type = 'x'"), /append-only/);
    } finally {
      raw.close();
    }

    // Pruning again with nothing old left does nothing.
    assert.deepEqual(await store.prune({ before: daysAgo(30), sign }), { deleted: 0, checkpoint: undefined, interrupted: false });
  });

  test('the newest event always stays; the store reopens on it and keeps chaining', async () => {
    const { store, path } = await newStore();
    await appendAt(store, 5, daysAgo(90));
    const r = await store.prune({ before: daysAgo(30), sign });
    assert.equal(r.deleted, 4);
    const head = store.head();
    assert.equal(head.seq, 5);
    await store.close();
    const again = await openSqliteAuditStore(path);
    open.push(again);
    assert.deepEqual(again.head(), head);
    await appendAt(again, 2, new Date());
    assert.deepEqual(await verifyStore(again), { ok: true, count: 3, head: again.head() });
    const v = await verifyText(await exportText(again, signer), { jwks });
    assert.ok(v.ok && v.anchor === 'checkpoint' && v.count === 3, JSON.stringify(v));
  });

  test('appends during a long prune keep their order and the chain stays whole', async () => {
    const { store } = await newStore();
    await appendAt(store, 300, daysAgo(60));
    const pruning = store.prune({ before: daysAgo(30), sign, chunk: 7 });
    const appends = Promise.all(Array.from({ length: 50 }, (_, i) => store.append({ type: 'query', session: 's2', actor: null, target: null, detail: { i }, decision: null, outcome: null })));
    const [r, recs] = await Promise.all([pruning, appends]);
    assert.deepEqual(recs.map((x) => x.seq), Array.from({ length: 50 }, (_, i) => 301 + i));
    // The cut is taken when the prune starts: before the appends are indexed the newest old
    // event stays (299 pruned); after, all 300 old ones go. Either way the prefix up to the
    // checkpoint is gone, and everything after it stays and verifies.
    assert.equal(r.deleted, r.checkpoint?.seq);
    assert.ok(r.deleted >= 299 && r.deleted <= 300, `pruned ${r.deleted}`);
    assert.deepEqual(await verifyStore(store), { ok: true, count: 350 - r.deleted, head: store.head() });
  });

  test('a version 1 database is migrated: the delete trigger now honours checkpoints', async () => {
    const path = join(tmp.path, 'v1.db');
    const db = new DatabaseSync(path);
    db.exec(CREATE_SCHEMA);
    db.exec('PRAGMA user_version = 1');
    let prev = GENESIS_PREV;
    const old = daysAgo(100).toISOString();
    for (let seq = 1; seq <= 3; seq++) {
      const text = canonicalJson({ seq, time: old, session: null, actor: null, target: null, type: 'broker.start', detail: {}, decision: null, outcome: null, prev });
      const hash = sha256Hex(text);
      db.prepare('INSERT INTO audit_events (seq, time, session, target, type, event, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(seq, old, null, null, 'broker.start', text, prev, hash);
      prev = hash;
    }
    assert.throws(() => db.exec('DELETE FROM audit_events WHERE seq = 1'), /append-only/);
    db.close();
    const store = await openSqliteAuditStore(path);
    open.push(store);
    const r = await store.prune({ before: daysAgo(30), sign });
    assert.equal(r.deleted, 2);
    const check = new DatabaseSync(path);
    try {
      assert.equal((check.prepare('PRAGMA user_version').get() as { user_version: number }).user_version, 2);
    } finally {
      check.close();
    }
  });

  test('startRetention prunes at start when audit.retention_days is set, and not otherwise', async () => {
    const { store } = await newStore();
    await appendAt(store, 3, daysAgo(10));
    await appendAt(store, 1, new Date());
    const off = startRetention({ config: { audit: { sync: 'normal', retentionDays: undefined } }, audit: store, signer, logger: silentLogger });
    assert.equal(await off.runOnce(), undefined);
    off.stop();
    const on = startRetention({ config: { audit: { sync: 'normal', retentionDays: 7 } }, audit: store, signer, logger: silentLogger });
    try {
      await waitFor('the start-up prune', () => store.checkpointAt(3));
      const seqs = [];
      for await (const e of store.read({})) seqs.push(e.seq);
      assert.deepEqual(seqs, [4]);
    } finally {
      on.stop();
    }
  });
});
