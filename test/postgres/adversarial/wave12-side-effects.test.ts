/**
 * Adversarial corpus, wave 12 — the gate's parser is newer than the server.
 *
 * The gate parses statement text with libpg-query (PostgreSQL 18's grammar); the stack's
 * server is PostgreSQL 15. PostgreSQL 16 and 17 made the SQL/JSON constructors and query
 * functions syntax — JSON_ARRAY(…), JSON_OBJECT(…), JSON_SCALAR(…), JSON_SERIALIZE(…),
 * JSON(…), JSON_VALUE/JSON_QUERY/JSON_EXISTS(…), JSON_ARRAYAGG(…) — and MERGE_ACTION().
 * The newer parser turns them into their own nodes, with no function call in sight, while
 * PostgreSQL 15 reads the same text as an ordinary call of a function of that name,
 * resolved on search_path: a user's `public.json_array(int)` runs. The legacy form
 * `json_object(args)` is worse: the new grammar rewrites it to `pg_catalog.json_object`
 * (an immutable built-in), while PostgreSQL 15 resolves the bare name and picks
 * `public.json_object(int)`. Types too: the keyword `json` (PostgreSQL 16) is
 * `pg_catalog.json` in the new tree, while PostgreSQL 15 looks the bare name up on
 * search_path, which any session may set (a harmless setting) to put a schema holding a
 * domain named json, with a CHECK, before pg_catalog.
 *
 * Each function here is a "production" object made by the superuser that resets the
 * database's statistics (what a read-only session can still do); the control shows each
 * statement doing so for `app` without agentgate, in a read-only session.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertIntact,
  assertNoError,
  assertRefused,
  assertStoreClean,
  describeMsgs,
  extended,
  readOnlyApp,
  RESET_SEED,
  rowsOf,
  simple,
  useResetCorpus,
  type ResetAttack,
} from './harness.js';

const body = 'LANGUAGE plpgsql VOLATILE AS $$ BEGIN PERFORM pg_stat_reset(); RETURN 1; END $$';

const EXTRA_SEED = `
${RESET_SEED}
CREATE FUNCTION public.json_array(int) RETURNS int ${body};
CREATE FUNCTION public.json_array() RETURNS int ${body};
CREATE FUNCTION public.json_object(int) RETURNS int ${body};
CREATE FUNCTION public.json_object() RETURNS int ${body};
CREATE FUNCTION public.json_scalar(int) RETURNS int ${body};
CREATE FUNCTION public.json_serialize(int) RETURNS int ${body};
CREATE FUNCTION public.json(int) RETURNS int ${body};
CREATE FUNCTION public.json_value(int, text) RETURNS int ${body};
CREATE FUNCTION public.json_query(int, text) RETURNS int ${body};
CREATE FUNCTION public.json_exists(int, text) RETURNS int ${body};
CREATE FUNCTION public.json_arrayagg(int) RETURNS int ${body};
CREATE FUNCTION public.merge_action() RETURNS int ${body};
-- The same text stored in a view and in a STABLE SQL function's body: PostgreSQL 15 reads
-- both as calls; agentgate parses the stored text with the same newer grammar.
CREATE VIEW w12_v_ja AS SELECT json_array(1) AS n;
GRANT SELECT ON w12_v_ja TO app;
CREATE FUNCTION w12_sql_js() RETURNS int LANGUAGE sql STABLE AS $$ SELECT json_scalar(1) $$;
-- A domain named json whose CHECK resets, in a schema app may use: the type keyword json
-- reaches agentgate's tree as pg_catalog.json, PostgreSQL 15 looks the bare name up.
CREATE SCHEMA w12types;
GRANT USAGE ON SCHEMA w12types TO app;
CREATE DOMAIN w12types.json AS text CHECK (f_reset_chk(length(VALUE)));
`;

/** A search_path the policy lets any session set (a harmless setting), with w12types before pg_catalog. */
const TYPES_FIRST = 'set search_path = w12types, pg_catalog, public';

/** Each resolves type json to w12types.json under TYPES_FIRST on PostgreSQL 15. */
const TYPE_ATTACKS = [
  { id: 'w12s-41', sql: "select '1'::json" },
  { id: 'w12s-42', sql: "select cast('1' as json)" },
  { id: 'w12s-43', sql: "select json '1'" },
  { id: 'w12s-44', sql: "select x from (values ('1'::text)) v(x) where x::json is not null" },
];

const RESETS: ResetAttack[] = [
  { id: 'w12s-01', sql: 'select json_array(1)', why: 'PG 18 reads a JSON_ARRAY constructor; PG 15 calls public.json_array(int)' },
  { id: 'w12s-02', sql: 'select json_array()', why: 'the empty constructor; PG 15 calls public.json_array()' },
  { id: 'w12s-03', sql: 'select json_object(1)', why: 'PG 18 rewrites the legacy form to pg_catalog.json_object; PG 15 resolves the bare name to public.json_object(int)' },
  { id: 'w12s-04', sql: 'select json_object()', why: 'the empty JSON_OBJECT constructor; PG 15 calls public.json_object()' },
  { id: 'w12s-05', sql: 'select json_scalar(1)', why: 'a JSON_SCALAR expression to PG 18; a call to PG 15' },
  { id: 'w12s-06', sql: 'select json_serialize(1)', why: 'a JSON_SERIALIZE expression to PG 18; a call to PG 15' },
  { id: 'w12s-07', sql: 'select json(1)', why: 'a JSON() parse expression to PG 18; a call of public.json(int) to PG 15' },
  { id: 'w12s-08', sql: "select json_value(1, 'x')", why: 'a JSON_VALUE query function to PG 18; a call to PG 15' },
  { id: 'w12s-09', sql: "select json_query(1, 'x')", why: 'a JSON_QUERY query function to PG 18; a call to PG 15' },
  { id: 'w12s-10', sql: "select json_exists(1, 'x')", why: 'a JSON_EXISTS predicate to PG 18; a call to PG 15' },
  { id: 'w12s-11', sql: 'select json_arrayagg(id) from public.users', why: 'a JSON_ARRAYAGG aggregate to PG 18; a call per row to PG 15' },
  { id: 'w12s-12', sql: 'select merge_action()', why: 'a MERGE support node to PG 18 (an error outside MERGE); a call to PG 15' },
  { id: 'w12s-13', sql: 'select 1 where json_array(1) = 1', why: 'the constructor in a WHERE clause' },
  { id: 'w12s-14', sql: 'select n from (select json_scalar(2) as n) s', why: 'the expression in a subquery' },
  { id: 'w12s-15', sql: 'select n from public.w12_v_ja', why: 'a view whose stored definition calls json_array(1)' },
  { id: 'w12s-16', sql: 'select public.w12_sql_js()', why: 'a STABLE SQL function whose body calls json_scalar(1)' },
];

describe('adversarial corpus wave 12: SQL/JSON syntax a newer parser reads, that PostgreSQL 15 calls as functions', () => {
  const corpus = useResetCorpus({
    seed: EXTRA_SEED,
    prefix: 'w12s',
    resets: RESETS,
    allowed: [
      // The JSON built-ins the server does have, and the legacy json_object written qualified.
      { id: 'w12s-30', sql: "select json_build_array(1, 'a')", rows: 1 },
      { id: 'w12s-31', sql: "select to_jsonb(u.name) from public.users u where u.id = 1", rows: 1 },
      { id: 'w12s-32', sql: "select pg_catalog.json_object('{a,1}'::text[])", rows: 1 },
      { id: 'w12s-33', sql: "select json_agg(id) from public.users", rows: 1 },
    ],
  });

  test('w12s-20: Parse/Bind/Execute of select json_array($1::int) (the extended protocol) is refused and resets nothing', () =>
    corpus.withClient(async ({ c }) => {
      const before = await corpus.statsReset();
      const msgs = await extended(c, 'select json_array($1::int)', ['1']);
      assert.equal(await corpus.statsReset(), before, `json_array through agentgate reset statistics: ${describeMsgs(msgs)}`);
      assertRefused(msgs, 'Parse of select json_array($1::int)');
      await assertIntact(corpus.adv());
    }));

  test('w12s-40: control — without agentgate, in a read-only session under that search_path, each type attack resets statistics', async () => {
    const client = await readOnlyApp(corpus.adv());
    try {
      await client.query(TYPES_FIRST);
      for (const { id, sql } of TYPE_ATTACKS) {
        const before = await corpus.statsReset();
        await new Promise((r) => setTimeout(r, 20));
        await client.query(sql);
        assert.notEqual(await corpus.statsReset(), before, `${id}: ${sql} resets statistics for app`);
      }
    } finally {
      await client.end();
    }
  });

  for (const { id, sql } of TYPE_ATTACKS) {
    test(`${id}: ${TYPES_FIRST} (allowed), then ${sql} — the type keyword json is pg_catalog.json to agentgate, w12types.json to PostgreSQL 15`, () =>
      corpus.withClient(async ({ c }) => {
        const set = await simple(c, TYPES_FIRST);
        assertNoError(set, TYPES_FIRST);
        const before = await corpus.statsReset();
        const msgs = await simple(c, sql);
        assert.equal(await corpus.statsReset(), before, `${sql} through agentgate reset statistics: ${describeMsgs(msgs)}`);
        assertRefused(msgs, sql);
        await assertIntact(corpus.adv());
      }));
  }

  // Written bare, json is judged in every schema (w12types.json here): in a database without
  // such a type it runs (false-denials.test.ts); qualified, it is pg_catalog's alone.
  test('w12s-45: allowed — json written qualified, and jsonb, still run next to w12types.json', () =>
    corpus.withClient(async ({ c }) => {
      for (const sql of ["select '{\"a\":1}'::pg_catalog.json", "select pg_catalog.json '[1]'", "select cast('1' as jsonb)"]) {
        const msgs = await simple(c, sql);
        assertNoError(msgs, sql);
        assert.equal(rowsOf(msgs).length, 1, `${sql}: ${describeMsgs(msgs)}`);
      }
    }));

  test('w12s-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(corpus.adv());
  });
});
