/**
 * What a read is, on the real path, under the classic read-only policy: views are judged by
 * what their definitions call, FunctionCall messages by the function their OID names,
 * EXECUTE by the statement it runs; the upstream session is read-only; the audit log names
 * function calls.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startPgStack, TARGET, type PgStack } from '../postgres/stack.js';
import { RawPg, errorCodes, errorMessages, type Msg } from '../postgres/raw-client.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';
import { functionCall, rowsOf as rows, simple as simpleQuery } from '../postgres/adversarial/harness.js';
import { BackendType } from '../../src/broker/postgres/protocol.js';

describe('reads under a read-only policy, through the broker', () => {
  let stack: PgStack;
  let c: RawPg;

  before(async () => {
    stack = await startPgStack({
      policies: [
        {
          name: 'ro',
          subjects: { groups: ['ai-agents'] },
          targets: [TARGET],
          rules: [
            { name: 'ro#1', sql: ['select', 'show', 'explain', 'transaction'], effect: 'allow', extra: {} },
            { name: 'ro#2', effect: 'deny', extra: {} },
          ],
        },
      ],
    });
    await stack.pg.psql(
      `CREATE TABLE t (id int PRIMARY KEY, v text);
       INSERT INTO t VALUES (1, 'one'), (2, 'two');
       CREATE SEQUENCE s;
       CREATE FUNCTION f_bump() RETURNS bigint VOLATILE LANGUAGE sql AS $$ SELECT nextval('s') $$;
       CREATE VIEW v_bump AS SELECT id, f_bump() AS n FROM t;
       CREATE VIEW v_plain AS SELECT id, lower(v) AS v FROM t;
       CREATE VIEW v_nested AS SELECT * FROM v_bump;
       CREATE DOMAIN d_bumps AS bigint CHECK (f_bump() > 0);
       CREATE DOMAIN d_over AS d_bumps;
       GRANT ALL ON t, s, v_bump, v_plain, v_nested TO app;
       GRANT EXECUTE ON FUNCTION f_bump() TO app;`,
      { database: 'app' },
    );
    c = await RawPg.login(stack.port, stack.session.secret);
  });
  after(async () => {
    c?.close();
    await stack?.close();
  });

  async function simple(sql: string): Promise<Msg[]> {
    c.send(fe.query(sql));
    return c.untilReady();
  }

  async function sequenceValue(): Promise<string> {
    return (await stack.pg.psql('SELECT last_value FROM s', { database: 'app' })).trim();
  }

  test('a view whose definition calls a volatile function is not a read (nested views too)', async () => {
    const before = await sequenceValue();
    for (const sql of ['SELECT * FROM v_bump', 'SELECT n FROM v_nested']) {
      const msgs = await simple(sql);
      assert.deepEqual(errorCodes(msgs), ['42501'], sql);
      assert.match(errorMessages(msgs)[0] ?? '', /f_bump/, 'the reason names the function the view calls');
    }
    assert.equal(await sequenceValue(), before, 'the sequence did not move');
    assert.deepEqual(rows(await simple('SELECT v FROM v_plain ORDER BY id')), [['one'], ['two']], 'a view of harmless calls reads');
  });

  test('a cast to a domain runs its CHECK, and a domain over it runs the base CHECK too', async () => {
    const before = await sequenceValue();
    for (const sql of ['SELECT 1::d_bumps', "SELECT CAST('1' AS d_over)", 'SELECT 1::public.d_over']) {
      const msgs = await simple(sql);
      assert.deepEqual(errorCodes(msgs), ['42501'], sql);
      assert.match(errorMessages(msgs)[0] ?? '', /f_bump/, sql);
    }
    assert.equal(await sequenceValue(), before);
  });

  test('the upstream session is read-only, and turning that off is refused', async () => {
    assert.deepEqual(rows(await simple('SHOW default_transaction_read_only')), [['on']]);
    for (const sql of ['SET default_transaction_read_only = off', 'BEGIN READ WRITE', "SELECT set_config('transaction_read_only', 'off', false)"]) {
      const msgs = await simple(sql);
      assert.deepEqual(errorCodes(msgs), ['42501'], sql);
    }
    await simple('ROLLBACK');
  });

  test('FunctionCall: resolved by OID, a harmless built-in (md5) runs, an effectful or unknown one is refused', async () => {
    const oids = await stack.pg.psql("SELECT 'pg_catalog.md5(text)'::regprocedure::oid, 'pg_catalog.lo_creat(int)'::regprocedure::oid", { database: 'app' });
    const [md5, loCreat] = oids.trim().split('|').map(Number);
    c.send(functionCall(md5!, ['MiXeD']));
    const ok = await c.untilReady();
    assert.deepEqual(errorCodes(ok), []);
    const v = ok.find((m) => m.type === BackendType.functionCallResponse);
    assert.ok(v, 'a FunctionCallResponse');
    assert.equal(v.body.subarray(4).toString(), createHash('md5').update('MiXeD').digest('hex'));
    const before = await stack.pg.psql('SELECT count(*) FROM pg_largeobject_metadata', { database: 'app' });
    for (const oid of [loCreat!, 2_000_000_000]) {
      c.send(functionCall(oid, [Buffer.from([0, 0, 0, 0])], [1]));
      const msgs = await c.untilReady();
      assert.deepEqual(errorCodes(msgs), ['42501'], `oid ${oid}`);
    }
    const afterCount = await stack.pg.psql('SELECT count(*) FROM pg_largeobject_metadata', { database: 'app' });
    assert.equal(afterCount, before, 'no large object was created');
    const events = await stack.events();
    const calls = events.filter((e) => e.type === 'query' && (e.detail as { protocol?: string }).protocol === 'function');
    assert.ok(calls.some((e) => /pg_catalog\.md5\(1 args?\)/.test(String((e.detail as { sql?: string }).sql))), JSON.stringify(calls.map((e) => e.detail)));
  });

  test('EXECUTE is judged as the statement it runs, whoever prepared it', async () => {
    // A protocol-level Parse of a DELETE (never executed through the protocol), then SQL EXECUTE of it.
    c.send(fe.parse('d', 'DELETE FROM t'), fe.SYNC);
    await c.untilReady();
    assert.deepEqual(errorCodes(await simple('EXECUTE d')), ['42501']);

    assert.deepEqual(errorCodes(await simple('EXECUTE nosuch')), ['42501']);
    // PREPARE of a read is a read, and so is executing it.
    assert.deepEqual(errorCodes(await simple('PREPARE r AS SELECT v FROM t WHERE id = $1')), []);
    assert.deepEqual(rows(await simple('EXECUTE r(2)')), [['two']]);
    const count = await stack.pg.psql('SELECT count(*) FROM t', { database: 'app' });
    assert.equal(count.trim(), '2');
  });
});

describe('EXPLAIN ANALYZE EXECUTE in a read-write session whose policy allows execute', () => {
  let stack: PgStack;
  let c: RawPg;

  before(async () => {
    stack = await startPgStack({
      policies: [
        {
          name: 'rw',
          subjects: { groups: ['ai-agents'] },
          targets: [TARGET],
          rules: [
            { name: 'no-delete', sql: ['delete'], effect: 'deny', extra: {} },
            { name: 'reads', sql: ['select', 'show', 'explain', 'prepare', 'execute', 'transaction'], effect: 'allow', extra: {} },
            // A write grant, so the upstream session is not read-only: the gate alone decides.
            { name: 'log', sql: ['insert'], relations: ['public.log'], effect: 'allow', extra: {} },
          ],
        },
      ],
    });
    await stack.pg.psql('CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2); CREATE TABLE log (v text); GRANT ALL ON t, log TO app;', { database: 'app' });
    c = await RawPg.login(stack.port, stack.session.secret);
  });
  after(async () => {
    c?.close();
    await stack?.close();
  });

  const simple = (sql: string): Promise<Msg[]> => simpleQuery(c, sql);

  test('EXPLAIN ANALYZE EXECUTE p runs p, so it is judged as p: a DELETE prepared by protocol Parse is refused', async () => {
    assert.deepEqual(rows(await simple('SHOW default_transaction_read_only')), [['off']], 'a read-write session');
    c.send(fe.parse('d', 'DELETE FROM t'), fe.SYNC);
    await c.untilReady();
    for (const sql of ['EXPLAIN ANALYZE EXECUTE d', 'EXPLAIN (ANALYZE, COSTS OFF) EXECUTE d', 'EXECUTE d']) {
      assert.deepEqual(errorCodes(await simple(sql)), ['42501'], sql);
    }
    // The same text sent as a protocol Parse/Bind/Execute is judged the same way.
    c.send(fe.parse('x', 'EXPLAIN ANALYZE EXECUTE d'), fe.bind('', 'x', []), fe.execute(), fe.SYNC);
    assert.deepEqual(errorCodes(await c.untilReady()), ['42501'], 'Execute of EXPLAIN ANALYZE EXECUTE d');
    assert.equal((await stack.pg.psql('SELECT count(*) FROM t', { database: 'app' })).trim(), '2', 'nothing deleted');
    // Plain EXPLAIN only plans it; EXPLAIN ANALYZE of an allowed statement runs.
    assert.deepEqual(errorCodes(await simple('EXPLAIN EXECUTE d')), []);
    assert.deepEqual(errorCodes(await simple('PREPARE r AS SELECT id FROM t')), []);
    assert.deepEqual(errorCodes(await simple('EXPLAIN ANALYZE EXECUTE r')), []);
  });

  test('FETCH and MOVE run the portal they name: a portal bound (not executed) from a DELETE is not run by them', async () => {
    for (const verb of ['FETCH ALL FROM', 'MOVE ALL IN', 'FETCH 1 FROM']) {
      assert.deepEqual(errorCodes(await simple('BEGIN')), []);
      // Parse and Bind only: nothing runs until an Execute, which the gate would judge.
      c.send(fe.parse('del_ret', 'DELETE FROM t RETURNING id'), fe.bind('pp', 'del_ret', []), fe.SYNC);
      await c.untilReady();
      const msgs = await simple(`${verb} pp`);
      assert.deepEqual(errorCodes(msgs), ['42501'], verb);
      await simple('COMMIT'); // had it run, the delete would stay
      c.send(fe.close('S', 'del_ret'), fe.SYNC);
      await c.untilReady();
    }
    // Bind and FETCH in one write, no Sync between: the portal is still unconfirmed when the
    // FETCH arrives, and the server would run it in the same implicit transaction.
    c.send(fe.parse('del_ret2', 'DELETE FROM t RETURNING id'), fe.bind('pp2', 'del_ret2', []), fe.query('FETCH ALL FROM pp2'));
    assert.ok(errorCodes(await c.untilReady()).includes('42501'), 'pipelined FETCH refused');
    assert.equal((await stack.pg.psql('SELECT count(*) FROM t', { database: 'app' })).trim(), '2', 'nothing deleted');
  });
});
