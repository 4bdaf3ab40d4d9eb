/**
 * Adversarial corpus, wave 5 — masked values leaving through gaps in the analyses rather
 * than through new exits:
 * - a FROM function whose result is a composite row (`unnest(array(select u from users u))`,
 *   `FROM CAST(… AS users)`) expands to that row's columns, which the provenance analysis
 *   does not know, so an unqualified name in it resolves (for the analysis) to a clean
 *   column of an outer query, or a qualified one to a clean sibling column;
 * - a relation's column alias list (`FROM users AS u(a, b, e)`) renames the masked column,
 *   so the statement-reads analysis behind error masking never sees it named;
 * - `IS [NOT] NULL` over a computed expression (the NullTest exemption), which answers a
 *   bit of the value per row;
 * - a select-list output computed from a masked value through a correlated subquery's WHERE,
 *   LIMIT, aggregate ORDER BY, window ORDER BY or EXISTS: the value itself (character
 *   codes, or their bits) leaves in one statement, not "a bit per statement"; likewise
 *   a recursive CTE's CYCLE mark;
 * - the same channel without a subquery: a WHERE, JOIN … ON or HAVING condition that
 *   computes over the masked value and relates it to another column (`ascii(substr(
 *   u.email, i, 1)) = g`) keeps exactly the rows whose clean outputs spell the value.
 * Every family has a control that runs the same statements directly against PostgreSQL as
 * the app role and reads the secret back. Every attack: refused, or answered with neither
 * the raw value, a decodable transform of it, nor a short fragment of a local part in any
 * byte the client received — and, where the answer is codes or bits, not in their decoding.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertIntact,
  assertNoError,
  assertNoRaw,
  assertRefusedOrRows,
  assertStoreClean,
  describeMsgs,
  EMAIL1,
  errorsOf,
  exchange,
  extended,
  fe,
  REFUSAL_CODES,
  rowsOf,
  simple,
  useAdversary,
  type Adversary,
  type Msg,
  assertNoFragments,
  decodeBits,
  decodeCodes,
  direct,
  directRows,
} from './harness.js';

const N = EMAIL1.length;

// ───────────── family A: a composite-returning FROM function the analysis takes as one column ─────────────
// PostgreSQL expands a FROM function whose result is a composite type into that type's
// columns; provenance.ts (SRF_COLUMNS: unnest is 'scalar'; a CAST in FROM is one column
// named after the type) gives it one column, so `email` inside it is not found there and
// is looked up in the outer query, where a clean column of that name answers.
const COMPOSITE: readonly { id: string; why: string; sql: string }[] = [
  {
    id: 'w5m-01',
    why: 'unnest(array(select u from users u)) in FROM, an outer clean `email`',
    sql: "select (select split_part(email, '@', 1) from unnest(array(select u from users u where id = 1)) x) as e from (values ('clean')) o(email)",
  },
  {
    id: 'w5m-02',
    why: 'FROM CAST((select u …) AS users), an outer clean `email`',
    sql: "select (select split_part(email, '@', 1) from cast((select u from users u where id = 1) as users) x) as e from (values ('clean')) o(email)",
  },
  {
    id: 'w5m-03',
    why: 'a qualified x.email, x aliased x(a), with a sibling item having a clean column x',
    sql: "select split_part(x.email, '@', 1) as e from unnest(array(select u from users u where id = 1)) x(a), (values ('clean')) y(x)",
  },
  {
    id: 'w5m-04',
    why: 'the view row type (v_users: id, contact) unnested, an outer clean `contact`',
    sql: "select (select split_part(contact, '@', 1) from unnest(array(select v from v_users v where id = 1)) x) as e from (values ('clean')) o(contact)",
  },
  {
    id: 'w5m-05',
    why: 'detector-tainted note (AWS key), lower-cased so the detector misses it',
    sql: "select (select lower(note) from unnest(array(select u from users u where id = 1)) x) as e from (values ('clean')) o(note)",
  },
  {
    id: 'w5m-06',
    why: 'detector-tainted card, its leading 12 digits',
    sql: "select (select substr(card, 1, 12) from unnest(array(select c from cards c where id = 1)) x) as e from (values ('clean')) o(card)",
  },
  {
    id: 'w5m-07',
    why: 'ROWS FROM (unnest(…)) WITH ORDINALITY, an outer clean `email`',
    sql: "select (select split_part(email, '@', 1) from rows from (unnest(array(select u from users u where id = 1))) with ordinality x) as e from (values ('clean')) o(email)",
  },
];
/** The same gap, the whole email as one character code per row (numbers: no detector looks). */
const COMPOSITE_CODES =
  `select i, (select ascii(substr(email, i, 1)) from unnest(array(select u from users u where id = 1)) x) as c ` +
  `from (values ('clean')) o(email), generate_series(1, ${N}) i order by i`;

// ───────────── family B: a column alias list hides the masked column from statement-reads ─────────────
// statement-reads.ts looks for the masked column's NAME among the column references; with
// `users AS u(a, b, e)` the text says only `e`, so the verdict is `none` and the server's
// error quoting a value computed from email is scanned by the detectors only.
const ALIASED: readonly { id: string; why: string; sql: string; control: RegExp }[] = [
  { id: 'w5m-11', why: '42704 quotes the name', sql: "select current_setting(split_part(e, '@', 1)) from users u(a, b, e) where a = 1", control: /qxzjv\.wolk/ },
  { id: 'w5m-12', why: '3F000 quotes the schema part', sql: "select split_part(e, '@', 1)::regclass from users u(a, b, e) where a = 1", control: /"qxzjv"/ },
  { id: 'w5m-13', why: '2200N: the XML parser detail echoes the text unquoted', sql: "select xmlparse(content split_part(e, '@', 1) || '<') from users u(a, b, e) where a = 1", control: /qxzjv\.wolk</ },
  { id: 'w5m-14', why: '22P02: the JSON CONTEXT line echoes the text unquoted', sql: "select ('{\"a\": ' || split_part(e, '@', 1) || '}')::json from users u(a, b, e) where a = 1", control: /qxzjv/ },
  { id: 'w5m-15', why: 'detector-tainted card column renamed: 12 leading digits', sql: 'select current_setting(substr(k, 1, 12)) from cards c(i, k) where i = 1', control: /411111111111/ },
  { id: 'w5m-16', why: 'detector-tainted note renamed: the AWS key lower-cased', sql: 'select current_setting(lower(substr(n, 12, 20))) from users u(a, b, c, n) where a = 1', control: /akiaiosfodnn7example/ },
  { id: 'w5m-17', why: 'a JOIN alias list', sql: "select current_setting(split_part(e, '@', 1)) from (users join cards using (id)) j(i, n, e) where i = 1", control: /qxzjv\.wolk/ },
  { id: 'w5m-18', why: 'only in WHERE', sql: "select 1 from users u(a, b, e) where a = 1 and current_setting(split_part(e, '@', 1)) is null", control: /qxzjv\.wolk/ },
];

// ───────────── family C: IS [NOT] NULL over a computed expression ─────────────
// provenance.ts skips NullTest whatever its operand (length() was restricted to plain
// arguments for the same reason; IS NULL was not): one bit of the value per row.
const BITS_FROM = `from users u, generate_series(1, ${N}) i, generate_series(0, 7) b where u.id = 1 order by i, b`;
const NULLTEST: readonly { id: string; why: string; sql: string; setWhen: boolean }[] = [
  { id: 'w5m-21', why: 'nullif(bit, 0) IS NULL', sql: `select i, b, nullif(ascii(substr(u.email, i, 1)) & (1 << b), 0) is null ${BITS_FROM}`, setWhen: false },
  { id: 'w5m-22', why: 'nullif(bit, 0) IS NOT NULL', sql: `select i, b, nullif(ascii(substr(u.email, i, 1)) & (1 << b), 0) is not null ${BITS_FROM}`, setWhen: true },
  { id: 'w5m-23', why: 'postfix NOTNULL over a CASE', sql: `select i, b, (case when ascii(substr(u.email, i, 1)) & (1 << b) <> 0 then 1 end) notnull ${BITS_FROM}`, setWhen: true },
];

// ───────────── family D: select-list outputs computed through a subquery's predicate, LIMIT or ordering ─────────────
// Not contributing in provenance.ts: WHERE, LIMIT, aggregate ORDER BY, window ORDER BY,
// EXISTS. Each below is an output (not a filter of the statement's rows) whose value is a
// function of the masked value: the character code itself, or its bits.
const PER_CHAR = `from users u, generate_series(1, ${N}) i where u.id = 1 order by i`;
const PREDICATE_CODES: readonly { id: string; why: string; sql: string }[] = [
  { id: 'w5m-30', why: 'a correlated scalar subquery whose WHERE matches the code', sql: `select i, (select g from generate_series(0, 255) g where g = ascii(substr(u.email, i, 1))) ${PER_CHAR}` },
  { id: 'w5m-31', why: 'count(*) of a subquery LIMITed by the code', sql: `select i, (select count(*) from (select from generate_series(1, 255) limit ascii(substr(u.email, i, 1))) s) ${PER_CHAR}` },
  { id: 'w5m-32', why: 'aggregate ORDER BY distance to the code, first element', sql: `select i, (select (array_agg(g order by abs(g - ascii(substr(u.email, i, 1)))))[1] from generate_series(0, 255) g) ${PER_CHAR}` },
  { id: 'w5m-33', why: 'first_value over a window ORDER BY distance to the code', sql: `select i, (select first_value(g) over (order by abs(g - ascii(substr(u.email, i, 1)))) from generate_series(0, 255) g limit 1) ${PER_CHAR}` },
];
const EXISTS_BITS = `select i, b, exists(select where ascii(substr(u.email, i, 1)) & (1 << b) <> 0) ${BITS_FROM}`;
/** A recursive CTE's CYCLE mark (no sources in provenance.ts): row 2 repeats row 1's c = 0 exactly when the bit is 0. */
const CYCLE_BITS =
  `select i, b, (with recursive t(n, c) as (select 0, 0 union all select n + 1, (ascii(substr(u.email, i, 1)) >> b) & 1 from t where n < 1) ` +
  `cycle c set m using p select bool_or(m) from t) ${BITS_FROM}`;

// ───────────── family E: a row-linking condition at the top level ─────────────
// No subquery: the rows the condition keeps (or the order it puts them in) carry the code
// in a clean column (g, or a count). provenance.ts counted no WHERE/ON/HAVING/ORDER BY.
const CODES_FROM = `from users u, generate_series(1, ${N}) i, generate_series(0, 255) g where u.id = 1`;
const LINKING: readonly { id: string; why: string; sql: string }[] = [
  { id: 'w5m-50', why: 'WHERE relates the code to a generated number', sql: `select i, g ${CODES_FROM} and ascii(substr(u.email, i, 1)) = g order by i` },
  {
    id: 'w5m-51',
    why: 'JOIN … ON relates the code to a generated number',
    sql: `select i, g from users u join generate_series(1, ${N}) i on u.id = 1 join generate_series(0, 255) g on ascii(substr(u.email, i, 1)) = g order by i`,
  },
  { id: 'w5m-52', why: 'an aggregate counts the rows below the code', sql: `select i, count(*) from users u, generate_series(1, ${N}) i, generate_series(1, 255) g where u.id = 1 and g <= ascii(substr(u.email, i, 1)) group by i order by i` },
  { id: 'w5m-53', why: 'HAVING relates the code to a group key', sql: `select i, g ${CODES_FROM} group by i, g, u.email having ascii(substr(u.email, i, 1)) = g order by i` },
  { id: 'w5m-54', why: 'under NOT, as an inequality', sql: `select i, g ${CODES_FROM} and not (ascii(substr(u.email, i, 1)) <> g) order by i` },
  { id: 'w5m-55', why: 'IN over a correlated subquery of the code', sql: `select i, g ${CODES_FROM} and g in (select ascii(substr(u.email, i, 1))) order by i` },
  { id: 'w5m-56', why: 'inside a CTE read by the outer query', sql: `with c as (select i, g ${CODES_FROM} and ascii(substr(u.email, i, 1)) = g) select i, g from c order by i` },
  { id: 'w5m-57', why: 'OR of two linking conjunctions', sql: `select i, g ${CODES_FROM} and ((ascii(substr(u.email, i, 1)) = g and g > 0) or (g = 0 and false)) order by i` },
  { id: 'w5m-58', why: 'DISTINCT ON keeps the first row of an ORDER BY distance to the code', sql: `select distinct on (i) i, g ${CODES_FROM} order by i, abs(g - ascii(substr(u.email, i, 1)))` },
];

describe('adversarial corpus wave 5: gaps in the provenance and statement-reads analyses', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    check: (cl) => assertNoFragments(cl.bytes(), 'the client'),
  });

  /** The first error, if any, is a refusal (not a syntax error that would prove nothing). */
  function assertRefusalOrNone(msgs: Msg[], what: string): void {
    const errs = errorsOf(msgs);
    if (errs.length > 0) assert.ok(REFUSAL_CODES.includes(errs[0]!.code), `${what}: ${errs[0]!.code} ${errs[0]!.message}`);
  }

  /** A read answered (or refused) with nothing of a secret, and the rows' decoding holds none either. */
  function decoded(id: string, why: string, sql: string, decode: (rows: (string | null)[][]) => string): void {
    test(`${id}: ${why} — ${sql}`, () =>
      withClient(async ({ c }) => {
        const msgs = await simple(c, sql);
        assertRefusedOrRows(msgs, sql);
        const text = decode(rowsOf(msgs));
        assertNoRaw(text, `the rows decoded (${JSON.stringify(text)})`);
        assertNoFragments(text, `the rows decoded (${JSON.stringify(text)})`);
        await assertIntact(adv);
      }));
  }

  // ───────────────────────────── controls ─────────────────────────────
  test('w5m-00a: control — without agentgate, a composite FROM function gives the masked columns under their own names', () =>
    direct(adv, async (client) => {
      const got: string[][] = [];
      for (const { sql } of COMPOSITE) got.push((await directRows(client, sql)).map((r) => String(r[0])));
      assert.deepEqual(got, [['qxzjv.wolk'], ['qxzjv.wolk'], ['qxzjv.wolk'], ['qxzjv.wolk'], ['deploy key akiaiosfodnn7example rotate monthly'], ['411111111111'], ['qxzjv.wolk']]);
      assert.equal(decodeCodes(await directRows(client, COMPOSITE_CODES)), EMAIL1);
    }));

  test('w5m-00b: control — without agentgate, each aliased statement fails with the computed value in its error', () =>
    direct(adv, async (client) => {
      for (const { sql, control } of ALIASED) {
        const err = await client.query(sql).then(
          () => undefined,
          (e: unknown) => e as { message: string; detail?: string; where?: string },
        );
        assert.ok(err, `${sql} must fail`);
        const all = [err.message, err.detail ?? '', err.where ?? ''].join('\n');
        assert.match(all, control, `${sql}: ${all}`);
      }
    }));

  test('w5m-00c: control — without agentgate, the IS NULL, EXISTS and CYCLE bits decode to the email', () =>
    direct(adv, async (client) => {
      for (const { sql, setWhen } of NULLTEST) assert.equal(decodeBits(await directRows(client, sql), setWhen), EMAIL1, sql);
      assert.equal(decodeBits(await directRows(client, EXISTS_BITS), true), EMAIL1, EXISTS_BITS);
      assert.equal(decodeBits(await directRows(client, CYCLE_BITS), false), EMAIL1, CYCLE_BITS);
    }));

  test('w5m-00d: control — without agentgate, the subquery outputs are the character codes of the email', () =>
    direct(adv, async (client) => {
      for (const { sql } of PREDICATE_CODES) assert.equal(decodeCodes(await directRows(client, sql)), EMAIL1, sql);
    }));

  test('w5m-00e: control — without agentgate, each row-linking condition gives the character codes of the email', () =>
    direct(adv, async (client) => {
      for (const { sql } of LINKING) assert.equal(decodeCodes(await directRows(client, sql)), EMAIL1, sql);
    }));

  // ───────────── family A: composite expansion of a FROM function ─────────────
  for (const { id, why, sql } of COMPOSITE) {
    test(`${id}: ${why} — ${sql}`, () =>
      withClient(async ({ c }) => {
        const msgs = await simple(c, sql);
        assertRefusedOrRows(msgs, sql);
        await assertIntact(adv);
      }));
  }
  decoded('w5m-08', 'composite expansion, one character code per row', COMPOSITE_CODES, decodeCodes);

  test('w5m-09: composite expansion, binary result format (extended protocol)', () =>
    withClient(async ({ c }) => {
      const msgs = await extended(c, COMPOSITE[0]!.sql, [], [1]);
      assertRefusedOrRows(msgs, 'binary');
      await assertIntact(adv);
    }));

  test('w5m-10: composite expansion inside DECLARE … FETCH', () =>
    withClient(async ({ c }) => {
      const msgs: Msg[] = [];
      for (const s of ['begin', `declare k cursor for ${COMPOSITE[0]!.sql}`, 'fetch all from k', 'rollback']) msgs.push(...(await simple(c, s)));
      assertRefusalOrNone(msgs, 'cursor');
      const shown = JSON.stringify(rowsOf(msgs));
      assertNoRaw(shown, `the rows (${shown})`);
      await assertIntact(adv);
    }));

  // ───────────── family B: alias lists and errors ─────────────
  for (const { id, why, sql } of ALIASED) {
    test(`${id}: ${why} — ${sql}`, () =>
      withClient(async ({ c }) => {
        const msgs = await simple(c, sql);
        assert.ok(errorsOf(msgs).length > 0, `no error: ${describeMsgs(msgs)}`);
        await assertIntact(adv);
      }));
  }

  test('w5m-19: alias list, the error at Execute of Parse/Bind/Execute', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', "select current_setting(split_part(e, '@', $1::int)) from users u(a, b, e)"), fe.bind('', '', ['1']), fe.execute('', 0), fe.SYNC]);
      assert.ok(errorsOf(msgs).length > 0, `no error: ${describeMsgs(msgs)}`);
    }));

  test('w5m-20: alias list, the error of the second statement of a multi-statement Query', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, `select 1; ${ALIASED[0]!.sql}`);
      assert.ok(errorsOf(msgs).length > 0, `no error: ${describeMsgs(msgs)}`);
    }));

  // ───────────── family C: IS NULL bits ─────────────
  for (const { id, why, sql, setWhen } of NULLTEST) decoded(id, why, sql, (rows) => decodeBits(rows, setWhen));

  // ───────────── family D: predicates, LIMIT and orderings feeding an output ─────────────
  for (const { id, why, sql } of PREDICATE_CODES) decoded(id, why, sql, decodeCodes);
  decoded('w5m-34', 'EXISTS of a correlated predicate, one bit per row', EXISTS_BITS, (rows) => decodeBits(rows, true));
  decoded('w5m-35', 'the CYCLE mark of a correlated recursive CTE, one bit per row', CYCLE_BITS, (rows) => decodeBits(rows, false));

  // ───────────── family E: row-linking conditions ─────────────
  for (const { id, why, sql } of LINKING) decoded(id, why, sql, decodeCodes);

  // ───────────── false-positive checks: allowed and unmasked ─────────────
  test('w5m-40: allowed — an alias list over unmasked columns keeps their values', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select n from users u(a, n) order by a');
      assertNoError(msgs, 'alias list');
      assert.deepEqual(rowsOf(msgs), [['Alpha'], ['Bravo']]);
    }));

  test('w5m-41: allowed — IS NULL and length() of the plain column stay unmasked', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select id, email is null, length(email) from users order by id');
      assertNoError(msgs, 'is null / length');
      assert.deepEqual(rowsOf(msgs), [['1', 'f', '25'], ['2', 'f', '26']]);
    }));

  test('w5m-42: allowed — EXISTS and a count over an aliased table, no masked column in a predicate', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select exists(select 1 from users), (select count(*) from users u(a, b, e))');
      assertNoError(msgs, 'exists / count');
      assert.deepEqual(rowsOf(msgs), [['t', '2']]);
    }));

  test('w5m-43: allowed — a correlated scalar subquery over clean values stays unmasked', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select g, (select h from generate_series(1, 3) h where h = g) from generate_series(1, 3) g order by g');
      assertNoError(msgs, 'correlated subquery');
      assert.deepEqual(rowsOf(msgs), [['1', '1'], ['2', '2'], ['3', '3']]);
    }));

  test('w5m-44: allowed — unnest of an array of clean values in FROM', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select x, name from unnest(array(select name from users order by id)) x, (values (1)) o(name) order by x');
      assertNoError(msgs, 'unnest of names');
      assert.deepEqual(rowsOf(msgs), [['Alpha', '1'], ['Bravo', '1']]);
    }));

  test('w5m-45: allowed — the error of an aliased statement that reads only unmasked columns keeps its value', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select current_setting(n) from users u(a, n) where a = 1');
      const errs = errorsOf(msgs);
      assert.equal(errs.length, 1, describeMsgs(msgs));
      assert.equal(errs[0]!.message, 'unrecognized configuration parameter "Alpha"');
    }));

  test('w5m-60: allowed — conditions that compare the masked column with a parameter or a constant keep clean outputs', () =>
    withClient(async ({ c }) => {
      const byParam = await extended(c, 'select name from users where email <> $1 order by id', ['nobody@example.org']);
      assertNoError(byParam, 'email <> $1');
      assert.deepEqual(rowsOf(byParam), [['Alpha'], ['Bravo']]);
      for (const sql of [
        'select name from users where email = email order by id',
        "select name from users where lower(email) <> lower('X') order by id",
        "select name from users where email like '%@%' order by id",
        "select name from users where email like '%@%' or name = 'x' order by id",
      ]) {
        const msgs = await simple(c, sql);
        assertNoError(msgs, sql);
        assert.deepEqual(rowsOf(msgs), [['Alpha'], ['Bravo']], sql);
      }
    }));

  test('w5m-61: allowed — a join on the bare masked columns, and a generated number compared with a plain id, keep clean outputs', () =>
    withClient(async ({ c }) => {
      const join = await simple(c, 'select u.name, o.id from users u join users o on u.email = o.email order by u.id');
      assertNoError(join, 'join on email');
      assert.deepEqual(rowsOf(join), [['Alpha', '1'], ['Bravo', '2']]);
      const gen = await simple(c, 'select g, u.name from users u, generate_series(1, 2) g where u.id = g order by g');
      assertNoError(gen, 'u.id = g');
      assert.deepEqual(rowsOf(gen), [['1', 'Alpha'], ['2', 'Bravo']]);
      const exists = await simple(c, 'select name from users u where exists (select 1 from users o where o.email = u.email) order by id');
      assertNoError(exists, 'exists on email');
      assert.deepEqual(rowsOf(exists), [['Alpha'], ['Bravo']]);
    }));

  test('w5m-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
