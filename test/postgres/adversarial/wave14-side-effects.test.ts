/**
 * Adversarial corpus, wave 14 — "a read is a read" where the gate's reading of a name or a
 * number differs from the server's.
 *
 * 1. Names. PostgreSQL folds identifiers by ASCII only: a quoted `"pg_bac\u212Aend_pid"` (with a
 *    KELVIN SIGN) or `"ÉW14"` is exactly that name to it, and pg_catalog.lower() folds by the
 *    database's locale (ASCII only under C). The gate folded the names it classified with
 *    JavaScript's toLowerCase, which maps U+212A to `k` and `É` to `é`, then compared them
 *    with lower() in the catalog: a KELVIN look-alike was judged as the built-in
 *    pg_backend_pid, a function `"w14_É"` as its harmless twin `"w14_é"`, and a domain named
 *    `"ÉW14"` was not found at all, so its CHECK (which resets statistics) went unseen.
 * 2. Numbers. Verdicts are shared across texts of the same shape (numbers replaced by 0, for
 *    every session). An integer literal is int4 up to 2147483647 and int8 above, and the type
 *    decides which candidate of an operator the server picks — the gate narrows an operator
 *    to the candidate matching its operands' types. With `###` defined on (int, int) and on
 *    (date, int), and a user IMPLICIT cast from bigint to date, `select 1 operator(public.###) 1`
 *    runs the built-in int4pl, while `select 3000000000 operator(public.###) 1` casts the
 *    bigint to date through the user function. Once anyone had run the first, the second
 *    (same shape) was allowed. (Written qualified: finding 3 below no longer narrows a bare
 *    `###`, whose candidates live outside pg_catalog.)
 * 3. Search paths. The same narrowing took an exact candidate wherever it lived, while the
 *    server picks among the operators its search_path sees, which the session sets (a
 *    harmless setting): with `%%%` on (bool, bool) in a schema off the path and on
 *    (date, date) in public, and a user IMPLICIT cast from bool to date, `true %%% false`
 *    was judged as booleq and ran the cast.
 *
 * Each hidden effect is pg_stat_reset() (what a read-only session can still do); each
 * control shows the statement resetting statistics for `app` without agentgate, in a
 * read-only session.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertIntact,
  assertNoError,
  assertRefused,
  assertStoreClean,
  connect,
  describeMsgs,
  exchange,
  fe,
  readOnlyApp,
  RESET_SEED,
  rowsOf,
  simple,
  useResetCorpus,
  type ResetAttack,
} from './harness.js';

const KELVIN = '\u212A';
const resets = 'LANGUAGE plpgsql VOLATILE AS $$ BEGIN PERFORM pg_stat_reset(); RETURN 1; END $$';

const EXTRA_SEED = `
${RESET_SEED}
-- Names PostgreSQL keeps as written (quoted; no multibyte character is ever folded).
CREATE DOMAIN "ÉW14" AS int CHECK (f_reset_chk(VALUE));
CREATE DOMAIN "ÉOK14" AS int;
CREATE FUNCTION "pg_bac${KELVIN}end_pid"() RETURNS int ${resets};
CREATE FUNCTION "w14_é"() RETURNS int LANGUAGE sql STABLE AS $$ SELECT 14 $$;
CREATE FUNCTION "w14_É"() RETURNS int ${resets};
-- An operator on (int, int) and on (date, int), both built-in functions, and a user IMPLICIT
-- cast from bigint to date: an int8 literal reaches date_pli through the cast.
CREATE FUNCTION w14_int8_date(bigint) RETURNS date LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN date '2000-01-01'; END $$;
CREATE CAST (bigint AS date) WITH FUNCTION w14_int8_date(bigint) AS IMPLICIT;
CREATE OPERATOR ### (LEFTARG = int, RIGHTARG = int, FUNCTION = int4pl);
CREATE OPERATOR ### (LEFTARG = date, RIGHTARG = int, FUNCTION = date_pli);
-- An exact (bool, bool) candidate off the default search_path (w14hid) or on it (public),
-- the other candidate on (date, date), and a user IMPLICIT cast from bool to date.
CREATE SCHEMA w14hid;
CREATE SCHEMA w14vis;
GRANT USAGE ON SCHEMA w14hid, w14vis TO app;
CREATE FUNCTION w14_bool_date(bool) RETURNS date LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN date '2000-01-01'; END $$;
CREATE CAST (bool AS date) WITH FUNCTION w14_bool_date(bool) AS IMPLICIT;
CREATE OPERATOR w14hid.%%% (LEFTARG = bool, RIGHTARG = bool, FUNCTION = booleq);
CREATE OPERATOR public.%%% (LEFTARG = date, RIGHTARG = date, FUNCTION = date_eq);
CREATE OPERATOR public.&&& (LEFTARG = bool, RIGHTARG = bool, FUNCTION = booleq);
CREATE OPERATOR w14vis.&&& (LEFTARG = date, RIGHTARG = date, FUNCTION = date_eq);
`;

const RESETS: ResetAttack[] = [
  { id: 'w14s-01', sql: 'select 1::"ÉW14"', why: 'a domain named with a non-ASCII capital: the gate looked up "éw14" and found nothing, so its CHECK went unseen' },
  { id: 'w14s-02', sql: 'select cast(2 as "ÉW14") as w', why: 'the same domain through CAST' },
  { id: 'w14s-03', sql: 'select x from (values (3)) v(x) where x::"ÉW14" is not null', why: 'the same domain in a WHERE clause' },
  { id: 'w14s-04', sql: `select "pg_bac${KELVIN}end_pid"()`, why: 'a KELVIN SIGN look-alike of pg_backend_pid: toLowerCase made it the built-in' },
  { id: 'w14s-05', sql: `select n from (select "pg_bac${KELVIN}end_pid"() as n) s`, why: 'the look-alike in a subquery' },
  { id: 'w14s-06', sql: 'select "w14_É"()', why: 'an upper-case É twin of the harmless "w14_é": toLowerCase made them one name' },
  { id: 'w14s-07', sql: 'select true %%% false as w7', why: 'the exact (bool, bool) candidate is in w14hid, off the search_path: the server runs public.%%%(date, date) through the user cast from bool' },
];

/** A second text of each pair shares the first's shape (numbers replaced): the int8 literal picks the (date, int) candidate. */
const SHAPE_PAIRS = [
  { id: 'w14s-21', primer: 'select 1 operator(public.###) 1 as a21', attack: 'select 3000000000 operator(public.###) 1 as a21', why: 'a ten-digit int8 literal after a one-digit int4 one' },
  { id: 'w14s-22', primer: 'select 2147483647 operator(public.###) 0 as a22', attack: 'select 2147483648 operator(public.###) 0 as a22', why: 'the int4 boundary: 2147483647 is int4, 2147483648 int8' },
  { id: 'w14s-23', primer: 'select 123 operator(public.###) 4 as a23', attack: 'select 12345678901234 operator(public.###) 4 as a23', why: 'a 14-digit literal' },
];

describe('adversarial corpus wave 14: names and numbers as PostgreSQL reads them', () => {
  const corpus = useResetCorpus({
    seed: EXTRA_SEED,
    prefix: 'w14s',
    resets: RESETS,
    allowed: [
      // The harmless names next to the look-alikes still run.
      { id: 'w14s-30', sql: 'select pg_backend_pid()', rows: 1 },
      { id: 'w14s-31', sql: 'select "w14_é"()', rows: 1 },
      { id: 'w14s-32', sql: 'select 5::"ÉOK14"', rows: 1 },
      { id: 'w14s-33', sql: 'select 1 operator(public.###) 1 as ok33', rows: 1 },
      // Long numbers still run (each text its own shape). An operator between operands of
      // types the text does not fix is judged by all its candidates, so with the user
      // implicit cast from bigint in this database, `3000000000 + 1` is refused here.
      { id: 'w14s-34', sql: 'select 12345678901 as big, 2147483648 as edge, 2147483647 as top', rows: 1 },
      { id: 'w14s-35', sql: 'select id from public.users where id = 2 and 3000000000::int8 is not null', rows: 1 },
      // The exact candidate named with its schema is the one the server runs, whatever the path.
      { id: 'w14s-36', sql: 'select true operator(w14hid.%%%) false as ok36', rows: 1 },
      { id: 'w14s-37', sql: 'select 2 = 2 and true = true and 1 < 3 as ok37', rows: 1 },
    ],
  });

  test('w14s-20: control — without agentgate, in a read-only session, the int4 text of each pair runs int4pl and the int8 text resets statistics', async () => {
    const client = await readOnlyApp(corpus.adv());
    try {
      for (const { primer, attack } of SHAPE_PAIRS) {
        const before = await corpus.statsReset();
        await new Promise((r) => setTimeout(r, 20));
        await client.query(primer);
        assert.equal(await corpus.statsReset(), before, `${primer} resets nothing`);
        await client.query(attack);
        assert.notEqual(await corpus.statsReset(), before, `${attack} resets statistics for app`);
      }
    } finally {
      await client.end();
    }
  });

  for (const { id, primer, attack, why } of SHAPE_PAIRS) {
    test(`${id}: ${primer} (allowed), then ${attack} — ${why}: refused, nothing reset`, () =>
      corpus.withClient(async ({ c }) => {
        const first = await simple(c, primer);
        assertNoError(first, primer);
        assert.equal(rowsOf(first).length, 1, `${primer}: ${describeMsgs(first)}`);
        const before = await corpus.statsReset();
        const msgs = await simple(c, attack);
        assert.equal(await corpus.statsReset(), before, `${attack} through agentgate reset statistics: ${describeMsgs(msgs)}`);
        assertRefused(msgs, attack);
        await assertIntact(corpus.adv());
      }));
  }

  test('w14s-24: the primer in one session, the int8 text in another (the shape cache is every session’s): refused, nothing reset', async () => {
    const primer = 'select 77 operator(public.###) 7 as a24';
    const attack = 'select 7700000000 operator(public.###) 7 as a24';
    const one = await connect(corpus.adv());
    try {
      assertNoError(await simple(one.c, primer), primer);
    } finally {
      one.close();
    }
    await corpus.withClient(async ({ c }) => {
      const before = await corpus.statsReset();
      const msgs = await simple(c, attack);
      assert.equal(await corpus.statsReset(), before, `${attack} through agentgate reset statistics: ${describeMsgs(msgs)}`);
      assertRefused(msgs, attack);
      await assertIntact(corpus.adv());
    });
  });

  test('w14s-25: the primer as a simple Query, then Parse/Bind/Execute of the int8 text (the extended protocol): refused, nothing reset', () =>
    corpus.withClient(async ({ c }) => {
      const primer = 'select 88 operator(public.###) 8 as a25';
      const attack = 'select 8800000000 operator(public.###) 8 as a25';
      assertNoError(await simple(c, primer), primer);
      const before = await corpus.statsReset();
      const msgs = await exchange(c, [fe.parse('', attack), fe.bind('', '', []), fe.execute('', 0), fe.SYNC]);
      assert.equal(await corpus.statsReset(), before, `${attack} through agentgate reset statistics: ${describeMsgs(msgs)}`);
      assertRefused(msgs, `Parse of ${attack}`);
      await assertIntact(corpus.adv());
    }));

  test('w14s-40: control — without agentgate, in a read-only session, set search_path = w14vis, then select true &&& false resets statistics (public.&&& on bool is off that path)', async () => {
    const client = await readOnlyApp(corpus.adv());
    try {
      await client.query('set search_path = w14vis');
      const before = await corpus.statsReset();
      await new Promise((r) => setTimeout(r, 20));
      await client.query('select true &&& false');
      assert.notEqual(await corpus.statsReset(), before, 'select true &&& false under search_path w14vis resets statistics for app');
    } finally {
      await client.end();
    }
  });

  test('w14s-41: set search_path = w14vis (allowed, harmless), then select true &&& false — the exact public.&&&(bool, bool) is off the path the session set: refused, nothing reset', () =>
    corpus.withClient(async ({ c }) => {
      assertNoError(await simple(c, 'set search_path = w14vis'), 'set search_path = w14vis');
      const before = await corpus.statsReset();
      const msgs = await simple(c, 'select true &&& false');
      assert.equal(await corpus.statsReset(), before, `select true &&& false through agentgate reset statistics: ${describeMsgs(msgs)}`);
      assertRefused(msgs, 'select true &&& false');
      await assertIntact(corpus.adv());
    }));

  test('w14s-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(corpus.adv());
  });
});
