/**
 * Adversarial corpus — other exits: a secret leaving through something other than a
 * DataRow. Error and notice fields raised by a function (message, detail, hint, column,
 * constraint, datatype, table, schema), ParameterStatus (application_name), a
 * notification payload, and server errors that echo the offending value.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertIntact,
  assertNoRaw,
  assertRefused,
  assertStoreClean,
  BackendType,
  describeMsgs,
  simple,
  useAdversary,
  type Adversary,
  type Msg,
} from './harness.js';

describe('adversarial corpus: other exits', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a));

  const answered = (msgs: Msg[]): boolean =>
    msgs.some((m) => m.type === BackendType.errorResponse || m.type === BackendType.noticeResponse || m.type === BackendType.dataRow);

  /** The statement produces an error/notice/rows (the exit exists) and no raw value reaches the client. */
  function exit(id: string, sql: string): void {
    test(`${id}: ${sql}`, () =>
      withClient(async ({ c, bytes }) => {
        const msgs = await simple(c, sql);
        assert.ok(answered(msgs), `no answer at all: ${describeMsgs(msgs)}`);
        assertNoRaw(bytes());
        await assertIntact(adv);
      }));
  }

  exit('exit-01', 'select f_raise(email) from users');
  exit('exit-02', 'select f_notice(email) from users');
  exit('exit-03', 'select f_raise(card) from cards');
  exit('exit-04', 'select f_notice(note) from users');
  exit('exit-05', 'select email::int from users');
  exit('exit-06', 'select card::int from cards');
  exit('exit-07', 'select email::json from users');
  exit('exit-08', 'select email::regclass from users');
  exit('exit-09', 'select current_setting(email) from users');
  exit('exit-10', 'select xmlparse(document email) from users');
  exit('exit-11', 'select array[email]::int[] from users');
  exit('exit-12', 'select email::uuid from users');
  exit('exit-13', 'select note::jsonb from users');
  exit('exit-14', 'select to_regtype(email)::text, email::regtype from users');

  test("exit-15: set_config('application_name', email, false) sends no raw value in ParameterStatus", () =>
    withClient(async ({ c, bytes }) => {
      const msgs = await simple(c, "select set_config('application_name', email, false) from users order by id limit 1");
      assert.ok(answered(msgs), describeMsgs(msgs));
      assertNoRaw(bytes());
      const shown = await simple(c, 'show application_name');
      assert.ok(answered(shown), describeMsgs(shown));
      assertNoRaw(bytes());
    }));

  test('exit-16: pg_notify with a secret payload is refused and carries nothing out', () =>
    withClient(async ({ c, bytes }) => {
      const msgs = await simple(c, "select pg_notify('c', email) from users");
      assertRefused(msgs, 'pg_notify(email)');
      assertNoRaw(bytes());
      await assertIntact(adv);
    }));

  test('exit-17: SET application_name to a value read in the same session cannot be done by a subquery', () =>
    withClient(async ({ c, bytes }) => {
      const msgs = await simple(c, "select set_config('application_name', (select reverse(email) from users limit 1), false)");
      assert.ok(answered(msgs), describeMsgs(msgs));
      assertNoRaw(bytes());
    }));

  test('exit-18: an error raised inside a transaction, then ROLLBACK, leaks nothing', () =>
    withClient(async ({ c, bytes }) => {
      await simple(c, 'begin');
      const msgs = await simple(c, 'select f_raise(upper(email)) from users');
      assert.ok(answered(msgs), describeMsgs(msgs));
      await simple(c, 'rollback');
      assertNoRaw(bytes());
    }));

  test('exit-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
