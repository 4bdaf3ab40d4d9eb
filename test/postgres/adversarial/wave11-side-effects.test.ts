/**
 * Adversarial corpus, wave 11 — built-ins that run code stored with a catalog object the
 * statement names only by OID (or computes), and built-ins that change server state while
 * declared STABLE.
 *
 * The gate judges a statement by what its text calls, reads and coerces, resolved in the
 * catalog (statement-expansion.ts). A handful of non-volatile built-ins take an object's OID
 * and run that object's stored code, out of sight of any name the text writes:
 * - satisfies_hash_partition(regclass, modulus, remainder, values…) (IMMUTABLE) hashes the
 *   values with the partitioned table's partition-key operator class: a non-default hash
 *   class's extended hash support function (user PL/pgSQL) runs;
 * - fmgr_sql_validator(oid) (STABLE) parse-analyses a SQL function's body: a composite
 *   literal in it is read while parsing, and its member domain's CHECK runs;
 * and two STABLE built-ins assign a transaction ID (a commit record in the WAL, the cluster's
 * shared xid space) in a read-only session: txid_current(), pg_current_xact_id().
 * A superuser's LANGUAGE internal function under another name runs the same C code as the
 * built-in it names (its prosrc): an alias of one of these (or of table_to_xml, domain_in)
 * does what the built-in does.
 * JSON builders convert a value of a user type (not composite, array or domain) with the
 * type's cast to json, explicit or not, which the statement never writes.
 * An extension's C function is trusted at its declared volatility; a superuser's alias of a
 * volatile one (same library symbol) declared IMMUTABLE and added to the extension is not.
 * The objects are "production" objects made by the superuser; each is shown to do its damage
 * for `app` without agentgate in a read-only session (the control cases).
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import {
  assertIntact,
  assertRefused,
  assertStoreClean,
  describeMsgs,
  direct,
  errorsOf,
  exchange,
  functionCall,
  readOnlyApp,
  RESET_SEED,
  simple,
  superQuery,
  useAdversary,
  useResetCorpus,
  type Adversary,
  type ResetAttack,
} from './harness.js';
import { TARGET } from '../stack.js';
import type { PolicyConfig } from '../../../src/broker/config/types.js';

const EXTRA_SEED = `
${RESET_SEED}
-- A composite type with a member of the resetting domain, and a SQL function whose body
-- writes a literal of it: parsing the body reads the literal (record_in → domain_in → CHECK).
CREATE TYPE w11_comp AS (x d_reset);
CREATE FUNCTION w11_lit() RETURNS w11_comp LANGUAGE sql STABLE AS $$ select '(1)'::w11_comp $$;
GRANT EXECUTE ON FUNCTION w11_lit() TO app;
-- A hash-partitioned table whose key uses a non-default hash class: its extended hash
-- support function (support 2, what partition routing calls) resets.
CREATE FUNCTION w11_hx(int, bigint) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN hashint4extended($1, $2); END $$;
CREATE OPERATOR CLASS w11_int4_hx_ops FOR TYPE int USING hash AS
  OPERATOR 1 =, FUNCTION 1 hashint4(int), FUNCTION 2 w11_hx(int, bigint);
CREATE TABLE w11_hpart (v int) PARTITION BY HASH (v w11_int4_hx_ops);
CREATE TABLE w11_hpart0 PARTITION OF w11_hpart FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE w11_hpart1 PARTITION OF w11_hpart FOR VALUES WITH (MODULUS 2, REMAINDER 1);
GRANT SELECT ON w11_hpart TO app;
-- LANGUAGE internal aliases (superuser-made) of such built-ins under other names: the
-- alias runs the built-in's C code, whatever it is called.
CREATE VIEW w11_v_reset AS SELECT f_reset() AS n;
GRANT SELECT ON w11_v_reset TO app;
CREATE FUNCTION w11_shp(oid, int, int, VARIADIC "any") RETURNS bool LANGUAGE internal IMMUTABLE AS 'satisfies_hash_partition';
CREATE FUNCTION w11_t2x(regclass, bool, bool, text) RETURNS xml LANGUAGE internal STABLE AS 'table_to_xml';
CREATE FUNCTION w11_din(cstring, oid, int) RETURNS int LANGUAGE internal STABLE AS 'domain_in';
CREATE FUNCTION w11_xid() RETURNS xid8 LANGUAGE internal STABLE AS 'pg_current_xact_id';
-- A user type (not composite, array or domain) with an EXPLICIT cast to json: every JSON
-- builder (to_json, to_jsonb, row_to_json, json_agg, jsonb_build_object…) converts its
-- values with that cast, though no statement writes the cast.
CREATE TYPE w11_mood AS ENUM ('a', 'b');
CREATE FUNCTION w11_mood_json(w11_mood) RETURNS json LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN to_json($1::text); END $$;
CREATE CAST (w11_mood AS json) WITH FUNCTION w11_mood_json(w11_mood);
CREATE TABLE w11_t_mood (m w11_mood);
INSERT INTO w11_t_mood VALUES ('a');
GRANT SELECT ON w11_t_mood TO app;
-- An extension's C function is trusted at its declared volatility: a superuser's IMMUTABLE
-- alias of adminpack's pg_file_write (a volatile C function), made a member of adminpack.
CREATE EXTENSION adminpack;
CREATE FUNCTION w11_fw(text, text, bool) RETURNS bigint LANGUAGE c IMMUTABLE AS '$libdir/adminpack', 'pg_file_write_v1_1';
ALTER EXTENSION adminpack ADD FUNCTION w11_fw(text, text, bool);
GRANT EXECUTE ON FUNCTION w11_fw(text, text, bool) TO app;
`;

const RESETS: ResetAttack[] = [
  { id: 'w11s-01', sql: "select satisfies_hash_partition('public.w11_hpart'::regclass, 2, 0, 1)", why: 'hashes 1 with the partition key’s class: its extended hash function w11_hx runs' },
  {
    id: 'w11s-02',
    sql: "select pg_catalog.satisfies_hash_partition(c.oid, 2, 0, 1) from pg_catalog.pg_class c where c.relname = 'w11_hpart'",
    why: 'the same, the table’s OID computed by the query (no name of it anywhere in the text)',
  },
  { id: 'w11s-03', sql: "select fmgr_sql_validator('public.w11_lit'::regproc)", why: 'parse analysis of the body reads the composite literal: the domain’s CHECK runs' },
  {
    id: 'w11s-04',
    sql: "select pg_catalog.fmgr_sql_validator(p.oid) from pg_catalog.pg_proc p where p.proname = 'w11_lit'",
    why: 'the same, the function’s OID computed by the query',
  },
  { id: 'w11s-05', sql: "select public.w11_shp('public.w11_hpart'::regclass, 2, 0, 1)", why: 'an IMMUTABLE internal alias of satisfies_hash_partition' },
  { id: 'w11s-06', sql: "select public.w11_t2x('public.w11_v_reset'::regclass, true, false, '')", why: 'a STABLE internal alias of table_to_xml reads a view that calls f_reset()' },
  { id: 'w11s-07', sql: "select public.w11_din('1', 'public.d_reset'::regtype, -1)", why: 'a STABLE internal alias of domain_in: the domain’s CHECK runs' },
  { id: 'w11s-11', sql: "select to_json('a'::public.w11_mood)", why: 'to_json converts the enum with its explicit cast to json' },
  { id: 'w11s-12', sql: 'select to_jsonb(m) from public.w11_t_mood', why: 'to_jsonb does too (it looks for a cast to json), the type from a column' },
  { id: 'w11s-13', sql: 'select row_to_json(t) from public.w11_t_mood t', why: 'row_to_json converts each column with its type’s cast' },
  { id: 'w11s-14', sql: 'select json_agg(m) from public.w11_t_mood', why: 'an aggregate that builds json' },
  { id: 'w11s-15', sql: "select jsonb_build_object('k', m) from public.w11_t_mood", why: 'a variadic jsonb builder' },
];

describe('adversarial corpus wave 11: built-ins that run the code of an object named by OID, and xid assignment', () => {
  const corpus = useResetCorpus({
    seed: EXTRA_SEED,
    prefix: 'w11s',
    resets: RESETS,
    allowed: [
      { id: 'w11s-30', sql: "select 'public.w11_hpart'::regclass::text", rows: 1 },
      // The type without json, and json without the type (a statement with both is refused:
      // which values reach the builder is not followed).
      { id: 'w11s-31', sql: 'select m::text from public.w11_t_mood', rows: 1 },
      { id: 'w11s-32', sql: 'select row_to_json(u) from public.users u where u.id = 1', rows: 1 },
    ],
  });
  const { withClient, statsReset } = corpus;
  let adv!: Adversary;
  before(() => {
    adv = corpus.adv();
  });

  test('w11s-10: FunctionCall (fast path) of fmgr_sql_validator(w11_lit) is refused and resets nothing', () =>
    withClient(async ({ c }) => {
      const [validator, lit] = (await superQuery(adv, "SELECT concat_ws(',', 'pg_catalog.fmgr_sql_validator'::regproc::oid, 'public.w11_lit'::regproc::oid)")).trim().split(',').map(Number) as [number, number];
      const before = await statsReset();
      const msgs = await exchange(c, [functionCall(validator, [String(lit)])]);
      assert.equal(await statsReset(), before, 'fmgr_sql_validator through agentgate reset statistics');
      assertRefused(msgs, 'FunctionCall fmgr_sql_validator');
      await assertIntact(adv);
    }));

  /** The next transaction ID the cluster will assign (read without assigning one). */
  const nextXid = async (): Promise<string> => (await superQuery(adv, 'SELECT pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())')).trim();

  const XID = [
    { id: 'w11s-21', sql: 'select txid_current()' },
    { id: 'w11s-22', sql: 'select pg_current_xact_id()' },
    { id: 'w11s-23', sql: 'select public.w11_xid()' },
  ];

  test('w11s-20: control — without agentgate, in a read-only session, each statement below assigns a transaction ID', async () => {
    const client = await readOnlyApp(adv);
    try {
      assert.equal((await client.query('show transaction_read_only')).rows[0].transaction_read_only, 'on');
      for (const { id, sql } of XID) {
        const before = await nextXid();
        await client.query(sql);
        assert.notEqual(await nextXid(), before, `${id}: ${sql} assigns an xid`);
      }
    } finally {
      await client.end();
    }
  });

  for (const { id, sql } of XID) {
    test(`${id}: ${sql} (STABLE, but it assigns a transaction ID) is refused and assigns none`, () =>
      withClient(async ({ c }) => {
        const before = await nextXid();
        const msgs = await simple(c, sql);
        assert.equal(await nextXid(), before, `${sql} assigned a transaction ID through agentgate`);
        assertRefused(msgs, sql);
      }));
  }

  /** A file name in the server's data directory (what pg_file_write may write without pg_write_server_files). */
  const planted = async (name: string): Promise<string> => `${await superQuery(adv, 'SHOW data_directory')}/${name}`;

  test('w11s-50: control — without agentgate, in a read-only session, w11_fw (an IMMUTABLE alias of adminpack’s pg_file_write) writes a file on the server', async () => {
    const file = await planted('w11_control.conf');
    rmSync(file, { force: true });
    const client = await readOnlyApp(adv);
    try {
      await client.query("select public.w11_fw('w11_control.conf', 'x', false)");
      assert.equal(existsSync(file), true, 'the alias wrote the file');
    } finally {
      await client.end();
      rmSync(file, { force: true });
    }
  });

  test('w11s-51: select public.w11_fw(…) — another C function of the same symbol is volatile, so the alias is not trusted: refused, no file', () =>
    withClient(async ({ c }) => {
      const file = await planted('w11_planted.conf');
      const sql = "select public.w11_fw('w11_planted.conf', 'x', false)";
      const msgs = await simple(c, sql);
      assert.equal(existsSync(file), false, `${sql} wrote a server file through agentgate`);
      assertRefused(msgs, sql);
    }));

  test('w11s-store: the audit store and every state file hold no raw value', () => assertStoreClean(adv));
});

/**
 * An export policy: reads and COPY of public relations (psql's `\copy … to`, which is
 * COPY … TO STDOUT). COPY with a file name instead reads or writes a file on the database
 * server, as the server's OS user, for a role in pg_read_server_files/pg_write_server_files;
 * like COPY … PROGRAM, such a statement must be opted into (`flags: [copy_file]`).
 */
const EXPORT_POLICY: PolicyConfig[] = [
  {
    name: 'export',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'export#1', sql: ['select', 'copy'], relations: ['public.*'], effect: 'allow', extra: {} },
      { name: 'export#2', effect: 'deny', extra: {} },
    ],
  },
];

describe('adversarial corpus wave 11: COPY to and from a file on the database server under an export policy', () => {
  let adv!: Adversary;
  const OUT = `/tmp/agentgate-w11-copy-${process.pid}.csv`;
  const withClient = useAdversary((a) => (adv = a), {
    policies: EXPORT_POLICY,
    setup: async (a) => {
      // app inherits its roles here (the shared seed makes it NOINHERIT), so the two predefined
      // roles' privileges are its own without SET ROLE, as for an exporting service account.
      await a.stack.pg.psql(
        'ALTER ROLE app INHERIT; GRANT pg_read_server_files, pg_write_server_files TO app; CREATE TABLE public.w11_files (line text); GRANT ALL ON public.w11_files TO app;',
        { database: 'app' },
      );
    },
  });
  const loaded = async (): Promise<number> => Number(await superQuery(adv, 'SELECT count(*) FROM public.w11_files'));

  test('w11s-40: control — without agentgate, app writes a server file with COPY … TO and loads one with COPY … FROM', async () => {
    rmSync(OUT, { force: true });
    await direct(adv, async (client) => {
      await client.query(`copy public.users to '${OUT}'`);
      await client.query("copy public.w11_files from '/etc/hostname'");
    });
    try {
      assert.equal(existsSync(OUT), true, 'COPY … TO wrote the server file');
      assert.equal(await loaded(), 1, 'COPY … FROM loaded the server file');
    } finally {
      rmSync(OUT, { force: true });
      await superQuery(adv, 'TRUNCATE public.w11_files');
    }
  });

  test('w11s-41: allowed — COPY … TO STDOUT (what psql \\copy sends) still runs', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'copy (select 1 as n) to stdout');
      assert.deepEqual(errorsOf(msgs), [], describeMsgs(msgs));
    }));

  for (const { id, sql, why } of [
    { id: 'w11s-42', sql: `copy public.users to '${OUT}'`, why: 'writes a file on the database server' },
    { id: 'w11s-43', sql: `copy (select id from public.users) to '${OUT}'`, why: 'the same from a query' },
  ]) {
    test(`${id}: ${sql} — ${why}: refused, no file`, () =>
      withClient(async ({ c }) => {
        rmSync(OUT, { force: true });
        const msgs = await simple(c, sql);
        assert.equal(existsSync(OUT), false, `${sql} wrote the server file through agentgate`);
        assertRefused(msgs, sql);
      }));
  }

  test("w11s-44: copy public.w11_files from '/etc/hostname' — reads a server file into a table: refused, nothing loaded", () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, "copy public.w11_files from '/etc/hostname'");
      assert.equal(await loaded(), 0, 'the server file was loaded through agentgate');
      assertRefused(msgs, 'COPY FROM a server file');
    }));

  test('w11s-store-2: the audit store and every state file hold no raw value', () => assertStoreClean(adv));
});
