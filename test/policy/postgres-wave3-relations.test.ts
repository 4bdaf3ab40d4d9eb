/**
 * Relation rules, wave 3: rows of a denied schema reached through a relation the rules
 * allow, or through no relation the statement names at all.
 *
 * The gate judges the relations a statement names. PostgreSQL reads more than those:
 * - a SELECT from a table reads its inheritance children (at any depth), and one from a
 *   partitioned table reads its partitions, whatever schema those live in (and checks
 *   privileges only on the table named);
 * - the statistics views (pg_stats, pg_stats_ext, pg_stats_ext_exprs) are catalog views
 *   that show the most common values and histogram bounds of every column the role may
 *   read, and a parent's inherited statistics include its children's values;
 * - tablefunc's crosstab and connectby run a query (or read a relation) given as text, and
 *   a STABLE SQL function reads whatever its body names, with the caller's privileges.
 * The policy denies hr.* and allows reads of public, pg_catalog and information_schema.
 * Every attack is checked directly first (the control: app really gets the hr value), then
 * through agentgate, where it must be refused and the value must be absent from every byte
 * the client received. Names are schema-qualified, so these do not lean on the gate's
 * treatment of unqualified names (postgres-relations-e2e.test.ts). A few reads that touch
 * public rows only must stay allowed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startPgStack, TARGET, type PgStack } from '../postgres/stack.js';
import { RawPg } from '../postgres/raw-client.js';
import { collectClientBytes, describeMsgs, errorsOf, rowsOf, simple } from '../postgres/adversarial/harness.js';

const HR_SECRET = 'salary-band-7f3k';

const SEED = `
CREATE SCHEMA hr;
GRANT USAGE ON SCHEMA hr TO app;
-- pg_stats_ext shows only tables of a role app is a member of.
CREATE ROLE hr_owner NOLOGIN;
GRANT hr_owner TO app;
CREATE TABLE hr.salaries (id int, dept text, band text);
INSERT INTO hr.salaries VALUES (1, 'eng', '${HR_SECRET}'), (2, 'eng', '${HR_SECRET}'), (3, 'eng', '${HR_SECRET}'), (4, 'ops', 'other-band');
ALTER TABLE hr.salaries OWNER TO hr_owner;
GRANT SELECT ON hr.salaries TO app;
CREATE STATISTICS hr.salaries_mcv (mcv) ON dept, band FROM hr.salaries;
CREATE STATISTICS hr.salaries_expr ON (lower(band)) FROM hr.salaries;
ANALYZE hr.salaries;

CREATE TABLE public.users (id int, name text);
INSERT INTO public.users VALUES (1, 'Alpha');
GRANT SELECT ON public.users TO app;

-- Inheritance: a child in hr. app has no privilege on hr.child itself.
CREATE TABLE public.parent (id int, band text);
INSERT INTO public.parent VALUES (1, 'public-band');
CREATE TABLE hr.child () INHERITS (public.parent);
INSERT INTO hr.child VALUES (2, '${HR_SECRET}'), (3, '${HR_SECRET}');
GRANT SELECT ON public.parent TO app;
ANALYZE public.parent;

-- Two levels: public.gp <- public.gp_child <- hr.gp_grandchild.
CREATE TABLE public.gp (id int, band text);
CREATE TABLE public.gp_child () INHERITS (public.gp);
CREATE TABLE hr.gp_grandchild () INHERITS (public.gp_child);
INSERT INTO public.gp VALUES (1, 'public-band');
INSERT INTO hr.gp_grandchild VALUES (2, '${HR_SECRET}');
GRANT SELECT ON public.gp, public.gp_child TO app;

-- Declarative partitioning: a partition in hr.
CREATE TABLE public.part (id int, band text) PARTITION BY LIST (id);
CREATE TABLE public.part_pub PARTITION OF public.part FOR VALUES IN (1);
CREATE TABLE hr.part_hr PARTITION OF public.part FOR VALUES IN (2);
INSERT INTO public.part VALUES (1, 'public-band'), (2, '${HR_SECRET}');
GRANT SELECT ON public.part, public.part_pub TO app;

-- A tree for connectby.
CREATE TABLE hr.tree (id text, parent text);
INSERT INTO hr.tree VALUES ('root', NULL), ('${HR_SECRET}', 'root');
GRANT SELECT ON hr.tree TO app;

CREATE EXTENSION tablefunc;
CREATE FUNCTION public.f_hr_bands() RETURNS text LANGUAGE sql STABLE AS $$ SELECT string_agg(band, ',') FROM hr.salaries $$;
GRANT EXECUTE ON FUNCTION pg_read_binary_file(text) TO app;
-- The table's page on disk, for pg_read_binary_file.
CHECKPOINT;
`;

interface Attack {
  id: string;
  sql: string;
  why: string;
  /** The control's proof that the statement reaches hr data directly (default: the secret is in the rows). */
  direct?: (rows: unknown[][]) => boolean;
}

const hasSecret = (rows: unknown[][]): boolean => JSON.stringify(rows).includes(HR_SECRET);

/** Statements that read hr rows (or values) without naming hr, or naming it only inside a string. */
const ATTACKS: Attack[] = [
  // ───────────── inheritance ─────────────
  { id: 'w3r-01', sql: 'select * from public.parent', why: 'a parent in public reads its child in hr' },
  { id: 'w3r-02', sql: "select count(*) from public.parent where band like 's%'", why: 'the same, as a counting oracle', direct: (r) => Number(r[0]?.[0]) === 2 },
  { id: 'w3r-03', sql: 'select band from public.parent order by id desc limit 1', why: 'the same, one value' },
  { id: 'w3r-04', sql: 'select * from public.gp', why: 'a grandparent in public reads its grandchild in hr (through a child in public)' },
  { id: 'w3r-05', sql: 'select * from public.gp_child', why: 'a child in public reads its own child in hr' },
  // ───────────── partitioning ─────────────
  { id: 'w3r-06', sql: 'select * from public.part', why: 'a partitioned table in public reads its partition in hr' },
  { id: 'w3r-07', sql: 'select band from public.part where id = 2', why: 'the same, pruned to the hr partition alone' },
  // ───────────── statistics views ─────────────
  { id: 'w3r-08', sql: "select most_common_vals::text from pg_stats where schemaname = 'hr'", why: 'pg_stats shows the most common values of hr columns' },
  { id: 'w3r-09', sql: "select most_common_vals::text, histogram_bounds::text from pg_catalog.pg_stats where schemaname = 'hr' and tablename = 'salaries'", why: 'the same, qualified' },
  { id: 'w3r-10', sql: "select most_common_vals::text from pg_catalog.pg_stats where schemaname = 'public' and tablename = 'parent' and inherited", why: 'a public parent’s inherited statistics hold its hr child’s values' },
  { id: 'w3r-11', sql: "select most_common_vals::text from pg_catalog.pg_stats_ext where schemaname = 'hr'", why: 'extended statistics (mcv) of an hr table' },
  { id: 'w3r-12', sql: "select most_common_vals::text from pg_catalog.pg_stats_ext_exprs where schemaname = 'hr'", why: 'expression statistics of an hr table' },
  // ───────────── query text and relation names in strings ─────────────
  { id: 'w3r-13', sql: "select * from crosstab('select dept, ''k''::text, band from hr.salaries order by 1') as ct(d text, c1 text)", why: 'tablefunc crosstab(text) runs a query of hr' },
  { id: 'w3r-14', sql: "select * from crosstab2('select dept, ''k''::text, band from hr.salaries order by 1')", why: 'crosstab2(text), the same with a fixed result type' },
  { id: 'w3r-15', sql: "select * from connectby('hr.tree', 'id', 'parent', 'root', 0) as t(k text, p text, lvl int)", why: 'tablefunc connectby reads the relation named in its first argument' },
  { id: 'w3r-16', sql: "select * from connectby('(select band as k, ''root''::text as p from hr.salaries union all select ''root'', null) s', 'k', 'p', 'root', 0) as t(k text, p text, lvl int)", why: 'connectby with a subquery of hr as its “relation”' },
  { id: 'w3r-17', sql: 'select public.f_hr_bands()', why: 'a STABLE SQL function in public whose body reads hr.salaries with the caller’s privileges' },
  // Already refused on current code (kept as regressions).
  { id: 'w3r-18', sql: "select query_to_xml('select band from hr.salaries', true, false, '')::text", why: 'query_to_xml runs a query of hr' },
  { id: 'w3r-19', sql: "select table_to_xml('hr.salaries', true, false, '')::text", why: 'table_to_xml reads the table named' },
  { id: 'w3r-20', sql: "select schema_to_xml('hr', true, false, '')::text", why: 'schema_to_xml reads every table of hr' },
  { id: 'w3r-21', sql: "select * from ts_stat('select to_tsvector(''simple'', band) from hr.salaries')", why: 'ts_stat runs a query of hr', direct: (r) => JSON.stringify(r).includes('7f3k') },
  {
    id: 'w3r-22',
    sql: "select encode(pg_read_binary_file(pg_relation_filepath('hr.salaries')), 'escape')",
    why: 'pg_read_binary_file reads the table’s file',
  },
];

/** Reads of public rows only: a correct gate must allow them. */
const ALLOWED: { id: string; sql: string; rows: string[][] }[] = [
  { id: 'w3r-30', sql: 'select * from only public.parent', rows: [['1', 'public-band']] },
  { id: 'w3r-31', sql: 'select * from public.part_pub', rows: [['1', 'public-band']] },
  { id: 'w3r-32', sql: 'select name from public.users', rows: [['Alpha']] },
  { id: 'w3r-33', sql: 'select * from only public.gp', rows: [['1', 'public-band']] },
];

describe('relation rules, wave 3: hr rows through inheritance, partitions, statistics and query text', () => {
  let stack: PgStack;

  before(async () => {
    stack = await startPgStack({
      policies: [
        {
          name: 'public-reads',
          subjects: { groups: ['ai-agents'] },
          targets: [TARGET],
          rules: [
            { name: 'no-hr', relations: ['hr.*'], effect: 'deny', extra: {} },
            { name: 'reads', sql: ['select', 'show', 'transaction'], relations: ['public.*', 'pg_catalog.*', 'information_schema.*'], effect: 'allow', extra: {} },
            { name: 'rest', effect: 'deny', extra: {} },
          ],
        },
      ],
    });
    await stack.pg.psql(SEED, { database: 'app' });
  });
  after(async () => {
    await stack?.close();
  });

  test('w3r-00: control — without agentgate, app reaches the hr value with every statement below, even read-only', async () => {
    const direct = new pg.Client({ connectionString: stack.pg.url(), options: '-c default_transaction_read_only=on' });
    await direct.connect();
    try {
      for (const { id, sql, direct: proves } of ATTACKS) {
        const rows = (await direct.query({ text: sql, rowMode: 'array' })).rows as unknown[][];
        assert.ok((proves ?? hasSecret)(rows), `${id}: ${sql} reaches hr directly: ${JSON.stringify(rows).slice(0, 300)}`);
      }
      for (const { id, sql, rows } of ALLOWED) {
        const got = (await direct.query({ text: sql, rowMode: 'array' })).rows as unknown[][];
        assert.deepEqual(
          got.map((r) => r.map(String)),
          rows,
          `${id}: ${sql}`,
        );
      }
    } finally {
      await direct.end();
    }
  });

  /** A fresh agent session: the statement's answer and every byte received. */
  async function run(sql: string): Promise<{ msgs: Awaited<ReturnType<typeof simple>>; bytes: Buffer }> {
    const c = await RawPg.login(stack.port, stack.session.secret);
    const bytes = collectClientBytes(c);
    try {
      const msgs = await simple(c, sql);
      return { msgs, bytes: bytes() };
    } finally {
      c.close();
    }
  }

  for (const { id, sql, why } of ATTACKS) {
    test(`${id}: ${sql} — ${why}`, async () => {
      const { msgs, bytes } = await run(sql);
      assert.ok(!bytes.includes(HR_SECRET), `${id}: the hr value reached the client: ${describeMsgs(msgs)}`);
      const codes = errorsOf(msgs).map((e) => e.code);
      assert.equal(codes[0], '42501', `${id}: expected a refusal by agentgate, got ${describeMsgs(msgs)}`);
    });
  }

  for (const { id, sql, rows } of ALLOWED) {
    test(`${id}: allowed — ${sql}`, async () => {
      const { msgs, bytes } = await run(sql);
      assert.deepEqual(errorsOf(msgs), [], `${sql} must work: ${describeMsgs(msgs)}`);
      assert.deepEqual(rowsOf(msgs), rows);
      assert.ok(!bytes.includes(HR_SECRET));
    });
  }
});
