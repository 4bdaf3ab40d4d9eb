/**
 * Adversarial corpus, wave 3 (held: these pass today, kept as regressions) — masked values leaving outside result rows: server errors that
 * quote a value COMPUTED from a masked column (a cast of split_part/reverse/replace of it),
 * where the computed text no longer looks like an email, so the detectors that scan error
 * fields do not recognise it; and per-session state a harmless function sets from a masked
 * value and a later statement reads back (setseed → random).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertAbsent,
  assertIntact,
  assertRefusedOrRows,
  assertStoreClean,
  describeMsgs,
  errorsOf,
  rowsOf,
  simple,
  useAdversary,
  type Adversary,
  type Msg,
} from './harness.js';

/** Short pieces of the local parts (and their reversals) that no mask style keeps. */
const SHORT = ['qxzjv', 'vjqxp', 'rimbo', 'wolk', 'vjzxq', 'pxqjv', 'obmir', 'klow'];

describe('adversarial corpus wave 3 (held): masked values in errors', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    check: (cl) => {
      for (const f of SHORT) assertAbsent(cl.bytes(), f);
    },
  });

  const answered = (msgs: Msg[]): boolean => errorsOf(msgs).length > 0 || rowsOf(msgs).length > 0;

  /** The statement is answered (an error the server raises, or rows) and nothing of a local part leaves. */
  function exit(id: string, sql: string): void {
    test(`${id}: ${sql}`, () =>
      withClient(async ({ c }) => {
        const msgs = await simple(c, sql);
        assert.ok(answered(msgs), `no answer: ${describeMsgs(msgs)}`);
        await assertIntact(adv);
      }));
  }

  // Values computed from a masked column, quoted in class-22 errors: masked whole today.
  exit('w3h-01', "select split_part(email, '@', 1)::int from users");
  exit('w3h-02', "select replace(email, '@', ' ')::numeric from users");
  exit('w3h-03', "select upper(split_part(email, '@', 1))::float8 from users");
  exit('w3h-04', "select split_part(email, '@', 1)::uuid from users");
  exit('w3h-05', "copy (select split_part(email, '@', 1)::int from users) to stdout");
  exit('w3h-06', 'select substr(card, 1, 12)::int from cards');
  exit('w3h-07', "select translate(email, '@.', '__')::int from users");
  exit('w3h-08', "copy (select current_setting(split_part(email, '@', 1)) from users) to stdout");
  exit('w3h-09', "select to_date(split_part(email, '@', 1), 'Mon') from users");
  exit('w3h-10', "select convert_from(split_part(email, '@', 1)::bytea, 'BOGUS') from users");

  test('w3h-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
