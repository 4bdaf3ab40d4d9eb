/**
 * Adversarial corpus, wave 3 — masked values leaving outside result rows: server errors that
 * quote a value COMPUTED from a masked column (a cast of split_part/reverse/replace of it),
 * where the computed text no longer looks like an email, so the detectors that scan error
 * fields would not recognise it; and per-session state set from a masked value that a later
 * statement reads back (setseed → random).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {
  assertAbsent,
  assertIntact,
  assertRefusedOrRows,
  assertStoreClean,
  describeMsgs,
  errorsOf,
  REFUSAL_CODES,
  rowsOf,
  simple,
  useAdversary,
  type Adversary,
  type Msg,
  SHORT_FRAGMENTS,
} from './harness.js';

const SHORT = SHORT_FRAGMENTS;

describe('adversarial corpus wave 3: masked values leaving through errors and session state', () => {
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

  test('w3m-00: control — without agentgate the server quotes the computed value in its error', async () => {
    const client = new pg.Client({ connectionString: adv.stack.pg.url() });
    await client.connect();
    try {
      await assert.rejects(client.query("select split_part(email, '@', 1)::int from users"), /qxzjv\.wolk/);
      await assert.rejects(client.query('select reverse(email)::int from users'), /klow\.vjzxq/);
    } finally {
      await client.end();
    }
  });

  // ───────────── errors quoting a value computed from a masked column ─────────────
  // Class 22 quotes are masked whole, but a detector's partial mask of the same span wins:
  // reverse(email) looks like an email whose "domain" is the reversed local part.
  exit('w3m-01', 'select reverse(email)::int from users');
  exit('w3m-02', "select reverse(email)::date from users");
  // Errors of other classes quote the value too, and are only scanned by the detectors.
  exit('w3m-03', "select current_setting(split_part(email, '@', 1)) from users"); // 42704
  exit('w3m-04', "select split_part(email, '@', 1)::regclass from users"); // 3F000 schema "qxzjv"
  exit('w3m-05', "select replace(split_part(email, '@', 1), '.', '_')::regclass from users"); // 42P01
  exit('w3m-06', "select to_tsquery(split_part(email, '@', 1) || ' & & ') from users"); // 42601
  exit('w3m-07', "select has_table_privilege(split_part(email, '@', 1) || '.t', 'select') from users");
  // Class 22, but the value is not in quotes (XML detail) or is in the CONTEXT field (JSON).
  exit('w3m-08', "select xmlparse(content split_part(email, '@', 1) || '<') from users");
  exit('w3m-09', "select ('{\"a\": ' || split_part(email, '@', 1) || '}')::json from users");
  // The other secrets, which only the detectors protect (no column rule): a part of a card, an AWS key lower-cased.
  exit('w3m-10', "select current_setting(substr(card, 1, 12)) from cards");
  exit('w3m-11', "select current_setting(lower(substr(note, 12, 20))) from users where id = 1");

  // Class-22 quotes of computed values (masked whole before wave 3 too: kept as regressions).
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

  // ───────────── values a message states without quotes ─────────────
  // 113 is ascii('q'), the first character of both seeded emails' local parts.
  const UNQUOTED: [string, string, RegExp][] = [
    ['w3m-20', 'select make_date(2000, ascii(email), 1) from users', /date field value out of range: 2000-113-01/],
    ['w3m-21', 'select chr(ascii(email) * 100000) from users', /requested character too large for encoding: 11300000/],
    ['w3m-22', "select (split_part(email, '@', 1) || '.a.b')::regclass from users", /qxzjv\.wolk\.a\.b|vjqxp\.rimbo\.a\.b/],
    ['w3m-23', "select substr(email, 1, 1)::bit(2) from users", /"q"/],
  ];
  test('w3m-20c: control — without agentgate the server states the computed value unquoted', async () => {
    const client = new pg.Client({ connectionString: adv.stack.pg.url() });
    await client.connect();
    try {
      for (const [, sql, shown] of UNQUOTED.slice(0, 3)) await assert.rejects(client.query(sql), shown);
    } finally {
      await client.end();
    }
  });
  for (const [id, sql] of UNQUOTED) {
    test(`${id}: ${sql} — the error arrives, and neither the value nor its code`, () =>
      withClient(async ({ c }) => {
        const msgs = await simple(c, sql);
        const errs = errorsOf(msgs);
        assert.equal(errs.length, 1, describeMsgs(msgs));
        assert.ok(!/113|qxzjv|vjqxp/.test(errs[0]!.message), errs[0]!.message);
        await assertIntact(adv);
      }));
  }

  // ───────────── session state set from a masked value, read back unmasked ─────────────
  test('w3m-13: setseed(f(email)) then random() reveals the first character of a masked email', () =>
    withClient(async ({ c }) => {
      // With setseed allowed, a dictionary of random() after setseed(k/1000) for every printable
      // code k maps the next random() back to ascii(email). setseed keeps its argument in
      // session state, so it is a side effect: refused in a read-only session.
      const set = await simple(c, 'select setseed(ascii(email) / 1000.0) from users where id = 1');
      const errs = errorsOf(set);
      assert.ok(errs.length > 0 && REFUSAL_CODES.includes(errs[0]!.code), describeMsgs(set));
    }));

  // Other session state a masked value could be parked in and read back (a custom setting,
  // application_name, an advisory lock's key in pg_locks): refused like setseed.
  for (const [id, sql] of [
    ['w3m-14', "select set_config('probe.v', email, false) from users where id = 1"],
    ['w3m-15', "select set_config('application_name', split_part(email, '@', 1), false) from users where id = 1"],
    ['w3m-16', 'select pg_advisory_lock(ascii(email)) from users where id = 1'],
  ] as const) {
    test(`${id}: ${sql}`, () =>
      withClient(async ({ c }) => {
        const msgs = await simple(c, sql);
        const errs = errorsOf(msgs);
        assert.ok(errs.length > 0 && REFUSAL_CODES.includes(errs[0]!.code), describeMsgs(msgs));
      }));
  }

  test('w3m-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
