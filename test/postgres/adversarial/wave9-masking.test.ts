/**
 * Adversarial corpus, wave 9 — data derived from a masked column, stored in (or reachable
 * through) another object an administrator created, read by the agent under a name no rule
 * mentions:
 * - A: materialized views (plain, over a join, an aggregate, WITH NO DATA then REFRESHed,
 *   a view over one, one over a view), read plainly, computed over, through a whole-row
 *   reference, and with a row-linking count;
 * - B: functions an administrator defined that return masked data (SQL and PL/pgSQL,
 *   scalar, `RETURNS TABLE`, `RETURNS SETOF users`), in the select list and in FROM;
 * - C: a generated column computed from a masked column; a column of a table's row type
 *   and an array of them holding masked rows;
 * - D: statistics that carry values: an expression index's and a materialized view's
 *   `pg_stats`, extended statistics (`pg_stats_ext`, `pg_stats_ext_exprs`,
 *   `pg_mcv_list_items`), `pg_statistic` directly;
 * - E: (a second stack whose rules name one table of an inheritance tree) a partition or
 *   an inheritance child read directly when the rule names the parent, and the reverse.
 * The values are chosen so that no detector recognises them (the local part of an email,
 * a reversed or translated email, a token): only the column rule can hide them. Each
 * family has a control that reads the value directly as the app role.
 * Pass: refused, or neither the value nor a fragment of it in any byte the client received.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  READ_ONLY_POLICY,
  BackendType,
  EMAIL1,
  tagsOf,
  assertAbsent,
  assertNoFragments,
  direct,
  errorsOf,
  REFUSAL_CODES,
  SHORT_FRAGMENTS,
  simple,
  useAdversary,
  type Adversary,
  type Msg,
} from './harness.js';
import type { PolicyConfig } from '../../../src/broker/config/types.js';

/** The harness's read-only policy with COPY allowed too (COPY … TO STDOUT is a read). */
const COPY_POLICY: PolicyConfig[] = READ_ONLY_POLICY.map((p) => ({ ...p, rules: p.rules.map((r) => (r.sql ? { ...r, sql: [...r.sql, 'copy'] } : r)) }));

/** A value no detector recognises (only a column rule can hide it). */
const TOKEN = 'zqhunterplmx';

/** The first error (if any) is a refusal, or one of `alsoAccept` (the server's own answer, which carries no value). */
function assertRefusedOrAnswered(msgs: Msg[], what: string, alsoAccept: readonly string[] = []): void {
  const errs = errorsOf(msgs);
  if (errs.length > 0) assert.ok([...REFUSAL_CODES, ...alsoAccept].includes(errs[0]!.code), `${what}: ${errs[0]!.code} ${errs[0]!.message}`);
}

/** What a direct answer holds: a fragment of a seeded email's local part, or the token. */
function holdsValue(text: string): boolean {
  const t = text.toLowerCase();
  const r = [...t].reverse().join('');
  return [t, r].some((x) => x.includes(TOKEN) || SHORT_FRAGMENTS.some((f) => x.includes(f)));
}

function assertClean(bytes: Buffer, where: string): void {
  assertNoFragments(bytes, where);
  assertAbsent(bytes, TOKEN, where);
  assertAbsent(bytes, [...TOKEN].reverse().join(''), where);
}

interface Attack {
  id: string;
  sql: string;
  why: string;
  /** The direct control's answer is an error with this SQLSTATE (the read needs privileges app lacks): kept as a regression. */
  deniedDirectly?: string;
  /** The statement's own error (a cast's, quoting the value): accepted through agentgate, with its text masked. */
  raises?: string;
  /** What the control runs instead (node-postgres does not read COPY out): a SELECT of the same values. */
  control?: string;
}

/** Rows of `sql` on a direct connection, as one text (or the SQLSTATE of its error). */
async function directText(adv: Adversary, sql: string): Promise<{ text: string; code?: string }> {
  return direct(adv, async (client) => {
    try {
      const r = await client.query({ text: sql, rowMode: 'array' });
      return { text: JSON.stringify(r.rows) };
    } catch (e) {
      // The error's own text: a cast's error quotes the value it could not convert.
      return { text: String((e as { message?: unknown }).message), code: String((e as { code?: unknown }).code) };
    }
  });
}

function corpus(attacks: readonly Attack[], family: string, adv: () => Adversary, withClient: (fn: (cl: { c: import('./harness.js').RawPg; bytes(): Buffer }) => Promise<void>) => Promise<void>): void {
  test(`${family}: control — without agentgate, app reads the value through every statement below`, async () => {
    for (const a of attacks) {
      const { text, code } = await directText(adv(), a.control ?? a.sql);
      if (a.deniedDirectly !== undefined) assert.equal(code, a.deniedDirectly, `${a.id}: ${a.sql}`);
      else assert.ok(holdsValue(text), `${a.id}: ${a.sql} → ${code ?? text.slice(0, 200)}`);
    }
  });
  for (const a of attacks) {
    test(`${a.id}: ${a.sql} — ${a.why}`, () =>
      withClient(async (cl) => {
        const msgs = await simple(cl.c, a.sql);
        assertRefusedOrAnswered(msgs, a.sql, [a.deniedDirectly, a.raises].filter((x) => x !== undefined));
        assertClean(cl.bytes(), a.sql);
      }));
  }
}

const CODE = (col: string, k: string): string => `ascii(substr(${col}, ${k}, 1))`;

const SEED_A = `
CREATE MATERIALIZED VIEW mv_plain AS SELECT id, email FROM users;
CREATE MATERIALIZED VIEW mv_local AS SELECT id, split_part(email, '@', 1) AS handle FROM users;
CREATE MATERIALIZED VIEW mv_join AS SELECT u.id, c.card, reverse(u.email) AS r FROM users u JOIN cards c USING (id);
CREATE MATERIALIZED VIEW mv_agg AS SELECT string_agg(email, ';' ORDER BY id) AS everyone, string_agg(split_part(email, '@', 1), ';') AS handles FROM users;
CREATE MATERIALIZED VIEW mv_nodata AS SELECT id, translate(email, '@.', '#,') AS t FROM users WITH NO DATA;
REFRESH MATERIALIZED VIEW mv_nodata;
CREATE VIEW v_over_mv AS SELECT id, handle AS h FROM mv_local;
CREATE MATERIALIZED VIEW mv_over_v AS SELECT id, split_part(contact, '@', 1) AS c FROM v_users;
CREATE SCHEMA s9;
CREATE MATERIALIZED VIEW s9.mv_hidden AS SELECT id, split_part(email, '@', 1) AS note FROM users;
GRANT USAGE ON SCHEMA s9 TO app;
CREATE FUNCTION get_email(int) RETURNS text LANGUAGE sql STABLE AS $$ SELECT split_part(email, '@', 1) FROM users WHERE id = $1 $$;
CREATE FUNCTION get_email_pl(int) RETURNS text LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN (SELECT reverse(email) FROM users WHERE id = $1); END $$;
CREATE FUNCTION f_table() RETURNS TABLE(e text) LANGUAGE sql STABLE AS $$ SELECT split_part(email, '@', 1) FROM users $$;
CREATE FUNCTION f_setof() RETURNS SETOF users LANGUAGE sql STABLE AS $$ SELECT * FROM users $$;
CREATE FUNCTION f_setof_pl() RETURNS SETOF users LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN QUERY SELECT * FROM users; END $$;
CREATE FUNCTION mail_op(int, int) RETURNS text LANGUAGE sql STABLE AS $$ SELECT split_part(email, '@', 1) FROM users WHERE id = $1 $$;
CREATE OPERATOR @@@ (LEFTARG = int, RIGHTARG = int, FUNCTION = mail_op);
CREATE OPERATOR ### (RIGHTARG = int, FUNCTION = get_email);
CREATE FUNCTION pg_catalog.mail_of(int) RETURNS text LANGUAGE sql STABLE AS $$ SELECT split_part(email, '@', 1) FROM public.users WHERE id = $1 $$;
CREATE TABLE gen (id int, email text, handle text GENERATED ALWAYS AS (split_part(email, '@', 1)) STORED);
INSERT INTO gen (id, email) SELECT id, email FROM users;
CREATE TABLE holder (id int, u users);
INSERT INTO holder SELECT id, u FROM users u;
CREATE TABLE holder_tok (id int, u users, us users[]);
INSERT INTO holder_tok VALUES (1, ROW(9, 'n', '${TOKEN}', 'x')::users, ARRAY[ROW(9, 'n', '${TOKEN}', 'x')::users]);
CREATE TABLE holder_arr (us users[]);
INSERT INTO holder_arr SELECT array_agg(u ORDER BY id) FROM users u;
-- Statistics app may read: tables and a materialized view app owns.
CREATE TABLE st (id int, email text);
INSERT INTO st SELECT g, '${TOKEN}' || (g % 3) FROM generate_series(1, 30) g;
CREATE INDEX st_rev ON st (reverse(email));
CREATE STATISTICS st_mcv (mcv) ON id, email FROM st;
CREATE STATISTICS st_expr ON (upper(email)), id FROM st;
ALTER TABLE st OWNER TO app;
CREATE MATERIALIZED VIEW mv_stats AS SELECT u.id, split_part(u.email, '@', 1) AS h FROM users u, generate_series(1, 10) g;
ALTER MATERIALIZED VIEW mv_stats OWNER TO app;
GRANT SELECT ON mv_plain, mv_local, mv_join, mv_agg, mv_nodata, v_over_mv, mv_over_v, s9.mv_hidden, gen, holder, holder_arr, holder_tok TO app;
ANALYZE st; ANALYZE mv_stats;
`;

const MATVIEWS: Attack[] = [
  { id: 'w9m-01', sql: 'select handle from mv_local', why: 'a materialized view stores the local part of the masked column under another name' },
  { id: 'w9m-02', sql: 'select * from mv_local', why: 'the same through *' },
  { id: 'w9m-03', sql: 'select m.* from mv_local m order by 1', why: 'the same through alias.*' },
  { id: 'w9m-04', sql: "select translate(email, '@.', '#,') from mv_plain", why: 'a computation over a materialized view that keeps the masked column under its own name' },
  { id: 'w9m-05', sql: 'select r from mv_join', why: 'a join materialized view stores the value reversed' },
  { id: 'w9m-06', sql: 'select handles, reverse(everyone) from mv_agg', why: 'an aggregate materialized view (string_agg over the masked column)' },
  { id: 'w9m-07', sql: 'select t from mv_nodata', why: 'created WITH NO DATA, then refreshed by the administrator' },
  { id: 'w9m-08', sql: 'select h from v_over_mv', why: 'a view over a materialized view' },
  { id: 'w9m-09', sql: 'select c from mv_over_v', why: 'a materialized view over a view over the masked column' },
  { id: 'w9m-10', sql: 'select note from s9.mv_hidden', why: 'a materialized view in another schema, column named like a clean one' },
  { id: 'w9m-11', sql: 'select m::text, row_to_json(m)::text from mv_local m', why: 'whole-row references to a materialized view' },
  {
    id: 'w9m-12',
    sql: `select (select string_agg(chr(g), '' order by k) from generate_series(1, 10) k, generate_series(0, 255) g where g = ${CODE('m.handle', 'k')}) from mv_local m`,
    why: 'a subquery that links clean numbers to the stored value',
  },
  { id: 'w9m-13', sql: "select handle from mv_local union all select 'x'", why: 'a set operation over the materialized view' },
  { id: 'w9m-14', sql: 'with x as (select handle from mv_local) select initcap(handle) from x', why: 'a CTE over the materialized view' },
  { id: 'w9m-19b', sql: 'copy (select handle from mv_local) to stdout with (format csv)', why: 'COPY of a query over it, CSV', control: 'select handle from mv_local' },
  { id: 'w9m-19c', sql: 'copy (select t from mv_nodata) to stdout with (format binary)', why: 'the same, binary', control: 'select t from mv_nodata' },
  {
    id: 'w9m-19d',
    sql: 'begin; declare c9 cursor for select handle from mv_local; fetch all from c9; commit',
    why: 'a cursor over the materialized view',
    control: 'select handle from mv_local',
  },
  { id: 'w9m-15', sql: 'select handle::int from mv_local', why: 'the error of a cast quotes the stored value', raises: '22P02' },
  { id: 'w9m-16', sql: 'table mv_local', why: 'TABLE over the materialized view' },
  { id: 'w9m-17', sql: 'select h::int from v_over_mv', why: 'the error of a cast through a view over the materialized view', raises: '22P02' },
];

const FUNCTIONS: Attack[] = [
  { id: 'w9m-20', sql: 'select get_email(1), get_email(2)', why: 'a scalar SQL function returns the local part' },
  { id: 'w9m-21', sql: 'select get_email_pl(id) from users', why: 'a scalar PL/pgSQL function returns the reversed value' },
  { id: 'w9m-22', sql: 'select e from f_table()', why: 'RETURNS TABLE(e text) in FROM' },
  { id: 'w9m-23', sql: 'select f_table()', why: 'the same set-returning function in the select list' },
  { id: 'w9m-24', sql: "select split_part(email, '@', 1) from f_setof()", why: 'RETURNS SETOF users in FROM, computed over' },
  { id: 'w9m-25', sql: "select (f_setof()).email, split_part((f_setof()).email, '@', 1)", why: 'RETURNS SETOF users in the select list, field selection' },
  { id: 'w9m-26', sql: "select reverse(x.email) from f_setof_pl() x", why: 'a PL/pgSQL set-returning function' },
  { id: 'w9m-27', sql: 'select f.* from f_setof() f', why: 'alias.* over a function of the table type' },
  { id: 'w9m-29', sql: 'select 1 @@@ 0, 2 @@@ 0', why: 'a user-defined operator whose function reads the masked column' },
  { id: 'w9m-29b', sql: 'select ### 1, ### 2', why: 'a user-defined prefix operator over a scalar function' },
  { id: 'w9m-29c', sql: 'select mail_of(1), pg_catalog.mail_of(2)', why: 'a function an administrator created in pg_catalog' },
  { id: 'w9m-29d', sql: 'select x from mail_of(1) x', why: 'the same in FROM' },
  {
    id: 'w9m-28',
    sql: `select string_agg(chr(g), '' order by f.e, k) from f_table() f, generate_series(1, 5) k, generate_series(0, 255) g where g = ${CODE('f.e', 'k')}`,
    why: 'a function column linked to clean numbers',
  },
];

const STORED: Attack[] = [
  { id: 'w9m-30', sql: 'select handle from gen', why: 'a generated column computed from the masked column' },
  { id: 'w9m-31', sql: 'select g.* from gen g', why: 'the same through *' },
  { id: 'w9m-38', sql: 'select u from holder_tok', why: 'a stored users row whose email no detector recognises, read whole' },
  { id: 'w9m-38b', sql: 'select (u).email as x, (us[1]).email as y from holder_tok', why: 'its email field, renamed' },
  { id: 'w9m-38c', sql: 'select h.* from holder_tok h', why: 'the row-typed and array columns through *' },
  { id: 'w9m-38d', sql: 'select reverse(us::text) from holder_tok', why: 'the array of rows as text, reversed' },
  { id: 'w9m-39', sql: 'copy (select id, handle from gen) to stdout', why: 'COPY of the generated column', control: 'select id, handle from gen' },
  { id: 'w9m-39b', sql: 'copy holder_tok to stdout with (format csv)', why: 'COPY of the row-typed columns', control: 'select * from holder_tok' },
  { id: 'w9m-39c', sql: 'copy holder_tok to stdout', why: 'the same, text', control: 'select * from holder_tok' },
  { id: 'w9m-39d', sql: 'copy (select u from holder_tok) to stdout', why: 'a query of the row-typed column', control: 'select u from holder_tok' },
  { id: 'w9m-39e', sql: 'copy holder_tok (u) to stdout', why: 'a column list', control: 'select u from holder_tok' },
  { id: 'w9m-36', sql: 'select handle::int from gen', why: 'the error of a cast quotes the generated value', raises: '22P02' },
  { id: 'w9m-37', sql: 'select initcap(handle) from gen where id = 1', why: 'computed over the generated column' },
  { id: 'w9m-32', sql: "select (u).email, split_part((u).email, '@', 1) from holder", why: 'a table-typed column holding a masked row' },
  { id: 'w9m-33', sql: "select reverse((us[1]).email), (us[2]).name from holder_arr", why: 'an array of table rows' },
  { id: 'w9m-34', sql: "select reverse(u::text) from holder", why: 'the whole stored row as text' },
  { id: 'w9m-35', sql: "select reverse(h.u::text), reverse(us::text) from holder h, holder_arr", why: 'stored rows and arrays, reversed' },
];

const STATISTICS: Attack[] = [
  { id: 'w9m-40', sql: "select reverse(histogram_bounds::text), reverse(most_common_vals::text) from pg_stats where tablename = 'mv_stats'", why: "a materialized view's statistics hold the masked column's derived values" },
  { id: 'w9m-41', sql: "select reverse(most_common_vals::text), reverse(histogram_bounds::text) from pg_stats where tablename = 'st_rev'", why: "an expression index's statistics (tablename = the index)" },
  { id: 'w9m-42', sql: "select reverse(most_common_vals::text) from pg_stats_ext where tablename = 'st'", why: 'extended mcv statistics over the masked column' },
  { id: 'w9m-43', sql: "select reverse(most_common_vals::text) from pg_stats_ext_exprs where tablename = 'st'", why: 'extended statistics on an expression over the masked column' },
  {
    id: 'w9m-44',
    sql: "select m.values::text from pg_statistic_ext s join pg_statistic_ext_data d on d.stxoid = s.oid, pg_mcv_list_items(d.stxdmcv) m where s.stxname = 'st_mcv'",
    why: 'pg_mcv_list_items over the stored mcv list',
    deniedDirectly: '42501',
  },
  { id: 'w9m-45', sql: "select stavalues1::text from pg_statistic where starelid = 'st'::regclass", why: 'pg_statistic directly', deniedDirectly: '42501' },
  { id: 'w9m-46', sql: "select s.attname, reverse(s.most_common_vals::text) from pg_stats s where s.schemaname = 'public'", why: 'every statistics row of the schema' },
];

describe('adversarial corpus wave 9: provenance through stored objects and statistics', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    policies: COPY_POLICY,
    setup: async (a) => {
      await a.stack.pg.psql(SEED_A, { database: 'app' });
    },
    check: (cl) => assertClean(cl.bytes(), 'the client'),
  });
  corpus(MATVIEWS, 'w9m-00a', () => adv, withClient);

  // The row count a stored value decides, one statement per character.
  const K = 5;
  const COUNTED = (k: number): string => `select 1 from mv_local m, generate_series(1, ${CODE('m.handle', String(k))}) where m.id = 1`;
  const decode = (counts: readonly number[]): string => counts.map((n) => (n > 0 && n < 256 ? String.fromCharCode(n) : '?')).join('');
  test('w9m-18: select 1 from mv_local m, generate_series(1, ascii(substr(m.handle, k, 1))) — the row count spells the stored value', async () => {
    const control = await direct(adv, async (client) => {
      const out: number[] = [];
      for (let k = 1; k <= K; k++) out.push((await client.query(COUNTED(k))).rowCount ?? -1);
      return out;
    });
    assert.equal(decode(control), EMAIL1.slice(0, K), 'control: without agentgate the counts spell the value');
    await withClient(async (cl) => {
      const counts: number[] = [];
      for (let k = 1; k <= K; k++) {
        const msgs = await simple(cl.c, COUNTED(k));
        assertRefusedOrAnswered(msgs, COUNTED(k));
        counts.push(msgs.filter((m) => m.type === BackendType.dataRow).length);
        const tag = tagsOf(msgs).find((t) => t.startsWith('SELECT '));
        if (tag !== undefined) counts.push(Number(tag.slice(7)));
      }
      const text = decode(counts);
      assert.ok(!text.includes(EMAIL1.slice(0, 3)), `the counts spell the value: ${text}`);
      assertClean(Buffer.from(text), 'the counts decoded');
    });
  });
  corpus(FUNCTIONS, 'w9m-00b', () => adv, withClient);
  corpus(STORED, 'w9m-00c', () => adv, withClient);
  corpus(STATISTICS, 'w9m-00d', () => adv, withClient);
});

const SEED_E = `
CREATE TABLE ip (id int, secret text);
CREATE TABLE ic () INHERITS (ip);
INSERT INTO ic VALUES (1, '${TOKEN}');
CREATE TABLE pp (id int, secret text) PARTITION BY RANGE (id);
CREATE TABLE pp_1 PARTITION OF pp FOR VALUES FROM (0) TO (100);
INSERT INTO pp VALUES (1, '${TOKEN}');
CREATE TABLE rp (id int, secret text) PARTITION BY RANGE (id);
CREATE TABLE rp_1 PARTITION OF rp FOR VALUES FROM (0) TO (100);
INSERT INTO rp VALUES (1, '${TOKEN}');
CREATE TABLE rip (id int, secret text);
CREATE TABLE ric () INHERITS (rip);
INSERT INTO ric VALUES (1, '${TOKEN}');
GRANT SELECT ON ip, ic, pp, pp_1, rp, rp_1, rip, ric TO app;
`;

const TREES: Attack[] = [
  { id: 'w9m-50', sql: 'select secret from ic', why: 'an inheritance child read directly; the rule names the parent' },
  { id: 'w9m-51', sql: 'select secret from pp_1', why: 'a partition read directly; the rule names the partitioned table' },
  { id: 'w9m-52', sql: 'select reverse(secret) from pp_1', why: 'the same, computed over' },
  { id: 'w9m-53', sql: 'select secret from rp', why: 'the partitioned table read; the rule names its partition' },
  { id: 'w9m-54', sql: 'select secret from rip', why: 'the inheritance parent read; the rule names its child' },
  { id: 'w9m-55', sql: 'select x.* from ic x', why: 'the child through alias.*' },
  { id: 'w9m-58', sql: 'copy ic to stdout', why: 'COPY of the inheritance child', control: 'select * from ic' },
  { id: 'w9m-58b', sql: 'copy (select * from rp) to stdout with (format csv)', why: 'COPY of the partitioned table read', control: 'select * from rp' },
  { id: 'w9m-58c', sql: 'select r::text, reverse(r::text) from rp r', why: 'whole-row references to the partitioned table' },
  { id: 'w9m-56', sql: 'select secret::int from pp_1', why: 'the error of a cast quotes the partition value', raises: '22P02' },
  { id: 'w9m-57', sql: 'select secret::int from rip', why: 'the error of a cast quotes the child value through the parent', raises: '22P02' },
];

describe('adversarial corpus wave 9: rules naming one table of an inheritance tree', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    policies: COPY_POLICY,
    maskedColumns: ['*.email', 'ip.secret', 'pp.secret', 'rp_1.secret', 'public.ric.secret'],
    setup: async (a) => {
      await a.stack.pg.psql(SEED_E, { database: 'app' });
    },
    check: (cl) => assertClean(cl.bytes(), 'the client'),
  });
  corpus(TREES, 'w9m-00e', () => adv, withClient);
});
