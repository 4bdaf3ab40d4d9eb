/**
 * Against a real PostgreSQL 15: what a function body or a view definition does to the
 * session (set_config(…, false) outlives the call; a SET clause runs the body under its own
 * settings), and statements that follow a schema change in one text.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { createFunctionCatalog, type CatalogRun } from '../../src/broker/postgres/function-catalog.js';
import { createSqlGate, staleAfterSchemaChange } from '../../src/broker/policy/sql-gate.js';
import { classifySql, loadSqlParser } from '../../src/broker/policy/sql-classify.js';
import { DEFAULT_DANGEROUS_FUNCTIONS } from '../../src/broker/config/schema.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import type { GateVerdict, StatementGate } from '../../src/broker/policy/sql-gate-types.js';

let pg: PgServer;

const run: CatalogRun = async (sql) => {
  const out = await pg.psql(`SELECT coalesce(json_agg(r), '[]') FROM (${sql}) r`);
  const rows = JSON.parse(out) as Record<string, unknown>[];
  return rows.map((r) => Object.values(r).map((v) => (v === null ? null : String(v))));
};

before(async () => {
  await loadSqlParser();
  pg = await startPostgres();
  await pg.psql(`
    CREATE FUNCTION public.s_role() RETURNS text STABLE LANGUAGE sql AS $$ SELECT set_config('role', 'nobody', false) $$;
    CREATE FUNCTION public.s_custom() RETURNS text IMMUTABLE LANGUAGE sql AS $$ SELECT set_config('app.tenant', '2', false) $$;
    CREATE FUNCTION public.s_scs() RETURNS text STABLE LANGUAGE sql AS $$ SELECT set_config('standard_conforming_strings', 'off', false) $$;
    CREATE FUNCTION public.s_path() RETURNS text STABLE LANGUAGE sql AS $$ SELECT set_config('search_path', 'public', false) $$;
    CREATE FUNCTION public.v_scs() RETURNS text VOLATILE LANGUAGE sql AS $$ SELECT set_config('standard_conforming_strings', 'off', false) $$;
    CREATE FUNCTION public.v_ro() RETURNS text VOLATILE LANGUAGE sql AS $$ SELECT set_config('default_transaction_read_only', 'off', false) $$;
    CREATE FUNCTION public.c_role() RETURNS int STABLE LANGUAGE sql SET role = pg_monitor AS $$ SELECT 1 $$;
    CREATE FUNCTION public.c_path() RETURNS int STABLE LANGUAGE sql SET search_path = pg_catalog SET work_mem = '8MB' AS $$ SELECT 1 $$;
    CREATE VIEW public.w_role AS SELECT set_config('role', 'nobody', false) AS r;
    CREATE VIEW public.w_path AS SELECT set_config('search_path', 'public', false) AS r;
    CREATE VIEW public.w_ro AS SELECT set_config('default_transaction_read_only', 'off', false) AS r;
    CREATE VIEW public.w_scs AS SELECT set_config('client_encoding', 'SJIS', false) AS r;
  `);
});

after(async () => {
  await pg?.stop();
});

const AGENT = { sub: 'a', groups: ['g'], kind: 'agent' as const, issuer: 'i', expiresAt: 0 };

function gateFor(rules: PolicyConfig['rules'], readOnly: boolean): StatementGate {
  const policies: PolicyConfig[] = [{ name: 'p', subjects: { groups: ['g'] }, targets: ['db'], rules }];
  return createSqlGate(AGENT, 'db', { policies, dangerousFunctions: [...DEFAULT_DANGEROUS_FUNCTIONS] }, { functions: createFunctionCatalog(run), readOnly });
}

async function judged(gate: StatementGate, sql: string): Promise<GateVerdict> {
  for (let p = gate.prepare(sql); p; p = gate.prepare(sql)) await p;
  return gate.judge(sql);
}

const READS: PolicyConfig['rules'] = [{ name: 'r', sql: ['select', 'show'], effect: 'allow', extra: {} }];

test('a non-volatile SQL body that sets a setting that is not harmless is not vouched for: its call is effectful', async () => {
  const gate = gateFor(READS, true);
  for (const sql of ['select s_role()', 'select s_custom()']) {
    const v = await judged(gate, sql);
    assert.equal(v.effect, 'deny', sql);
    assert.match(v.reason, /calling effectful public\.s_(role|custom)|calling effectful s_(role|custom)/, `${sql}: ${v.reason}`);
  }
  assert.equal((await judged(gate, 'select s_path()')).effect, 'allow', 'search_path is harmless (names resolve in every schema)');
});

test("a body that makes the server read SQL differently, or undoes read-only, is refused whatever the policy names", async () => {
  const naming: PolicyConfig['rules'] = [{ name: 'r', sql: ['select'], functions: ['s_scs', 'v_scs', 'v_ro'], effect: 'allow', extra: {} }];
  const gate = gateFor(naming, true);
  for (const sql of ['select s_scs()', 'select v_scs()']) {
    const v = await judged(gate, sql);
    assert.equal(v.effect, 'deny', sql);
    assert.match(v.reason, /standard_conforming_strings = off would make the server read SQL differently/, `${sql}: ${v.reason}`);
  }
  const ro = await judged(gate, 'select v_ro()');
  assert.equal(ro.effect, 'deny');
  assert.match(ro.reason, /this session is read-only/);
});

test("a view's set_config changes the reading session: judged as the statement's own would be", async () => {
  const gate = gateFor(READS, true);
  const role = await judged(gate, 'select * from w_role');
  assert.equal(role.effect, 'deny');
  assert.match(role.reason, /calling effectful set_config/);
  const enc = await judged(gate, 'select * from w_scs');
  assert.equal(enc.effect, 'deny');
  assert.match(enc.reason, /client_encoding = SJIS would make the server read SQL differently/);
  assert.equal((await judged(gate, 'select * from w_ro')).effect, 'deny');
  // Where the policy names set_config, the read-only session still refuses undoing read-only.
  const naming = gateFor([{ name: 'r', sql: ['select'], functions: ['set_config'], effect: 'allow', extra: {} }], true);
  const ro = await judged(naming, 'select * from w_ro');
  assert.equal(ro.effect, 'deny');
  assert.match(ro.reason, /this session is read-only/);
  const path = await judged(gate, 'select * from w_path');
  assert.equal(path.effect, 'allow');
  assert.equal(path.sessionState, true, 'a harmless setting changed through a view still binds later approvals');
});

test('a SET clause (proconfig) of a setting that is not harmless makes a non-volatile body unvouched; harmless ones do not', async () => {
  const gate = gateFor(READS, true);
  assert.equal((await judged(gate, 'select c_role()')).effect, 'deny');
  assert.equal((await judged(gate, 'select c_path()')).effect, 'allow');
});

test('a statement after a schema change in the same text is refused: it would be judged on the schema before the change', async () => {
  const stale = (sql: string): string | undefined => staleAfterSchemaChange(classifySql(sql, { dangerousFunctions: new Set() }));
  assert.match(stale("create or replace function f() returns int language sql as 'select 1'; select f()") ?? '', /follows CREATE FUNCTION in the same text/);
  assert.match(stale('create temp table t (a int); insert into t values (1)') ?? '', /send the schema change on its own first/);
  assert.equal(stale('begin; create temp table t (a int); commit'), undefined, 'transaction control may follow');
  assert.equal(stale('select 1; create temp table t (a int)'), undefined, 'a change last judges nothing after it');
  const ddl: PolicyConfig['rules'] = [{ name: 'r', sql: ['select', 'ddl', 'insert', 'transaction'], effect: 'allow', extra: {} }];
  const gate = gateFor(ddl, false);
  const v = await judged(gate, 'create temp table t (a int); insert into t values (1)');
  assert.equal(v.effect, 'deny');
  assert.equal(v.ddl, true);
});
