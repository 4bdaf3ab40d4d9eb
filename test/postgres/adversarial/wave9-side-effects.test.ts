/**
 * Adversarial corpus, wave 9 — what an ALLOWED DDL statement runs beyond its text: event
 * triggers, under a policy that grants DDL on the agent's own temporary objects and a
 * scratch schema.
 *
 * An administrator's `CREATE EVENT TRIGGER … ON ddl_command_start | ddl_command_end |
 * sql_drop | table_rewrite [WHEN TAG IN (…)] EXECUTE FUNCTION f()` runs f, as the session's
 * user, around every DDL command it matches: CREATE TEMP TABLE, CREATE INDEX, DROP, ALTER
 * TABLE (with a rewrite), COMMENT, SELECT INTO, CREATE TABLE AS. Triggers enabled ALWAYS
 * fire whatever session_replication_role is; REPLICA ones once it is replica. f here deletes
 * users (evt_wipe) or writes audit_ddl (evt_audit), neither of which the policy lets the
 * agent do; w9s-00 shows each one happening for `app` without agentgate. The gate adds
 * every event trigger's function to a DDL statement's calls (whatever its tag list or
 * enabled state): naming one harmless function (`functions: [evt_ok]`) does not vouch for
 * the others, and DDL stays allowed where every event trigger's function is named (w9s-30).
 *
 * The trigger functions do nothing for a superuser, so the harness can restore the scratch
 * schema with DDL of its own.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertIntact, assertNoError, assertSomeRefusal, direct, extended, noticesOf, simple, simpleEach, superQuery, tagsOf, useAdversary, type Adversary } from './harness.js';
import { TARGET } from '../stack.js';
import type { PolicyConfig } from '../../../src/broker/config/types.js';

/** Reads everywhere; DDL on the session's temporary objects and on schema scratch, running event trigger evt_ok. */
const DDL_POLICY: PolicyConfig[] = [
  {
    name: 'w9',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'w9#1', sql: ['select', 'show', 'explain', 'transaction'], effect: 'allow', extra: {} },
      { name: 'w9#2', sql: ['ddl', 'select'], relations: ['pg_temp.*', 'scratch.*'], functions: ['evt_ok'], effect: 'allow', extra: {} },
      { name: 'w9#3', effect: 'deny', extra: {} },
    ],
  },
];

/** Skips the body for a superuser (the harness restoring the scratch schema). */
const UNLESS_SUPER = 'IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN RETURN; END IF;';

const FUNCTIONS = `
CREATE FUNCTION evt_ok() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'ddl: %', TG_TAG; END $$;
`;

const SCRATCH = `
DROP SCHEMA IF EXISTS scratch CASCADE;
CREATE SCHEMA scratch;
GRANT ALL ON SCHEMA scratch TO app;
CREATE TABLE scratch.t (a int);
INSERT INTO scratch.t VALUES (1);
CREATE TABLE scratch.d (a int);
ALTER TABLE scratch.t OWNER TO app;
ALTER TABLE scratch.d OWNER TO app;
TRUNCATE audit_ddl;
`;

const SEED = `
CREATE TABLE audit_ddl (tag text);
GRANT ALL ON audit_ddl TO app;
GRANT SET ON PARAMETER session_replication_role TO app;
${FUNCTIONS}
CREATE FUNCTION evt_wipe() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN ${UNLESS_SUPER} DELETE FROM users; END $$;
CREATE FUNCTION evt_audit() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN ${UNLESS_SUPER} INSERT INTO audit_ddl VALUES (TG_TAG); END $$;
${SCRATCH}
CREATE EVENT TRIGGER e_create ON ddl_command_start WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION evt_wipe();
CREATE EVENT TRIGGER e_index ON ddl_command_end WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION evt_audit();
CREATE EVENT TRIGGER e_drop ON sql_drop WHEN TAG IN ('DROP TABLE') EXECUTE FUNCTION evt_wipe();
CREATE EVENT TRIGGER e_rewrite ON table_rewrite EXECUTE FUNCTION evt_wipe();
CREATE EVENT TRIGGER e_alter ON ddl_command_end WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION evt_audit();
CREATE EVENT TRIGGER e_always ON ddl_command_start WHEN TAG IN ('COMMENT') EXECUTE FUNCTION evt_wipe();
ALTER EVENT TRIGGER e_always ENABLE ALWAYS;
CREATE EVENT TRIGGER e_replica ON ddl_command_start WHEN TAG IN ('CREATE VIEW') EXECUTE FUNCTION evt_wipe();
ALTER EVENT TRIGGER e_replica ENABLE REPLICA;
CREATE EVENT TRIGGER e_into ON ddl_command_end WHEN TAG IN ('SELECT INTO', 'CREATE TABLE AS') EXECUTE FUNCTION evt_audit();
CREATE EVENT TRIGGER e_ok ON ddl_command_end WHEN TAG IN ('CREATE SEQUENCE') EXECUTE FUNCTION evt_ok();
`;

interface Attack {
  id: string;
  /** Statements sent one simple Query each. */
  sqls: string[];
  why: string;
}

const ATTACKS: Attack[] = [
  { id: 'w9s-01', sqls: ['create temp table w9_tmp (a int)'], why: 'ddl_command_start WHEN TAG IN (CREATE TABLE) runs evt_wipe()' },
  { id: 'w9s-02', sqls: ['create index on scratch.t (a)'], why: 'ddl_command_end WHEN TAG IN (CREATE INDEX) runs evt_audit(), which writes audit_ddl' },
  { id: 'w9s-03', sqls: ['drop table scratch.d'], why: 'sql_drop WHEN TAG IN (DROP TABLE) runs evt_wipe()' },
  { id: 'w9s-04', sqls: ['alter table scratch.t alter column a type bigint'], why: 'the column type change rewrites the table: table_rewrite runs evt_wipe()' },
  { id: 'w9s-05', sqls: ['alter table scratch.t add column b int'], why: 'ddl_command_end WHEN TAG IN (ALTER TABLE) runs evt_audit()' },
  { id: 'w9s-06', sqls: ["comment on table scratch.t is 'x'"], why: 'an event trigger enabled ALWAYS (tag COMMENT) runs evt_wipe()' },
  {
    id: 'w9s-07',
    sqls: ['set session_replication_role = replica', 'create view scratch.v as select 1 as one'],
    why: 'an event trigger enabled REPLICA (tag CREATE VIEW) fires once session_replication_role is replica',
  },
  { id: 'w9s-08', sqls: ['select 1 as a into temp w9_into'], why: 'SELECT INTO is DDL: ddl_command_end WHEN TAG IN (SELECT INTO) runs evt_audit()' },
  { id: 'w9s-09', sqls: ['create table scratch.n as select 1 as a'], why: 'CREATE TABLE AS: ddl_command_end WHEN TAG IN (CREATE TABLE AS) runs evt_audit()' },
  {
    id: 'w9s-10',
    sqls: ['begin', 'create temp table w9_tx (a int)', 'commit'],
    why: 'inside an explicit transaction, the CREATE TABLE’s ddl_command_start trigger runs evt_wipe() before COMMIT',
  },
  { id: 'w9s-11', sqls: ['select 1; create temp table w9_multi (a int)'], why: 'the CREATE TABLE second in one simple Query fires ddl_command_start: evt_wipe()' },
];

describe('adversarial corpus wave 9: what allowed DDL runs — event triggers', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    policies: DDL_POLICY,
    setup: async (a) => {
      await a.stack.pg.psql(SEED, { database: 'app' });
    },
  });
  const audit = (): Promise<string> => superQuery(adv, 'SELECT count(*) FROM audit_ddl');
  const resetScratch = async (): Promise<void> => {
    await superQuery(adv, SCRATCH);
  };

  test('w9s-00: control — without agentgate, each attack below deletes users or writes audit_ddl', async () => {
    for (const { id, sqls } of ATTACKS) {
      await adv.reset();
      await resetScratch();
      assert.equal(await superQuery(adv, 'SELECT count(*) FROM users'), '2', `${id}: the seed is in place`);
      assert.equal(await audit(), '0', `${id}: audit_ddl is empty`);
      await direct(adv, async (client) => {
        for (const s of sqls) await client.query(s);
      });
      const users = await superQuery(adv, 'SELECT count(*) FROM users');
      const after = await audit();
      assert.ok(users === '0' || after !== '0', `${id}: ${sqls.join('; ')} ran no event trigger (users=${users}, audit_ddl=${after})`);
    }
    await adv.reset();
    await resetScratch();
  });

  for (const { id, sqls, why } of ATTACKS) {
    test(`${id}: ${sqls.join('; ')} — ${why}`, () =>
      withClient(async ({ c }) => {
        await resetScratch();
        const msgs = await simpleEach(c, sqls);
        await simple(c, 'rollback');
        await assertIntact(adv, sqls.join('; '));
        assert.equal(await audit(), '0', `${id}: audit_ddl was written`);
        assertSomeRefusal(msgs, id);
      }));
  }

  test('w9s-12: create temp table through Parse/Bind/Execute (the extended protocol) — the same ddl_command_start trigger as w9s-01: refused, nothing runs', () =>
    withClient(async ({ c }) => {
      const msgs = await extended(c, 'create temp table w9_ext (a int)');
      await simple(c, 'rollback');
      await assertIntact(adv, 'extended create temp table');
      assertSomeRefusal(msgs, 'extended create temp table');
    }));

  test('w9s-20: allowed — reads while event triggers exist (only DDL looks them up)', () =>
    withClient(async ({ c }) => {
      await resetScratch();
      const msgs = await simpleEach(c, ['select a from scratch.t', 'select count(*) from users']);
      assertNoError(msgs, 'reads');
      assert.deepEqual(tagsOf(msgs), ['SELECT 1', 'SELECT 1']);
      await assertIntact(adv, 'reads');
    }));
});

/** The same DDL grant where the only event trigger runs evt_ok, which the rule names. */
describe('adversarial corpus wave 9: DDL stays allowed when the policy names every event trigger function', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    policies: DDL_POLICY,
    setup: async (a) => {
      await a.stack.pg.psql(`${FUNCTIONS}\n${SCRATCH.replace('TRUNCATE audit_ddl;', '')}\nCREATE EVENT TRIGGER e_ok ON ddl_command_start EXECUTE FUNCTION evt_ok();`, { database: 'app' });
    },
  });

  test('w9s-30: allowed — CREATE TEMP TABLE, CREATE INDEX, ALTER TABLE and DROP under an event trigger whose function the rule names (functions: [evt_ok])', () =>
    withClient(async ({ c }) => {
      const msgs = await simpleEach(c, [
        'create temp table w9_ok (a int)',
        'create index on pg_temp.w9_ok (a)',
        'alter table scratch.t add column b int',
        'drop table pg_temp.w9_ok',
      ]);
      assertNoError(msgs, 'DDL under evt_ok');
      assert.deepEqual(tagsOf(msgs), ['CREATE TABLE', 'CREATE INDEX', 'ALTER TABLE', 'DROP TABLE']);
      assert.equal(noticesOf(msgs).length, 4, 'evt_ok ran for each command');
      await superQuery(adv, 'ALTER TABLE scratch.t DROP COLUMN b');
      await assertIntact(adv, 'DDL under evt_ok');
    }));
});
