/**
 * Adversarial corpus — false denials: what ordinary clients and tools do under a read-only
 * policy, which must keep working while the guardrails hold. Harmless SETs and SHOWs,
 * transactions, an ACCESS SHARE lock, aggregates over the masked column, volatile built-ins
 * without side effects, an IMMUTABLE user function, psql meta-commands, node-postgres,
 * a JDBC driver's connect sequence and pg_dump --schema-only.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {
  assertIntact,
  assertNoError,
  assertNoRaw,
  assertStoreClean,
  connect,
  describeMsgs,
  EMAIL1,
  EMAIL2,
  exchange,
  fe,
  psql,
  rowsOf,
  runClient,
  simple,
  simpleEach,
  useAdversary,
  tagsOf,
  type Adversary,
  type Client,
} from './harness.js';

const PG_DUMP = '/usr/lib/postgresql/15/bin/pg_dump';

describe('adversarial corpus: false denials under the read-only policy', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a));

  function works(id: string, sqls: string[], check?: (rows: (string | null)[][], tags: string[]) => void): void {
    test(`${id}: ${sqls.join('; ')} works`, () =>
      withClient(async ({ c }) => {
        const msgs = await simpleEach(c, sqls);
        assertNoError(msgs, sqls.join('; '));
        check?.(rowsOf(msgs), tagsOf(msgs));
        await assertIntact(adv);
      }));
  }

  works('fd-01', ["SET application_name = 'x'"], (_r, tags) => assert.deepEqual(tags, ['SET']));
  works('fd-02', ["SET statement_timeout = '5s'"], (_r, tags) => assert.deepEqual(tags, ['SET']));
  works('fd-03', ['SET extra_float_digits = 3'], (_r, tags) => assert.deepEqual(tags, ['SET']));
  works('fd-04', ['SET search_path = public'], (_r, tags) => assert.deepEqual(tags, ['SET']));
  works('fd-05', ['SHOW TimeZone'], (rows) => assert.equal(rows.length, 1));
  works('fd-06', ["select set_config('application_name', 'x', false)"], (rows) => assert.deepEqual(rows, [['x']]));
  works('fd-07', ['BEGIN', 'select 1', 'COMMIT'], (rows, tags) => {
    assert.deepEqual(rows, [['1']]);
    assert.deepEqual(tags, ['BEGIN', 'SELECT 1', 'COMMIT']);
  });
  works('fd-08', ['BEGIN', 'LOCK users IN ACCESS SHARE MODE', 'COMMIT'], (_r, tags) => assert.deepEqual(tags, ['BEGIN', 'LOCK TABLE', 'COMMIT']));
  works('fd-09', ['select count(email), sum(length(email)) from users'], (rows) =>
    assert.deepEqual(rows, [['2', String(EMAIL1.length + EMAIL2.length)]], 'counts and lengths are not masked'),
  );
  works('fd-10', ['select now(), random(), gen_random_uuid()'], (rows) => assert.equal(rows.length, 1));
  works('fd-11', ['select lower(name) from users order by id'], (rows) => assert.deepEqual(rows, [['alpha'], ['bravo']]));
  // A user-defined function's result is opaque to masking (it may read any column), so
  // with column rules it is withheld as NULL: the call runs, it is not denied.
  works('fd-12', ['select f_imm()'], (rows) => assert.deepEqual(rows, [[null]]));
  works('fd-13', ['select id, name from users where id = 1'], (rows) => assert.deepEqual(rows, [['1', 'Alpha']]));
  works('fd-14', ['SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ', 'BEGIN READ ONLY', 'select 1', 'COMMIT']);
  works('fd-15', ['RESET application_name', 'SET TIME ZONE UTC', "SET DateStyle = 'ISO, MDY'"]);
  // Names the gate's newer grammar qualifies (json, numeric, timestamp) or reads as SQL/JSON
  // syntax are also judged as the bare names PostgreSQL 15 looks up: with no user object of
  // those names, they run (wave12-side-effects.test.ts).
  works('fd-25', [
    `select '{"a":1}'::json, json '[1]', cast(1.5 as numeric(4,1)), '2020-01-01'::timestamp, interval '1 day', '1'::varchar`,
    "select json_object('{a,1}'), json_build_array(1), to_json('x'::text)",
  ], (rows) => assert.equal(rows.length, 2));

  function psqlMeta(id: string, meta: string, expect: RegExp): void {
    test(`${id}: psql ${meta} works`, async () => {
      const r = await psql(adv, ['-c', meta]);
      assert.equal(r.code, 0, `psql ${meta} failed: ${r.stderr}`);
      assert.match(r.stdout, expect);
      assertNoRaw(r.stdout + r.stderr);
      await assertIntact(adv);
    });
  }

  psqlMeta('fd-16', '\\d users', /Table "public\.users"/);
  psqlMeta('fd-17', '\\dt', /users/);
  psqlMeta('fd-18', '\\l', /\bapp\b/);
  psqlMeta('fd-19', '\\df', /f_imm/);

  test('fd-20: node-postgres connects and runs a parameterized select', async () => {
    const client = new pg.Client({ connectionString: adv.stack.url });
    await client.connect();
    try {
      const r = await client.query('select name from users where id = $1', [1]);
      assert.deepEqual(r.rows, [{ name: 'Alpha' }]);
      assertNoRaw(JSON.stringify(r.rows));
    } finally {
      await client.end();
    }
    await assertIntact(adv);
  });

  test("fd-21: a JDBC driver's connect sequence (SETs over the extended protocol) works", () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [
        fe.parse('', 'SET extra_float_digits = 3'),
        fe.bind('', '', []),
        fe.execute('', 1),
        fe.parse('', "SET application_name = 'PostgreSQL JDBC Driver'"),
        fe.bind('', '', []),
        fe.execute('', 1),
        fe.SYNC,
      ]);
      assertNoError(msgs, 'the JDBC connect sequence');
      assert.deepEqual(tagsOf(msgs), ['SET', 'SET'], describeMsgs(msgs));
      await assertIntact(adv);
    }));

  test('fd-22: pg_dump --schema-only works and dumps the tables', async () => {
    const r = await runClient(adv, PG_DUMP, ['--schema-only', '--schema=public', '--no-owner']);
    assert.equal(r.code, 0, `pg_dump failed: ${r.stderr}`);
    assert.match(r.stdout, /CREATE TABLE public\.users/);
    assertNoRaw(r.stdout + r.stderr);
    await assertIntact(adv);
  });

  test('fd-23: psql runs a plain select over several lines of a script', async () => {
    const r = await psql(adv, ['-At', '-v', 'ON_ERROR_STOP=1', '-f', '-'], 'select 1;\nselect name from users order by id;\n');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '1\nAlpha\nBravo\n');
    await assertIntact(adv);
  });

  test('fd-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
