/**
 * `audit verify` on exports the broker wrote: every format verifies, and each kind of
 * tampering — a flipped byte, a reordered, deleted or replaced event, a cut-off file, a
 * moved anchor, another key's signature, a rewritten chain — is caught and named.
 */
import { test, describe, before, after } from 'node:test';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { receiptJwks } from '../../src/broker/keys.js';
import { createFileKeySigner } from '../../src/broker/receipts/signer.js';
import type { ReceiptSigner } from '../../src/broker/receipts/types.js';
import { eventLine, newSelectionDigest, type ExportVerifyResult } from '../../src/shared/audit-export.js';
import { GENESIS_PREV, type AuditRecord } from '../../src/shared/audit-hash.js';
import { receiptFixture, recordSession, AGENT, type ReceiptFixture } from '../receipts/fixtures.js';
import { exportText, joinLines, lines, otherSigner, rehash, verifyText } from './fixtures.js';

let fx: ReceiptFixture;
let signer: ReceiptSigner;
let jwks: { keys: unknown[] };
let full: string;

function failed(r: ExportVerifyResult, problem: string, seq: number | null, pattern: RegExp): void {
  assert.equal(r.ok, false, `expected a failure, got ${JSON.stringify(r)}`);
  if (r.ok) return;
  assert.equal(r.problem, problem, r.message);
  assert.equal(r.seq, seq, r.message);
  assert.match(r.message, pattern);
}

/** Events (parsed) of an export, and the index of the line holding seq N. */
function eventsOf(text: string): { ls: string[]; at(seq: number): number; rec(seq: number): AuditRecord } {
  const ls = lines(text);
  const at = (seq: number): number => ls.findIndex((l) => l.includes(`"seq":${seq},`) && l.includes('"hash"'));
  return { ls, at, rec: (seq) => JSON.parse(ls[at(seq)]!) as AuditRecord };
}

describe('audit export verification', () => {
  before(async () => {
    fx = await receiptFixture();
    signer = createFileKeySigner(fx.keys);
    jwks = receiptJwks(fx.keys);
    await recordSession(fx.store, 'pgs_a', { statements: 3 }); // seq 1-5
    await recordSession(fx.store, 'pgs_b', { statements: 2, target: 'pg-stage', actor: { ...AGENT, sub: 'agent-8' } }); // 6-9
    await recordSession(fx.store, 'pgs_c', { statements: 4 }); // 10-15
    full = await exportText(fx.store, signer);
  });
  after(async () => {
    await fx?.close();
  });

  test('a full export verifies from genesis, with its signed end record', async () => {
    const ls = lines(full);
    assert.equal(ls.length, 17, 'header + 15 events + end');
    const header = JSON.parse(ls[0]!) as { type: string; anchor: { prev: string; first_seq: number } };
    assert.equal(header.type, 'agentgate.audit.export');
    assert.deepEqual(header.anchor, { prev: GENESIS_PREV, first_seq: 1, checkpoint: null });
    const r = await verifyText(full, { jwks });
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.count, 15);
    assert.equal(r.anchor, 'genesis');
    assert.equal(r.endSigned, true);
    assert.deepEqual(r.last, { seq: 15, hash: fx.store.head().hash });
    // Without a key it still checks the chain, and says what it did not check.
    const unsigned = await verifyText(full);
    assert.ok(unsigned.ok);
    assert.equal(unsigned.endSigned, false);
    assert.match(unsigned.notes.join('\n'), /signatures not checked/);
  });

  test('one flipped byte in an event: hash mismatch at that seq', async () => {
    const e = eventsOf(full);
    const i = e.at(7);
    e.ls[i] = e.ls[i]!.replace('select 0', 'select 1');
    failed(await verifyText(joinLines(e.ls)), 'hash mismatch', 7, /seq 7: its content hashes to [0-9a-f]{64}, but the record says/);
    // A flip inside prev (hashed too) is caught the same way.
    const f = eventsOf(full);
    const j = f.at(3);
    f.ls[j] = f.ls[j]!.replace(/"prev":"(.)/, (_m, c: string) => `"prev":"${c === 'a' ? 'b' : 'a'}`);
    failed(await verifyText(joinLines(f.ls)), 'hash mismatch', 3, /seq 3/);
  });

  test('two events swapped: named as out of place', async () => {
    const e = eventsOf(full);
    const [i, j] = [e.at(4), e.at(5)];
    [e.ls[i], e.ls[j]] = [e.ls[j]!, e.ls[i]!];
    failed(await verifyText(joinLines(e.ls)), 'missing event', 4, /seq 4 is missing: seq 5 follows seq 3 \(an event was deleted, or the events reordered\)/);
  });

  test('an event moved back: out of order', async () => {
    const e = eventsOf(full);
    const moved = e.ls.splice(e.at(2), 1)[0]!;
    e.ls.splice(e.at(6), 0, moved);
    const r = await verifyText(joinLines(e.ls));
    failed(r, 'missing event', 2, /seq 2 is missing/);
  });

  test('one event deleted: missing event, naming its seq', async () => {
    const e = eventsOf(full);
    e.ls.splice(e.at(9), 1);
    failed(await verifyText(joinLines(e.ls)), 'missing event', 9, /seq 9 is missing: seq 10 follows seq 8/);
  });

  test('an event replaced by a re-hashed forgery: prev mismatch at the next seq', async () => {
    const e = eventsOf(full);
    const forged = { ...e.rec(8), detail: { sql: 'select harmless' } };
    e.ls[e.at(8)] = rehash(forged);
    failed(await verifyText(joinLines(e.ls)), 'prev mismatch', 9, /seq 9: prev is [0-9a-f]{64}, but seq 8 hashes to [0-9a-f]{64}: an event was replaced/);
  });

  test('a whole re-hashed chain passes the links but not the signed end record', async () => {
    // The forger rewrites event 12 and re-hashes everything after it, fixing the end record too.
    const e = eventsOf(full);
    let prev = e.rec(11).hash;
    const digest = newSelectionDigest();
    for (let s = 1; s <= 11; s++) digest.update(e.rec(s).hash, 'latin1');
    for (let s = 12; s <= 15; s++) {
      const r = { ...e.rec(s), prev, ...(s === 12 ? { detail: { sql: 'select harmless' } } : {}) };
      const line = rehash(r);
      e.ls[e.at(s)] = line;
      prev = (JSON.parse(line) as AuditRecord).hash;
      digest.update(prev, 'latin1');
    }
    const end = JSON.parse(e.ls[e.ls.length - 1]!) as { last: { seq: number; hash: string } };
    end.last = { seq: 15, hash: prev };
    e.ls[e.ls.length - 1] = JSON.stringify(end);
    const forged = joinLines(e.ls);
    const unkeyed = await verifyText(forged);
    assert.ok(unkeyed.ok, 'without the key, a consistent rewrite cannot be told apart');
    failed(await verifyText(forged, { jwks }), 'bad signature', 15, /does not match the events in the export/);
  });

  test('the end record signed by another key: bad signature', async () => {
    const fake = await exportText(fx.store, otherSigner());
    failed(await verifyText(fake, { jwks }), 'bad signature', 15, /end record's signature: unknown key/);
  });

  test('a cut-off file: truncated export at a line boundary, truncated line mid-record', async () => {
    const e = eventsOf(full);
    const cut = joinLines(e.ls.slice(0, e.at(10) + 1));
    failed(await verifyText(cut), 'truncated export', 10, /ends after seq 10 without its end record \(10 events read\): it was cut short/);
    const mid = full.slice(0, full.indexOf(e.ls[e.at(11)]!) + 40);
    failed(await verifyText(mid), 'truncated line', 11, /cut off mid-record/);
    failed(await verifyText(''), 'not an export', null, /no export header/);
  });

  test('a tampered anchor is refused', async () => {
    const e = eventsOf(full);
    const h = JSON.parse(e.ls[0]!) as { anchor: { prev: string } };
    h.anchor.prev = 'f'.repeat(64);
    e.ls[0] = JSON.stringify(h);
    failed(await verifyText(joinLines(e.ls)), 'bad anchor', 1, /starts at seq 1, whose prev must be 0{64}/);
    // A slice: its first event must link to the anchor it declares.
    const slice = eventsOf(await exportText(fx.store, signer, { afterSeq: 5 }));
    const sh = JSON.parse(slice.ls[0]!) as { anchor: { prev: string; first_seq: number } };
    assert.equal(sh.anchor.first_seq, 6);
    sh.anchor.prev = 'e'.repeat(64);
    slice.ls[0] = JSON.stringify(sh);
    failed(await verifyText(joinLines(slice.ls)), 'bad anchor', 6, /prev is [0-9a-f]{64}, but the export's anchor is e{64}/);
  });

  test('a slice verifies from its anchor and says the anchor is not tied to genesis', async () => {
    const slice = await exportText(fx.store, signer, { afterSeq: 5 });
    const r = await verifyText(slice, { jwks });
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.anchor, 'unverified');
    assert.equal(r.count, 10);
    assert.match(r.notes.join('\n'), /starts at seq 6 after [0-9a-f]{64}/);
    // The anchor is the hash of the event before the slice (what an earlier export ends with).
    assert.equal(r.first?.prev, eventsOf(full).rec(5).hash);
  });

  test('filtered exports verify event by event; the signed end record covers the selection', async () => {
    const text = await exportText(fx.store, signer, { target: 'pg-prod' });
    const r = await verifyText(text, { jwks });
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.filtered, true);
    assert.equal(r.count, 11);
    assert.equal(r.gaps, 1);
    // Deleting an event and fixing the count still breaks the signed digest.
    const e = eventsOf(text);
    e.ls.splice(e.at(12), 1);
    const end = JSON.parse(e.ls[e.ls.length - 1]!) as { count: number };
    end.count = 10;
    e.ls[e.ls.length - 1] = JSON.stringify(end);
    const cut = joinLines(e.ls);
    assert.ok((await verifyText(cut)).ok, 'without the key a filtered deletion cannot be seen');
    failed(await verifyText(cut, { jwks }), 'bad signature', 15, /does not match the events/);
    // Left unfixed, the count alone names it.
    const f = eventsOf(text);
    f.ls.splice(f.at(12), 1);
    failed(await verifyText(joinLines(f.ls)), 'missing event', 15, /counts 11 events, but the segment holds 10/);
  });

  test('since/until select a contiguous slice of the chain', async () => {
    const all = eventsOf(full);
    const recs = Array.from({ length: 15 }, (_, i) => all.rec(i + 1));
    const since = recs[5]!.time;
    const until = new Date(Date.parse(recs[9]!.time) + 1).toISOString();
    // From the first event at or after `since` to just before the first at or after `until`.
    const from = recs.find((r) => r.time >= since)!.seq;
    const to = (recs.find((r) => r.time >= until)?.seq ?? 16) - 1;
    const text = await exportText(fx.store, signer, { since, until });
    const r = await verifyText(text, { jwks });
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.first?.seq, from);
    assert.equal(r.last?.seq, to);
    assert.equal(r.count, to - from + 1, 'no gaps: a time window is a contiguous chain slice');
    assert.equal(r.filtered, false);
  });

  test('a resumed export (two segments) verifies; a gap between segments does not', async () => {
    const first = eventsOf(full);
    const cut = joinLines(first.ls.slice(0, first.at(7) + 1));
    const rest = await exportText(fx.store, signer, { afterSeq: 7 });
    const r = await verifyText(cut + rest, { jwks });
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.segments, 2);
    assert.equal(r.count, 15);
    assert.match(r.notes.join('\n'), /segment 1 was interrupted and resumed by segment 2/);
    const skipped = await exportText(fx.store, signer, { afterSeq: 8 });
    failed(await verifyText(cut + skipped), 'bad anchor', 9, /segment 2 starts at seq 9 .* but the previous segment ended at seq 7/);
  });

  test('CSV: verifies, carries the anchors in comment lines, and catches a flipped byte', async () => {
    const csv = await exportText(fx.store, signer, { format: 'csv' });
    const ls = lines(csv);
    assert.match(ls[0]!, /^# \{.*"type":"agentgate.audit.export"/);
    assert.equal(ls[1], 'seq,time,session,target,type,actor,decision,outcome,detail,prev,hash');
    assert.match(ls[ls.length - 1]!, /^# \{.*"type":"agentgate.audit.export.end"/);
    const r = await verifyText(csv, { jwks });
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.count, 15);
    const i = ls.findIndex((l) => l.startsWith('7,'));
    ls[i] = ls[i]!.replace('select 0', 'select 9');
    failed(await verifyText(joinLines(ls)), 'hash mismatch', 7, /seq 7/);
    const cutCsv = joinLines(lines(csv).slice(0, -1));
    failed(await verifyText(cutCsv), 'truncated export', 15, /without its end record/);
  });

  test('CSV: a cell with a newline or a quote spans lines and still verifies', async () => {
    const { openSqliteAuditStore } = await import('../../src/broker/audit/sqlite-store.js');
    const store = await openSqliteAuditStore(join(fx.tmp.path, 'csv-odd.db'));
    try {
      await store.append({ type: 'query', session: 's,1', actor: null, target: 'two\nlines "quoted"', detail: { sql: 'select 1' }, decision: null, outcome: null });
      await store.append({ type: 'query', session: '', actor: null, target: null, detail: { sql: 'select "x", 2' }, decision: null, outcome: null });
      const csv = await exportText(store, signer, { format: 'csv' });
      assert.ok(csv.includes('"two\nlines ""quoted"""'), csv);
      const r = await verifyText(csv, { jwks });
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal(r.count, 2);
      failed(await verifyText(csv.replace('lines ""quoted""', 'lines ""QUOTED""')), 'hash mismatch', 1, /seq 1/);
      // The empty string and null stay apart: "" is an empty session, an empty cell is none.
      failed(await verifyText(csv.replace(/\n2,([^,]*),"",/, '\n2,$1,,')), 'hash mismatch', 2, /seq 2/);
    } finally {
      await store.close();
    }
  });

  test('OCSF: verifies through raw_data and maps classes', async () => {
    const text = await exportText(fx.store, signer, { format: 'ocsf' });
    const ls = lines(text);
    const events = ls.slice(1, -1).map((l) => JSON.parse(l) as { class_uid: number; activity_id: number; type_uid: number; raw_data: string; metadata: { sequence: number } });
    assert.deepEqual(events[0] && [events[0].class_uid, events[0].activity_id, events[0].type_uid], [3002, 1, 300201], 'session.start → Authentication: Logon');
    assert.deepEqual(events[1] && [events[1].class_uid, events[1].activity_id], [6005, 4], 'a select → Datastore Activity: Query');
    assert.deepEqual(events[4] && [events[4].class_uid, events[4].activity_id], [3002, 2], 'session.end → Logoff');
    const r = await verifyText(text, { jwks });
    assert.ok(r.ok, JSON.stringify(r));
    const j = 3;
    ls[j] = ls[j]!.replace('select 1', 'select 7');
    failed(await verifyText(joinLines(ls)), 'hash mismatch', 3, /seq 3/);
    // The mapped fields are checked against raw_data's seq as well.
    const m = lines(text);
    m[3] = m[3]!.replace('"sequence":3', '"sequence":30');
    failed(await verifyText(joinLines(m)), 'hash mismatch', 3, /metadata.sequence says 30/);
  });

  test('a jsonl line re-serialized by another tool (keys reordered) still verifies', async () => {
    const e = eventsOf(full);
    const { hash, ...rest } = e.rec(4);
    e.ls[e.at(4)] = JSON.stringify({ hash, ...rest });
    assert.ok((await verifyText(joinLines(e.ls), { jwks })).ok);
    assert.equal(eventLine('{"a":1}', 'h'), '{"a":1,"hash":"h"}');
  });
});
