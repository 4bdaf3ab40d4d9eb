/**
 * Adversarial corpus — side effects in reads: a SELECT (or EXPLAIN, VALUES, a transaction
 * statement) that writes through a volatile function, an operator, a sequence, a large
 * object, the notification queue, statistics, or that switches the session to read-write
 * before writing. Under a read-only policy each must be refused and the data left intact.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {
  assertIntact,
  assertNoRaw,
  assertRefused,
  assertSomeRefusal,
  assertStoreClean,
  connect,
  describeMsgs,
  functionCall,
  psql,
  psqlErrorCodes,
  REFUSAL_CODES,
  rowsOf,
  simple,
  useAdversary,
  exchange,
  LO_OID,
  type Adversary,
  type Client,
} from './harness.js';

describe('adversarial corpus: side effects in reads', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a));

  test('fx-00: control — without agentgate, app itself can do the writes this file attacks with', async () => {
    const client = new pg.Client({ connectionString: adv.stack.pg.url() });
    await client.connect();
    try {
      await client.query('BEGIN');
      assert.equal((await client.query('select f_del() as n')).rows[0].n, 2, 'f_del() deletes');
      await client.query("select lo_creat(-1), pg_notify('c', 'x')");
      assert.equal((await client.query("select nextval('s') as v")).rows[0].v, '1', 'nextval advances the sequence');
      await client.query(`select lo_unlink(${LO_OID})`);
      await client.query('select 1 === 1');
      const file = await client.query("select pg_read_file('postgresql.conf') as f");
      assert.match(file.rows[0].f, /listen_addresses/);
      await client.query('ROLLBACK');
    } finally {
      await client.end();
    }
    // Sequences are not transactional: the next case's reset() restores `s`.
  });

  /** One statement, refused, nothing changed. */
  function refusedRead(id: string, sql: string): void {
    test(`${id}: ${sql}`, () =>
      withClient(async ({ c }) => {
        const msgs = await simple(c, sql);
        assertRefused(msgs, sql);
        await assertIntact(adv, sql);
      }));
  }

  refusedRead('fx-01', 'select f_del()');
  refusedRead('fx-02', "select nextval('s')");
  refusedRead('fx-03', "select setval('s', 100)");
  refusedRead('fx-04', 'select lo_creat(-1)');
  refusedRead('fx-05', "select pg_notify('c', 'x')");
  refusedRead('fx-06', 'select pg_stat_reset()');
  refusedRead('fx-07', 'explain analyze select f_del()');
  refusedRead('fx-08', 'select * from (select f_del()) x');
  refusedRead('fx-09', 'with x as (select f_del()) select * from x');
  refusedRead('fx-10', 'select 1 where f_del() > 0');
  refusedRead('fx-11', 'values (f_del())');
  refusedRead('fx-12', "select query_to_xml('delete from users returning 1', true, false, '')");
  refusedRead('fx-13', "select query_to_xml('select f_del()', true, false, '')");
  refusedRead('fx-14', 'select 1 === 1');
  refusedRead('fx-15', 'select lo_create(0)');
  refusedRead('fx-16', `select lo_unlink(${LO_OID})`);
  refusedRead('fx-17', `select lo_put(${LO_OID}, 0, '\\x41')`);
  refusedRead('fx-18', 'explain analyze with d as (delete from users returning 1) select * from d');
  refusedRead('fx-19', 'with d as (delete from users returning 1) select * from d');
  refusedRead('fx-20', 'select * into stolen from users');
  refusedRead('fx-21', 'select id from users order by f_del()');
  refusedRead('fx-22', 'select count(*) from users group by id having f_del() >= 0');

  // Decision: a session-level advisory lock outlives the statement and can block other
  // sessions (a denial of service from a "read"), so it is refused.
  test('fx-23: select pg_advisory_lock(1) is refused and no advisory lock is held', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select pg_advisory_lock(1)');
      assertRefused(msgs, 'pg_advisory_lock');
      const held = (await adv.stack.pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'", { database: 'app' })).trim();
      assert.equal(held, '0', 'an advisory lock is held');
      await assertIntact(adv);
    }));

  /** Switch the session or transaction to read-write, then try to write: the write is refused. */
  function readWriteThenWrite(id: string, title: string, setup: string[], alsoAccept: readonly string[] = []): void {
    test(`${id}: ${title}, then select f_del()`, () =>
      withClient(async ({ c }) => {
        for (const s of setup) await simple(c, s);
        const msgs = await simple(c, 'select f_del()');
        assertRefused(msgs, `select f_del() after ${title}`, alsoAccept);
        await assertIntact(adv);
      }));
  }

  readWriteThenWrite('fx-24', "select set_config('default_transaction_read_only', 'off', false)", [
    "select set_config('default_transaction_read_only', 'off', false)",
  ]);
  readWriteThenWrite('fx-25', 'BEGIN READ WRITE', ['begin read write']);
  readWriteThenWrite('fx-26', 'SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE', ['set session characteristics as transaction read write']);
  // Inside a transaction block a refused trick aborts the transaction; then the server's own
  // 25P02 also guarantees the write cannot run, so it is accepted for these two.
  const ABORTED = ['25P02'];
  readWriteThenWrite('fx-27', 'BEGIN; SET transaction_read_only = off', ['begin', 'set transaction_read_only = off'], ABORTED);
  readWriteThenWrite('fx-28', 'RESET default_transaction_read_only', ['reset default_transaction_read_only']);
  readWriteThenWrite('fx-29', "select set_config('transaction_read_only', 'off', true) in a transaction", [
    'begin',
    "select set_config('transaction_read_only', 'off', true)",
  ], ABORTED);

  // ───────────── FunctionCall ('F') messages: call a function by OID, no SQL at all ─────────────

  function refusedFunctionCall(id: string, title: string, build: () => Buffer): void {
    test(`${id}: FunctionCall of ${title} is refused`, () =>
      withClient(async ({ c }) => {
        const msgs = await exchange(c, [build()]);
        assertRefused(msgs, `FunctionCall ${title}`);
        await assertIntact(adv);
      }));
  }

  refusedFunctionCall('fn-01', 'lo_unlink(seeded object)', () => functionCall(adv.oids.lo_unlink, [String(LO_OID)]));
  refusedFunctionCall('fn-02', 'lo_creat(-1)', () => functionCall(adv.oids.lo_creat, ['-1']));
  refusedFunctionCall('fn-03', 'lo_create(0)', () => functionCall(adv.oids.lo_create, ['0']));
  refusedFunctionCall('fn-04', "pg_read_file('postgresql.conf')", () => functionCall(adv.oids.pg_read_file, ['postgresql.conf']));
  refusedFunctionCall('fn-05', "nextval('s')", () => functionCall(adv.oids.nextval, ['s']));
  refusedFunctionCall('fn-06', 'a nonexistent OID', () => functionCall(4_000_000_000 >>> 1, ['1']));

  test('fn-07: FunctionCall of pg_read_file returns no file content', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [functionCall(adv.oids.pg_read_file, ['postgresql.conf'])]);
      const text = Buffer.concat(msgs.map((m) => m.body)).toString('latin1');
      assert.ok(!text.includes('listen_addresses'), `the server's configuration file came back: ${describeMsgs(msgs)}`);
      assert.equal(rowsOf(msgs).length, 0);
    }));

  test('fn-08: psql \\lo_unlink is refused', async () => {
    const r = await psql(adv, ['-c', `\\lo_unlink ${LO_OID}`]);
    assertNoRaw(r.stdout + r.stderr);
    assert.notEqual(r.code, 0, `psql \\lo_unlink succeeded: ${r.stdout}`);
    const codes = psqlErrorCodes(r.stderr);
    assert.ok(codes.length > 0 && REFUSAL_CODES.includes(codes[0]!), `refused with ${codes.join(',')}: ${r.stderr}`);
    await assertIntact(adv);
  });

  test('fn-09: psql \\lo_import is refused', async () => {
    const r = await psql(adv, ['-c', '\\lo_import /etc/hostname']);
    assertNoRaw(r.stdout + r.stderr);
    assert.notEqual(r.code, 0, `psql \\lo_import succeeded: ${r.stdout}`);
    const codes = psqlErrorCodes(r.stderr);
    assert.ok(codes.length > 0 && REFUSAL_CODES.includes(codes[0]!), `refused with ${codes.join(',')}: ${r.stderr}`);
    await assertIntact(adv);
  });

  test('fn-10: a FunctionCall inside a transaction block is refused as well', () =>
    withClient(async ({ c }) => {
      const msgs = [...(await simple(c, 'begin')), ...(await exchange(c, [functionCall(adv.oids.lo_unlink, [String(LO_OID)])])), ...(await simple(c, 'commit'))];
      assertSomeRefusal(msgs, 'FunctionCall lo_unlink in a transaction');
      await assertIntact(adv);
    }));

  // Two-phase commit: PostgreSQL runs PREPARE TRANSACTION and COMMIT / ROLLBACK PREPARED in a
  // read-only transaction, so the read-only upstream session does not stop them; the gate must.
  async function prepareAsApp(gid: string): Promise<void> {
    const app = new pg.Client({ connectionString: adv.stack.pg.url() });
    await app.connect();
    try {
      await app.query('BEGIN');
      await app.query("INSERT INTO cards VALUES (9, 'prepared by app')");
      await app.query(`PREPARE TRANSACTION '${gid}'`);
    } finally {
      await app.end();
    }
  }
  const preparedGids = async (): Promise<string> =>
    (await adv.stack.pg.psql("SELECT coalesce(string_agg(gid, ',' ORDER BY gid), '<none>') FROM pg_prepared_xacts", { database: 'app' })).trim();
  const finishAll = async (): Promise<void> => {
    for (const gid of (await preparedGids()).split(',')) if (gid !== '<none>') await adv.stack.pg.psql(`ROLLBACK PREPARED '${gid}'`, { database: 'app' });
  };

  test('fx-2pc-0: control — without agentgate, a read-only session of app commits the transaction app prepared elsewhere', async () => {
    await prepareAsApp('ctl-2pc');
    const ro = new pg.Client({ connectionString: adv.stack.pg.url(), options: '-c default_transaction_read_only=on' });
    await ro.connect();
    try {
      assert.equal((await ro.query('SHOW default_transaction_read_only')).rows[0].default_transaction_read_only, 'on');
      await ro.query("COMMIT PREPARED 'ctl-2pc'");
      assert.equal((await ro.query("SELECT card FROM cards WHERE id = 9")).rows[0]?.card, 'prepared by app', 'the prepared write is committed');
    } finally {
      await ro.end();
      await finishAll();
    }
    // The committed row is removed by the next case's reset().
  });

  for (const [id, verb] of [['fx-2pc-1', 'COMMIT PREPARED'], ['fx-2pc-2', 'ROLLBACK PREPARED']] as const) {
    test(`${id}: ${verb} of a transaction app prepared elsewhere is refused, and it stays prepared`, () =>
      withClient(async ({ c }) => {
        await prepareAsApp(`app-${id}`);
        try {
          const msgs = await simple(c, `${verb.toLowerCase()} 'app-${id}'`);
          assertRefused(msgs, verb);
          assert.equal(await preparedGids(), `app-${id}`, 'still prepared, neither committed nor discarded');
          await assertIntact(adv);
        } finally {
          await finishAll();
        }
      }));
  }

  test('fx-2pc-3: PREPARE TRANSACTION (a transaction left holding locks after the session) is refused', () =>
    withClient(async ({ c }) => {
      try {
        const msgs = [...(await simple(c, 'begin')), ...(await simple(c, 'select count(*) from users')), ...(await simple(c, "prepare transaction 'agent-2pc'"))];
        assertSomeRefusal(msgs, 'PREPARE TRANSACTION');
        await simple(c, 'rollback');
        assert.equal(await preparedGids(), '<none>');
        await assertIntact(adv);
      } finally {
        await finishAll();
      }
    }));

  test('fx-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
