import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GENESIS_PREV, canonicalJson, sha256Hex } from '../../src/shared/audit-hash.js';
import { AuditStoreError, verifyStore } from '../../src/broker/audit/store.js';
import { listSegments } from '../../src/broker/audit/event-journal.js';
import { openSqliteAuditStore } from '../../src/broker/audit/sqlite-store.js';

let root: string;
let n = 0;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'agentgate-journal-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

function freshPath(): string {
  return join(root, `case-${++n}`, 'audit.db');
}

/** Journal lines for events after `from`, exactly as the store writes them (canonical text, one per line). */
function chainLines(from: { seq: number; hash: string }, count: number): { lines: string[]; tip: { seq: number; hash: string } } {
  const lines: string[] = [];
  let tip = from;
  for (let i = 0; i < count; i++) {
    const text = canonicalJson({
      seq: tip.seq + 1,
      time: new Date(Date.UTC(2026, 10, 22, 12, 0, i)).toISOString(),
      session: 's1',
      actor: { sub: 'agent-1', groups: ['ai-agents'] },
      target: 'pg-a',
      type: 'query',
      detail: { sql: `select ${tip.seq + 1}` },
      decision: null,
      outcome: null,
      prev: tip.hash,
    });
    lines.push(text);
    tip = { seq: tip.seq + 1, hash: sha256Hex(text) };
  }
  return { lines, tip };
}

/** An empty store on disk (schema created), closed. */
async function emptyStore(path: string): Promise<void> {
  await (await openSqliteAuditStore(path)).close();
  assert.deepEqual(listSegments(path), [], 'a clean close leaves no journal');
}

describe('audit event journal', { timeout: 30_000 }, () => {
  test('events only in the journal (a crash before indexing) are recovered at open; a torn last line is dropped', async () => {
    const path = freshPath();
    await emptyStore(path);
    const { lines, tip } = chainLines({ seq: 0, hash: GENESIS_PREV }, 5);
    const torn = chainLines(tip, 1).lines[0]!.slice(0, 40);
    writeFileSync(`${path}.journal.1`, lines.map((l) => `${l}\n`).join('') + torn, { mode: 0o600 });

    const s = await openSqliteAuditStore(path);
    assert.deepEqual(s.head(), tip);
    assert.deepEqual(await verifyStore(s), { ok: true, count: 5, head: tip });
    assert.equal(existsSync(`${path}.journal.1`), false, 'recovered segments are deleted');
    const next = await s.append({ session: null, actor: null, target: null, type: 'broker.start', detail: {}, decision: null, outcome: null });
    assert.equal(next.seq, 6);
    assert.equal(next.prev, tip.hash);
    await s.close();
  });

  test('journal lines the database already holds are skipped; the rest continue its chain', async () => {
    const path = freshPath();
    const s = await openSqliteAuditStore(path);
    const first = [];
    for (let i = 0; i < 3; i++) first.push(await s.append({ session: 's', actor: null, target: 't', type: 'query', detail: { i }, decision: null, outcome: null }));
    await s.close();
    const head = { seq: 3, hash: first[2]!.hash };
    const { lines, tip } = chainLines(head, 4);
    // A segment that overlaps the database (deleted late) and one after it.
    writeFileSync(`${path}.journal.4`, `${lines.slice(0, 2).join('\n')}\n`, { mode: 0o600 });
    writeFileSync(`${path}.journal.6`, `${lines.slice(2).join('\n')}\n`, { mode: 0o600 });
    const again = await openSqliteAuditStore(path);
    assert.deepEqual(again.head(), tip);
    assert.deepEqual(await verifyStore(again), { ok: true, count: 7, head: tip });
    await again.close();
  });

  for (const [name, damage] of [
    ['a line that does not link to the one before', (lines: string[]) => [lines[0]!, lines[2]!]],
    ['a line whose text was altered', (lines: string[]) => [lines[0]!, lines[1]!.replace('select 2', 'select 9'), lines[2]!]],
    ['a line that is not JSON', (lines: string[]) => [lines[0]!, '{"seq": 2, garbage', lines[2]!]],
  ] as const) {
    test(`a damaged journal (${name}) refuses to open, naming the damage`, async () => {
      const path = freshPath();
      await emptyStore(path);
      const { lines } = chainLines({ seq: 0, hash: GENESIS_PREV }, 3);
      writeFileSync(`${path}.journal.1`, damage(lines).map((l) => `${l}\n`).join(''), { mode: 0o600 });
      await assert.rejects(openSqliteAuditStore(path), (e: unknown) => {
        assert.ok(e instanceof AuditStoreError);
        assert.equal(e.code, 'AG_AUDIT_CORRUPT');
        assert.match(e.message, /journal .* is damaged: .*(seq [23]|not JSON)/);
        assert.ok(e.hint);
        return true;
      });
      assert.ok(existsSync(`${path}.journal.1`), 'the damaged journal is kept for investigation');
    });
  }

  test('segments roll over by size, are 0600, and each is deleted once the database holds its events', async () => {
    const path = freshPath();
    const s = await openSqliteAuditStore(path, { journalSegmentBytes: 2000 });
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      // Five events per tick: one journal write each.
      await Promise.all(
        Array.from({ length: 5 }, (_, k) => s.append({ session: 's', actor: null, target: 't', type: 'query', detail: { sql: `select ${i * 5 + k}`, pad: 'x'.repeat(100) }, decision: null, outcome: null })),
      );
      for (const f of s.journalSegments()) {
        seen.add(f);
        assert.equal(statSync(f).mode & 0o777, 0o600);
      }
    }
    assert.ok(seen.size >= 10, `only ${seen.size} segments for ~60 kB of events`);
    await verifyStore(s); // waits for the database to catch up
    assert.ok(s.journalSegments().length <= 1, `indexed segments are deleted: ${s.journalSegments().join(', ')}`);
    const firstSeqs = [...seen].map((f) => Number(f.slice(f.lastIndexOf('.') + 1))).sort((a, b) => a - b);
    assert.equal(firstSeqs[0], 1);
    await s.close();
    assert.deepEqual(listSegments(path), []);
    const again = await openSqliteAuditStore(path);
    assert.deepEqual(await verifyStore(again), { ok: true, count: 200, head: again.head() });
    await again.close();
  });
});
