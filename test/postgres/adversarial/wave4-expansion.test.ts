/**
 * Adversarial corpus, wave 4 — user code the statement expansion does not reach.
 *
 * The gate now judges a statement as it runs (statement-expansion.ts): views, policies, SQL
 * bodies, and the code of every type its values have — where "its values' types" are the
 * types the text names, the columns it references by name, the whole rows it names, and
 * the argument and result types of the functions it calls. PostgreSQL finds a value's type
 * in more places than those:
 * - a column renamed by an alias list (`t_sort s(x)`) and referenced qualified (`s.x`): the
 *   gate looks the name `x` up among the relations' own column names and finds nothing, so
 *   the column's type (here one with a volatile default operator class) is never seen —
 *   directly, inside a STABLE SQL function's body it vouches for, or in a view's definition;
 * - a bare name that is a whole row in its own scope but happens to be a column of another
 *   relation elsewhere in the statement (a subquery's): the gate decides "column" for the
 *   whole statement, so the row type (and its user cast) is never seen;
 * - an operator: its implementing function is judged, but the operator's argument and result
 *   types are not part of the statement's types. A user operator over a LANGUAGE internal
 *   wrapper (vouched as the built-in it wraps) coerces its argument to a domain (CHECK) or
 *   returns a type with a volatile operator class; a built-in geometric operator written
 *   between two integers reaches point through a user implicit cast (int AS point);
 * - a type named only by its OID: the built-in input functions array_in, record_in,
 *   domain_in, range_in and multirange_in are STABLE and read their text as the type whose
 *   OID they are given (a regtype, even a computed one), domain CHECK included.
 * - in the extended protocol, the same operator holes with a parameter: a parameter with no
 *   declared type is inferred as the operator's domain argument (its CHECK runs at Bind),
 *   and parameters declared int4 reach point through the implicit cast — only declared
 *   types are expanded.
 * Each hidden effect is pg_stat_reset() (checked for `app` without agentgate in a read-only
 * session by the control cases). Cases the gate already stops are kept as regressions and
 * marked so. A few harmless statements of the same shapes must stay allowed.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { assertIntact, assertRefused, assertStoreClean, exchange, fe, functionCall, useResetCorpus, type Adversary, type ResetAttack, MYTEXT_SEED, RESET_SEED, CASTS_SEED } from './harness.js';

const EXTRA_SEED = `
${RESET_SEED}
CREATE TYPE comp AS (x d_reset);
CREATE TYPE r_reset AS RANGE (subtype = d_reset);

${MYTEXT_SEED}

-- The alias-renamed column, hidden inside a STABLE SQL body and a view's definition.
CREATE FUNCTION f_stable_alias() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(DISTINCT s.x) FROM t_sort s(x) $$;
CREATE VIEW v_alias AS SELECT count(DISTINCT s.x) AS c FROM t_sort s(x);
GRANT SELECT ON v_alias TO app;

${CASTS_SEED}
-- A STABLE SQL body whose only code is a built-in operator between two integers.
CREATE FUNCTION f_stable_dist() RETURNS float8 LANGUAGE sql STABLE AS $$ SELECT 1 <-> 2 $$;

-- Operators implemented by LANGUAGE internal wrappers of IMMUTABLE built-ins, over user types.
CREATE FUNCTION f_dom_pl(d_reset, int) RETURNS int LANGUAGE internal IMMUTABLE STRICT AS 'int4pl';
CREATE OPERATOR #%# (LEFTARG = d_reset, RIGHTARG = int, FUNCTION = f_dom_pl);
CREATE FUNCTION f_mycat(text, text) RETURNS mytext LANGUAGE internal IMMUTABLE STRICT AS 'textcat';
CREATE OPERATOR ||| (LEFTARG = text, RIGHTARG = text, FUNCTION = f_mycat);
`;

/** Every case's hidden effect is pg_stat_reset() (checked directly in w4x-00). */
const RESETS: ResetAttack[] = [
  // ───────────── a column renamed by an alias list, referenced qualified ─────────────
  { id: 'w4x-01', sql: 'select s.x from public.t_sort s(x) order by s.x', why: 'ORDER BY sorts mytext with its volatile btree support; the text never names v' },
  { id: 'w4x-02', sql: 'select distinct s.x from public.t_sort s(x)', why: 'DISTINCT compares mytext with its operator class' },
  { id: 'w4x-03', sql: 'select count(distinct s.x) from public.t_sort s(x)', why: 'an aggregate’s DISTINCT sorts mytext' },
  { id: 'w4x-04', sql: 'select 1 from public.t_sort s(x) group by s.x', why: 'GROUP BY compares mytext' },
  { id: 'w4x-05', sql: 'select 1 from public.t_sort s(x) group by rollup(s.x)', why: 'GROUP BY ROLLUP sorts mytext' },
  { id: 'w4x-06', sql: 'select s.x from public.t_sort s(x) union select s.x from public.t_sort s(x)', why: 'UNION removes duplicates with mytext’s operator class' },
  { id: 'w4x-07', sql: 'select s.x from public.t_sort s(x) except select s.x from public.t_sort s(x)', why: 'EXCEPT compares with mytext’s operator class' },
  { id: 'w4x-08', sql: 'select rank() over (order by s.x) from public.t_sort s(x)', why: 'a window’s ORDER BY sorts mytext' },
  { id: 'w4x-09', sql: 'select f_stable_alias()', why: 'a STABLE SQL body counting DISTINCT an alias-renamed mytext column: vouched for' },
  { id: 'w4x-10', sql: 'select c from public.v_alias', why: 'a view whose definition counts DISTINCT an alias-renamed mytext column' },
  // ───────────── a whole row the gate takes for another relation's column ─────────────
  {
    id: 'w4x-11',
    sql: 'select card::int from public.users card where exists (select card from public.cards)',
    why: 'the outer `card` is users’ whole row (cast by f_cast); the gate sees cards.card, a column, so no row type',
  },
  {
    id: 'w4x-12',
    sql: 'select card::int from public.users card union all select 1 from public.cards where card is null',
    why: 'the same across UNION ALL branches: each branch resolves `card` in its own scope',
  },
  // ───────────── an operator's argument and result types ─────────────
  { id: 'w4x-13', sql: 'select 1 #%# 2', why: 'the user operator’s left argument is d_reset: 1 is coerced and its CHECK runs (the function is an internal wrapper of int4pl)' },
  { id: 'w4x-14', sql: "select ('a' ||| name) from public.users order by 1", why: 'the user operator returns mytext (an internal wrapper of textcat): ORDER BY sorts it' },
  { id: 'w4x-15', sql: 'select 1 <-> 2', why: 'the built-in point <-> point: each int reaches point through the user implicit cast f_int_point' },
  { id: 'w4x-16', sql: 'select 1 ~= 2', why: 'point ~= point, the same implicit cast' },
  { id: 'w4x-17', sql: 'select 1 ?- 2', why: 'point ?- point, the same implicit cast' },
  { id: 'w4x-18', sql: 'select f_stable_dist()', why: 'a STABLE SQL body that is just 1 <-> 2: vouched for' },
  // ───────────── a type named only by its OID ─────────────
  { id: 'w4x-19', sql: "select domain_in('1', 'd_reset'::regtype, -1) is null", why: 'domain_in (STABLE) reads its text as the domain: CHECK included' },
  { id: 'w4x-20', sql: "select domain_in('1', ('d_' || 'reset')::regtype, -1) is null", why: 'the same with the type’s name computed' },
  { id: 'w4x-21', sql: "select array_in('{1}', 'd_reset'::regtype, -1)::text", why: 'array_in reads each element with the domain’s input' },
  { id: 'w4x-22', sql: "select record_in('(1)', 'comp'::regtype, -1)::text", why: 'record_in reads a composite with a domain member' },
  { id: 'w4x-23', sql: "select range_in('[1,2]', 'r_reset'::regtype, -1)::text", why: 'range_in reads the bounds as the domain' },
  { id: 'w4x-24', sql: "select multirange_in('{[1,2]}', 'r_reset_multirange'::regtype, -1)::text", why: 'multirange_in, through the range, to the domain' },
  // ───────────── regressions: the gate already stops these ─────────────
  { id: 'w4x-25', sql: 'select * from public.t_sort a(x) join public.t_sort b(x) using (x)', why: 'regression: USING an alias-renamed column, but * names every column', regression: true },
  { id: 'w4x-26', sql: 'select distinct s from public.t_sort s', why: 'regression: DISTINCT of a whole row (its row type holds mytext)', regression: true },
  { id: 'w4x-27', sql: 'select distinct x from public.t_sort s(x)', why: 'regression: an unqualified alias name is no column, so taken as a whole row', regression: true },
  { id: 'w4x-28', sql: 'select u::int from public.users u', why: 'regression: a whole row cast by f_cast, no other relation in sight', regression: true },
  { id: 'w4x-29', sql: 'select box(1, 2)', why: 'regression: a function’s argument types reach the implicit cast', regression: true },
];

/** Harmless statements of the same shapes: a correct gate must allow them. */
const ALLOWED: { id: string; sql: string; rows: number }[] = [
  { id: 'w4x-40', sql: 'select s.x from public.users s(x) order by s.x', rows: 2 },
  { id: 'w4x-41', sql: 'select count(*) from public.t_sort s(x)', rows: 1 },
  { id: 'w4x-42', sql: 'select s.y from public.t_sort s(x, y) order by s.y', rows: 4 },
  { id: 'w4x-43', sql: 'select 1 + 2', rows: 1 },
  { id: 'w4x-44', sql: 'select name from public.users card where exists (select card from public.cards)', rows: 2 },
];

describe('adversarial corpus wave 4: user code the statement expansion does not reach', () => {
  const corpus = useResetCorpus({ seed: EXTRA_SEED, prefix: 'w4x', resets: RESETS, allowed: ALLOWED });
  const { withClient, statsReset } = corpus;
  let adv!: Adversary;
  before(() => {
    adv = corpus.adv();
  });

  test('w4x-00b: control — without agentgate, a parameter inferred as an operator’s domain argument runs the CHECK; int parameters of <-> run the implicit cast', async () => {
    const client = new pg.Client({ connectionString: adv.stack.pg.url(), options: '-c default_transaction_read_only=on' });
    await client.connect();
    try {
      const before = await statsReset();
      await new Promise((r) => setTimeout(r, 20));
      await client.query({ text: 'select $1 #%# 2', values: ['1'] });
      assert.notEqual(await statsReset(), before, 'select $1 #%# 2 resets statistics for app');
      const again = await statsReset();
      await new Promise((r) => setTimeout(r, 20));
      await client.query('PREPARE p31(int, int) AS select $1 <-> $2; EXECUTE p31(1, 2)');
      assert.notEqual(await statsReset(), again, 'select $1 <-> $2 (int, int) resets statistics for app');
    } finally {
      await client.end();
    }
  });

  test('w4x-30: Parse/Bind/Execute of select $1 #%# 2 (no declared types) is refused: the parameter is inferred as d_reset and read with its CHECK', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'select $1 #%# 2'), fe.bind('', '', ['1']), fe.execute('', 0), fe.SYNC]);
      await assertIntact(adv, 'a parameter inferred as the domain');
      assertRefused(msgs, 'a parameter inferred as the domain');
    }));

  test('w4x-31: Parse/Bind/Execute of select $1 <-> $2 declared int4, int4 is refused: the built-in operator reaches point through the user implicit cast', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'select $1 <-> $2', [23, 23]), fe.bind('', '', ['1', '2']), fe.execute('', 0), fe.SYNC]);
      await assertIntact(adv, 'an operator over declared int parameters');
      assertRefused(msgs, 'an operator over declared int parameters');
    }));

  test('w4x-32: a FunctionCall of domain_in by OID, naming d_reset by OID in its arguments, is refused: the domain’s CHECK runs', async () => {
    const [fn, type] = (await adv.stack.pg.psql("SELECT 'domain_in(cstring, oid, int)'::regprocedure::oid || ' ' || 'd_reset'::regtype::oid", { database: 'app' })).trim().split(' ').map(Number);
    await withClient(async ({ c }) => {
      const msgs = await exchange(c, [functionCall(fn!, ['1', String(type), '-1'])]);
      await assertIntact(adv, 'FunctionCall domain_in');
      assertRefused(msgs, 'FunctionCall domain_in');
    });
  });

  test('w4x-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
