import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { GENESIS_PREV, eventHash, type AuditRecord } from '../../src/shared/audit-hash.js';
import { AuditStoreError, verifyStore, type NewAuditEvent } from '../../src/broker/audit/store.js';
import { listSegments } from '../../src/broker/audit/event-journal.js';
import { openSqliteAuditStore, type SqliteAuditStore, type SqliteAuditStoreOptions } from '../../src/broker/audit/sqlite-store.js';

let root: string;
const open: SqliteAuditStore[] = [];
let n = 0;

before(() => {
  root = mkdtempSync(join(tmpdir(), 'agentgate-audit-'));
});
after(async () => {
  await Promise.all(open.map((s) => s.close()));
  rmSync(root, { recursive: true, force: true });
});

/** A fresh database path in its own (not yet existing) directory. */
function freshPath(): string {
  return join(root, `case-${++n}`, 'state', 'audit.db');
}

async function openStore(path: string, opts?: SqliteAuditStoreOptions): Promise<SqliteAuditStore> {
  const s = await openSqliteAuditStore(path, opts);
  open.push(s);
  return s;
}

function ev(i: number, over: Partial<NewAuditEvent> = {}): NewAuditEvent {
  return {
    session: `s${i % 3}`,
    actor: { sub: 'agent-1', name: 'Agent One', groups: ['ai-agents'], kind: 'agent' },
    target: i % 2 === 0 ? 'pg-a' : 'pg-b',
    type: 'query',
    detail: { sql: `select ${i}` },
    decision: { effect: 'allow', rule: 'agents-read' },
    outcome: { status: 'ok', rows: i, duration_ms: 0.5 },
    ...over,
  };
}

/** The seq of the last complete line in the store's journal segments (0 if none). */
function journalTipOnDisk(dbPath: string): number {
  let tip = 0;
  for (const seg of listSegments(dbPath)) {
    const text = readFileSync(seg.path, 'utf8');
    const end = text.lastIndexOf('\n');
    if (end < 0) continue;
    const line = text.slice(text.lastIndexOf('\n', end - 1) + 1, end);
    tip = Math.max(tip, (JSON.parse(line) as { seq: number }).seq);
  }
  return tip;
}

async function readAll(s: SqliteAuditStore, q = {}): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for await (const r of s.read(q)) out.push(r);
  return out;
}

const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

// A bug that leaves an append pending must fail the run, not hang it.
describe('SqliteAuditStore', { timeout: 30_000 }, () => {
  test('appends a chain from genesis; read returns exactly what append resolved with', async () => {
    const s = await openStore(freshPath());
    assert.deepEqual(s.head(), { seq: 0, hash: GENESIS_PREV });
    const r1 = await s.append(ev(1));
    const r2 = await s.append(ev(2, { time: '2024-05-01T12:00:00+02:00' }));
    const r3 = await s.append(ev(3, { session: null, actor: null, target: null, decision: null, outcome: null, type: 'broker.start', detail: {} }));
    assert.equal(r1.seq, 1);
    assert.equal(r1.prev, GENESIS_PREV);
    assert.equal(r2.prev, r1.hash);
    assert.equal(r3.prev, r2.hash);
    assert.match(r1.time, ISO_MS);
    assert.equal(r2.time, '2024-05-01T10:00:00.000Z');
    assert.equal(r3.session, null);
    assert.equal(eventHash(r2), r2.hash);
    assert.deepEqual(s.head(), { seq: 3, hash: r3.hash });
    assert.deepEqual(await readAll(s), [r1, r2, r3]);
    assert.deepEqual(await verifyStore(s), { ok: true, count: 3, head: { seq: 3, hash: r3.hash } });
  });

  test('the database is 0600 in a 0700 directory, and a loose existing file is tightened', async () => {
    const path = freshPath();
    const s = await openStore(path);
    await s.append(ev(1));
    const mode = (p: string): number => statSync(p).mode & 0o777;
    assert.equal(mode(join(path, '..')), 0o700);
    for (const f of [path, `${path}-wal`, `${path}-shm`]) assert.equal(mode(f), 0o600, f);

    // An operator-made directory keeps its mode; an existing file does not keep a loose one.
    const loose = freshPath();
    const dir = join(loose, '..');
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    writeFileSync(loose, '');
    chmodSync(loose, 0o644);
    await openStore(loose);
    assert.equal(mode(loose), 0o600);
    assert.equal(mode(dir), 0o755);
  });

  test('the resolved record is a snapshot: changing the caller\'s objects later changes nothing', async () => {
    const s = await openStore(freshPath());
    const event = ev(1);
    const p = s.append(event);
    (event.detail as Record<string, unknown>)['sql'] = 'drop table users';
    event.actor!.groups.push('admins');
    const r = await p;
    assert.equal(r.detail['sql'], 'select 1');
    assert.deepEqual(r.actor?.groups, ['ai-agents']);
    const [stored] = await readAll(s);
    assert.deepEqual(stored, r);
    assert.equal((await verifyStore(s)).ok, true);
  });

  for (const writer of ['journal', 'thread'] as const) {
    test(`group commit (${writer}): 1,000 concurrent appends share one write; seqs are gapless, in call order, on disk when resolved`, async () => {
      const path = freshPath();
      const s = await openStore(path, { writer });
      await s.append(ev(0));
      const before = s.stats();
      // Read from outside the store: what is on disk when a promise resolves. With the
      // journal that is the journal's last complete line; with the writer thread, a second
      // connection sees only committed rows.
      const reader = new DatabaseSync(path, { readOnly: true });
      const maxSeq = reader.prepare('SELECT max(seq) AS m FROM audit_events');
      const onDisk = (): number => Math.max(Number((maxSeq.get() as { m: number | null }).m ?? 0), journalTipOnDisk(path));
      const resolvedAt: { seq: number; headSeq: number; committed: number }[] = [];
      const all = Array.from({ length: 1000 }, (_, i) =>
        s.append(ev(i)).then((r) => {
          resolvedAt.push({ seq: r.seq, headSeq: s.head().seq, committed: onDisk() });
          return r;
        }),
      );
      const records = await Promise.all(all);
      const txns = s.stats().transactions - before.transactions;
      assert.ok(txns <= 2, `1000 appends took ${txns} writes`);
      assert.deepEqual(records.map((r) => r.seq), Array.from({ length: 1000 }, (_, i) => i + 2));
      // Resolved in seq order, and never before head() (the durable head) covered them.
      assert.deepEqual(resolvedAt.map((x) => x.seq), records.map((r) => r.seq));
      for (const x of resolvedAt) {
        assert.ok(x.headSeq >= x.seq, `seq ${x.seq} resolved while head was ${x.headSeq}`);
        assert.ok(x.committed >= x.seq, `seq ${x.seq} resolved while only ${x.committed} was on disk`);
      }
      reader.close();
      // Reads wait for the database to catch up with the journal.
      const v = await verifyStore(s);
      assert.deepEqual(v, { ok: true, count: 1001, head: s.head() });
    });
  }

  test('appends made as earlier ones resolve (a chain) never starve the event loop', { timeout: 60_000 }, async () => {
    const s = await openStore(freshPath());
    // Once the chain is well under way, a timer is armed and the chain runs on until it
    // fires. A flush that never yields to the loop keeps it from firing (and I/O, like the
    // worker's answers, with it): the chain then runs into CAP or the test's timeout.
    const ARM_AT = 50;
    const CAP = 20_000;
    let stop = false;
    let count = 0;
    let countWhenFired = 0;
    const chain = (): Promise<void> =>
      s.append(ev(count++)).then(() => {
        if (count === ARM_AT)
          setTimeout(() => {
            countWhenFired = count;
            stop = true;
          }, 0);
        return stop || count >= CAP ? undefined : chain();
      });
    await chain();
    assert.ok(stop, `the timer armed after ${ARM_AT} appends had not fired after ${count}`);
    assert.ok(countWhenFired >= ARM_AT, `the timer fired after ${countWhenFired} appends`);
    assert.equal((await verifyStore(s)).ok, true);
  });

  test('group commit: appends made while a transaction is committing go out together in the next one', async () => {
    const s = await openStore(freshPath());
    const before = s.stats().transactions;
    const first = Array.from({ length: 500 }, (_, i) => s.append(ev(i)));
    // This runs right after the store's flush (both are immediates), i.e. with the first
    // batch handed to the writer thread and not yet answered.
    await new Promise<void>((r) => setImmediate(r));
    const second = Array.from({ length: 500 }, (_, i) => s.append(ev(500 + i)));
    await Promise.all([...first, ...second]);
    assert.equal(s.stats().transactions - before, 2);
    assert.equal(s.stats().largestBatch, 500);
    assert.equal((await verifyStore(s)).ok, true);
  });

  test('a burst larger than maxBatch is split, still in order', async () => {
    const s = await openStore(freshPath(), { maxBatch: 100 });
    const records = await Promise.all(Array.from({ length: 450 }, (_, i) => s.append(ev(i))));
    assert.equal(s.stats().transactions, 5);
    assert.deepEqual(records.map((r) => r.seq), Array.from({ length: 450 }, (_, i) => i + 1));
    assert.equal((await verifyStore(s)).ok, true);
  });

  test('reopening continues the chain where it ended', async () => {
    const path = freshPath();
    const s1 = await openStore(path);
    for (let i = 0; i < 5; i++) await s1.append(ev(i));
    const head = s1.head();
    await s1.close();
    const s2 = await openStore(path);
    assert.deepEqual(s2.head(), head);
    const next = await s2.append(ev(6));
    assert.equal(next.seq, 6);
    assert.equal(next.prev, head.hash);
    assert.deepEqual(await verifyStore(s2), { ok: true, count: 6, head: { seq: 6, hash: next.hash } });
  });

  test('query filters, half-open time range, limit and afterSeq paging', async () => {
    // A small page size so every query below spans several pages.
    const s = await openStore(freshPath(), { pageSize: 4 });
    const t0 = Date.UTC(2024, 0, 1);
    const all: AuditRecord[] = [];
    for (let i = 0; i < 30; i++) all.push(await s.append(ev(i, { time: new Date(t0 + i * 60_000) })));
    const seqs = (rs: AuditRecord[]): number[] => rs.map((r) => r.seq);

    assert.deepEqual(seqs(await readAll(s)), seqs(all));
    assert.deepEqual(seqs(await readAll(s, { session: 's1' })), seqs(all.filter((r) => r.session === 's1')));
    assert.deepEqual(seqs(await readAll(s, { target: 'pg-b', session: 's1' })),
      seqs(all.filter((r) => r.target === 'pg-b' && r.session === 's1')));
    assert.deepEqual(await readAll(s, { session: 'nope' }), []);
    // since inclusive, until exclusive: minutes 10..19.
    const ranged = await readAll(s, { since: new Date(t0 + 10 * 60_000), until: new Date(t0 + 20 * 60_000).toISOString() });
    assert.deepEqual(seqs(ranged), seqs(all.slice(10, 20)));
    assert.deepEqual(seqs(await readAll(s, { since: '2024-01-01T00:25:00Z', session: 's2' })),
      seqs(all.slice(25).filter((r) => r.session === 's2')));
    assert.deepEqual(seqs(await readAll(s, { limit: 9 })), seqs(all.slice(0, 9)));
    assert.deepEqual(await readAll(s, { limit: 0 }), []);

    // Paging with afterSeq: every event once, in order.
    const paged: AuditRecord[] = [];
    let after = 0;
    for (;;) {
      const page = await readAll(s, { afterSeq: after, limit: 7, target: 'pg-a' });
      if (page.length === 0) break;
      paged.push(...page);
      after = page[page.length - 1]!.seq;
    }
    assert.deepEqual(seqs(paged), seqs(all.filter((r) => r.target === 'pg-a')));

    for (const bad of [{ since: 'yesterday-ish' }, { afterSeq: -1 }, { limit: 1.5 }]) {
      await assert.rejects(readAll(s, bad), (e: unknown) => e instanceof AuditStoreError && e.code === 'AG_AUDIT_BAD_QUERY');
    }
  });

  test('journal: a database that refuses a row fails the store closed; the journalled events survive and are recovered at the next open', async () => {
    const path = freshPath();
    const s = await openStore(path);
    for (let i = 0; i < 3; i++) await s.append(ev(i));
    const other = new DatabaseSync(path);
    other.exec(`CREATE TRIGGER poison BEFORE INSERT ON audit_events WHEN NEW.type = 'test.poison'
      BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END`);
    // The journal is the durability point: the batch resolves; the database then refuses it.
    const batch = await Promise.all([s.append(ev(10)), s.append(ev(11, { type: 'test.poison' })), s.append(ev(12))]);
    assert.deepEqual(batch.map((r) => r.seq), [4, 5, 6]);
    await readAll(s); // waits for the writer thread's answer
    assert.ok(s.failed instanceof AuditStoreError);
    assert.match(s.failed.message, /poisoned by the test/);
    await assert.rejects(s.append(ev(13)), (e: unknown) => e instanceof AuditStoreError && e.code === 'AG_AUDIT_WRITE_FAILED');
    assert.equal(s.head().seq, 6);
    await s.close();
    assert.ok(journalTipOnDisk(path) === 6, 'the unindexed events stay in the journal');
    // With the database fixed, the next open puts them in and the chain goes on.
    other.exec('DROP TRIGGER poison');
    other.close();
    const again = await openStore(path);
    assert.deepEqual(await verifyStore(again), { ok: true, count: 6, head: again.head() });
    assert.deepEqual(again.head(), { seq: 6, hash: batch[2]!.hash });
    assert.equal((await again.append(ev(14))).seq, 7);
  });

  test('a failed write (writer thread) fails the store closed: that batch and every later append reject; head stays on disk', async () => {
    // The failure is real, not simulated: a trigger installed from a second connection
    // makes SQLite abort the INSERT of one marked event inside the store's transaction,
    // so the writer hits a genuine SQLite error mid-batch and has to roll back. (Running
    // as root rules out permission tricks; a full disk is covered in sqlite-durability.)
    const path = freshPath();
    const s = await openStore(path, { writer: 'thread' });
    for (let i = 0; i < 3; i++) await s.append(ev(i));
    const headBefore = s.head();

    const other = new DatabaseSync(path);
    other.exec(`CREATE TRIGGER poison BEFORE INSERT ON audit_events WHEN NEW.type = 'test.poison'
      BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END`);
    other.close();

    // One tick, so one batch: the good events around the poisoned one go down with it.
    const batch = [s.append(ev(10)), s.append(ev(11, { type: 'test.poison' })), s.append(ev(12))];
    const settled = await Promise.allSettled(batch);
    for (const r of settled) {
      assert.equal(r.status, 'rejected');
      const e = (r as PromiseRejectedResult).reason as unknown;
      assert.ok(e instanceof AuditStoreError);
      assert.equal(e.code, 'AG_AUDIT_WRITE_FAILED');
      assert.match(e.message, /poisoned by the test/);
      assert.ok(e.hint);
    }
    assert.ok(s.failed instanceof AuditStoreError);
    assert.deepEqual(s.head(), headBefore);

    // Fail closed: an ordinary event afterwards is refused too.
    await assert.rejects(s.append(ev(13)), (e: unknown) => e instanceof AuditStoreError && e.code === 'AG_AUDIT_WRITE_FAILED');
    assert.deepEqual(s.head(), headBefore);
    await s.close();

    // On disk: the three good events, nothing of the failed batch; the chain goes on from there.
    const again = await openStore(path);
    assert.deepEqual(again.head(), headBefore);
    assert.deepEqual(await verifyStore(again), { ok: true, count: 3, head: headBefore });
    const next = await again.append(ev(14));
    assert.equal(next.seq, 4);
    assert.equal(next.prev, headBefore.hash);
  });

  test('an unencodable event rejects alone; the store stays healthy and gapless', async () => {
    const s = await openStore(freshPath());
    await s.append(ev(1));
    await assert.rejects(s.append(ev(2, { detail: { ratio: Number.NaN } })), /ratio is NaN/);
    await assert.rejects(s.append(ev(3, { time: 'not a time' })), /not a valid time/);
    await assert.rejects(s.append({ ...ev(4), type: '' }), /needs a type/);
    assert.equal(s.failed, undefined);
    const r = await s.append(ev(5));
    assert.equal(r.seq, 2);
    assert.equal((await verifyStore(s)).ok, true);
  });

  test('close waits for pending appends; appends after close are refused', async () => {
    const s = await openStore(freshPath());
    const pending = Array.from({ length: 50 }, (_, i) => s.append(ev(i)));
    await s.close();
    const done = await Promise.all(pending);
    assert.equal(done.at(-1)?.seq, 50);
    assert.equal(s.head().seq, 50);
    await assert.rejects(s.append(ev(51)), (e: unknown) => e instanceof AuditStoreError && e.code === 'AG_AUDIT_CLOSED');
    await s.close(); // idempotent
  });

  test('the table is append-only, and a damaged last row is refused on open', async () => {
    const path = freshPath();
    const s = await openStore(path);
    for (let i = 0; i < 3; i++) await s.append(ev(i));
    await s.close();

    const db = new DatabaseSync(path);
    assert.throws(() => db.exec("UPDATE audit_events SET type = 'x' WHERE seq = 2"), /append-only/);
    assert.throws(() => db.exec('DELETE FROM audit_events WHERE seq = 3'), /append-only/);
    // Someone with the file in hand can drop the guard; the hash still gives them away.
    db.exec('DROP TRIGGER audit_events_no_update');
    db.exec("UPDATE audit_events SET event = replace(event, 'select 2', 'select 9') WHERE seq = 3");
    db.close();
    await assert.rejects(openSqliteAuditStore(path), (e: unknown) => e instanceof AuditStoreError && e.code === 'AG_AUDIT_CORRUPT' && /seq 3/.test(e.message));
  });
});
