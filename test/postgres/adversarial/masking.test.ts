/**
 * Adversarial corpus — computed expressions over masked values. The target masks `*.email`
 * by column and emails, card numbers, AWS keys and JWTs wherever the detectors see them.
 * Each case computes a value from a secret (reversed, translated, encoded, aggregated,
 * renamed through a view, CTE or subquery, cast to bytea in text and binary format, …);
 * the raw value, or a trivially decodable form of it, must never reach the client. A case
 * passes whether the statement is refused or answered masked.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertAbsent,
  assertIntact,
  assertNoRaw,
  assertRefusedOrRows,
  assertStoreClean,
  EMAIL1,
  errorsOf,
  extended,
  REFUSAL_CODES,
  rowsOf,
  simple,
  simpleEach,
  useAdversary,
  type Adversary,
  type Msg,
} from './harness.js';

describe('adversarial corpus: computed expressions over masked values', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a));

  /** A read of `sql` (simple protocol): refused or answered, never raw. */
  function masked(id: string, sql: string, extra?: (bytes: Buffer, msgs: Msg[]) => void): void {
    test(`${id}: ${sql}`, () =>
      withClient(async ({ c, bytes }) => {
        const msgs = await simple(c, sql);
        assertRefusedOrRows(msgs, sql);
        assertNoRaw(bytes());
        extra?.(bytes(), msgs);
        await assertIntact(adv);
      }));
  }

  masked('mask-01', 'select reverse(email) from users');
  masked('mask-02', "select translate(email, '@', '#') from users");
  masked('mask-03', "select split_part(email, '@', 1) from users");
  masked('mask-04', "select encode(convert_to(email, 'UTF8'), 'base64') from users");
  masked('mask-05', "select encode(convert_to(email, 'UTF8'), 'hex') from users");
  masked('mask-06', 'select email::bytea from users');
  masked('mask-07', 'select upper(email) from users');
  masked('mask-08', 'select substr(email, 1, 5) from users', (b) => assertAbsent(b, EMAIL1.slice(0, 5)));
  masked('mask-09', "select string_agg(email, ',') from users");
  masked('mask-10', 'select array_agg(email) from users');
  masked('mask-11', 'select json_agg(u) from users u');
  masked('mask-12', 'select row_to_json(u) from users u');
  masked('mask-13', 'select u from users u');
  masked('mask-14', 'select (select email from users order by id limit 1) as e');
  masked('mask-15', 'with x as (select email as e from users) select e from x');
  masked('mask-16', 'select e from (select email as e from users) s');
  masked('mask-17', 'select contact from v_users');
  masked('mask-18', 'select name from users union all select email from users');
  masked('mask-19', "select regexp_replace(card, '(\\d)', '\\1-', 'g') from cards");
  masked('mask-20', "select replace(card, '1', 'x') from cards", (b) => assertAbsent(b, '4xxxxxxxxxxx'));
  masked('mask-21', "select format('%s', email) from users");
  masked('mask-22', "select email || '' from users");
  masked('mask-23', "select concat_ws(',', name, email) from users");
  // Decision: a hash of a secret identifies it (and a known value can be confirmed), so md5 is masked.
  masked('mask-24', 'select md5(email) from users');
  masked('mask-25', 'select left(email, 3) from users', (b) => assertAbsent(b, EMAIL1.slice(0, 3)));
  masked('mask-26', 'copy (select reverse(email) from users) to stdout');
  masked('mask-27', "select query_to_xml('select email from users', true, false, '')");
  masked('mask-28', 'select lower(note) from users');
  masked('mask-29', 'select note from users');
  masked('mask-30', 'select card from cards');
  masked('mask-31', 'select (u).email from users u');
  masked('mask-32', 'select to_json(email), jsonb_build_object(\'e\', email) from users');
  masked('mask-33', "select string_to_array(email, '@') from users");
  masked('mask-34', 'select quote_literal(email), quote_ident(email) from users');
  masked('mask-35', 'select xmlelement(name e, email) from users');
  masked('mask-36', "select array_to_string(array_agg(reverse(email)), ';') from users");
  masked('mask-37', "select overlay(email placing '#' from 6 for 1) from users");
  masked('mask-38', "select translate(card, '0123456789', 'abcdefghij') from cards");
  masked('mask-39', "select encode(sha256(convert_to(email, 'UTF8')), 'hex') from users");
  masked('mask-40', "select email::char(40) || '|' from users");

  test('mask-41: one character per row (substr(email, i, 1) over generate_series) does not reassemble the value', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select id, i, substr(email, i, 1) from users, generate_series(1, 40) i order by id, i');
      assertRefusedOrRows(msgs, 'char-by-char');
      const joined = rowsOf(msgs)
        .map((r) => r[2] ?? '')
        .join('');
      assertNoRaw(joined, 'the characters joined');
      await assertIntact(adv);
    }));

  test('mask-42: ascii codes per character do not reassemble the value', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select id, i, ascii(substr(email, i, 1)) from users, generate_series(1, 40) i order by id, i');
      assertRefusedOrRows(msgs, 'ascii per char');
      const joined = rowsOf(msgs)
        .map((r) => String.fromCharCode(Number(r[2] ?? 0)))
        .join('');
      assertNoRaw(joined, 'the codes decoded');
      await assertIntact(adv);
    }));

  test('mask-43: email::bytea in binary result format (extended protocol)', () =>
    withClient(async ({ c }) => {
      const msgs = await extended(c, 'select email::bytea from users', [], [1]);
      assertRefusedOrRows(msgs, 'bytea, binary');
      await assertIntact(adv);
    }));

  test('mask-44: the email column itself in binary result format', () =>
    withClient(async ({ c }) => {
      const msgs = await extended(c, 'select id, email from users', [], [1]);
      assertRefusedOrRows(msgs, 'email, binary');
      await assertIntact(adv);
    }));

  test('mask-45: a computed column through a parameter in binary format', () =>
    withClient(async ({ c }) => {
      const msgs = await extended(c, 'select $1::text || email from users', [''], [1]);
      assertRefusedOrRows(msgs, 'parameter concat, binary');
      await assertIntact(adv);
    }));

  test('mask-46: a cursor FETCH of a computed column', () =>
    withClient(async ({ c }) => {
      const msgs = await simpleEach(c, ['begin', 'declare cur cursor for select lower(email), reverse(note) from users', 'fetch all from cur', 'commit']);
      // The FETCH is the read: refused or answered; the raw value never arrives either way.
      const fetched = errorsOf(msgs).length === 0 || REFUSAL_CODES.includes(errorsOf(msgs)[0]!.code);
      assert.ok(fetched, `unexpected error: ${JSON.stringify(errorsOf(msgs))}`);
      await assertIntact(adv);
    }));

  test('mask-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
