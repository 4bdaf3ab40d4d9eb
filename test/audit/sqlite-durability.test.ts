import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { verifyStore } from '../../src/broker/audit/store.js';
import { openSqliteAuditStore, type SqliteAuditStore } from '../../src/broker/audit/sqlite-store.js';

let root: string;
const open: SqliteAuditStore[] = [];
before(() => {
  root = mkdtempSync(join(tmpdir(), 'agentgate-audit-durability-'));
});
after(async () => {
  await Promise.all(open.map((s) => s.close()));
  rmSync(root, { recursive: true, force: true });
});

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}.js`, import.meta.url));

async function seqsOnDisk(path: string): Promise<{ store: SqliteAuditStore; seqs: Set<number> }> {
  const store = await openSqliteAuditStore(path);
  open.push(store);
  const seqs = new Set<number>();
  for await (const r of store.read({})) seqs.add(r.seq);
  return { store, seqs };
}

describe('SqliteAuditStore durability', { timeout: 60_000 }, () => {
  for (const sync of ['normal', 'full'] as const) test(`resolved means durable (sync ${sync}): every seq printed before SIGKILL is on disk, and the chain verifies`, async () => {
    const path = join(root, `killed-${sync}`, 'audit.db');
    const child = spawn(process.execPath, [fixture('append-until-killed'), path, sync], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let lines = 0;
    let killedWhileRunning = false;
    const closed = new Promise<NodeJS.Signals | null>((resolve) => child.on('close', (_code, signal) => resolve(signal)));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      lines += d.split('\n').length - 1;
      // Kill it mid-stream, once a few thousand appends (dozens of commits) have resolved
      // (the first line is "ready").
      if (lines > 3000 && !killedWhileRunning && child.exitCode === null) {
        killedWhileRunning = child.kill('SIGKILL');
      }
    });
    const deadline = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const signal = await closed;
    clearTimeout(deadline);

    assert.equal(err, '');
    assert.equal(signal, 'SIGKILL');
    assert.ok(killedWhileRunning, 'the writer was killed while still appending');
    const printed = out.split('\n').slice(0, -1); // drop what follows the last newline
    assert.equal(printed[0], 'ready');
    const acknowledged = printed.slice(1).map(Number);
    assert.ok(acknowledged.length >= 3000);
    assert.ok(acknowledged.every((x) => Number.isSafeInteger(x) && x > 0), 'only seqs were printed');

    const { store, seqs } = await seqsOnDisk(path);
    const missing = acknowledged.filter((x) => !seqs.has(x));
    assert.deepEqual(missing, [], 'acknowledged events lost by the crash');
    const v = await verifyStore(store);
    assert.equal(v.ok, true);
    assert.ok(v.ok && v.count === seqs.size && v.head.seq >= Math.max(...acknowledged));
    // And the chain goes on after the crash.
    const next = await store.append({ session: null, actor: null, target: null, type: 'broker.start', detail: {}, decision: null, outcome: null });
    assert.equal(next.seq, v.ok ? v.head.seq + 1 : -1);
  });

  test('a real write error (file size limit, like a full disk) fails the store closed and loses no acknowledged event', async () => {
    // prlimit caps the size of any file the child writes; SQLite's WAL write then gets
    // EFBIG from the kernel mid-commit — a genuine I/O error, as with a full disk.
    const path = join(root, 'full', 'audit.db');
    const child = spawn('prlimit', ['--fsize=1000000', process.execPath, fixture('append-until-full'), path], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    assert.equal(err, '');
    assert.equal(code, 0);

    const lines = out.trim().split('\n');
    const firstRejected = lines.findIndex((l) => l.startsWith('rejected '));
    assert.ok(firstRejected > 0, 'some appends succeeded, then one failed');
    const oks = lines.slice(0, firstRejected).map((l) => {
      assert.match(l, /^ok \d+$/);
      return Number(l.slice(3));
    });
    assert.deepEqual(oks, Array.from({ length: oks.length }, (_, i) => i + 1));
    // Everything from the failing batch on is refused, with the typed error.
    const rest = lines.slice(firstRejected);
    const tail = rest.slice(-2);
    for (const l of rest.slice(0, -2)) assert.equal(l, 'rejected AG_AUDIT_WRITE_FAILED');
    assert.deepEqual(tail, ['after AG_AUDIT_WRITE_FAILED', `head ${oks.length}`]);

    // Without the limit: exactly the acknowledged events are there, the chain verifies and continues.
    const { store, seqs } = await seqsOnDisk(path);
    assert.deepEqual([...seqs], oks);
    assert.deepEqual(await verifyStore(store), { ok: true, count: oks.length, head: store.head() });
    const next = await store.append({ session: null, actor: null, target: null, type: 'broker.start', detail: {}, decision: null, outcome: null });
    assert.equal(next.seq, oks.length + 1);
  });
});
