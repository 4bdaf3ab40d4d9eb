/**
 * Adversarial corpus, wave 7 — code a read-only agent gets the server to run without the
 * statement's text naming it, through routes earlier waves did not try.
 *
 * - Operators the parser writes itself: a simple `CASE x WHEN y` compares with `=`, and so
 *   does `JOIN … USING (k)` / `NATURAL JOIN` on the shared columns. The operator is looked up
 *   by name for the operands' types, so a user's `=` (int, numeric) wins over the built-in
 *   numeric `=` reached through a cast, though the text writes no operator at all.
 * - Planning a write that never runs: plain EXPLAIN of an INSERT/UPDATE/DELETE/MERGE, and
 *   Parse followed by Bind (Bind plans the statement) of a write the policy denies. The
 *   rewriter adds the target's column defaults (a domain's default too) and its rules'
 *   actions (and, through a rule that writes another table, that table's defaults), and the
 *   planner loads the target's index expressions and RLS WITH CHECK expressions; every
 *   IMMUTABLE call among them is folded, i.e. run, while planning.
 * - Row locks: SELECT … FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE write the locker into the
 *   rows and block other sessions' writes until the transaction ends; they are not reads
 *   (kind `lock`), and the read-only session refuses them too.
 * - Regressions for routes the brief lists (views calling nextval or a writer, a view over
 *   such a view, a security-barrier view, an RLS policy calling a writer, a BEGIN ATOMIC
 *   body, a user aggregate as an aggregate and as a window function, OPERATOR(schema.op),
 *   NULLIF / IS DISTINCT FROM / IN / = ANY reaching the user's =, set_config of search_path
 *   to shadow a built-in, set_config through the fast path).
 *
 * The hidden effect is pg_stat_reset() unless stated (it works in a read-only transaction,
 * so the upstream session's read-only backstop does not stop it); w7s-00 shows each
 * statement resetting for `app` in a read-only session without agentgate.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertIntact,
  assertNoError,
  assertRefused,
  assertStoreClean,
  describeMsgs,
  exchange,
  fe,
  functionCall,
  rowsOf,
  simple,
  simpleEach,
  useResetCorpus,
  type Adversary,
  type ResetAttack,
  RESET_SEED,
  readOnlyApp,
  superQuery,
} from './harness.js';

const EXTRA_SEED = `
${RESET_SEED}
-- An IMMUTABLE liar: the planner folds (runs) a call of it with constant arguments.
CREATE FUNCTION f_imm_reset() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN 1; END $$;

-- ───── a user = between int and numeric: an exact match, so it wins over numeric = numeric ─────
CREATE FUNCTION f_eq_reset(int, numeric) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN $1::numeric = $2; END $$;
CREATE OPERATOR = (LEFTARG = int, RIGHTARG = numeric, FUNCTION = f_eq_reset);
CREATE TABLE t_ki (k int);
CREATE TABLE t_kn (k numeric);
INSERT INTO t_ki VALUES (1), (2);
INSERT INTO t_kn VALUES (1), (3);
GRANT SELECT ON t_ki, t_kn TO app;

-- ───── what planning a write runs: defaults, a domain's default, rules, index expressions, WITH CHECK ─────
CREATE TABLE t_def (a int, b int DEFAULT f_imm_reset());
CREATE DOMAIN d_def AS int DEFAULT f_imm_reset();
CREATE TABLE t_ddef (a int, b d_def);
CREATE TABLE t_rule (a int);
CREATE TABLE t_rule_log (n int);
CREATE RULE r_ins AS ON INSERT TO t_rule DO ALSO INSERT INTO t_rule_log VALUES (f_imm_reset());
CREATE RULE r_upd AS ON UPDATE TO t_rule DO INSTEAD INSERT INTO t_rule_log VALUES (f_imm_reset());
CREATE RULE r_del AS ON DELETE TO t_rule DO INSTEAD INSERT INTO t_rule_log VALUES (f_imm_reset());
CREATE TABLE t_rule2 (a int);
CREATE RULE r_ins2 AS ON INSERT TO t_rule2 DO ALSO INSERT INTO t_def (a) VALUES (NEW.a);
CREATE TABLE t_ixw (v int) WITH (autovacuum_enabled = false);
INSERT INTO t_ixw SELECT g FROM generate_series(1, 10) g;
CREATE INDEX t_ixw_i ON t_ixw ((v + f_imm_reset()));
CREATE TABLE t_rlsw (a int);
ALTER TABLE t_rlsw ENABLE ROW LEVEL SECURITY;
CREATE POLICY p_rlsw ON t_rlsw FOR ALL USING (true) WITH CHECK (a < f_imm_reset() + 1000);
GRANT ALL ON t_def, t_ddef, t_rule, t_rule2, t_rule_log, t_ixw, t_rlsw TO app;

-- ───── views, policies, bodies, aggregates ─────
CREATE VIEW v_reset AS SELECT f_reset() AS n;
CREATE VIEW v_reset2 AS SELECT n FROM v_reset;
CREATE VIEW v_barrier WITH (security_barrier) AS SELECT id FROM users WHERE f_reset() > 0;
CREATE VIEW v_nextval AS SELECT nextval('s') AS n;
CREATE TABLE t_rls (a int);
INSERT INTO t_rls VALUES (1);
ALTER TABLE t_rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY p_rls ON t_rls FOR SELECT USING (f_reset() > 0);
CREATE FUNCTION f_atomic() RETURNS int LANGUAGE sql STABLE BEGIN ATOMIC SELECT f_reset(); END;
CREATE FUNCTION f_sfunc(int, int) RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN coalesce($1, 0) + $2; END $$;
CREATE AGGREGATE agg_reset(int) (SFUNC = f_sfunc, STYPE = int);
GRANT SELECT ON v_reset, v_reset2, v_barrier, v_nextval, t_rls TO app;

-- ───── the harmless counterparts ─────
CREATE TABLE t_plaindef (a int, b timestamptz DEFAULT now(), c int DEFAULT nextval('s'));
GRANT ALL ON t_plaindef TO app;
`;

const RESETS: ResetAttack[] = [
  // ───────────── operators the parser writes ─────────────
  { id: 'w7s-01', sql: 'select case 1 when 1.0 then 1 else 0 end', why: 'a simple CASE compares with =, resolved for (int, numeric): the user’s f_eq_reset' },
  { id: 'w7s-02', sql: 'select count(*) from public.t_ki join public.t_kn using (k)', why: 'JOIN … USING (k) compares t_ki.k = t_kn.k: the user’s (int, numeric) = runs' },
  { id: 'w7s-03', sql: 'select count(*) from public.t_ki natural join public.t_kn', why: 'NATURAL JOIN compares the shared column k with the user’s (int, numeric) =' },
  { id: 'w7s-04', sql: 'select nullif(1, 1.0)', why: 'NULLIF compares with the (int, numeric) =', regression: true },
  { id: 'w7s-36', sql: 'select 1 is distinct from 1.0', why: 'IS DISTINCT FROM compares with the (int, numeric) =', regression: true },
  { id: 'w7s-37', sql: 'select 1 in (1.0, 2.0)', why: 'IN (list) is = ANY over a numeric array: the (int, numeric) =', regression: true },
  { id: 'w7s-38', sql: 'select 1 = any (array[1.0])', why: '= ANY (numeric[]) with an int on the left', regression: true },
  // ───────────── planning a write (plain EXPLAIN runs nothing, but plans) ─────────────
  { id: 'w7s-05', sql: 'explain insert into public.t_def (a) values (1)', why: 'the rewriter adds b’s DEFAULT f_imm_reset(), which the planner folds' },
  { id: 'w7s-06', sql: 'explain insert into public.t_ddef (a) values (1)', why: 'b’s domain d_def has DEFAULT f_imm_reset(): added and folded' },
  { id: 'w7s-07', sql: 'explain update public.t_def set b = default', why: 'SET b = DEFAULT is the column default: folded' },
  { id: 'w7s-08', sql: 'explain insert into public.t_rule values (1)', why: 'the ON INSERT rule’s action inserts f_imm_reset(): planned and folded' },
  { id: 'w7s-09', sql: 'explain update public.t_rule set a = 2', why: 'the ON UPDATE … DO INSTEAD rule’s action is planned' },
  { id: 'w7s-10', sql: 'explain delete from public.t_rule', why: 'the ON DELETE … DO INSTEAD rule’s action is planned' },
  { id: 'w7s-11', sql: 'explain with x as (insert into public.t_def (a) values (1) returning b) select b from x', why: 'a writable CTE under plain EXPLAIN: the default is folded' },
  { id: 'w7s-39', sql: 'explain insert into public.t_rule2 values (1)', why: 'the rule’s action inserts into t_def, whose default f_imm_reset() is then added and folded' },
  { id: 'w7s-19', sql: 'explain merge into public.t_def d using (select 2 as a) s on false when not matched then insert (a) values (s.a)', why: 'MERGE’s INSERT action gets b’s default: folded while planning' },
  // ───────────── regressions: what the brief lists ─────────────
  { id: 'w7s-12', sql: 'select n from public.v_reset2', why: 'a view over a view whose definition calls f_reset()', regression: true },
  { id: 'w7s-13', sql: 'select id from public.v_barrier', why: 'a security-barrier view whose qual calls f_reset()', regression: true },
  { id: 'w7s-14', sql: 'select a from public.t_rls', why: 'an RLS policy USING (f_reset() > 0)', regression: true },
  { id: 'w7s-15', sql: 'select public.f_atomic()', why: 'a STABLE SQL function with a BEGIN ATOMIC body that calls f_reset()', regression: true },
  { id: 'w7s-16', sql: 'select public.agg_reset(id) from public.users', why: 'a user aggregate whose STABLE PL/pgSQL transition function resets', regression: true },
  { id: 'w7s-17', sql: 'select public.agg_reset(id) over () from public.users', why: 'the same aggregate as a window function', regression: true },
  { id: 'w7s-18', sql: 'select 1 operator(public.=) 1.0', why: 'OPERATOR(public.=) names the user operator by schema', regression: true },
];

const ALLOWED: { id: string; sql: string; rows: number }[] = [
  { id: 'w7s-40', sql: 'explain insert into public.t_plaindef (a) values (1)', rows: 2 },
  { id: 'w7s-41', sql: 'select case when k > 1 then 1 else 0 end from public.t_ki', rows: 2 },
  { id: 'w7s-42', sql: 'explain delete from public.t_plaindef', rows: 2 },
];

describe('adversarial corpus wave 7: operators the parser writes, planning writes, views and bodies', () => {
  const corpus = useResetCorpus({ seed: EXTRA_SEED, prefix: 'w7s', resets: RESETS, allowed: ALLOWED });
  const { withClient, statsReset } = corpus;
  let adv!: Adversary;
  const q = (sql: string): Promise<string> => superQuery(adv, sql);
  const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  before(() => {
    adv = corpus.adv();
  });

  /** Parse and Bind, no Execute: Bind plans the statement. */
  const PLANNED: { id: string; sql: string; params: string[]; why: string }[] = [
    { id: 'w7s-20', sql: 'insert into public.t_def (a) values ($1)', params: ['1'], why: 'the default f_imm_reset() is folded when Bind plans' },
    { id: 'w7s-21', sql: 'insert into public.t_ddef (a) values ($1)', params: ['1'], why: 'the domain default is folded when Bind plans' },
    { id: 'w7s-22', sql: 'insert into public.t_rule values ($1)', params: ['1'], why: 'the rule action is planned at Bind' },
    { id: 'w7s-23', sql: 'delete from public.t_ixw where v > $1', params: ['1'], why: 'planning the DELETE loads the target’s index expression (v + f_imm_reset())' },
    { id: 'w7s-28', sql: 'insert into public.t_rule2 values ($1)', params: ['1'], why: 'the rule’s action inserts into t_def: its default is folded when Bind plans' },
    { id: 'w7s-24', sql: 'insert into public.t_rlsw values ($1)', params: ['1'], why: 'the RLS WITH CHECK (a < f_imm_reset() + 1000) is folded when Bind plans' },
  ];

  test('w7s-00b: control — without agentgate, in a read-only session, Bind of each write (then refused at Execute) resets statistics; nextval and row locks are refused by the session itself', async () => {
    const client = await readOnlyApp(adv);
    try {
      for (const { id, sql, params } of PLANNED) {
        const before = await statsReset();
        await pause(20);
        // node-postgres sends Parse/Bind/Describe/Execute/Sync: Bind plans, then Execute fails (read-only).
        await assert.rejects(client.query(sql, params), /read-only transaction/);
        assert.notEqual(await statsReset(), before, `${id}: planning ${sql} resets statistics for app`);
      }
      // The read-only session itself refuses nextval and every row-locking clause (the backstop).
      await assert.rejects(client.query('select n from v_nextval'), /read-only transaction/);
      for (const lock of ['for update', 'for no key update', 'for share', 'for key share']) {
        await assert.rejects(client.query(`select id from users ${lock}`), /read-only transaction/, lock);
      }
    } finally {
      await client.end();
    }
  });

  for (const { id, sql, params, why } of PLANNED) {
    test(`${id}: Parse+Bind (no Execute) of ${sql} — ${why}`, () =>
      withClient(async ({ c }) => {
        const msgs = await exchange(c, [fe.parse('', sql), fe.bind('', '', params), fe.SYNC]);
        await assertIntact(adv, `Parse+Bind of ${sql}`);
        assertRefused(msgs, `Parse+Bind of ${sql}`);
      }));
  }

  test('w7s-25: Parse/Bind/Execute of a denied write whose default is folded at Bind: refused, nothing reset', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'insert into public.t_def (a) values ($1)'), fe.bind('', '', ['1']), fe.execute('', 0), fe.SYNC]);
      await assertIntact(adv, 'extended insert into t_def');
      assertRefused(msgs, 'extended insert into t_def');
    }));

  test('w7s-26: FunctionCall (fast path) of set_config(default_transaction_read_only, off): refused, the session stays read-only', () =>
    withClient(async ({ c }) => {
      const oid = Number(await q("SELECT 'pg_catalog.set_config(text, text, boolean)'::regprocedure::oid"));
      const msgs = await exchange(c, [functionCall(oid, ['default_transaction_read_only', 'off', 'false'])]);
      assertRefused(msgs, 'FunctionCall set_config');
      const after = await simple(c, 'show default_transaction_read_only');
      assert.deepEqual(rowsOf(after), [['on']], describeMsgs(after));
      await assertIntact(adv, 'FunctionCall set_config');
    }));

  test('w7s-30: select n from v_nextval (a view calling nextval) is refused and the sequence does not move', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select n from public.v_nextval');
      await assertIntact(adv, 'select from v_nextval');
      assertRefused(msgs, 'select from v_nextval');
      assert.match(describeMsgs(msgs), /42501/, 'refused by agentgate, not only by the read-only session');
    }));

  for (const [id, lock] of [
    ['w7s-31', 'for update'],
    ['w7s-32', 'for no key update'],
    ['w7s-33', 'for share'],
    ['w7s-34', 'for key share'],
  ] as const) {
    test(`${id}: select … ${lock} (row locks block other sessions' writes) is refused and takes no lock`, () =>
      withClient(async ({ c }) => {
        const msgs = await simpleEach(c, ['begin', `select id from public.users where id > 0 ${lock}`]);
        // While the agent's transaction is open, another session can still delete the row.
        const other = await q("BEGIN; SET LOCAL lock_timeout = '500ms'; DELETE FROM users WHERE id = 1; ROLLBACK; SELECT 'ok'");
        assert.match(other, /ok/, `the agent's ${lock} blocked another session: ${describeMsgs(msgs)}`);
        await simple(c, 'rollback');
        assertRefused(msgs, `select … ${lock}`);
        await assertIntact(adv, `select … ${lock}`);
      }));
  }

  test('w7s-35: set_config(search_path) to put schema shadow first, then upper(…): refused (shadow.upper deletes)', () =>
    withClient(async ({ c }) => {
      const msgs = await simpleEach(c, ["select set_config('search_path', 'shadow, pg_catalog, public', false)", "select upper('x')"]);
      await assertIntact(adv, 'search_path shadowing');
      const errs = msgs.filter((m) => m.type === 0x45);
      assert.ok(errs.length > 0, describeMsgs(msgs));
      assert.match(describeMsgs(msgs), /42501/);
    }));

  test('w7s-43: allowed — plain reads of the seeded tables still work', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select k from public.t_ki order by k');
      assertNoError(msgs, 'select from t_ki');
      assert.deepEqual(rowsOf(msgs), [['1'], ['2']]);
      await assertIntact(adv);
    }));

  test('w7s-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
