/**
 * Adversarial corpus, wave 3 — side effects in code the statement never names.
 *
 * The gate judges a read by the functions and operators its text calls, the views and
 * row-level security policies of the relations it reads, and the CHECKs of the domains it
 * casts to. PostgreSQL runs more user code than that on a plain SELECT:
 * - the body of a STABLE SQL function, which the gate vouches for by the calls its text
 *   shows, but not by what that body's own views, policies, casts, attribute-style calls,
 *   declared result type and argument types run;
 * - a type's default btree and hash operator classes: ORDER BY, DISTINCT, GROUP BY, UNION,
 *   joins USING a column, greatest(), a simple CASE, window partitions and range input
 *   compare values with the class's support functions, with no operator in the text (where
 *   the text does write one, `=` in IN or nullif, `>=` in BETWEEN, the gate already judges
 *   the name by every operator so named, this type's volatile ones included: kept as
 *   regressions);
 * - a user cast function (CREATE CAST … WITH FUNCTION), explicit or implicit, including the
 *   implicit one a call like box(1, 2) applies without naming any type;
 * - a domain's CHECK reached through a type that is not the domain: a composite or range
 *   type with a domain member (and their arrays and multiranges), a column definition list,
 *   an XMLTABLE column, a row type filled by json_populate_record, even a plain EXPLAIN of a
 *   composite literal (read while parsing); the domain's own array type and a domain over
 *   the domain are already judged (regressions);
 * - an extension's STABLE function that runs a query given as text (tablefunc's crosstab
 *   and connectby).
 * - code that runs before Execute in the extended protocol: parse analysis reads a composite
 *   literal (its domain member's CHECK), Bind plans (folding a call of a function labelled
 *   IMMUTABLE) and reads the parameters with the input of the types Parse declared (a
 *   domain's CHECK), so a Parse and Bind the gate only judged at Execute have already run it.
 * Each hidden effect is pg_stat_reset(), which a read-only transaction does not stop and the
 * harness' snapshot records (stats_reset); two DELETE variants show the read-only upstream
 * session stopping what the gate let through (25006). The objects are "production" objects
 * made by the superuser; each does its damage for `app` without agentgate (the control
 * cases, in a read-only session). A handful of harmless statements built from the same
 * kinds of object must stay allowed, so a gate that refuses everything fails this file too.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { assertIntact, assertNoError, assertRefused, assertStoreClean, describeMsgs, exchange, extended, fe, functionCall, rowsOf, useResetCorpus, type Adversary, type ResetAttack, MYTEXT_SEED, RESET_SEED, CASTS_SEED } from './harness.js';

const EXTRA_SEED = `
${RESET_SEED}
CREATE FUNCTION f_del_chk(int) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN DELETE FROM users; RETURN true; END $$;
CREATE DOMAIN d_del AS int CHECK (f_del_chk(VALUE));
CREATE TYPE comp_del AS (x d_del);

-- STABLE SQL functions whose bodies run more than their text calls.
CREATE VIEW v_reset AS SELECT f_reset() AS r;
GRANT SELECT ON v_reset TO app;
CREATE FUNCTION f_stable_view() RETURNS int LANGUAGE sql STABLE AS $$ SELECT r FROM v_reset $$;
CREATE FUNCTION f_stable_outer() RETURNS int LANGUAGE sql STABLE AS $$ SELECT f_stable_view() + 0 $$;
CREATE VIEW v_del AS SELECT f_del() AS r;
GRANT SELECT ON v_del TO app;
CREATE FUNCTION f_stable_view_del() RETURNS int LANGUAGE sql STABLE AS $$ SELECT r FROM v_del $$;
CREATE TABLE t_rls (id int);
INSERT INTO t_rls VALUES (1);
ALTER TABLE t_rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY p_reset ON t_rls USING (f_reset_chk(id));
GRANT SELECT ON t_rls TO app;
CREATE FUNCTION f_stable_rls() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM t_rls $$;
CREATE FUNCTION f_stable_cast() RETURNS int LANGUAGE sql STABLE AS $$ SELECT 1::d_reset $$;
CREATE FUNCTION f_attr(users) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN 1; END $$;
CREATE FUNCTION f_stable_attr() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT sum(u.f_attr) FROM users u $$;
CREATE FUNCTION f_stable_ret() RETURNS d_reset LANGUAGE sql STABLE AS $$ SELECT 1 $$;
-- The body uses its argument: an unused one is dropped when the function is inlined.
CREATE FUNCTION f_stable_arg(d_reset) RETURNS int LANGUAGE sql STABLE AS $$ SELECT $1 + 0 $$;
CREATE FUNCTION f_atomic() RETURNS int LANGUAGE sql STABLE BEGIN ATOMIC SELECT f_reset(); END;
-- An argument default is evaluated in the caller's call.
CREATE FUNCTION f_stable_def(a int DEFAULT f_reset()) RETURNS int LANGUAGE sql STABLE AS $$ SELECT $1 + 0 $$;
-- An aggregate (LANGUAGE internal, like the built-ins) whose STABLE transition function is not.
CREATE FUNCTION f_acc_liar(int, int) RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN coalesce($1, 0) + $2; END $$;
CREATE AGGREGATE agg_liar(int) (SFUNC = f_acc_liar, STYPE = int);

${MYTEXT_SEED}
CREATE TYPE r_mytext AS RANGE (subtype = mytext);
CREATE FUNCTION f_stable_sort() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(DISTINCT v) FROM t_sort $$;

${CASTS_SEED}
CREATE FUNCTION f_stable_point() RETURNS point LANGUAGE sql STABLE AS $$ SELECT 1 $$;
CREATE FUNCTION f_int_circle(int) RETURNS circle LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN circle(point($1, $1), 1); END $$;
CREATE CAST (int AS circle) WITH FUNCTION f_int_circle(int) AS ASSIGNMENT;
CREATE FUNCTION f_stable_circle() RETURNS circle LANGUAGE sql STABLE AS $$ SELECT 1 $$;

-- Types that carry d_reset inside them.
CREATE TYPE comp AS (x d_reset);
CREATE TABLE t_domcol (x d_reset);
GRANT SELECT ON t_domcol TO app;
CREATE DOMAIN d_reset2 AS d_reset;
CREATE TYPE r_reset AS RANGE (subtype = d_reset);

-- A function labelled IMMUTABLE that is not: the planner runs it while planning (at Bind).
CREATE FUNCTION f_imm_reset() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN 1; END $$;

-- tablefunc: STABLE C functions that run the query text they are given.
CREATE EXTENSION tablefunc;

-- The harmless counterparts (must stay allowed).
CREATE DOMAIN d_ok AS int CHECK (VALUE IS NOT NULL);
CREATE TYPE comp_ok AS (x int);
CREATE FUNCTION f_stable_ok() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM users $$;
`;

/** Every case's hidden effect is pg_stat_reset() (checked directly in w3x-00). */
const RESETS: ResetAttack[] = [
  // ───────────── STABLE SQL function bodies ─────────────
  { id: 'w3x-01', sql: 'select f_stable_view()', why: 'the body reads a view whose definition calls a volatile function' },
  { id: 'w3x-02', sql: 'select f_stable_outer()', why: 'the body calls a STABLE SQL function whose body reads that view' },
  { id: 'w3x-03', sql: 'select f_stable_rls()', why: 'the body reads a table whose row-level security policy calls a volatile function' },
  { id: 'w3x-04', sql: 'select f_stable_cast()', why: 'the body casts to a domain whose CHECK calls a volatile function' },
  { id: 'w3x-05', sql: 'select f_stable_attr()', why: 'the body calls f_attr(users) in attribute notation (u.f_attr)' },
  { id: 'w3x-06', sql: 'select f_stable_ret()', why: 'the declared result type is that domain: the result is coerced and checked' },
  { id: 'w3x-07', sql: 'select f_stable_arg(1)', why: 'the argument type is that domain: the literal is coerced and checked' },
  { id: 'w3x-08', sql: 'select f_stable_point()', why: 'the result (int) is coerced to the declared point by a user cast function' },
  { id: 'w3x-09', sql: 'select f_stable_circle()', why: 'the same through an AS ASSIGNMENT cast, which the result coercion applies' },
  { id: 'w3x-10', sql: 'select f_stable_sort()', why: 'the body counts DISTINCT values of a type with a volatile operator class' },
  { id: 'w3x-11', sql: 'select f_atomic()', why: 'a BEGIN ATOMIC body (no prosrc) that calls a volatile function' },
  { id: 'w3x-11b', sql: 'select f_stable_def()', why: 'the omitted argument’s default calls a volatile function' },
  { id: 'w3x-11c', sql: 'select agg_liar(n) from public.t_sort', why: 'a user aggregate whose STABLE PL/pgSQL transition function resets' },
  // ───────────── a volatile default operator class, no operator in the text ─────────────
  { id: 'w3x-12', sql: 'select v from public.t_sort order by v', why: 'ORDER BY sorts with the btree support function' },
  { id: 'w3x-13', sql: 'select distinct v from public.t_sort', why: 'DISTINCT compares with the operator class' },
  { id: 'w3x-14', sql: 'select v from public.t_sort group by v', why: 'GROUP BY compares with the operator class' },
  { id: 'w3x-15', sql: 'select v from public.t_sort union select v from public.t_sort', why: 'UNION removes duplicates with the operator class' },
  { id: 'w3x-16', sql: 'select array[v] = array[v] from public.t_sort', why: 'array equality compares elements with the element type’s =' },
  { id: 'w3x-17', sql: 'select max(array[v]) from public.t_sort', why: 'max(anyarray) compares elements with the btree support function' },
  { id: 'w3x-18', sql: "select x from (values ('a'::mytext), ('b'::mytext)) t(x) order by 1", why: 'no table: literals cast to the type, then sorted' },
  { id: 'w3x-19', sql: 'select * from public.t_sort a join public.t_sort b using (v)', why: 'a join USING a column compares with its =' },
  { id: 'w3x-20', sql: 'select * from public.t_sort a natural join public.t_sort b', why: 'NATURAL JOIN compares the common columns with their =' },
  { id: 'w3x-21', sql: "select v from public.t_sort where v in ('a', 'b')", why: 'an IN list compares with =' },
  { id: 'w3x-22', sql: "select v from public.t_sort where v between 'a' and 'b'", why: 'BETWEEN compares with >= and <=' },
  { id: 'w3x-23', sql: "select greatest(v, 'm') from public.t_sort", why: 'greatest() compares with the btree support function' },
  { id: 'w3x-24', sql: 'select nullif(v, v) from public.t_sort', why: 'nullif() compares with =' },
  { id: 'w3x-25', sql: "select case v when 'a' then 1 end from public.t_sort", why: 'a simple CASE compares with =' },
  { id: 'w3x-26', sql: 'select v is distinct from v from public.t_sort', why: 'IS DISTINCT FROM compares with =' },
  { id: 'w3x-27', sql: 'select percentile_disc(0.5) within group (order by v) from public.t_sort', why: 'an ordered-set aggregate sorts its input' },
  { id: 'w3x-28', sql: 'select array_agg(v order by v) from public.t_sort', why: 'an aggregate’s ORDER BY sorts its input' },
  { id: 'w3x-29', sql: 'select array_position(array[v], v) from public.t_sort', why: 'array_position() compares with the element type’s =' },
  { id: 'w3x-30', sql: 'select count(distinct v) from public.t_sort', why: 'an aggregate’s DISTINCT sorts its input' },
  { id: 'w3x-31', sql: 'select rank() over (order by v) from public.t_sort', why: 'a window’s ORDER BY sorts' },
  { id: 'w3x-32', sql: 'select row_number() over (partition by v) from public.t_sort', why: 'a window’s PARTITION BY sorts' },
  { id: 'w3x-33', sql: "select '[a,b]'::r_mytext", why: 'a range’s input compares its bounds with the subtype’s operator class' },
  { id: 'w3x-34', sql: "select v from public.t_sort where v = any (array['a'::mytext])", why: '= ANY of an array of the type' },
  { id: 'w3x-35', sql: 'select distinct on (v) v from public.t_sort', why: 'DISTINCT ON sorts' },
  { id: 'w3x-36', sql: 'explain analyze select v from public.t_sort order by v', why: 'EXPLAIN ANALYZE runs the sort' },
  // ───────────── user cast functions ─────────────
  { id: 'w3x-37', sql: 'select u::int from public.users u', why: 'CREATE CAST (users AS int) WITH FUNCTION f_cast' },
  { id: 'w3x-38', sql: 'select cast(u as int) from public.users u', why: 'the same cast, spelled CAST(… AS …)' },
  { id: 'w3x-39', sql: 'select 1::point', why: 'CREATE CAST (int AS point) WITH FUNCTION f_int_point' },
  { id: 'w3x-40', sql: 'select box(1, 2)', why: 'the same cast AS IMPLICIT: box(point, point) coerces each int, no type named' },
  { id: 'w3x-41', sql: 'select 1::circle', why: 'CREATE CAST (int AS circle) WITH FUNCTION f_int_circle AS ASSIGNMENT, used explicitly' },
  // ───────────── a domain CHECK through another type ─────────────
  { id: 'w3x-42', sql: "select '{1}'::d_reset[]", why: 'the domain’s array type: each element is checked' },
  { id: 'w3x-43', sql: 'select array[1]::d_reset[]', why: 'an array constructor cast to the domain’s array type' },
  { id: 'w3x-44', sql: "select '(1)'::comp", why: 'a composite type with a member of the domain (text input)' },
  { id: 'w3x-45', sql: 'select row(1)::comp', why: 'a row constructor cast to that composite type' },
  { id: 'w3x-46', sql: `select '{"(1)"}'::comp[]`, why: 'an array of that composite type' },
  { id: 'w3x-47', sql: `select * from json_to_record('{"x":1}') as t(x d_reset)`, why: 'a column definition list naming the domain' },
  { id: 'w3x-48', sql: `select * from jsonb_to_recordset('[{"x":1}]') as t(x d_reset)`, why: 'the same, jsonb and a record set' },
  { id: 'w3x-49', sql: `select * from json_populate_record(null::comp, '{"x":1}')`, why: 'a composite filled from json: its member is checked' },
  { id: 'w3x-50', sql: `select * from jsonb_populate_record(null::public.t_domcol, '{"x":1}')`, why: 'a table’s row type with a column of the domain' },
  { id: 'w3x-51', sql: 'select 1::d_reset2', why: 'a domain over the domain' },
  { id: 'w3x-52', sql: "select '[1,2]'::r_reset", why: 'a range type over the domain (text input checks the bounds)' },
  { id: 'w3x-53', sql: "select '{[1,2]}'::r_reset_multirange", why: 'the multirange type of that range' },
  { id: 'w3x-54', sql: 'select r_reset(1, 2)', why: 'the range’s constructor coerces its arguments to the domain' },
  { id: 'w3x-55', sql: "select d_reset '1'", why: 'a typed literal (type name, then string) of the domain' },
  { id: 'w3x-56', sql: "select comp '(1)'", why: 'a typed literal of the composite type' },
  { id: 'w3x-57', sql: 'select d_reset(1)', why: 'function-call syntax for a cast to the domain' },
  { id: 'w3x-58', sql: "select * from xmltable('/r' passing xml '<r><x>1</x></r>' columns x d_reset path 'x')", why: 'an XMLTABLE column of the domain' },
  { id: 'w3x-59', sql: "explain select '(1)'::comp", why: 'plain EXPLAIN: the composite literal is read (and its member checked) while the statement is parsed' },
  // ───────────── tablefunc: query text run by a STABLE extension function ─────────────
  { id: 'w3x-60', sql: "select * from crosstab('select ''a''::text, ''b''::text, f_reset()::text') as ct(r text, c1 text)", why: 'crosstab(text) runs its source query' },
  { id: 'w3x-61', sql: "select * from crosstab('select ''a''::text, ''b''::text, ''c''::text', 'select f_reset()::text') as ct(r text, c1 text)", why: 'crosstab(text, text) runs its category query' },
  { id: 'w3x-62', sql: "select * from crosstab2('select ''a''::text, ''b''::text, f_reset()::text')", why: 'crosstab2(text) runs its source query' },
  { id: 'w3x-63', sql: "select * from connectby('public.users', 'id', 'f_reset()', '1', 0) as t(k int, p int, lvl int)", why: 'connectby pastes its field names into the query it runs' },
  { id: 'w3x-64', sql: "select * from connectby('(select id, f_reset() as p from public.users) s', 'id', 'p', '1', 0) as t(k int, p int, lvl int)", why: 'connectby pastes its relation name into the query it runs' },
];

/** The same holes with DELETE as the effect: the read-only upstream session stops these (25006). */
const DELETES: ResetAttack[] = [
  { id: 'w3x-65', sql: 'select f_stable_view_del()', why: 'a STABLE SQL body reading a view that calls f_del()' },
  { id: 'w3x-66', sql: 'select row(1)::comp_del', why: 'a domain CHECK that deletes, through a composite type' },
];

/** Harmless statements built from the same kinds of object: a correct gate must allow them. */
const ALLOWED: { id: string; sql: string; rows: number }[] = [
  { id: 'w3x-67', sql: 'select 1::int', rows: 1 },
  { id: 'w3x-68', sql: 'select f_stable_ok()', rows: 1 },
  { id: 'w3x-69', sql: 'select n from public.t_sort order by n', rows: 4 },
  { id: 'w3x-70', sql: 'select distinct name from public.users order by name', rows: 2 },
  { id: 'w3x-71', sql: 'select 1::d_ok', rows: 1 },
  { id: 'w3x-72', sql: 'select row(1)::comp_ok', rows: 1 },
  { id: 'w3x-73', sql: 'select count(*) from public.t_sort', rows: 1 },
];

describe('adversarial corpus wave 3: side effects in code the statement does not name', () => {
  const corpus = useResetCorpus({ seed: EXTRA_SEED, prefix: 'w3x', resets: RESETS, alsoRefused: DELETES, allowed: ALLOWED });
  const { withClient, statsReset } = corpus;
  let adv!: Adversary;
  before(() => {
    adv = corpus.adv();
  });

  test('w3x-00b: control — without agentgate (read-write), the DELETE variants delete', async () => {
    const client = new pg.Client({ connectionString: adv.stack.pg.url() });
    await client.connect();
    try {
      for (const { id, sql } of DELETES) {
        await client.query('BEGIN');
        await client.query(sql);
        assert.equal((await client.query('select count(*)::int as n from users')).rows[0].n, 0, `${id}: ${sql} deletes`);
        await client.query('ROLLBACK');
      }
    } finally {
      await client.end();
    }
  });

  test('w3x-00c: control — without agentgate, parse analysis, planning and parameter input run user code before anything executes', async () => {
    const client = new pg.Client({ connectionString: adv.stack.pg.url(), options: '-c default_transaction_read_only=on' });
    await client.connect();
    try {
      for (const sql of ["PREPARE p_comp AS SELECT '(1)'::comp", 'EXPLAIN SELECT f_imm_reset()', "PREPARE p_dom(d_reset) AS SELECT 1; EXECUTE p_dom('1')"]) {
        const before = await statsReset();
        await new Promise((r) => setTimeout(r, 20));
        await client.query(sql);
        assert.notEqual(await statsReset(), before, `${sql} resets statistics for app`);
      }
    } finally {
      await client.end();
    }
  });

  test("w3x-80: a Parse of select '(1)'::comp alone (then Sync) is refused: parsing reads the literal and checks its domain member", () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', "select '(1)'::comp"), fe.SYNC]);
      await assertIntact(adv, 'Parse of a composite literal');
      assertRefused(msgs, 'Parse of a composite literal');
    }));

  test('w3x-81: Parse and Bind of select f_imm_reset() without Execute are refused: Bind plans, and planning folds an IMMUTABLE call', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('p81', 'select f_imm_reset()'), fe.bind('', 'p81', []), fe.SYNC]);
      await assertIntact(adv, 'Parse and Bind of an IMMUTABLE liar');
      assertRefused(msgs, 'Parse and Bind of an IMMUTABLE liar');
    }));

  test('w3x-82: a Parse declaring a parameter of the domain (select $1, types [d_reset]) is refused: Bind reads the value with the domain’s CHECK', async () => {
    const oid = Number((await adv.stack.pg.psql("SELECT 'd_reset'::regtype::oid", { database: 'app' })).trim());
    await withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'select $1', [oid]), fe.bind('', '', ['1']), fe.execute('', 0), fe.SYNC]);
      await assertIntact(adv, 'a parameter declared as the domain');
      assertRefused(msgs, 'a parameter declared as the domain');
    });
  });

  test('w3x-84: a FunctionCall of f_stable_arg(d_reset) by OID is refused: the server reads its argument as the domain, CHECK included', async () => {
    const oid = Number((await adv.stack.pg.psql("SELECT 'f_stable_arg(d_reset)'::regprocedure::oid", { database: 'app' })).trim());
    await withClient(async ({ c }) => {
      const msgs = await exchange(c, [functionCall(oid, ['1'])]);
      await assertIntact(adv, 'FunctionCall f_stable_arg');
      assertRefused(msgs, 'FunctionCall f_stable_arg');
    });
  });

  test('w3x-83: allowed — extended-protocol reads with declared built-in parameter types still run', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'select $1::int + 1', [23]), fe.bind('', '', ['41']), fe.execute('', 0), fe.SYNC]);
      assertNoError(msgs, 'select $1::int + 1');
      assert.equal(rowsOf(msgs).length, 1, describeMsgs(msgs));
      const more = await extended(c, 'select n from public.t_sort order by n');
      assertNoError(more, 'select n from public.t_sort order by n');
      assert.equal(rowsOf(more).length, 4);
      await assertIntact(adv, 'extended reads');
    }));

  test('w3x-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
