/**
 * Adversarial corpus, wave 8 — what an ALLOWED write runs beyond its text, under a policy
 * that grants writes to some relations (`orders*`) and not to others.
 *
 * Every earlier side-effects wave runs under the read-only policy, where the upstream
 * session's read-only backstop stops any write a trigger makes. Here the agent may
 * INSERT/UPDATE/DELETE/TRUNCATE/COPY into `orders*`, so the session is read-write and the
 * gate alone decides. An allowed write also runs, without naming it:
 * - the table's triggers: BEFORE/AFTER row and statement triggers, triggers with
 *   transition tables, INSTEAD OF triggers of a view, constraint triggers deferred to
 *   COMMIT, TRUNCATE triggers, triggers enabled ALWAYS (and REPLICA ones once
 *   session_replication_role is replica), a partition's own triggers reached through its
 *   parent, the UPDATE triggers of INSERT … ON CONFLICT DO UPDATE and MERGE's actions, and
 *   a trigger's WHEN condition (which runs even when the trigger function is harmless);
 * - the volatile code in its column defaults (planning folds only what it can; executing
 *   the INSERT calls the rest);
 * - foreign keys' referential actions: ON DELETE CASCADE deletes from the referencing
 *   table, which the policy does not let the agent write;
 * - an auto-updatable view's base table, which is what the write really changes.
 * The hidden effect is `DELETE FROM users` (or a write to `audit_*`) unless stated; w8s-00
 * shows each one happening for `app` without agentgate. Writes that run nothing hidden
 * (built-in defaults, foreign-key checks) must stay allowed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertIntact,
  assertNoError,
  assertRefused,
  assertSomeRefusal,
  assertStoreClean,
  describeMsgs,
  direct,
  errorsOf,
  exchange,
  fe,
  functionCall,
  loginWith,
  rowsOf,
  simple,
  simpleEach,
  superQuery,
  tagsOf,
  useAdversary,
  type Adversary,
  LO_OID,
} from './harness.js';
import { TARGET } from '../stack.js';
import type { PolicyConfig } from '../../../src/broker/config/types.js';

/** Reads everywhere; writes only to relations named orders*. */
const WRITE_POLICY: PolicyConfig[] = [
  {
    name: 'w8',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'w8#1', sql: ['select', 'show', 'explain', 'transaction'], effect: 'allow', extra: {} },
      { name: 'w8#2', sql: ['insert', 'update', 'delete', 'merge', 'truncate', 'copy', 'select'], relations: ['orders*'], effect: 'allow', extra: {} },
      // A trigger function the operator vouches for by name: writes to orders_ok may run it.
      { name: 'w8#3', sql: ['insert'], relations: ['orders_ok'], functions: ['trg_ok'], effect: 'allow', extra: {} },
      { name: 'w8#4', effect: 'deny', extra: {} },
    ],
  },
];

const SEED = `
CREATE TABLE audit_trail (order_id int, note text);
CREATE FUNCTION trg_wipe() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN DELETE FROM users; INSERT INTO audit_trail VALUES (0, TG_NAME); RETURN coalesce(NEW, OLD); END $$;
CREATE FUNCTION trg_wipe_stmt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN DELETE FROM users; RETURN NULL; END $$;
CREATE FUNCTION f_when(int) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN DELETE FROM users; RETURN true; END $$;
CREATE FUNCTION f_def() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN DELETE FROM users; RETURN 7; END $$;

CREATE TABLE orders_b (id int PRIMARY KEY, item text);
INSERT INTO orders_b VALUES (1, 'one');
CREATE TRIGGER t_b BEFORE INSERT OR UPDATE OR DELETE ON orders_b FOR EACH ROW EXECUTE FUNCTION trg_wipe();

CREATE TABLE orders_t (id int, item text);
CREATE TRIGGER t_t AFTER INSERT ON orders_t REFERENCING NEW TABLE AS nt FOR EACH STATEMENT EXECUTE FUNCTION trg_wipe_stmt();

CREATE TABLE orders_base (id int, item text);
CREATE VIEW orders_v AS SELECT id, item FROM orders_base;
CREATE TRIGGER t_v INSTEAD OF INSERT ON orders_v FOR EACH ROW EXECUTE FUNCTION trg_wipe();

CREATE TABLE orders_c (id int, item text);
INSERT INTO orders_c VALUES (1, 'one');
CREATE CONSTRAINT TRIGGER t_c AFTER UPDATE ON orders_c DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION trg_wipe();

CREATE TABLE orders_a (id int);
INSERT INTO orders_a VALUES (1);
CREATE TRIGGER t_a AFTER DELETE ON orders_a FOR EACH STATEMENT EXECUTE FUNCTION trg_wipe_stmt();
ALTER TABLE orders_a ENABLE ALWAYS TRIGGER t_a;

CREATE TABLE orders_r (id int);
INSERT INTO orders_r VALUES (1);
CREATE TRIGGER t_r AFTER DELETE ON orders_r FOR EACH STATEMENT EXECUTE FUNCTION trg_wipe_stmt();
ALTER TABLE orders_r ENABLE REPLICA TRIGGER t_r;

CREATE TABLE orders_w (id int, item text);
INSERT INTO orders_w VALUES (1, 'one');
CREATE TRIGGER t_w BEFORE UPDATE ON orders_w FOR EACH ROW WHEN (f_when(NEW.id)) EXECUTE FUNCTION suppress_redundant_updates_trigger();

CREATE TABLE orders_tr (id int);
CREATE TRIGGER t_tr BEFORE TRUNCATE ON orders_tr FOR EACH STATEMENT EXECUTE FUNCTION trg_wipe_stmt();

CREATE TABLE orders_p (id int, item text) PARTITION BY RANGE (id);
CREATE TABLE orders_p1 PARTITION OF orders_p FOR VALUES FROM (0) TO (100);
CREATE TRIGGER t_p1 BEFORE INSERT ON orders_p1 FOR EACH ROW EXECUTE FUNCTION trg_wipe();

CREATE TABLE orders_d (id int, b int DEFAULT f_def());

CREATE TABLE orders_k (id int PRIMARY KEY);
INSERT INTO orders_k VALUES (1);
CREATE TABLE audit_fk (order_id int REFERENCES orders_k (id) ON DELETE CASCADE);
INSERT INTO audit_fk VALUES (1);

CREATE VIEW orders_uv AS SELECT order_id, note FROM audit_trail;

CREATE TABLE orders_rl (id int);
CREATE RULE r_rl AS ON INSERT TO orders_rl DO ALSO INSERT INTO audit_trail VALUES (NEW.id, 'rule');

-- ───── a non-default btree class for int whose in_range (RANGE frames with an offset) deletes ─────
CREATE FUNCTION f_alt_lt(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT $1 < $2';
CREATE FUNCTION f_alt_le(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT $1 <= $2';
CREATE FUNCTION f_alt_eq(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT $1 = $2';
CREATE FUNCTION f_alt_ge(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT $1 >= $2';
CREATE FUNCTION f_alt_gt(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT $1 > $2';
CREATE FUNCTION f_alt_cmp(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT btint4cmp($1, $2)';
CREATE FUNCTION f_alt_in_range(int, int, int, bool, bool) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN DELETE FROM users; RETURN in_range($1, $2, $3, $4, $5); END $$;
CREATE OPERATOR #< (LEFTARG = int, RIGHTARG = int, FUNCTION = f_alt_lt);
CREATE OPERATOR #<= (LEFTARG = int, RIGHTARG = int, FUNCTION = f_alt_le);
CREATE OPERATOR #= (LEFTARG = int, RIGHTARG = int, FUNCTION = f_alt_eq);
CREATE OPERATOR #>= (LEFTARG = int, RIGHTARG = int, FUNCTION = f_alt_ge);
CREATE OPERATOR #> (LEFTARG = int, RIGHTARG = int, FUNCTION = f_alt_gt);
CREATE OPERATOR CLASS int_alt_ops FOR TYPE int USING btree AS
  OPERATOR 1 #<, OPERATOR 2 #<=, OPERATOR 3 #=, OPERATOR 4 #>=, OPERATOR 5 #>,
  FUNCTION 1 f_alt_cmp(int, int), FUNCTION 3 f_alt_in_range(int, int, int, bool, bool);

-- ───── an unqualified name: public.orders_q is plain, w8evil.orders_q (first on a search_path the agent sets) deletes ─────
CREATE TABLE orders_q (id int);
CREATE SCHEMA w8evil;
CREATE TABLE w8evil.orders_q (id int);
CREATE TRIGGER t_q BEFORE INSERT ON w8evil.orders_q FOR EACH ROW EXECUTE FUNCTION trg_wipe();
GRANT USAGE ON SCHEMA w8evil TO app;
GRANT ALL ON orders_q, w8evil.orders_q TO app;

-- ───── the harmless counterparts ─────
CREATE FUNCTION trg_ok() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.item := upper(NEW.item); RETURN NEW; END $$;
CREATE TABLE orders_ok (id int, item text);
CREATE TRIGGER t_ok BEFORE INSERT ON orders_ok FOR EACH ROW EXECUTE FUNCTION trg_ok();
CREATE SEQUENCE s_orders;
CREATE TABLE orders_plain (id int PRIMARY KEY, item text, at timestamptz DEFAULT now(), n int DEFAULT nextval('s_orders'));
CREATE TABLE orders_line (order_id int REFERENCES orders_plain (id), qty int);
INSERT INTO orders_plain (id, item) VALUES (1, 'one');

GRANT ALL ON audit_trail, audit_fk, orders_b, orders_t, orders_base, orders_v, orders_c, orders_a, orders_r, orders_w, orders_tr,
  orders_p, orders_p1, orders_d, orders_k, orders_uv, orders_plain, orders_line, orders_rl, orders_ok TO app;
GRANT ALL ON SEQUENCE s_orders TO app;
-- PostgreSQL 15: a superuser-only setting an operator delegated (so app can switch replica triggers on).
GRANT SET ON PARAMETER session_replication_role TO app;
`;

/** A CopyData ('d') or CopyDone ('c') frame: not among the broker's frame builders. */
function copyFrame(type: 'd' | 'c', body: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeInt32BE(4 + body.length);
  return Buffer.concat([Buffer.from(type, 'latin1'), len, body]);
}

/** What no attack may change beyond the harness's snapshot: the audit tables. */
const AUDIT_SQL = "SELECT (SELECT count(*) FROM audit_trail) || '/' || (SELECT count(*) FROM audit_fk)";

interface Attack {
  id: string;
  /** Statements sent one simple Query each. */
  sqls: string[];
  why: string;
}

const ATTACKS: Attack[] = [
  { id: 'w8s-01', sqls: ["insert into public.orders_b values (2, 'two')"], why: 'a BEFORE INSERT row trigger runs trg_wipe(), which deletes users and writes audit_trail' },
  { id: 'w8s-02', sqls: ["insert into public.orders_t values (2, 'two')"], why: 'an AFTER INSERT statement trigger with a transition table runs trg_wipe_stmt()' },
  { id: 'w8s-03', sqls: ["insert into public.orders_v values (2, 'two')"], why: 'the INSTEAD OF INSERT trigger of the view runs trg_wipe()' },
  { id: 'w8s-04', sqls: ['begin', "update public.orders_c set item = 'x'", 'commit'], why: 'a constraint trigger deferred to COMMIT runs trg_wipe()' },
  { id: 'w8s-05', sqls: ['delete from public.orders_a where id = 1'], why: 'a trigger enabled ALWAYS fires whatever session_replication_role is' },
  { id: 'w8s-06', sqls: ['set session_replication_role = replica', 'delete from public.orders_r where id = 1'], why: 'a REPLICA trigger fires once session_replication_role is replica' },
  { id: 'w8s-07', sqls: ["update public.orders_w set item = 'x'"], why: 'the trigger’s WHEN (f_when(NEW.id)) runs, though its function is a harmless built-in' },
  { id: 'w8s-08', sqls: ['truncate public.orders_tr'], why: 'a BEFORE TRUNCATE trigger runs trg_wipe_stmt()' },
  { id: 'w8s-09', sqls: ["insert into public.orders_p values (5, 'five')"], why: 'the row lands in partition orders_p1, whose own BEFORE INSERT trigger runs' },
  { id: 'w8s-10', sqls: ['insert into public.orders_d (id) values (1)'], why: 'the column default f_def() is volatile PL/pgSQL: executing the INSERT calls it' },
  { id: 'w8s-11', sqls: ['delete from public.orders_k where id = 1'], why: 'ON DELETE CASCADE deletes the referencing row of audit_fk, which the policy does not let the agent write' },
  { id: 'w8s-12', sqls: ["insert into public.orders_uv values (9, 'forged')"], why: 'an auto-updatable view: the INSERT writes its base table audit_trail' },
  {
    id: 'w8s-13',
    sqls: ["merge into public.orders_b o using (select 3 as id) s on o.id = s.id when not matched then insert values (s.id, 'three')"],
    why: 'MERGE’s INSERT action fires the BEFORE INSERT trigger',
  },
  { id: 'w8s-14', sqls: ["insert into public.orders_b values (1, 'x') on conflict (id) do update set item = 'y'"], why: 'ON CONFLICT DO UPDATE fires the BEFORE UPDATE row trigger' },
  { id: 'w8s-15', sqls: ['delete from public.orders_b where id = 1'], why: 'the BEFORE DELETE row trigger runs trg_wipe()' },
  { id: 'w8s-16', sqls: ['explain analyze insert into public.orders_t values (3, \'x\')'], why: 'EXPLAIN ANALYZE runs the INSERT and its statement trigger' },
  { id: 'w8s-19', sqls: ['insert into public.orders_rl values (5)'], why: 'the ON INSERT … DO ALSO rule’s action writes audit_trail, which the policy does not let the agent write' },
  { id: 'w8s-23', sqls: ['truncate public.orders_k cascade'], why: 'TRUNCATE … CASCADE truncates audit_fk, which references orders_k' },
  {
    id: 'w8s-24',
    sqls: ['select sum(g) over (order by g using #< range between 1 preceding and current row) from generate_series(1, 3) g'],
    why: 'a RANGE frame with an offset ordered by #< calls the in_range support function of #<’s operator family',
  },
  { id: 'w8s-26', sqls: ['set search_path = w8evil, public', 'insert into orders_q values (1)'], why: 'an unqualified target resolves to w8evil.orders_q, whose trigger deletes' },
  { id: 'w8s-17', sqls: ['with x as (insert into public.orders_b values (4, \'four\') returning id) select id from x'], why: 'a writable CTE fires the row trigger' },
];

describe('adversarial corpus wave 8: what an allowed write runs — triggers, defaults, cascades, updatable views', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    policies: WRITE_POLICY,
    setup: async (a) => {
      await a.stack.pg.psql(SEED, { database: 'app' });
    },
  });
  const audit = (): Promise<string> => superQuery(adv, AUDIT_SQL);
  /** Restores what the attacks in this file aim at beyond the harness's seed. */
  const resetOrders = async (): Promise<void> => {
    await superQuery(
      adv,
      // Replica role: orders_b's own triggers must not fire while it is restored.
      `SET session_replication_role = replica; TRUNCATE audit_trail; DELETE FROM orders_b WHERE id <> 1; INSERT INTO orders_b VALUES (1, 'one') ON CONFLICT DO NOTHING;
       INSERT INTO orders_k VALUES (1) ON CONFLICT DO NOTHING; INSERT INTO audit_fk SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM audit_fk);`,
    );
  };

  test('w8s-00: control — without agentgate, each attack below deletes users or writes audit_*', async () => {
    for (const { id, sqls } of ATTACKS) {
      await adv.reset();
      await resetOrders();
      const before = await audit();
      assert.equal(await superQuery(adv, 'SELECT count(*) FROM users'), '2', `${id}: the seed is in place`);
      await direct(adv, async (client) => {
        for (const s of sqls) await client.query(s);
      });
      const users = await superQuery(adv, 'SELECT count(*) FROM users');
      const after = await audit();
      assert.ok(users === '0' || after !== before, `${id}: ${sqls.join('; ')} ran nothing hidden (users=${users}, audit ${before} → ${after})`);
    }
    await adv.reset();
    await resetOrders();
  });

  for (const { id, sqls, why } of ATTACKS) {
    test(`${id}: ${sqls.join('; ')} — ${why}`, () =>
      withClient(async ({ c }) => {
        await resetOrders();
        const before = await audit();
        const msgs = await simpleEach(c, sqls);
        await simple(c, 'rollback');
        await assertIntact(adv, sqls.join('; '));
        assert.equal(await audit(), before, `${id}: audit tables changed`);
        assertSomeRefusal(msgs, id);
      }));
  }

  test('w8s-18: COPY orders_b FROM STDIN (the row trigger fires per copied row): refused, nothing runs', () =>
    withClient(async ({ c }) => {
      await resetOrders();
      const before = await audit();
      const msgs = await exchange(c, [fe.query('copy public.orders_b from stdin'), copyFrame('d', Buffer.from('7\tseven\n')), copyFrame('c', Buffer.alloc(0))]);
      await assertIntact(adv, 'copy into orders_b');
      assert.equal(await audit(), before);
      assertRefused(msgs, 'copy into orders_b');
    }));

  // ───────────── startup parameters and protocol orderings under a write-granting policy ─────────────

  test('w8s-20: startup options -c session_replication_role=replica (REPLICA triggers fire, ordinary ones do not): refused at connect', async () => {
    const r = await loginWith(adv, { options: '-c session_replication_role=replica' });
    try {
      assert.equal(r.ready, false, `the session started: ${describeMsgs(r.startup)}`);
      assert.deepEqual(errorsOf(r.startup).map((e) => e.code), ['42501'], describeMsgs(r.startup));
    } finally {
      r.close();
    }
  });

  test('w8s-21: a pipeline that Executes an allowed write, then a FunctionCall of lo_unlink before Sync: the call is refused, the large object stays', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [
        fe.parse('', "insert into public.orders_plain (id, item) values (50, 'fifty')"),
        fe.bind('', '', []),
        fe.execute('', 0),
        functionCall(adv.oids.lo_unlink, [String(LO_OID)]),
        fe.SYNC,
      ], 2);
      await simple(c, 'delete from public.orders_plain where id = 50');
      await assertIntact(adv, 'FunctionCall mid-pipeline');
      assertSomeRefusal(msgs, 'FunctionCall mid-pipeline');
    }));

  test('w8s-22: a statement prepared while allowed, re-executed after SET session_replication_role (refused) still cannot reach the REPLICA trigger', () =>
    withClient(async ({ c }) => {
      await resetOrders();
      const prep = await exchange(c, [fe.parse('del', 'delete from public.orders_r where id = $1'), fe.SYNC]);
      const set = await simple(c, 'set session_replication_role = replica');
      const run = await exchange(c, [fe.bind('', 'del', ['1']), fe.execute('', 0), fe.SYNC]);
      await simple(c, 'rollback');
      await assertIntact(adv, 'prepared delete after session_replication_role');
      assertSomeRefusal([...prep, ...set, ...run], 'prepared delete of orders_r');
    }));

  test('w8s-25: a Sync-less pipeline — a failing Execute (1/0), then Parse/Bind/Execute of the triggered INSERT, Flush, then Sync: nothing runs', () =>
    withClient(async ({ c }) => {
      await resetOrders();
      const before = await audit();
      const msgs = await exchange(c, [
        fe.parse('', 'select 1/0'),
        fe.bind('', '', []),
        fe.execute('', 0),
        fe.parse('', "insert into public.orders_b values ($1, 'x')"),
        fe.bind('', '', ['8']),
        fe.execute('', 0),
        fe.FLUSH,
        fe.SYNC,
      ]);
      // The session goes on: the same INSERT alone is refused by the gate itself, not skipped.
      const again = await exchange(c, [fe.parse('', "insert into public.orders_b values ($1, 'x')"), fe.bind('', '', ['8']), fe.execute('', 0), fe.SYNC]);
      await assertIntact(adv, 'pipelined triggered insert');
      assert.equal(await audit(), before);
      assert.equal(errorsOf(msgs)[0]?.code, '22012', describeMsgs(msgs));
      assertRefused(again, 'triggered insert alone');
    }));

  // ───────────── what must stay allowed ─────────────

  test('w8s-30: allowed — INSERT/UPDATE/DELETE of a table with built-in defaults and a foreign key referencing it', () =>
    withClient(async ({ c }) => {
      const msgs = await simpleEach(c, [
        "insert into public.orders_plain (id, item) values (2, 'two')",
        "update public.orders_plain set item = 'deux' where id = 2",
        'insert into public.orders_line values (2, 5)',
        'delete from public.orders_line where order_id = 2',
        'delete from public.orders_plain where id = 2',
      ]);
      assertNoError(msgs, 'plain writes');
      assert.deepEqual(tagsOf(msgs), ['INSERT 0 1', 'UPDATE 1', 'INSERT 0 1', 'DELETE 1', 'DELETE 1']);
      await assertIntact(adv, 'plain writes');
    }));

  test('w8s-32: allowed — INSERT into a table whose trigger function the policy names (functions: [trg_ok])', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, "insert into public.orders_ok values (1, 'abc') returning item");
      assertNoError(msgs, 'insert into orders_ok');
      assert.deepEqual(rowsOf(msgs), [['ABC']]);
      await assertIntact(adv, 'insert into orders_ok');
    }));

  test('w8s-31: allowed — reads of the triggered tables, and EXPLAIN of a write to them', () =>
    withClient(async ({ c }) => {
      const msgs = await simpleEach(c, ['select id, item from public.orders_b order by id', "explain insert into public.orders_b values (9, 'x')"]);
      assertNoError(msgs, 'reads');
      assert.deepEqual(rowsOf(msgs)[0], ['1', 'one']);
      await assertIntact(adv, 'reads');
    }));

  test('w8s-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
