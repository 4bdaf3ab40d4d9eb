/**
 * Adversarial corpus, wave 10 — session state changed from inside code the gate lets run,
 * and catalog facts that are stale when a statement runs.
 *
 * 1. An administrator's STABLE or IMMUTABLE SQL function, or a view, whose body calls
 *    `set_config(name, value, false)`: unlike a SET clause, that setting outlives the call.
 *    `role` makes the next statement run as admin_role (which alone reads priv.vault), a
 *    custom `x.y` setting feeds row-level security keyed on it, standard_conforming_strings
 *    makes the server read later text differently from the gate's parser, and
 *    default_transaction_read_only undoes the read-only backstop. A SET clause (proconfig)
 *    of `role` runs the body as admin_role.
 * 2. Under a policy granting DDL on pg_temp.* and scratch.*: the agent replaces a function the
 *    gate has judged harmless, and calls it in the same text, in the same transaction (the
 *    broker's catalog connection sees only committed schema), or in the same pipeline; or
 *    attaches a trigger to its temporary table (which the catalog connection never sees),
 *    or copies a table's default into one (LIKE … INCLUDING DEFAULTS).
 * 3. DDL the classifier placed in no schema: CREATE SCHEMA AUTHORIZATION, CREATE FUNCTION,
 *    ALTER ROLE … SET (every later session of app starts as admin_role).
 * 4. Functions the policy names (so the gate does not look into them) that change a setting
 *    the server reports (standard_conforming_strings, default_transaction_read_only): the
 *    report ends the session, and nothing is judged while such a call is unanswered.
 *
 * Each control (w10s-00, w10s-19, w10s-39) shows the attack working for `app` without agentgate.
 * What stays open: a function or view an administrator changes in another session is seen
 * by the gate only when its cached catalog answers expire (30 s).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BackendType,
  VAULT,
  assertIntact,
  assertNoError,
  assertSomeRefusal,
  direct,
  drain,
  errorsOf,
  exchange,
  fe,
  simple,
  simpleEach,
  superQuery,
  tagsOf,
  useAdversary,
  type Adversary,
  type Msg,
} from './harness.js';
import { TARGET } from '../stack.js';
import type { PolicyConfig } from '../../../src/broker/config/types.js';

const SESSION_SEED = `
CREATE FUNCTION w10_role() RETURNS text LANGUAGE sql STABLE AS $$ SELECT set_config('role', 'admin_role', false) $$;
CREATE FUNCTION w10_role_imm() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT set_config('role', 'admin_role', false) $$;
CREATE FUNCTION w10_role_pl() RETURNS text LANGUAGE plpgsql STABLE AS $$ BEGIN PERFORM set_config('role', 'admin_role', false); RETURN 'x'; END $$;
CREATE VIEW w10_v_role AS SELECT set_config('role', 'admin_role', false) AS r;
CREATE FUNCTION w10_tenant() RETURNS text LANGUAGE sql STABLE AS $$ SELECT set_config('app.tenant', '2', false) $$;
CREATE FUNCTION w10_scs() RETURNS text LANGUAGE sql STABLE AS $$ SELECT set_config('standard_conforming_strings', 'off', false) $$;
CREATE VIEW w10_v_dtro AS SELECT set_config('default_transaction_read_only', 'off', false) AS r;
CREATE FUNCTION w10_cfg() RETURNS text LANGUAGE sql STABLE SET role = admin_role AS $$ SELECT secret FROM priv.vault LIMIT 1 $$;
CREATE FUNCTION w10_path() RETURNS int LANGUAGE sql STABLE SET search_path = pg_catalog AS $$ SELECT 7 $$;
GRANT SELECT ON w10_v_role, w10_v_dtro TO app;
`;

/** Text the gate (standard_conforming_strings on) reads as one SELECT of two strings; with it off, the server runs the middle. */
const SMUGGLE = "select '\\', $$'; select set_config('role', 'admin_role', false); select secret from priv.vault; --$$";

interface StateAttack {
  id: string;
  /** Statements sent one simple Query each; the last one shows what the trick gained. */
  sqls: string[];
  why: string;
  /** What the last statement's rows hold when the trick worked (checked in the control). */
  gained: string;
}

const STATE_ATTACKS: StateAttack[] = [
  { id: 'w10s-01', sqls: ['select w10_role()', 'select current_user::text'], why: 'a STABLE SQL function whose body sets role for the session', gained: 'admin_role' },
  { id: 'w10s-02', sqls: ['select w10_role_imm()', 'select current_user::text'], why: 'the same, IMMUTABLE (folded while planning)', gained: 'admin_role' },
  { id: 'w10s-03', sqls: ['select r from w10_v_role', 'select current_user::text'], why: "a view's definition calls set_config('role')", gained: 'admin_role' },
  { id: 'w10s-04', sqls: ['select w10_role_pl()', 'select current_user::text'], why: 'a STABLE PL/pgSQL body (already not vouched for: regression)', gained: 'admin_role' },
  { id: 'w10s-05', sqls: ['select w10_tenant()', "select current_setting('app.tenant', true)"], why: 'a custom setting (row-level security may key on it)', gained: '2' },
  { id: 'w10s-06', sqls: ['select r from w10_v_dtro', 'show default_transaction_read_only'], why: 'a view undoes the read-only backstop', gained: 'off' },
  { id: 'w10s-07', sqls: ['select w10_cfg()'], why: 'a SET role clause runs the body as admin_role, which reads priv.vault', gained: VAULT },
  { id: 'w10s-08', sqls: ['select w10_scs()', SMUGGLE], why: 'standard_conforming_strings off: the next text is read differently by the server, which reads priv.vault', gained: VAULT },
];

/** The rows' text of every DataRow in `msgs`. */
function rowText(msgs: readonly Msg[]): string {
  return Buffer.concat(msgs.filter((m) => m.type === BackendType.dataRow).map((m) => m.body)).toString('latin1');
}

describe('adversarial corpus wave 10: session state set inside code the gate lets run', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    setup: async (a) => {
      await a.stack.pg.psql(SESSION_SEED, { database: 'app' });
    },
  });

  test('w10s-00: control — without agentgate, in a read-only session, each trick changes the session and the last statement shows it', async () => {
    for (const { id, sqls, gained } of STATE_ATTACKS) {
      const got = await direct(adv, async (client) => {
        await client.query('set default_transaction_read_only = on');
        let rows: unknown[] = [];
        for (const s of sqls) {
          // The smuggled text is several statements: node-postgres answers each.
          const res: unknown = await client.query({ text: s, rowMode: 'array' });
          rows = (Array.isArray(res) ? res : [res]).flatMap((r) => (r as { rows: unknown[] }).rows);
        }
        return JSON.stringify(rows);
      });
      assert.ok(got.includes(gained), `${id}: ${sqls.join('; ')} gained nothing: ${got}`);
    }
  });

  for (const { id, sqls, why, gained } of STATE_ATTACKS) {
    test(`${id}: ${sqls.join('; ')} — ${why}: refused, the session unchanged`, () =>
      withClient(async ({ c }) => {
        const msgs = await simpleEach(c, sqls);
        const first = errorsOf(msgs)[0];
        assert.ok(first !== undefined && first.code === '42501' && first.message.startsWith('agentgate:'), `${id}: not refused by agentgate: ${JSON.stringify(errorsOf(msgs))}`);
        assert.ok(!rowText(msgs).includes(gained), `${id}: the trick worked`);
        const who = await simpleEach(c, ['select current_user::text', "select current_setting('app.tenant', true)", 'show default_transaction_read_only', 'show standard_conforming_strings']);
        assert.deepEqual(
          who.filter((m) => m.type === BackendType.dataRow).map((m) => m.body.subarray(6).toString('latin1')),
          ['app', '', 'on', 'on'],
          `${id}: the session state changed (current_user, app.tenant, default_transaction_read_only, standard_conforming_strings)`,
        );
        await assertIntact(adv, id);
      }));
  }

  test('w10s-09: allowed — a STABLE SQL function with a harmless SET clause (search_path), and plain reads', () =>
    withClient(async ({ c }) => {
      const msgs = await simpleEach(c, ['select w10_path()', 'select count(*) from users']);
      assertNoError(msgs, 'harmless SET clause');
      assert.deepEqual(tagsOf(msgs), ['SELECT 1', 'SELECT 1']);
    }));
});

/** Reads everywhere; DDL and inserts on the session's temporary objects and schema scratch. */
const DDL_POLICY: PolicyConfig[] = [
  {
    name: 'w10',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'w10#1', sql: ['select', 'show', 'explain', 'transaction'], effect: 'allow', extra: {} },
      { name: 'w10#2', sql: ['ddl', 'select', 'insert'], relations: ['pg_temp.*', 'scratch.*'], effect: 'allow', extra: {} },
      { name: 'w10#3', effect: 'deny', extra: {} },
    ],
  },
];

const SCRATCH = `
DROP SCHEMA IF EXISTS scratch CASCADE;
CREATE SCHEMA scratch;
GRANT ALL ON SCHEMA scratch TO app;
CREATE FUNCTION scratch.g() RETURNS int LANGUAGE sql STABLE AS $$ SELECT 1 $$;
ALTER FUNCTION scratch.g() OWNER TO app;
CREATE TABLE scratch.src (a int DEFAULT w10_wipe_default());
GRANT SELECT ON scratch.src TO app;
DROP SCHEMA IF EXISTS app CASCADE;
DROP FUNCTION IF EXISTS public.w10_new();
ALTER ROLE app RESET ALL;
`;

const DDL_SEED = `
CREATE FUNCTION w10_trg_wipe() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DELETE FROM users; RETURN NEW; END $$;
CREATE FUNCTION w10_wipe_default() RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM users; RETURN 1; END $$;
GRANT CREATE ON DATABASE app TO app;
GRANT CREATE ON SCHEMA public TO app;
${SCRATCH}
`;

/** scratch.g() replaced by a volatile body that deletes users. */
const REPLACE_G = "create or replace function scratch.g() returns int language sql volatile as 'delete from users returning 1'";

interface DdlAttack {
  id: string;
  /** Each entry one simple Query (a string) or one pipelined batch of extended statements (an array). */
  steps: (string | string[])[];
  why: string;
  /** The control's proof: users emptied (default) or, for DDL outside scratch, this query answers non-zero as superuser. */
  proof?: string;
  /** The agentgate refusal's message. */
  refusal: RegExp;
}

const DDL_ATTACKS: DdlAttack[] = [
  { id: 'w10s-20', steps: ['select scratch.g()', `${REPLACE_G}; select scratch.g()`], why: 'replaced and called in one text: the call was judged before the replacement ran', refusal: /^agentgate: SELECT denied: it follows CREATE FUNCTION in the same text/ },
  { id: 'w10s-21', steps: ['select scratch.g()', 'begin', REPLACE_G, 'select scratch.g()', 'commit'], why: 'replaced in an open transaction: the catalog connection still sees the committed body', refusal: /^agentgate: this session changed the schema in a transaction that has not ended/ },
  { id: 'w10s-22', steps: ['select scratch.g()', [REPLACE_G, 'select scratch.g()']], why: 'replaced and called in one pipeline: the call is judged before the server ran the replacement', refusal: /^agentgate: this session changed the schema in a transaction that has not ended/ },
  {
    id: 'w10s-23',
    steps: ['select scratch.g()', 'begin', 'drop function scratch.g()', "create function scratch.g() returns int language sql as 'delete from users returning 1'", 'select scratch.g()', 'commit'],
    why: 'dropped and created anew (a new OID) under the same name in one transaction',
    refusal: /^agentgate: this session changed the schema in a transaction that has not ended/,
  },
  {
    id: 'w10s-24',
    steps: ['create temp table w10_t (a int)', 'create trigger w10_x before insert on pg_temp.w10_t for each row execute function w10_trg_wipe()', 'insert into pg_temp.w10_t values (1)'],
    why: "a trigger on the agent's temporary table, which the catalog connection never sees",
    refusal: /^agentgate: .*calling effectful .*w10_trg_wipe/,
  },
  {
    id: 'w10s-27',
    steps: ['create temp table w10_c (like scratch.src including defaults)', 'insert into pg_temp.w10_c default values'],
    why: "LIKE … INCLUDING DEFAULTS copies scratch.src's default (it deletes users) to a temporary table the catalog connection never sees",
    refusal: /^agentgate: .*calling effectful .*w10_wipe_default/,
  },
  { id: 'w10s-25', steps: ['create schema authorization app'], why: 'CREATE SCHEMA AUTHORIZATION creates schema app, outside scratch', proof: "SELECT count(*) FROM pg_namespace WHERE nspname = 'app'", refusal: /^agentgate: .*create on app\.\*/ },
  {
    id: 'w10s-28',
    steps: ['alter role app set role = admin_role'],
    why: 'ALTER ROLE … SET (placed in no schema) makes every later session of app start as admin_role',
    proof: "SELECT count(*) FROM pg_db_role_setting WHERE setrole = 'app'::regrole",
    refusal: /^agentgate: .*alter on \?\.\*/,
  },
  { id: 'w10s-26', steps: ["create function public.w10_new() returns int language sql as 'select 1'"], why: 'CREATE FUNCTION in public, outside scratch', proof: "SELECT count(*) FROM pg_proc WHERE proname = 'w10_new'", refusal: /^agentgate: .*create on public\.w10_new/ },
];

/** Runs the steps on `send`: a string as one simple Query, an array as one Parse/Bind/Execute pipeline ended by one Sync. */
async function runSteps(steps: readonly (string | string[])[], query: (sql: string) => Promise<Msg[]>, pipeline: (sqls: readonly string[]) => Promise<Msg[]>): Promise<Msg[]> {
  const out: Msg[] = [];
  for (const s of steps) out.push(...(typeof s === 'string' ? await query(s) : await pipeline(s)));
  return out;
}

describe('adversarial corpus wave 10: stale catalog facts under a DDL grant', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    policies: DDL_POLICY,
    setup: async (a) => {
      await a.stack.pg.psql(DDL_SEED, { database: 'app' });
    },
  });
  const users = (): Promise<string> => superQuery(adv, 'SELECT count(*) FROM users');

  test('w10s-19: control — without agentgate, each attack below deletes users or creates outside scratch', async () => {
    for (const { id, steps, proof } of DDL_ATTACKS) {
      await adv.reset();
      await superQuery(adv, SCRATCH);
      assert.equal(await users(), '2', `${id}: the seed is in place`);
      await direct(adv, (client) =>
        runSteps(
          steps,
          async (sql) => (await client.query(sql), []),
          async (sqls) => {
            for (const s of sqls) await client.query(s);
            return [];
          },
        ),
      );
      if (proof) assert.notEqual(await superQuery(adv, proof), '0', `${id}: nothing was created`);
      else assert.equal(await users(), '0', `${id}: users were not deleted`);
    }
    await adv.reset();
    await superQuery(adv, SCRATCH);
  });

  for (const { id, steps, why, proof, refusal } of DDL_ATTACKS) {
    test(`${id}: ${why}: refused, nothing runs`, () =>
      withClient(async ({ c }) => {
        await superQuery(adv, SCRATCH);
        const msgs = await runSteps(
          steps,
          (sql) => simple(c, sql),
          (sqls) => exchange(c, [...sqls.flatMap((s) => [fe.parse('', s), fe.bind('', '', []), fe.execute('', 0)]), fe.SYNC]),
        );
        await simple(c, 'rollback');
        assertSomeRefusal(msgs, id);
        const refused = errorsOf(msgs).filter((e) => e.code === '42501');
        assert.ok(refused.some((e) => refusal.test(e.message)), `${id}: refused otherwise: ${JSON.stringify(refused)}`);
        if (proof) assert.equal(await superQuery(adv, proof), '0', `${id}: created outside scratch`);
        await assertIntact(adv, id);
      }));
  }

  test('w10s-30: allowed — a function created, then called once the creation is confirmed; a temp table created in a transaction, used after COMMIT', () =>
    withClient(async ({ c }) => {
      await superQuery(adv, SCRATCH);
      const msgs = await simpleEach(c, [
        "create function scratch.h() returns int language sql stable as 'select 5'",
        'select scratch.h()',
        'begin',
        'create temp table w10_ok (a int)',
        'commit',
        'insert into pg_temp.w10_ok values (1)',
        'select a from pg_temp.w10_ok',
      ]);
      assertNoError(msgs, 'DDL then use');
      assert.deepEqual(tagsOf(msgs), ['CREATE FUNCTION', 'SELECT 1', 'BEGIN', 'CREATE TABLE', 'COMMIT', 'INSERT 0 1', 'SELECT 1']);
      await assertIntact(adv, 'DDL then use');
    }));

  test('w10s-31: a statement after uncommitted DDL is refused with the reason, and allowed again after ROLLBACK', () =>
    withClient(async ({ c }) => {
      await superQuery(adv, SCRATCH);
      const msgs = await simpleEach(c, ['begin', 'create temp table w10_tx (a int)', 'select 1']);
      const errs = errorsOf(msgs);
      assert.equal(errs.length, 1, JSON.stringify(errs));
      assert.equal(errs[0]!.code, '42501');
      assert.match(errs[0]!.message, /^agentgate: this session changed the schema in a transaction that has not ended/);
      const after = await simpleEach(c, ['rollback', 'select 1']);
      assertNoError(after, 'after rollback');
      assert.deepEqual(tagsOf(after), ['ROLLBACK', 'SELECT 1']);
    }));
});

/** Reads, plus calls of the w10_named_* functions, which the policy names (so the gate does not look into them). */
const NAMED_POLICY: PolicyConfig[] = [
  {
    name: 'w10n',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'w10n#1', sql: ['select', 'show', 'explain', 'transaction'], functions: ['w10_named_*'], effect: 'allow', extra: {} },
      { name: 'w10n#2', effect: 'deny', extra: {} },
    ],
  },
];

const NAMED_SEED = `
CREATE FUNCTION w10_named_scs() RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); RETURN 'ok'; END $$;
CREATE FUNCTION w10_named_dtro() RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('default_transaction_read_only', 'off', false); RETURN 'ok'; END $$;
`;

describe('adversarial corpus wave 10: settings changed by code the policy names, confirmed by the server', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    policies: NAMED_POLICY,
    setup: async (a) => {
      await a.stack.pg.psql(NAMED_SEED, { database: 'app' });
    },
  });
  const ended = (msgs: readonly Msg[], setting: string): void => {
    const fatal = msgs.filter((m) => m.type === BackendType.errorResponse).map((m) => m.body.toString('latin1'));
    assert.ok(
      fatal.some((b) => b.includes('SFATAL') && b.includes(`agentgate: the server reports ${setting}`)),
      `the session was not ended over ${setting}: ${JSON.stringify(errorsOf([...msgs]))}`,
    );
  };

  test('w10s-39: control — without agentgate, w10_named_scs() then the smuggled text reads priv.vault; w10_named_dtro() undoes read-only', async () => {
    const got = await direct(adv, async (client) => {
      await client.query('set default_transaction_read_only = on');
      await client.query('select w10_named_scs()');
      const res: unknown = await client.query({ text: SMUGGLE, rowMode: 'array' });
      return JSON.stringify((res as { rows: unknown[] }[]).flatMap((r) => r.rows));
    });
    assert.ok(got.includes(VAULT), `the smuggled read failed: ${got}`);
    const ro = await direct(adv, async (client) => {
      await client.query('set default_transaction_read_only = on');
      await client.query('select w10_named_dtro()');
      return (await client.query('show default_transaction_read_only')).rows[0] as Record<string, string>;
    });
    assert.equal(ro['default_transaction_read_only'], 'off');
  });

  test('w10s-40: select w10_named_scs() (named, so allowed), then the smuggled text: the server’s report ends the session first', () =>
    withClient(async ({ c, bytes }) => {
      const msgs = await simple(c, 'select w10_named_scs()');
      ended(msgs, 'standard_conforming_strings');
      await drain(c, 500);
      assert.ok(c.closed, 'the session was not closed');
      assert.ok(!bytes().toString('latin1').includes(VAULT), 'the vault was read');
      await assertIntact(adv, 'w10s-40');
    }));

  test('w10s-41: the same, pipelined — the smuggled Query sent before the first is answered is refused (it waits on no report)', () =>
    withClient(async ({ c, bytes }) => {
      const msgs = await exchange(c, [fe.query('select w10_named_scs()'), fe.query(SMUGGLE)], 2);
      ended(msgs, 'standard_conforming_strings');
      assert.ok(!bytes().toString('latin1').includes(VAULT), 'the vault was read');
      await assertIntact(adv, 'w10s-41');
    }));

  test('w10s-42: select w10_named_dtro() undoes read-only: the server’s report ends the session', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select w10_named_dtro()');
      ended(msgs, 'default_transaction_read_only');
      await assertIntact(adv, 'w10s-42');
    }));
});
