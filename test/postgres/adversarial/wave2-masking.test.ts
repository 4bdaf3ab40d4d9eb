/**
 * Adversarial corpus, wave 2 — masking through less common syntax: whole-row references and
 * their casts, constructors, JSON/XML builders, set-returning functions in FROM, LATERAL,
 * windows and ordered-set aggregates, conditional expressions, length-changing casts,
 * quoting and hashing functions, regular expressions, text search, recursive CTEs walking
 * a value, NATURAL JOIN / TABLE / set operations, COPY formats, cursors, PREPARE/EXECUTE,
 * binary results, the planner's statistics, and side channels through functions whose
 * result is meant not to reveal their argument. Every case: refused or answered, the data
 * intact, and neither the raw value, a decodable transform of it, nor a short fragment of
 * a local part reaches the client.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertAbsent,
  assertIntact,
  assertNoRaw,
  assertRefusedOrRows,
  assertStoreClean,
  describeMsgs,
  EMAIL1,
  EMAIL2,
  errorsOf,
  exchange,
  extended,
  fe,
  REFUSAL_CODES,
  rowsOf,
  simple,
  simpleEach,
  useAdversary,
  type Adversary,
  type Msg,
  assertNoFragments,
} from './harness.js';


/** Every row's value in column `col` is SQL NULL (a number or boolean computed from a masked column). */
function assertColumnNull(msgs: Msg[], col: number, what: string): void {
  for (const r of rowsOf(msgs)) assert.equal(r[col], null, `${what}: column ${col} came back as ${JSON.stringify(r[col])}`);
}

/** No row value in column `col` equals one of `values`. */
function assertColumnNot(msgs: Msg[], col: number, values: readonly string[], what: string): void {
  for (const r of rowsOf(msgs)) assert.ok(!values.includes(r[col] ?? '\0'), `${what}: column ${col} came back as ${JSON.stringify(r[col])}`);
}

/** The first ErrorResponse, if any, is a refusal (not, e.g., a syntax error that proves nothing). */
function assertNoOtherError(msgs: Msg[], what: string, alsoAccept: readonly string[] = []): void {
  const errs = errorsOf(msgs);
  if (errs.length > 0) assert.ok([...REFUSAL_CODES, ...alsoAccept].includes(errs[0]!.code), `${what}: ${errs[0]!.code} ${errs[0]!.message}`);
}

/** First characters' codes of the two seeded emails ('q', 'v'). */
const FIRST_CODES = [String(EMAIL1.charCodeAt(0)), String(EMAIL2.charCodeAt(0))];
const FIRST_CHARS = [EMAIL1[0]!, EMAIL2[0]!];

describe('adversarial corpus wave 2: masking through less common syntax', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    setup: async (adv) => {
      // Production tables have planner statistics; pg_stats shows them to anyone who may read the table.
      await adv.stack.pg.psql('ANALYZE users; ANALYZE cards;', { database: 'app' });
    },
    check: (cl) => {
      assertNoFragments(cl.bytes());
    },
  });

  /** A read of `sql` (simple protocol): refused or answered, never raw, not even a short fragment. */
  function masked(id: string, sql: string, extra?: (msgs: Msg[], bytes: Buffer) => void): void {
    test(`${id}: ${sql}`, () =>
      withClient(async ({ c, bytes }) => {
        const msgs = await simple(c, sql);
        assertRefusedOrRows(msgs, sql);
        extra?.(msgs, bytes());
        await assertIntact(adv);
      }));
  }

  // ───────────── whole rows, constructors, builders ─────────────
  masked('w2m-01', 'select (u.*)::text from users u');
  masked('w2m-02', 'select u::text from users u');
  masked('w2m-03', 'select array[email] from users');
  masked('w2m-04', 'select row(email) from users');
  masked('w2m-05', "select jsonb_build_object('e', email)::text from users");
  masked('w2m-06', 'select to_json(u) from users u');
  masked('w2m-07', 'select (json_populate_record(null::users, row_to_json(u))).email from users u');
  masked('w2m-08', 'select json_populate_record(null::users, to_json(u)) from users u');
  masked('w2m-09', 'select xmlforest(email, name) from users');
  masked('w2m-10', 'select (row(email, 1)).f1 from users');
  masked('w2m-11', 'select (array[email, name])[1] from users');
  masked('w2m-12', "select jsonb_build_object('e', email) ->> 'e' from users");
  // ───────────── FROM-clause functions, LATERAL, joins, set operations ─────────────
  masked('w2m-13', 'select x from users, unnest(array[email]) x');
  masked('w2m-14', 'select x.e from users, lateral (select email as e) x');
  masked('w2m-15', 'select x.e from users u, lateral (select u.email) as x(e)');
  masked('w2m-16', 'select g, substr(email, g, 3) from users, generate_series(1, 30, 3) g', (_m, b) => assertAbsent(b, 'qxz'));
  masked('w2m-17', 'select * from users natural join (select 1 as id) x');
  masked('w2m-18', 'table users');
  masked('w2m-19', "select email from users union select 'x'");
  masked('w2m-20', 'select email from users intersect select email from users');
  masked('w2m-21', 'select email from users except select name from users');
  masked('w2m-22', 'select * from users join cards using (id)');
  masked('w2m-23', 'values ((select email from users order by id limit 1))');
  masked('w2m-24', 'select * from (values ((select email from users order by id limit 1))) v(e)');
  // ───────────── aggregates, windows, ordered sets ─────────────
  masked('w2m-25', 'select email, array_agg(id) from users group by email');
  masked('w2m-26', 'select first_value(email) over (), lag(email) over (order by id), lead(email) over (order by id) from users');
  masked('w2m-27', 'select percentile_disc(0.5) within group (order by email) from users');
  masked('w2m-28', 'select mode() within group (order by email) from users');
  masked('w2m-29', 'select min(email), max(email) from users');
  masked('w2m-30', "select string_agg(distinct email, '') from users");
  masked('w2m-31', 'select nth_value(email, 2) over (order by id rows between unbounded preceding and unbounded following) from users');
  masked('w2m-32', "select jsonb_agg(email)::text, json_object_agg(id, email)::text from users");
  // ───────────── conditional expressions, casts, collations ─────────────
  masked('w2m-33', "select case when true then email end, coalesce(null, email), nullif(email, ''), greatest(email, ''), least(email, 'zzzz') from users");
  masked('w2m-34', 'select email collate "C", email::varchar(100), email::char(50), email::name from users');
  masked('w2m-35', 'select email::varchar(10), email::char(5), email::name::char(7) from users', (_m, b) => assertAbsent(b, 'qxzjv.w'));
  // "char" (with the quotes) is PostgreSQL's single-byte type: the first character.
  masked('w2m-36', 'select id, email::"char" from users', (m) => assertColumnNot(m, 1, FIRST_CHARS, '"char" cast'));
  // ───────────── quoting, formatting, hashing ─────────────
  masked('w2m-37', "select format('%I', email), format('%L', email), format('%1$s', email) from users");
  masked('w2m-38', "select md5(email), encode(sha256(email::bytea), 'hex'), encode(sha512(email::bytea), 'base64') from users");
  masked('w2m-39', 'select quote_nullable(email) from users');
  // ───────────── characters and their codes ─────────────
  masked('w2m-40', 'select id, ascii(email) from users', (m) => {
    assertColumnNot(m, 1, FIRST_CODES, 'ascii(email)');
    assertColumnNull(m, 1, 'ascii(email)');
  });
  masked('w2m-41', 'select id, chr(ascii(email)) from users', (m) => assertColumnNot(m, 1, FIRST_CHARS, 'chr(ascii(email))'));
  masked('w2m-42', 'select id, position(\'@\' in email), strpos(email, \'.\') from users', (m) => {
    // Not a length: where a character sits is a value computed from the secret.
    assertColumnNull(m, 1, 'position');
    assertColumnNull(m, 2, 'strpos');
  });
  masked('w2m-43', "select id, email < 'r', email ~ '^q' from users", (m) => {
    assertColumnNull(m, 1, 'comparison');
    assertColumnNull(m, 2, 'regex match');
  });
  // ───────────── substrings, regular expressions, splitting ─────────────
  masked('w2m-44', 'select substring(email from 1 for 3), overlay(email placing \'x\' from 1) from users', (_m, b) => assertAbsent(b, 'qxz'));
  masked('w2m-45', "select substring(email from '^(.*)@'), substring(email similar '%#\"@%#\"' escape '#') from users");
  masked('w2m-46', "select regexp_matches(email, '(.*)@') from users");
  masked('w2m-47', "select regexp_split_to_table(email, '@') from users");
  masked('w2m-48', "select split_part(email, '.', 1), split_part(email, '@', -2), split_part(email, 'j', 1) from users", (_m, b) => assertAbsent(b, 'qxz'));
  masked('w2m-49', "select regexp_split_to_array(email, '')::text from users");
  masked('w2m-50', "select string_to_table(email, NULL) from users");
  // ───────────── encodings ─────────────
  masked('w2m-51', "select convert_from(convert_to(email, 'UTF8'), 'LATIN1') from users");
  masked('w2m-52', "select decode(encode(email::bytea, 'escape'), 'escape'), encode(email::bytea, 'escape') from users");
  masked('w2m-53', "select to_tsvector('simple', email)::text, to_tsvector(email)::text from users");
  masked('w2m-54', "select translate(encode(email::bytea, 'hex'), '0123456789abcdef', 'ghijklmnopqrstuv') from users", (m) => {
    // hex with its digits shifted: decode it back and look for the value.
    const dec = rowsOf(m)
      .map((r) => (r[0] ?? '').replace(/[g-v]/g, (ch) => '0123456789abcdef'[ch.charCodeAt(0) - 103]!))
      .map((h) => (/^[0-9a-f]*$/.test(h) ? Buffer.from(h, 'hex').toString('latin1') : ''))
      .join('|');
    assertNoRaw(dec, 'the shifted hex decoded');
  });
  // ───────────── recursive CTE walking the characters ─────────────
  masked(
    'w2m-55',
    'with recursive w(i, s) as (select 1, substr((select email from users order by id limit 1), 1, 1) ' +
      'union all select i + 1, s || substr((select email from users order by id limit 1), i + 1, 1) from w where i < 40) ' +
      'select s from w order by i desc limit 1',
  );
  test('w2m-56: a recursive CTE yields one character per row; joined, they are not the value', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(
        c,
        'with recursive w(i, ch) as (select 1, substr((select email from users order by id limit 1), 1, 1) ' +
          'union all select i + 1, substr((select email from users order by id limit 1), i + 1, 1) from w where i < 40) select ch from w order by i',
      );
      assertRefusedOrRows(msgs, 'recursive per char');
      assertNoRaw(rowsOf(msgs).map((r) => r[0] ?? '').join(''), 'the characters joined');
      await assertIntact(adv);
    }));
  // ───────────── views ─────────────
  masked('w2m-57', 'select v from v_users v');
  masked('w2m-58', 'select reverse(contact), upper(v.contact) from v_users v');
  masked('w2m-59', 'select * from v_users natural join users');
  masked('w2m-60', 'select contact from v_users union all select email from users');
  // ───────────── EXPLAIN, COPY ─────────────
  masked('w2m-61', "explain (verbose, costs off) select * from users where email = 'x'");
  masked('w2m-62', 'explain (analyze, verbose, costs off, timing off, summary off) select reverse(email) from users');
  masked('w2m-63', 'copy (select email, reverse(email) from users) to stdout with (format csv, header)');
  masked('w2m-64', 'copy (select reverse(email), email::bytea from users) to stdout with (format binary)');
  masked('w2m-65', 'copy users to stdout');
  masked('w2m-66', 'copy (table users) to stdout with (format text, delimiter \'@\')');
  // ───────────── the planner's statistics hold column values ─────────────
  masked('w2m-67', "select histogram_bounds::text, most_common_vals::text from pg_stats where tablename = 'users' and attname = 'email'");
  masked('w2m-68', "select translate(histogram_bounds::text, '@.', '#,') from pg_stats where tablename = 'users' and attname = 'email'");
  masked('w2m-69', "select reverse(histogram_bounds::text) from pg_stats where tablename in ('users', 'cards')");

  // ───────────── side channels through "non-revealing" functions ─────────────
  test('w2m-70: length(repeat(x, ascii(substr(email, i, 1)))) per character does not reassemble the value', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, "select id, i, length(repeat('x', ascii(substr(email, i, 1)))) from users, generate_series(1, 30) i order by id, i");
      assertRefusedOrRows(msgs, 'length side channel');
      const decoded = rowsOf(msgs)
        .map((r) => String.fromCharCode(Number(r[2] ?? 0)))
        .join('');
      assertNoRaw(decoded, 'the lengths decoded as character codes');
      await assertIntact(adv);
    }));

  test('w2m-71: cardinality(array_fill(0, array[ascii(substr(email, i, 1))])) per character does not reassemble the value', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select id, i, cardinality(array_fill(0, array[ascii(substr(email, i, 1))])) from users, generate_series(1, 30) i order by id, i');
      assertRefusedOrRows(msgs, 'cardinality side channel');
      const decoded = rowsOf(msgs)
        .map((r) => String.fromCharCode(Number(r[2] ?? 0)))
        .join('');
      assertNoRaw(decoded, 'the cardinalities decoded as character codes');
      await assertIntact(adv);
    }));

  test('w2m-72: octet_length(repeat(x, ascii(…))) and pg_column_size of the same do not leak the first character', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, "select id, octet_length(repeat('x', ascii(email))), pg_column_size(repeat('x', ascii(email))) - 4 from users order by id");
      assertRefusedOrRows(msgs, 'octet_length side channel');
      assertColumnNot(msgs, 1, FIRST_CODES, 'octet_length');
      assertColumnNot(msgs, 2, FIRST_CODES, 'pg_column_size');
      await assertIntact(adv);
    }));

  // ───────────── cursors, prepared statements ─────────────
  /** Run `setup` (answers ignored but recorded), then `sqls`; the rows of `sqls` hold no raw value or fragment. */
  function rowsMasked(id: string, title: string, setup: string[], sqls: string[], teardown: string[] = []): void {
    test(`${id}: ${title}`, () =>
      withClient(async ({ c }) => {
        const pre = await simpleEach(c, setup);
        assertNoOtherError(pre, `${title} (setup)`);
        const msgs = await simpleEach(c, sqls);
        await simpleEach(c, teardown);
        // A refused setup aborts the transaction: then the server's own 25P02 is the answer.
        assertNoOtherError(msgs, title, errorsOf(pre).length > 0 ? ['25P02'] : []);
        const shown = JSON.stringify(rowsOf(msgs));
        assertNoRaw(shown, `the rows of ${sqls.join('; ')} (${shown})`);
        assertNoFragments(shown, `the rows of ${sqls.join('; ')} (${shown})`);
        await assertIntact(adv);
      }));
  }

  rowsMasked('w2m-73a', 'DECLARE c … reverse(email); FETCH 1 FROM c (SQL)', ['begin', 'declare c cursor for select reverse(email) from users'], ['fetch 1 from c'], ['rollback']);
  rowsMasked('w2m-73b', 'DECLARE c … reverse(email); FETCH ALL FROM c (SQL)', ['begin', 'declare c cursor for select reverse(email) from users'], ['fetch all from c'], ['rollback']);
  test('w2m-73c: DECLARE c … reverse(email) (SQL), then protocol Execute of portal c', () =>
    withClient(async ({ c }) => {
      assertNoOtherError(await simpleEach(c, ['begin', 'declare c cursor for select reverse(email) from users']), 'declare');
      const msgs = await exchange(c, [fe.execute('c', 0), fe.SYNC]);
      await simple(c, 'rollback');
      assertNoOtherError(msgs, 'Execute c');
      const shown = JSON.stringify(rowsOf(msgs));
      assertNoRaw(shown, `the rows of Execute c (${shown})`);
      assertNoFragments(shown, `the rows of Execute c (${shown})`);
    }));
  rowsMasked('w2m-73d', "DECLARE … translate(email, '@', '#'); FETCH ALL (SQL)", ['begin', "declare c cursor for select translate(email, '@', '#') from users"], ['fetch all from c'], ['rollback']);
  rowsMasked('w2m-74', 'a SCROLL cursor over upper(email) fetched last, backward, absolute, relative', ['begin', 'declare s scroll cursor for select upper(email) from users order by id'], ['fetch last from s', 'fetch backward 1 from s', 'fetch absolute 1 from s', 'move first in s', 'fetch relative 0 from s'], ['commit']);
  rowsMasked('w2m-75', 'a WITH HOLD cursor over translate(email) fetched after COMMIT', ['begin', "declare h cursor with hold for select translate(email, '@', '#') from users", 'commit'], ['fetch all from h'], ['close h']);
  rowsMasked('w2m-76a', 'PREPARE p AS SELECT reverse(email) FROM users; EXECUTE p', ['prepare p as select reverse(email) from users'], ['execute p'], ['deallocate p']);
  rowsMasked('w2m-76b', "PREPARE q(text) AS SELECT $1 || email; EXECUTE q('')", ['prepare q(text) as select $1 || email from users'], ["execute q('')"], ['deallocate q']);
  rowsMasked('w2m-76c', "PREPARE t AS SELECT translate(email, '@', '#'); EXECUTE t", ["prepare t as select translate(email, '@', '#') from users"], ['execute t'], ['deallocate t']);
  rowsMasked('w2m-76d', 'PREPARE r AS SELECT email; EXECUTE r (a direct reference)', ['prepare r as select email from users'], ['execute r'], ['deallocate r']);
  rowsMasked('w2m-76f', "PREPARE x AS SELECT 'a@' || split_part(email, '@', 1) (a value shaped like an email whose domain is the local part); EXECUTE x", ["prepare x as select 'a@' || split_part(email, '@', 1) from users"], ['execute x'], ['deallocate x']);
  rowsMasked('w2m-73e', "DECLARE … 'a@' || split_part(email, '@', 1); FETCH ALL (SQL)", ['begin', "declare c cursor for select 'a@' || split_part(email, '@', 1) from users"], ['fetch all from c'], ['rollback']);
  test('w2m-76e: protocol Parse of reverse(email), then SQL EXECUTE of it', () =>
    withClient(async ({ c }) => {
      assertNoOtherError(await exchange(c, [fe.parse('pp', 'select reverse(email) from users'), fe.SYNC]), 'parse');
      const msgs = await simple(c, 'execute pp');
      assertNoOtherError(msgs, 'execute pp');
      const shown = JSON.stringify(rowsOf(msgs));
      assertNoRaw(shown, `the rows of EXECUTE pp (${shown})`);
      assertNoFragments(shown, `the rows of EXECUTE pp (${shown})`);
    }));

  // ───────────── extended protocol, binary results ─────────────
  test('w2m-77: computed text columns in binary result format', () =>
    withClient(async ({ c }) => {
      const msgs = await extended(c, "select reverse(email), upper(email), email || '', array[email] from users", [], [1]);
      assertRefusedOrRows(msgs, 'binary computed');
      await assertIntact(adv);
    }));

  test('w2m-78: ascii(email) and a boolean in binary format (int4/bool) carry no character', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'select ascii(email), position(\'@\' in email) from users'), fe.bind('', '', [], { resultFormats: [1] }), fe.execute('', 0), fe.SYNC]);
      assertRefusedOrRows(msgs, 'binary int');
      for (const r of rowsOf(msgs)) {
        const v = r[0];
        if (v !== null && v !== undefined) {
          const n = Buffer.from(v, 'latin1').readInt32BE(0);
          assert.ok(!FIRST_CODES.includes(String(n)), `binary ascii(email) = ${n}`);
        }
      }
      assertColumnNull(msgs, 0, 'binary ascii');
      await assertIntact(adv);
    }));

  test('w2m-79: Parse+Describe statement, Sync; then Bind with mixed formats to the named statement', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('d', 'select email, reverse(email), email::bytea from users'), fe.describe('S', 'd'), fe.SYNC]);
      msgs.push(...(await exchange(c, [fe.bind('pp', 'd', [], { resultFormats: [1, 0, 1] }), fe.describe('P', 'pp'), fe.execute('pp', 1), fe.execute('pp', 0), fe.SYNC])));
      msgs.push(...(await exchange(c, [fe.bind('', 'd', [], { resultFormats: [0, 1, 0] }), fe.execute('', 0), fe.SYNC])));
      assertNoOtherError(msgs, 'describe-then-bind');
      await assertIntact(adv);
    }));

  test('w2m-80: a text parameter concatenated to the email, binary params and results', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'select $1::bytea || email::bytea from users', [17]), fe.bind('', '', [Buffer.from('zz')], { paramFormats: [1], resultFormats: [1] }), fe.execute('', 0), fe.SYNC]);
      assertRefusedOrRows(msgs, 'binary bytea concat');
      await assertIntact(adv);
    }));

  test('w2m-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
