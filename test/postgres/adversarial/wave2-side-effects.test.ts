/**
 * Adversarial corpus, wave 2 — side effects in reads that the first corpus does not try:
 * volatile calls in LATERAL, sublinks, NATURAL JOIN and FROM; quoted, unicode-escaped and
 * schema-qualified names; functions reached through attribute notation (`u.f` means
 * `f(u)`), a user-defined aggregate's transition function, a row-level security policy,
 * a domain's CHECK, and a function labelled IMMUTABLE that is not; effects the read-only
 * backstop does not stop (statistics reset, advisory locks, ending other sessions); and
 * further ways of switching the session to read-write. The functions created below are
 * "production" objects made by the superuser; each would do its damage for `app`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {
  assertIntact,
  assertRefused,
  assertSomeRefusal,
  assertStoreClean,
  connect,
  describeMsgs,
  errorsOf,
  REFUSAL_CODES,
  rowsOf,
  simple,
  simpleEach,
  useAdversary,
  type Adversary,
  type Client,
} from './harness.js';

/**
 * pg_stat_reset() is not stopped by a read-only transaction; the harness' snapshot records
 * the database's stats_reset, so running it anywhere shows as a change.
 */
const EXTRA_SEED = `
CREATE FUNCTION f_reset_sfunc(int, int) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN coalesce($1, 0) + 1; END $$;
CREATE AGGREGATE agg_reset(int) (SFUNC = f_reset_sfunc, STYPE = int);
CREATE FUNCTION f_del_sfunc(int, int) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN DELETE FROM users; RETURN coalesce($1, 0) + 1; END $$;
CREATE AGGREGATE agg_del(int) (SFUNC = f_del_sfunc, STYPE = int);
CREATE FUNCTION f_liar() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN 1; END $$;
CREATE FUNCTION f_attr(users) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN 1; END $$;
CREATE FUNCTION f_attr_del(users) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN DELETE FROM users; RETURN 1; END $$;
CREATE FUNCTION f_reset_chk(int) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN true; END $$;
CREATE DOMAIN d_reset AS int CHECK (f_reset_chk(VALUE));
CREATE TABLE t_rls (id int);
INSERT INTO t_rls VALUES (1);
ALTER TABLE t_rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY p_reset ON t_rls USING (f_reset_chk(id));
GRANT SELECT ON t_rls TO app;
GRANT EXECUTE ON FUNCTION pg_stat_reset_single_table_counters(oid) TO app;
GRANT EXECUTE ON FUNCTION pg_stat_reset_shared(text) TO app;
`;

describe('adversarial corpus wave 2: side effects in reads', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    setup: async (adv) => {
      await adv.stack.pg.psql(EXTRA_SEED, { database: 'app' });
      // Statistics must have been reset once for stats_reset to be a timestamp that can change.
      await adv.stack.pg.psql('SELECT pg_stat_reset();', { database: 'app' });
    },
  });

  async function advisoryLocks(): Promise<string> {
    return (await adv.stack.pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'", { database: 'app' })).trim();
  }

  test('w2x-00: control — without agentgate, app itself triggers every hidden effect used below', async () => {
    const client = new pg.Client({ connectionString: adv.stack.pg.url() });
    await client.connect();
    const stats = async (): Promise<string> => (await adv.stack.pg.psql("SELECT stats_reset FROM pg_stat_database WHERE datname = 'app'", { database: 'app' })).trim();
    try {
      for (const sql of ['select agg_reset(id) from users', 'select f_liar()', 'select u.f_attr from users u', 'select 1::d_reset', 'select * from t_rls']) {
        const before = await stats();
        await new Promise((r) => setTimeout(r, 20));
        await client.query(sql);
        assert.notEqual(await stats(), before, `${sql} resets statistics for app`);
      }
      await client.query('BEGIN');
      await client.query('select agg_del(id) from users');
      assert.equal((await client.query('select count(*)::int as n from users')).rows[0].n, 0, 'agg_del deletes');
      await client.query('ROLLBACK');
    } finally {
      await client.end();
    }
  });

  /** One statement, refused, nothing changed. */
  function refusedRead(id: string, sql: string): void {
    test(`${id}: ${sql}`, () =>
      withClient(async ({ c }) => {
        const msgs = await simple(c, sql);
        // The database first: if the statement ran, the report names what it changed.
        await assertIntact(adv, sql);
        assertRefused(msgs, sql);
      }));
  }

  // ───────────── volatile calls in less common places ─────────────
  refusedRead('w2x-01', 'select * from users where f_del() > 0');
  refusedRead('w2x-02', 'select * from users, lateral (select f_del()) x');
  refusedRead('w2x-03', 'select * from users natural join (select f_del() as id) x');
  refusedRead('w2x-04', 'select * from f_del()');
  refusedRead('w2x-05', 'select array(select f_del())');
  refusedRead('w2x-06', 'select exists(select f_del())');
  refusedRead('w2x-07', 'select coalesce(null, f_del())');
  refusedRead('w2x-08', 'select id from users where id in (select f_del())');
  refusedRead('w2x-09', 'select (select f_del()) over_sublink');
  refusedRead('w2x-10', 'select count(*) filter (where f_del() > 0) from users');
  refusedRead('w2x-11', 'select sum(id) over (partition by f_del()) from users');
  refusedRead('w2x-12', 'select * from users tablesample bernoulli (f_del())');
  refusedRead('w2x-13', 'select * from users limit f_del()');
  refusedRead('w2x-14', 'select * from rows from (f_del(), generate_series(1, 2)) x');
  // ───────────── names spelled differently ─────────────
  refusedRead('w2x-15', 'select "f_del"()');
  refusedRead('w2x-16', 'select public."f_del"()');
  refusedRead('w2x-17', 'select U&"\\0066_del"()');
  refusedRead('w2x-18', 'select U&"!0066_del" UESCAPE \'!\' ()');
  refusedRead('w2x-19', "select pg_catalog.nextval('s')");
  refusedRead('w2x-20', `select "pg_catalog"."nextval"('"s"'::regclass)`);
  refusedRead('w2x-21', 'select PUBLIC.F_DEL()');
  refusedRead('w2x-22', "select pg_catalog.setval('public.s'::regclass, 7, true)");
  // ───────────── functions the parse tree does not show as calls ─────────────
  refusedRead('w2x-23', 'select u.f_attr from users u');
  refusedRead('w2x-24', 'select (u).f_attr from users u');
  refusedRead('w2x-25', 'select u.f_attr_del from users u');
  refusedRead('w2x-26', 'select agg_reset(id) from users');
  refusedRead('w2x-27', 'select agg_del(id) from users');
  refusedRead('w2x-28', 'select f_liar()');
  refusedRead('w2x-29', 'select 1::d_reset');
  refusedRead('w2x-30', 'select * from t_rls');
  refusedRead('w2x-31', "select cast('1' as d_reset)");
  // ───────────── effects a read-only transaction does not stop ─────────────
  refusedRead('w2x-32', 'select pg_stat_reset_single_table_counters(\'users\'::regclass)');
  refusedRead('w2x-33', "select pg_stat_reset_shared('bgwriter')");

  function lockRefused(id: string, sql: string): void {
    test(`${id}: ${sql} is refused and no advisory lock is held`, () =>
      withClient(async ({ c }) => {
        const msgs = await simple(c, sql);
        assertRefused(msgs, sql);
        assert.equal(await advisoryLocks(), '0', `${sql}: an advisory lock is held`);
        await assertIntact(adv);
      }));
  }
  lockRefused('w2x-34', 'select pg_try_advisory_lock(1)');
  lockRefused('w2x-35', 'select pg_advisory_lock_shared(1)');
  lockRefused('w2x-36', 'select pg_catalog.pg_try_advisory_lock_shared(1, 2)');
  lockRefused('w2x-37', 'select * from users where pg_try_advisory_lock(id)');

  test('w2x-38: pg_terminate_backend of another app session is refused and that session survives', () =>
    withClient(async ({ c }) => {
      const victim = new pg.Client({ connectionString: adv.stack.pg.url() });
      await victim.connect();
      victim.on('error', () => {
        /* asserted below */
      });
      try {
        const msgs = await simple(c, "select pg_terminate_backend(pid) from pg_stat_activity where usename = 'app' and pid <> pg_backend_pid()");
        assertRefused(msgs, 'pg_terminate_backend');
        assert.equal((await victim.query('select 1 as one')).rows[0].one, 1, 'the other session was terminated');
      } finally {
        await victim.end().catch(() => undefined);
      }
      await assertIntact(adv);
    }));

  test('w2x-39: pg_cancel_backend(pg_backend_pid()) is refused or harmless; the session stays usable', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select pg_cancel_backend(pg_backend_pid())');
      const errs = errorsOf(msgs);
      assert.ok(errs.length === 0 || REFUSAL_CODES.includes(errs[0]!.code) || errs[0]!.code === '57014', describeMsgs(msgs));
      const after1 = await simple(c, 'select 1');
      assert.deepEqual(rowsOf(after1), [['1']], `session unusable: ${describeMsgs(after1)}`);
      await assertIntact(adv);
    }));

  test('w2x-40: select txid_current() does not change data (refused or answered)', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select txid_current(), pg_current_xact_id()');
      const errs = errorsOf(msgs);
      assert.ok(errs.length === 0 || REFUSAL_CODES.includes(errs[0]!.code), describeMsgs(msgs));
      await assertIntact(adv);
    }));

  test('w2x-41: LOCK users IN ACCESS EXCLUSIVE MODE is refused', () =>
    withClient(async ({ c }) => {
      const msgs = await simpleEach(c, ['begin', 'lock users in access exclusive mode', 'rollback']);
      assertSomeRefusal(msgs, 'LOCK ACCESS EXCLUSIVE');
      await assertIntact(adv);
    }));

  test('w2x-42: SELECT … FOR UPDATE / FOR NO KEY UPDATE holds no row lock (refused)', () =>
    withClient(async ({ c }) => {
      const msgs = await simpleEach(c, ['begin', 'select id from users for update', 'select id from users for no key update nowait']);
      const locks = (await adv.stack.pg.psql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'users' AND l.mode IN ('RowShareLock')", { database: 'app' })).trim();
      await simple(c, 'rollback');
      assertSomeRefusal(msgs, 'FOR UPDATE');
      assert.equal(locks, '0', 'a row-share lock on users was taken');
      await assertIntact(adv);
    }));

  // ───────────── switching to read-write, more spellings ─────────────
  const ABORTED = ['25P02'];
  function readWriteThenWrite(id: string, setup: string[], alsoAccept: readonly string[] = []): void {
    test(`${id}: ${setup.join('; ')}, then select f_del()`, () =>
      withClient(async ({ c }) => {
        for (const s of setup) await simple(c, s);
        const msgs = await simple(c, 'select f_del()');
        assertRefused(msgs, `select f_del() after ${setup.join('; ')}`, alsoAccept);
        await assertIntact(adv);
      }));
  }
  readWriteThenWrite('w2x-43', ['begin', 'set local transaction_read_only = off'], ABORTED);
  readWriteThenWrite('w2x-44', ['start transaction isolation level serializable, read write'], ABORTED);
  readWriteThenWrite('w2x-45', ['SeT   SeSsIoN /* c */ ChArAcTeRiStIcS\tAs\nTrAnSaCtIoN -- x\n rEaD\r\nWrItE']);
  readWriteThenWrite('w2x-46', ["select set_config('DEFAULT_TRANSACTION_READ_ONLY', 'off', false)"]);
  readWriteThenWrite('w2x-47', ["select set_config(E'default\\x5ftransaction_read_only', 'off', false)"]);
  readWriteThenWrite('w2x-48', ["select * from set_config('default_transaction_read_only', 'off', false)"]);
  readWriteThenWrite('w2x-49', ['set "default_transaction_read_only" = off']);
  readWriteThenWrite('w2x-50', ['set default_transaction_read_only = 0']);
  readWriteThenWrite('w2x-51', ['begin isolation level read committed', 'set transaction read write'], ABORTED);
  readWriteThenWrite('w2x-52', ['set session characteristics as transaction isolation level repeatable read, read write']);
  readWriteThenWrite('w2x-53', ["select set_config('default_transaction_read_only', lower('OFF'), false)"]);
  readWriteThenWrite('w2x-54', ["select set_config(name, 'off', false) from pg_settings where name = 'default_transaction_read_only'"]);
  readWriteThenWrite('w2x-55', ['begin', 'commit and chain']);
  readWriteThenWrite('w2x-56', ['begin read only', "select set_config('transaction_read_only', 'off', true)"], ABORTED);
  readWriteThenWrite('w2x-57', ['set default_transaction_read_only from current']);

  test('w2x-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
