/**
 * Adversarial corpus, wave 5 — user code and side effects that the text of a read does not
 * name and that no earlier wave tries.
 *
 * The gate judges a statement by what its text calls and by the code of the types its
 * values have (statement-expansion.ts). The planner and executor run more than that on a
 * plain SELECT, and some relations are not in this database at all:
 * - the planner folds calls of IMMUTABLE functions it finds in the catalog entries of the
 *   relations it plans for, not in the statement: index expressions and partial-index
 *   predicates (relcache, RelationGetIndexExpressions/Predicate), CHECK constraints used for
 *   constraint exclusion (an inheritance child by default, any table once the harmless
 *   setting constraint_exclusion is on), partition key expressions, and the expressions of
 *   extended statistics — even under plain EXPLAIN;
 * - an index or a partitioning scheme built with a NON-default operator class runs that
 *   class's support function (btree comparison, hash) when a WHERE clause written with the
 *   built-in `=` is used to scan the index or prune partitions: the gate only looks at the
 *   default btree and hash classes of a type;
 * - the planner rewrites NOT (a op b) into a negop b: the NEGATOR operator's function runs,
 *   though the text only wrote an operator implemented by a built-in;
 * - functions the gate trusts for where they live: a user function created in schema
 *   pg_catalog, or made a member of an extension, is taken at its declared volatility;
 * - foreign tables: a postgres_fdw table is read through a SECOND session (read-write in
 *   PostgreSQL 15) where the remote relation's code runs and commits; a file_fdw table with
 *   a `program` option runs a shell command on every read;
 * - statements that the read-only upstream session does not stop (NOTIFY, ANALYZE, VACUUM,
 *   VACUUM FULL, CLUSTER, REINDEX are all allowed in a read-only transaction), and
 *   transaction-mode lists whose last mode wins (BEGIN READ ONLY, READ WRITE): kept as
 *   regressions if already refused.
 * Each hidden effect is pg_stat_reset() unless stated; the objects are "production" objects
 * made by the superuser, each shown to do its damage for `app` without agentgate in a
 * read-only session (the control cases). Harmless statements of the same shapes must stay
 * allowed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import {
  assertIntact,
  assertNoError,
  assertRefused,
  assertStoreClean,
  describeMsgs,
  errorsOf,
  extended,
  REFUSAL_CODES,
  rowsOf,
  simple,
  simpleEach,
  useResetCorpus,
  type Adversary,
  type ResetAttack,
  RESET_SEED,
  readOnlyApp,
  superQuery,
} from './harness.js';

/** A file a file_fdw `program` creates; it must never appear through agentgate. */
const MARKER = join(tmpdir(), `agentgate-w5s-${process.pid}-${Date.now()}`);

const EXTRA_SEED = `
${RESET_SEED}
-- A function labelled IMMUTABLE that is not (the planner folds a call of it with constant arguments).
CREATE FUNCTION f_imm_reset() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN 1; END $$;

-- ───── IMMUTABLE calls stored in a relation's catalog entries (autovacuum off: ANALYZE would run them) ─────
CREATE TABLE t_ixexpr (v int) WITH (autovacuum_enabled = false);
INSERT INTO t_ixexpr SELECT g FROM generate_series(1, 10) g;
CREATE INDEX t_ixexpr_i ON t_ixexpr ((v + f_imm_reset()));
CREATE TABLE t_ixpred (v int) WITH (autovacuum_enabled = false);
INSERT INTO t_ixpred SELECT g FROM generate_series(1, 10) g;
CREATE INDEX t_ixpred_i ON t_ixpred (v) WHERE v > f_imm_reset();
CREATE TABLE t_inh (v int) WITH (autovacuum_enabled = false);
CREATE TABLE t_inh_c (CHECK (v < f_imm_reset() + 1000)) INHERITS (t_inh) WITH (autovacuum_enabled = false);
INSERT INTO t_inh_c VALUES (1), (2);
CREATE TABLE t_chk (v int CHECK (v < f_imm_reset() + 1000)) WITH (autovacuum_enabled = false);
INSERT INTO t_chk VALUES (1), (2);
CREATE TABLE t_pkey (v int) PARTITION BY RANGE ((v + f_imm_reset()));
CREATE TABLE t_pkey_1 PARTITION OF t_pkey FOR VALUES FROM (0) TO (1000) WITH (autovacuum_enabled = false);
INSERT INTO t_pkey VALUES (1), (2);
CREATE TABLE t_stx (a int, b int) WITH (autovacuum_enabled = false);
INSERT INTO t_stx SELECT g % 10, g % 7 FROM generate_series(1, 100) g;
CREATE STATISTICS t_stx_s ON (a + f_imm_reset()), b FROM t_stx;
ANALYZE t_stx;
GRANT SELECT ON t_ixexpr, t_ixpred, t_inh, t_inh_c, t_chk, t_pkey, t_pkey_1, t_stx TO app;

-- ───── a NON-default operator class for int4: the built-in operators, a volatile support function ─────
CREATE FUNCTION f_cmp_reset(int, int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN btint4cmp($1, $2); END $$;
CREATE OPERATOR CLASS int4_reset_ops FOR TYPE int4 USING btree AS
  OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >, FUNCTION 1 f_cmp_reset(int4, int4);
CREATE FUNCTION f_hash_reset(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN hashint4($1); END $$;
CREATE OPERATOR CLASS int4_hreset_ops FOR TYPE int4 USING hash AS OPERATOR 1 =, FUNCTION 1 f_hash_reset(int4);
CREATE TABLE t_opc (v int) WITH (autovacuum_enabled = false);
INSERT INTO t_opc SELECT g FROM generate_series(1, 2000) g;
CREATE INDEX t_opc_i ON t_opc (v int4_reset_ops);
CREATE TABLE t_hopc (v int) WITH (autovacuum_enabled = false);
INSERT INTO t_hopc SELECT g FROM generate_series(1, 2000) g;
CREATE INDEX t_hopc_i ON t_hopc USING hash (v int4_hreset_ops);
ANALYZE t_opc, t_hopc;
CREATE TABLE t_part (v int) PARTITION BY RANGE (v int4_reset_ops);
CREATE TABLE t_part_1 PARTITION OF t_part FOR VALUES FROM (0) TO (100) WITH (autovacuum_enabled = false);
CREATE TABLE t_part_2 PARTITION OF t_part FOR VALUES FROM (100) TO (200) WITH (autovacuum_enabled = false);
INSERT INTO t_part VALUES (3), (150);
GRANT SELECT ON t_opc, t_hopc, t_part, t_part_1, t_part_2 TO app;

-- ───── an operator implemented by a built-in, whose NEGATOR is not ─────
CREATE FUNCTION f_ne_reset(int, int) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN $1 <> $2; END $$;
CREATE OPERATOR =~= (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq, NEGATOR = !~=);
CREATE OPERATOR !~= (LEFTARG = int, RIGHTARG = int, FUNCTION = f_ne_reset, NEGATOR = =~=);

-- ───── functions trusted for where they live ─────
CREATE FUNCTION pg_catalog.f_cat_liar() RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN 1; END $$;
CREATE EXTENSION tablefunc;
CREATE FUNCTION f_ext_liar() RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN 1; END $$;
ALTER EXTENSION tablefunc ADD FUNCTION f_ext_liar();


-- ───── a table app owns (as a deploy role owns its tables): VACUUM FULL, CLUSTER, REINDEX ─────
CREATE TABLE t_owned (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false);
INSERT INTO t_owned VALUES (1, 'a'), (2, 'b');
ALTER TABLE t_owned OWNER TO app;

-- ───── the harmless counterparts (must stay allowed) ─────
CREATE TABLE t_plain (v int) WITH (autovacuum_enabled = false);
INSERT INTO t_plain SELECT g FROM generate_series(1, 2000) g;
CREATE INDEX t_plain_i ON t_plain (v);
CREATE INDEX t_plain_e ON t_plain ((v + 1));
ANALYZE t_plain;
CREATE TABLE t_plainpart (v int) PARTITION BY RANGE (v);
CREATE TABLE t_plainpart_1 PARTITION OF t_plainpart FOR VALUES FROM (0) TO (100);
CREATE TABLE t_plainpart_2 PARTITION OF t_plainpart FOR VALUES FROM (100) TO (200);
INSERT INTO t_plainpart VALUES (3), (150);
GRANT SELECT ON t_plain, t_plainpart, t_plainpart_1, t_plainpart_2 TO app;
`;

/** Every case's hidden effect is pg_stat_reset() (checked for app without agentgate in w5s-00). */
const RESETS: ResetAttack[] = [
  // ───────────── IMMUTABLE calls the planner folds out of the relation's own catalog entries ─────────────
  { id: 'w5s-01', sql: 'select count(*) from public.t_ixexpr', why: 'planning loads the index expression (v + f_imm_reset()) and const-folds the IMMUTABLE call' },
  { id: 'w5s-02', sql: 'select count(*) from public.t_ixpred', why: 'planning loads the partial-index predicate v > f_imm_reset() and const-folds it' },
  { id: 'w5s-03', sql: 'select v from public.t_inh where v = 1', why: 'constraint exclusion (default: inheritance children) folds the child’s CHECK (v < f_imm_reset() + 1000)' },
  { id: 'w5s-04', sql: 'select count(*) from public.t_pkey', why: 'the partition key expression (v + f_imm_reset()) is const-folded when the key is loaded' },
  { id: 'w5s-05', sql: 'select a from public.t_stx where a = 1', why: 'planning loads the extended statistics expression (a + f_imm_reset()) and const-folds it' },
  { id: 'w5s-06', sql: 'explain select a from public.t_stx where b = 2', why: 'the same under plain EXPLAIN: planning alone runs it' },
  { id: 'w5s-07', sql: 'explain select v from public.t_inh where v = 2', why: 'plain EXPLAIN: constraint exclusion folds the child’s CHECK while planning' },
  // ───────────── a non-default operator class: the built-in `=` scans with the class's support function ─────────────
  { id: 'w5s-08', sql: 'select v from public.t_opc where v = 3', why: 'the btree index (int4_reset_ops) is scanned: descending it calls the class’s comparison f_cmp_reset' },
  { id: 'w5s-09', sql: 'select v from public.t_hopc where v = 3', why: 'the hash index (int4_hreset_ops) is scanned: the scan key is hashed with f_hash_reset' },
  { id: 'w5s-10', sql: 'select v from public.t_part where v = 3', why: 'partition pruning compares with the partition key’s operator class (f_cmp_reset) while planning' },
  { id: 'w5s-11', sql: 'explain select v from public.t_part where v = 150', why: 'the same under plain EXPLAIN: plan-time pruning runs it' },
  // ───────────── the planner swaps an operator for its NEGATOR ─────────────
  { id: 'w5s-12', sql: 'select id from public.users where not (id =~= 1)', why: 'NOT (a =~= b) is planned as a !~= b: the negator’s f_ne_reset runs; =~= is int4eq' },
  { id: 'w5s-13', sql: 'select not (id =~= 1) from public.users', why: 'the same in the select list (eval_const_expressions negates every NOT)' },
  { id: 'w5s-14', sql: 'select id from public.users where not (id =~= any (array[1, 2]))', why: 'NOT (x =~= ANY …) is planned as x !~= ALL …' },
  // ───────────── functions trusted for their schema or extension ─────────────
  { id: 'w5s-15', sql: 'select f_cat_liar()', why: 'a user’s STABLE PL/pgSQL function that resets, created in schema pg_catalog (OID ≥ 16384): trusted as a built-in' },
  { id: 'w5s-16', sql: 'select f_ext_liar()', why: 'a user’s STABLE PL/pgSQL function that resets, made a member of extension tablefunc: trusted as declared' },
];

/** Harmless statements of the same shapes: a correct gate must allow them. */
const ALLOWED: { id: string; sql: string; rows: number }[] = [
  { id: 'w5s-40', sql: 'select v from public.t_plain where v = 3', rows: 1 },
  { id: 'w5s-41', sql: 'select v from public.t_plainpart where v = 3', rows: 1 },
  { id: 'w5s-42', sql: 'select id from public.users where not (id = 1)', rows: 1 },
  { id: 'w5s-44', sql: 'select count(*) from public.t_plain where v + 1 = 5', rows: 1 },
];

describe('adversarial corpus wave 5: planner-run code, foreign tables, trusted places, stale answers', () => {
  const corpus = useResetCorpus({ seed: EXTRA_SEED, prefix: 'w5s', resets: RESETS, allowed: ALLOWED });
  const { withClient, statsReset } = corpus;
  let adv!: Adversary;
  const q = (sql: string): Promise<string> => superQuery(adv, sql);
  const usersCount = async (): Promise<number> => Number(await q('SELECT count(*) FROM users'));
  const relfilenode = (rel: string): Promise<string> => q(`SELECT relfilenode FROM pg_class WHERE oid = '${rel}'::regclass`);
  const tableStat = (col: string): Promise<string> => q(`SELECT ${col} FROM pg_stat_user_tables WHERE relid = 'public.users'::regclass`);
  const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

  before(async () => {
    adv = corpus.adv();
    // Foreign tables need the server's address and app's password (the user mapping's).
    await adv.stack.pg.psql(
      `CREATE EXTENSION postgres_fdw;
CREATE SERVER loop FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '${adv.stack.pg.port}', dbname 'app');
CREATE USER MAPPING FOR app SERVER loop OPTIONS (user 'app', password '${adv.stack.pg.password}');
-- The remote session's search_path is pg_catalog alone: the function names its table in full.
CREATE FUNCTION f_del_remote() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
DECLARE n int; BEGIN DELETE FROM public.users; GET DIAGNOSTICS n = ROW_COUNT; RETURN n; END $$;
CREATE VIEW v_remote_del AS SELECT f_del_remote() AS n;
GRANT SELECT ON v_remote_del TO app;
CREATE FOREIGN TABLE ft_del (n int) SERVER loop OPTIONS (schema_name 'public', table_name 'v_remote_del');
CREATE FOREIGN TABLE ft_users (id int, name text) SERVER loop OPTIONS (schema_name 'public', table_name 'users');
GRANT SELECT ON ft_del, ft_users TO app;
CREATE EXTENSION file_fdw;
CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
CREATE FOREIGN TABLE ft_prog (line text) SERVER files OPTIONS (program 'touch ${MARKER}; echo ok');
GRANT SELECT ON ft_prog TO app;`,
      { database: 'app' },
    );
  });
  after(() => {
    rmSync(MARKER, { force: true });
  });

  test('w5s-00b: control — without agentgate, in a read-only session, app deletes through a postgres_fdw table, runs a file_fdw program, resets through constraint exclusion, notifies, analyzes, vacuums, rewrites its table and reindexes it; BEGIN READ ONLY, READ WRITE writes', async () => {
    const client = await readOnlyApp(adv);
    const listener = new pg.Client({ connectionString: adv.stack.pg.url() });
    await listener.connect();
    const heard: string[] = [];
    listener.on('notification', (n) => heard.push(n.payload ?? ''));
    try {
      assert.equal((await client.query('show transaction_read_only')).rows[0].transaction_read_only, 'on');
      // postgres_fdw: the remote session is read-write; the remote view's f_del() deletes and commits.
      assert.equal(await usersCount(), 2);
      await client.query('select * from ft_del');
      assert.equal(await usersCount(), 0, 'select * from ft_del deletes every user');
      // file_fdw: a read runs the program.
      rmSync(MARKER, { force: true });
      await client.query('select * from ft_prog');
      assert.ok(existsSync(MARKER), 'select * from ft_prog runs its program');
      rmSync(MARKER, { force: true });
      // constraint_exclusion = on (a harmless setting) folds a plain table's CHECK.
      let before = await statsReset();
      await pause(20);
      await client.query('set constraint_exclusion = on');
      await client.query('select v from t_chk where v = 1');
      assert.notEqual(await statsReset(), before, 'constraint exclusion on t_chk resets statistics');
      await client.query('reset constraint_exclusion');
      // NOTIFY is allowed in a read-only transaction.
      await listener.query('listen w5s');
      await client.query("notify w5s, 'ctl'");
      await pause(300);
      assert.deepEqual(heard, ['ctl'], 'NOTIFY is delivered');
      // ANALYZE and VACUUM (app owns the database) run in a read-only transaction.
      const analyzed = await tableStat('analyze_count');
      await client.query('analyze users');
      assert.notEqual(await tableStat('analyze_count'), analyzed, 'ANALYZE users counts');
      const vacuumed = await tableStat('vacuum_count');
      await client.query('vacuum users');
      assert.notEqual(await tableStat('vacuum_count'), vacuumed, 'VACUUM users counts');
      // VACUUM FULL, CLUSTER and REINDEX rewrite app's own table or index, read-only or not.
      for (const [sql, rel] of [
        ['vacuum full t_owned', 'public.t_owned'],
        ['cluster t_owned using t_owned_pkey', 'public.t_owned'],
        ['reindex table t_owned', 'public.t_owned_pkey'],
      ] as const) {
        const node = await relfilenode(rel);
        await client.query(sql);
        assert.notEqual(await relfilenode(rel), node, `${sql} rewrites ${rel}`);
      }
      // The last transaction mode wins.
      await adv.reset();
      for (const begin of ['begin read only, read write', 'begin; set transaction read only, read write']) {
        await client.query(begin);
        await client.query('select f_del()');
        assert.equal((await client.query('select count(*)::int as n from users')).rows[0].n, 0, `${begin} lets f_del() delete`);
        await client.query('rollback');
      }
    } finally {
      await client.end();
      await listener.end();
      rmSync(MARKER, { force: true });
    }
  });

  // ───────────── foreign tables ─────────────

  test('w5s-20: select * from ft_del (postgres_fdw table over a remote view that deletes) deletes nothing', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select * from public.ft_del');
      // The database first: a read-write remote session may have deleted and committed.
      assert.equal(await usersCount(), 2, `the remote session deleted the users: ${describeMsgs(msgs)}`);
      await assertIntact(adv, 'select * from public.ft_del');
      const errs = errorsOf(msgs);
      assert.ok(errs.length === 0 || REFUSAL_CODES.includes(errs[0]!.code), describeMsgs(msgs));
    }));

  test('w5s-21: select * from ft_prog (file_fdw table with a program option) runs no program', () =>
    withClient(async ({ c }) => {
      rmSync(MARKER, { force: true });
      const msgs = await simple(c, 'select * from public.ft_prog');
      assert.ok(!existsSync(MARKER), `the file_fdw program ran on the database server: ${describeMsgs(msgs)}`);
      await assertIntact(adv, 'select * from public.ft_prog');
      const errs = errorsOf(msgs);
      assert.ok(errs.length === 0 || REFUSAL_CODES.includes(errs[0]!.code), describeMsgs(msgs));
    }));

  // ───────────── a harmless setting that makes the planner fold more ─────────────

  test('w5s-22: set constraint_exclusion = on (harmless), then select from a table whose CHECK holds an IMMUTABLE liar: refused or no reset', () =>
    withClient(async ({ c }) => {
      const msgs = await simpleEach(c, ['set constraint_exclusion = on', 'select v from public.t_chk where v = 1']);
      await assertIntact(adv, 'constraint_exclusion = on, then a read of t_chk');
      const errs = errorsOf(msgs);
      assert.ok(errs.length === 0 || REFUSAL_CODES.includes(errs[0]!.code), describeMsgs(msgs));
    }));

  // ───────────── the same routes in the extended protocol ─────────────

  test('w5s-32: Parse/Bind/Execute of select v from t_opc where v = $1 (Bind 3): the index scan runs f_cmp_reset; refused or no reset', () =>
    withClient(async ({ c }) => {
      const msgs = await extended(c, 'select v from public.t_opc where v = $1', ['3']);
      await assertIntact(adv, 'extended read of t_opc');
      assertRefused(msgs, 'extended read of t_opc');
    }));

  test('w5s-33: Parse/Bind/Execute of select id from users where not (id =~= $1): the negator runs; refused or no reset', () =>
    withClient(async ({ c }) => {
      const msgs = await extended(c, 'select id from public.users where not (id =~= $1)', ['1']);
      await assertIntact(adv, 'extended negated read');
      assertRefused(msgs, 'extended negated read');
    }));

  // ───────────── regressions: statements the read-only session does not stop ─────────────

  test('w5s-24: NOTIFY (allowed in a read-only transaction) is refused and no notification is delivered', () =>
    withClient(async ({ c }) => {
      const listener = new pg.Client({ connectionString: adv.stack.pg.url() });
      await listener.connect();
      const heard: string[] = [];
      listener.on('notification', (n) => heard.push(n.payload ?? ''));
      try {
        await listener.query('listen w5s');
        const msgs = await simple(c, "notify w5s, 'agent'");
        await pause(300);
        assert.deepEqual(heard, [], `a notification was delivered: ${describeMsgs(msgs)}`);
        assertRefused(msgs, 'NOTIFY');
      } finally {
        await listener.end();
      }
      await assertIntact(adv);
    }));

  test('w5s-25: ANALYZE users (database owner, allowed read-only) is refused and not counted', () =>
    withClient(async ({ c }) => {
      const before = await tableStat('analyze_count');
      const msgs = await simple(c, 'analyze public.users');
      assert.equal(await tableStat('analyze_count'), before, `ANALYZE ran: ${describeMsgs(msgs)}`);
      assertRefused(msgs, 'ANALYZE');
      await assertIntact(adv);
    }));

  test('w5s-26: VACUUM users is refused and not counted', () =>
    withClient(async ({ c }) => {
      const before = await tableStat('vacuum_count');
      const msgs = await simple(c, 'vacuum public.users');
      assert.equal(await tableStat('vacuum_count'), before, `VACUUM ran: ${describeMsgs(msgs)}`);
      assertRefused(msgs, 'VACUUM');
      await assertIntact(adv);
    }));

  for (const [id, sql, rel] of [
    ['w5s-27', 'vacuum full public.t_owned', 'public.t_owned'],
    ['w5s-28', 'cluster public.t_owned using t_owned_pkey', 'public.t_owned'],
    ['w5s-29', 'reindex table public.t_owned', 'public.t_owned_pkey'],
  ] as const) {
    test(`${id}: ${sql} (app's own table, allowed read-only) is refused and ${rel} is not rewritten`, () =>
      withClient(async ({ c }) => {
        const before = await relfilenode(rel);
        const msgs = await simple(c, sql);
        assert.equal(await relfilenode(rel), before, `${sql} rewrote ${rel}: ${describeMsgs(msgs)}`);
        assertRefused(msgs, sql);
        await assertIntact(adv);
      }));
  }

  for (const [id, setup] of [
    ['w5s-30', ['begin read only, read write']],
    ['w5s-31', ['begin', 'set transaction read only, read write']],
  ] as const) {
    test(`${id}: ${setup.join('; ')} (the last mode wins), then select f_del()`, () =>
      withClient(async ({ c }) => {
        for (const s of setup) await simple(c, s);
        const msgs = await simple(c, 'select f_del()');
        await simple(c, 'rollback');
        await assertIntact(adv);
        assertRefused(msgs, `select f_del() after ${setup.join('; ')}`, ['25P02']);
      }));
  }

  // ───────────── harmless counterparts of the custom cases ─────────────

  test('w5s-45: allowed — plain EXPLAIN of a pruned read of a default-class partitioned table', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'explain select v from public.t_plainpart where v = 3');
      assertNoError(msgs, 'explain of t_plainpart');
      assert.ok(rowsOf(msgs).length > 0, describeMsgs(msgs));
      await assertIntact(adv, 'explain of t_plainpart');
    }));

  test('w5s-46: a postgres_fdw read of a plain table is refused too: what the remote side runs is not analysable here', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select id from public.ft_users order by id');
      assertRefused(msgs, 'select from ft_users');
      assert.match(errorsOf(msgs)[0]?.message ?? '', /postgres_fdw_handler/);
      await assertIntact(adv, 'select from ft_users');
    }));

  test('w5s-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
