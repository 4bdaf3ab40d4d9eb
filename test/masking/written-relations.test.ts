/**
 * Taint of the relations writes fill from masked columns (written-relations.ts): which
 * relations a statement text writes to, the recorder (what it reads decides, links carry
 * taint, a later taint of a source follows the edges of writes judged clean), and the
 * verdict it asks for (statement-reads.ts with `writes`).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';

import { loadedSqlParser, loadSqlParser } from '../../src/broker/policy/sql-classify.js';
import { statementReads } from '../../src/broker/masking/statement-reads.js';
import { writeRecorder, writeTargets, WrittenRelations } from '../../src/broker/masking/written-relations.js';
import type { ProvenanceCatalog, RelationInfo } from '../../src/broker/masking/provenance.js';
import { openWrittenRelations, writtenRelationsPath } from '../../src/broker/masking/written-relations-file.js';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const USERS: RelationInfo = { schema: 'public', name: 'users', kind: 'table', columns: ['id', 'name', 'email'] };
const T: RelationInfo = { schema: 'scratch', name: 't', kind: 'table', columns: ['id', 'x'] };
const U: RelationInfo = { schema: 'scratch', name: 'u', kind: 'table', columns: ['y'] };

const catalog: ProvenanceCatalog = {
  relations: (_schema, name) => Promise.resolve([USERS, T, U].filter((r) => r.name === name)),
  functions: (_schema, name) => Promise.resolve(name === 'f_user' ? [{ builtin: false, retset: false }] : [{ builtin: true, retset: false }]),
  castTargets: () => Promise.resolve([]),
};

function setup(): { written: WrittenRelations; record: (sql: string) => Promise<void> } {
  const written = new WrittenRelations();
  const reads = (sql: string): ReturnType<typeof statementReads> =>
    statementReads(sql, catalog, (source, rel) => source.endsWith('.email') || written.has(rel.name), { writes: true });
  const recorder = writeRecorder(written, reads);
  return {
    written,
    record: async (sql) => {
      assert.notEqual(await recorder(sql), 'unsaved');
    },
  };
}

const targetsOf = (sql: string): { fed: string[]; linked: string[][]; always: string[] } => {
  const t = writeTargets((loadedSqlParser()!.parseSync(sql).stmts ?? []).map((s) => s.stmt));
  return { fed: [...t.fed].sort(), linked: t.linked.map((l) => [...l].sort()), always: [...t.always] };
};

before(async () => {
  await loadSqlParser();
});

test('write targets: rows written, relations created from a query, DDL that links relations', () => {
  assert.deepEqual(targetsOf('select 1').fed, []);
  assert.deepEqual(targetsOf('create table scratch.t as select email from users').fed, ['t']);
  assert.deepEqual(targetsOf('select email into temp t from users').fed, ['t']);
  assert.deepEqual(targetsOf('insert into scratch.t select 1, email from users').fed, ['t']);
  assert.deepEqual(targetsOf('with w as (insert into t select 1 returning 1) select * from w').fed, ['t']);
  assert.deepEqual(targetsOf('merge into t using users u on true when matched then update set x = u.email').fed, ['t']);
  assert.deepEqual(targetsOf('explain analyze update t set x = 1').fed, ['t']);
  assert.deepEqual(targetsOf('prepare p as insert into t select 1').fed, ['t']);
  assert.deepEqual(targetsOf('create rule r as on insert to t do also insert into u select email from users').fed, ['t', 'u']);
  // A materialized view and a view are analysed by their definitions at each read.
  assert.deepEqual(targetsOf('create materialized view m as select email from users').fed, []);
  assert.deepEqual(targetsOf('create view v as select email from users').fed, []);
  assert.deepEqual(targetsOf('alter table t rename to t2').linked, [['t', 't2']]);
  assert.deepEqual(targetsOf('alter table t rename column x to y').linked, []);
  assert.deepEqual(targetsOf('alter table t inherit p').linked, [['p', 't']]);
  assert.deepEqual(targetsOf('create table c partition of p for values in (1)').linked, [['c', 'p']]);
  assert.deepEqual(targetsOf('alter table p attach partition c for values in (1)').linked, [['c', 'p']]);
  // Structure or a key shares no rows: no link (a tainted copy must not taint users).
  assert.deepEqual(targetsOf('create table x (like t, id int references users (id))').linked, []);
  assert.deepEqual(targetsOf('alter table t add foreign key (id) references users (id)').linked, []);
  assert.deepEqual(targetsOf('create trigger tr before insert on t for each row execute function f()').always, ['t']);
});

test('the recorder taints what a write fills from a masked column, and only that', async () => {
  const { written, record } = setup();
  await record('insert into scratch.t select id, name from users');
  assert.equal(written.has('t'), false, 'clean columns copy clean');
  await record("create table scratch.u as select split_part(email, '@', 1) as y from users");
  assert.equal(written.has('u'), true, 'a transform of a masked column');
  assert.equal(written.has('users'), false, 'the source is not tainted');
  await record('insert into scratch.t select 1, y from scratch.u');
  assert.equal(written.has('t'), true, 'a copy of a tainted relation');
});

test('the recorder: conditions, whole rows and functions that are not built in taint too', async () => {
  for (const sql of [
    "insert into scratch.t select id, 'a' from users where email like 'q%'",
    'insert into scratch.t select id, row_to_json(u)::text from users u',
    'insert into scratch.t select * from users',
    'insert into scratch.t select 1, f_user()',
    'create table scratch.t (x text default f_user())',
    'insert into scratch.t select 1, x from no_such_relation',
  ]) {
    const { written, record } = setup();
    await record(sql);
    assert.equal(written.has('t'), true, sql);
  }
});

test('renames and inheritance carry the taint; a later taint of a source follows writes judged clean', async () => {
  const { written, record } = setup();
  await record("create table scratch.u as select email as y from users");
  await record('alter table scratch.u rename to renamed');
  assert.equal(written.has('renamed'), true);
  await record('alter table scratch.renamed inherit scratch.parent');
  assert.equal(written.has('parent'), true);
  await record('insert into scratch.t select id, name from users');
  assert.equal(written.has('t'), false);
  written.add(['users']);
  assert.equal(written.has('t'), true, 't was written from users, tainted since');
});

test('the recorder answers at once for text that writes nothing, and for text recorded at the current version', async () => {
  const written = new WrittenRelations();
  let calls = 0;
  const recorder = writeRecorder(written, () => {
    calls++;
    return Promise.resolve('none');
  });
  assert.equal(recorder('select email from users'), undefined);
  await recorder('insert into scratch.t select 1');
  assert.equal(recorder('insert into scratch.t select 1'), undefined, 'recorded');
  written.add(['other']);
  const again = recorder('insert into scratch.t select 1');
  assert.ok(again instanceof Promise, 'judged again after a taint');
  await again;
  assert.equal(calls, 2);
  assert.equal(recorder('insert into scratch.t select 1'), undefined);
});

test('taint survives a restart: saved (0600) before the write is forwarded, read back when the target is opened again; an unreadable file is an error, not an empty list', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'agentgate-written-'));
  try {
    const first = openWrittenRelations(dir, 'pg prod');
    const reads = (sql: string): ReturnType<typeof statementReads> =>
      statementReads(sql, catalog, (source, rel) => source.endsWith('.email') || first.has(rel.name), { writes: true });
    await writeRecorder(first, reads)('insert into scratch.t (x) select email from users');
    assert.equal(first.has('t'), true);
    const path = writtenRelationsPath(dir, 'pg prod');
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(JSON.parse(await readFile(path, 'utf8')), ['t']);
    const again = openWrittenRelations(dir, 'pg prod');
    assert.equal(again.has('t'), true, 'a new broker reads the copy masked');
    assert.equal(openWrittenRelations(dir, 'other').has('t'), false, 'per target');
    await writeFile(path, '{"t":1}');
    assert.throws(() => openWrittenRelations(dir, 'pg prod'), (err: Error & { code?: string }) => err.code === 'AG_WRITTEN_RELATIONS_UNREADABLE' && /not a JSON list/.test(err.message));
    await writeFile(path, '["t"');
    assert.throws(() => openWrittenRelations(dir, 'pg prod'), (err: Error & { code?: string }) => err.code === 'AG_WRITTEN_RELATIONS_UNREADABLE');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a taint that could not be saved refuses the statement that caused it, once; the next try saves it', async () => {
  let failing = true;
  const saved: string[][] = [];
  const written = new WrittenRelations([], {
    persist: (names) => {
      if (failing) return Promise.reject(new Error('disk full'));
      saved.push([...names]);
      return Promise.resolve();
    },
  });
  const reads = (sql: string): ReturnType<typeof statementReads> => statementReads(sql, catalog, (source) => source.endsWith('.email'), { writes: true });
  const recorder = writeRecorder(written, reads);
  const sql = 'create table scratch.t as select email from users';
  const first = recorder(sql);
  assert.ok(first instanceof Promise, 'the write waits for its taint');
  await first;
  assert.equal(written.has('t'), true, 'tainted in memory');
  // Judged again after the wait: the save failed, so the flow refuses it.
  assert.equal(recorder(sql), 'unsaved');
  // Sent again once the store works: recorded and saved, then let through.
  failing = false;
  const again = recorder(sql);
  assert.ok(again instanceof Promise);
  await again;
  assert.equal(recorder(sql), undefined);
  assert.deepEqual(saved, [['t']]);
});
