import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { GENESIS_PREV, canonicalJson, eventHash, sha256Hex, type AuditRecord } from '../../src/shared/audit-hash.js';
import { openSqliteAuditStore, type SqliteAuditStore } from '../../src/broker/audit/sqlite-store.js';

const EVENTS = 200_000;
const MB = 1024 * 1024;

let root: string;
let store: SqliteAuditStore | undefined;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'agentgate-audit-stream-'));
});
after(async () => {
  await store?.close();
  rmSync(root, { recursive: true, force: true });
});

/** A real GC call, so heap samples measure what is retained rather than garbage not yet collected. */
function gcFunction(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/**
 * The canonical text of event `seq`, written out by hand (keys already in sorted order):
 * building 200k events through append() would take most of this test's time budget, and
 * this test is about reading. The test checks that the template's output is canonical and
 * that the stored hashes match (chain verification itself is tested elsewhere).
 */
const STATEMENTS = Array.from({ length: 97 }, (_, i) =>
  JSON.stringify(`select id, email, created_at from customers where region = 'r${i}' /* ${'p'.repeat(200)} */`));

function eventText(seq: number, time: string, prev: string): string {
  const sql = STATEMENTS[seq % 97]!;
  return `{"actor":{"groups":["ai-agents"],"kind":"agent","name":"Agent ${seq % 5}","sub":"agent-${seq % 5}"},` +
    `"decision":{"effect":"allow","rule":"agents-read"},"detail":{"sql":${sql}},"outcome":{"rows":${seq % 100},"status":"ok"},` +
    `"prev":"${prev}","seq":${seq},"session":"s-${seq % 50}","target":"pg-prod","time":"${time}","type":"query"}`;
}

test('reading 200k events streams page by page with bounded memory', { timeout: 60_000 }, async () => {
  const path = join(root, 'audit.db');
  // Create the schema through the store, then fill the table in one transaction.
  await (await openSqliteAuditStore(path)).close();
  const db = new DatabaseSync(path);
  // A bulk load: a large page cache, and no syncing (durability is not under test here).
  db.exec('PRAGMA cache_size = -131072; PRAGMA synchronous = OFF');
  const insert = db.prepare('INSERT INTO audit_events (seq, time, session, target, type, event, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  const t0 = Date.UTC(2024, 0, 1);
  let prev = GENESIS_PREV;
  let totalText = 0;
  db.exec('BEGIN');
  for (let seq = 1; seq <= EVENTS; seq++) {
    const time = new Date(t0 + seq * 1000).toISOString();
    const text = eventText(seq, time, prev);
    if (seq === 1) assert.equal(canonicalJson(JSON.parse(text)), text, 'the template is canonical');
    const hash = sha256Hex(text);
    insert.run(seq, time, `s-${seq % 50}`, 'pg-prod', 'query', text, prev, hash);
    totalText += text.length;
    prev = hash;
  }
  db.exec('COMMIT');
  db.close();
  // Holding every record at once would take more than the stored text itself.
  assert.ok(totalText > 80 * MB, `only ${Math.round(totalText / MB)} MB of events`);

  store = await openSqliteAuditStore(path);
  assert.deepEqual(store.head(), { seq: EVENTS, hash: prev });

  const gc = gcFunction();
  gc();
  const baseline = process.memoryUsage().heapUsed;
  let peak = 0;
  let count = 0;
  let appended: AuditRecord | undefined;
  let last: AuditRecord | undefined;
  for await (const r of store.read({})) {
    count++;
    assert.equal(r.seq, count);
    if (count === 1 || count % 10_000 === 0) assert.equal(eventHash(r), r.hash);
    if (count === 1) {
      // Appended after the read began: a reader that loaded everything up front would
      // never see it; one that fetches page by page meets it at the end.
      appended = await store.append({
        session: 'late', actor: null, target: 'pg-prod', type: 'query', detail: { sql: 'select 1' }, decision: null, outcome: null,
      });
    }
    last = r;
    if (count % 25_000 === 0) {
      gc();
      peak = Math.max(peak, process.memoryUsage().heapUsed - baseline);
    }
  }
  assert.equal(count, EVENTS + 1);
  assert.equal(appended?.seq, EVENTS + 1);
  assert.deepEqual(last, appended);
  assert.equal(last?.prev, prev);
  assert.ok(peak < 24 * MB, `heap grew by ${Math.round(peak / MB)} MB while streaming ${Math.round(totalText / MB)} MB`);
});
