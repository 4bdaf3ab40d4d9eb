/**
 * Masking by provenance: which table columns each output column of a statement depends on,
 * against an in-memory catalog (no server: the module is pure analysis over the parse tree).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';

import { loadSqlParser } from '../../src/broker/policy/sql-classify.js';
import {
  NON_REVEALING_FUNCTIONS,
  OPAQUE_BUILTINS,
  outputProvenance,
  statementProvenance,
  type FunctionFacts,
  type OutputColumn,
  type Provenance,
  type ProvenanceCatalog,
  type RelationInfo,
} from '../../src/broker/masking/provenance.js';

const RELATIONS: RelationInfo[] = [
  { schema: 'public', name: 'users', kind: 'table', columns: ['id', 'name', 'email', 'ssn'] },
  { schema: 'public', name: 'orders', kind: 'table', columns: ['id', 'user_id', 'card'] },
  { schema: 'public', name: 'v_users', kind: 'view', columns: ['id', 'contact'], viewSql: 'SELECT id, email AS contact FROM users' },
  { schema: 'public', name: 'v_nested', kind: 'view', columns: ['c'], viewSql: ' SELECT v_users.contact AS c FROM v_users;' },
  { schema: 'public', name: 'v_nodef', kind: 'view', columns: ['a'] },
  { schema: 'public', name: 'v_sized', kind: 'view', columns: ['i'], viewSql: 'SELECT 1 AS i FROM users u, generate_series(1, ascii(u.email)) s' },
  { schema: 'public', name: 'v_kept', kind: 'view', columns: ['id'], viewSql: 'SELECT id FROM users WHERE id < 5' },
  { schema: 'public', name: 'events', kind: 'table', columns: ['id', 'payload'] },
  { schema: 'archive', name: 'events', kind: 'table', columns: ['id', 'payload'] },
  { schema: 'archive', name: 'notes', kind: 'table', columns: ['id', 'body'] },
  { schema: 'public', name: 'notes', kind: 'table', columns: ['id', 'body', 'extra'] },
];

const BUILTINS = new Set([
  'reverse', 'translate', 'split_part', 'encode', 'convert_to', 'regexp_replace', 'concat', 'format', 'upper',
  'substr', 'substring', 'left', 'string_agg', 'array_agg', 'min', 'max', 'json_agg', 'count', 'length',
  'generate_series', 'unnest', 'jsonb_to_recordset', 'jsonb_each', 'row_to_json', 'to_jsonb', 'query_to_xml',
  'lower', 'md5', 'row_number', 'current_setting', 'now', 'octet_length', 'percentile_disc', 'sum', 'coalesce',
  'pg_get_keywords', 'to_jsonb',
]);
/** The set-returning ones among them (pg_proc.proretset). */
const SETOF = new Set(['generate_series', 'unnest', 'jsonb_to_recordset', 'jsonb_each', 'pg_get_keywords']);

/** The fake catalog; `calls` counts lookups so deduplication can be checked. */
function fakeCatalog(): ProvenanceCatalog & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    async relations(schema, name) {
      calls.push(`r:${schema ?? ''}.${name}`);
      return RELATIONS.filter((r) => r.name === name && (schema === undefined || r.schema === schema));
    },
    async functions(schema, name): Promise<FunctionFacts[]> {
      calls.push(`f:${schema ?? ''}.${name}`);
      const out: FunctionFacts[] = [];
      if (BUILTINS.has(name) && (schema === undefined || schema === 'pg_catalog')) out.push({ builtin: true, retset: SETOF.has(name) });
      // A user function: declared set-returning here, so a select-list call repeats the row.
      if (name === 'f' && (schema === undefined || schema === 'public')) out.push({ builtin: false, retset: true });
      // A user overload of a builtin name makes it opaque.
      if (name === 'lower' && (schema === undefined || schema === 'public')) out.push({ builtin: false, retset: false });
      return out;
    },
    // CREATE CAST (int AS public.probe) WITH FUNCTION a user function.
    async castTargets() {
      return [{ schema: 'public', name: 'probe' }];
    },
  };
}

before(async () => {
  await loadSqlParser();
});

async function analyse(sql: string): Promise<OutputColumn[]> {
  const res = await statementProvenance(sql, fakeCatalog());
  assert.equal(res.length, 1, 'one statement');
  const r = res[0]!;
  assert.ok(r.ok, `expected ok, got ${r.ok ? '' : r.reason}`);
  return r.columns;
}

async function failure(sql: string): Promise<string> {
  const res = await statementProvenance(sql, fakeCatalog());
  const r = res[0]!;
  assert.ok(!r.ok, `expected ok:false for ${sql}`);
  return r.reason;
}

/** [name, sorted sources, direct, opaque] per column: compact to compare. */
function shape(cols: OutputColumn[]): [string, string[], boolean, boolean][] {
  return cols.map((c) => [c.name, [...c.sources].sort(), c.direct, c.opaque]);
}

const U = (c: string): string => `public.users.${c}`;
const O = (c: string): string => `public.orders.${c}`;

async function one(sql: string): Promise<OutputColumn> {
  const cols = await analyse(sql);
  assert.equal(cols.length, 1, `one column for ${sql}`);
  return cols[0]!;
}

async function derivedFrom(sql: string, sources: string[]): Promise<void> {
  const c = await one(sql);
  assert.deepEqual([...c.sources].sort(), [...sources].sort(), sql);
  assert.equal(c.direct, false, `${sql}: derived, not direct`);
  assert.equal(c.opaque, false, `${sql}: not opaque`);
}

// ---------------------------------------------------------------------------------------
// Plain references

test('plain column references are direct', async () => {
  assert.deepEqual(shape(await analyse('select id, email from users')), [
    ['id', [U('id')], true, false],
    ['email', [U('email')], true, false],
  ]);
});

test('an alias renames the output and keeps it direct', async () => {
  assert.deepEqual(shape(await analyse('select u.email as contact from public.users u')), [['contact', [U('email')], true, false]]);
});

test('* expands every FROM item in order', async () => {
  const cols = await analyse('select * from users, orders');
  assert.deepEqual(cols.map((c) => c.name), ['id', 'name', 'email', 'ssn', 'id', 'user_id', 'card']);
  assert.ok(cols.every((c) => c.direct && c.sources.size === 1));
  assert.deepEqual([...cols[6]!.sources], [O('card')]);
});

test('t.* expands one relation; TABLE t is SELECT *', async () => {
  assert.deepEqual(shape(await analyse('select o.*, u.id from users u join orders o on o.user_id = u.id')).map((c) => c[1][0]), [O('id'), O('user_id'), O('card'), U('id')]);
  assert.equal((await analyse('table orders')).length, 3);
});

test('a whole-row reference depends on every column', async () => {
  const all = ['id', 'name', 'email', 'ssn'].map(U);
  for (const sql of ['select u from users u', 'select row_to_json(u) from users u', 'select to_jsonb(u.*) from users u']) {
    await derivedFrom(sql, all);
  }
});

test('casts to text types stay direct; a length or another type does not', async () => {
  const c = await analyse('select email::text, email::varchar, email::bpchar, email::name, email collate "C", email::varchar(3), email::bytea from users');
  assert.deepEqual(c.map((x) => x.direct), [true, true, true, true, true, false, false]);
  assert.ok(c.every((x) => x.sources.has(U('email')) && x.sources.size === 1));
  assert.equal(c[6]!.name, 'email');
});

// ---------------------------------------------------------------------------------------
// Derived values keep their sources

test('string functions that leak the value are derived from it', async () => {
  for (const sql of [
    'select reverse(email) from users',
    "select translate(email, 'abc', 'xyz') from users",
    "select split_part(email, '@', 1) from users",
    "select encode(convert_to(email, 'UTF8'), 'base64') from users",
    "select regexp_replace(email, '(.)', '\\1 ', 'g') from users",
    'select upper(email) from users',
    'select substr(email, 1, 3) from users',
    'select substring(email from 2 for 3) from users',
    'select left(email, 5) from users',
  ]) {
    await derivedFrom(sql, [U('email')]);
  }
});

test('concatenation and format combine their sources', async () => {
  await derivedFrom("select concat(name, ':', ssn) from users", [U('name'), U('ssn')]);
  await derivedFrom("select name || '/' || email from users", [U('name'), U('email')]);
  await derivedFrom("select format('%s %s', name, email) from users", [U('name'), U('email')]);
  await derivedFrom("select email = 'a@b' from users", [U('email')]);
});

test('aggregates over a column are derived from it', async () => {
  for (const sql of [
    "select string_agg(email, ',') from users",
    'select array_agg(email) from users',
    'select min(email) from users',
    'select max(email) from users',
    'select json_agg(email) from users group by name',
  ]) {
    await derivedFrom(sql, [U('email')]);
  }
  // WITHIN GROUP returns one of the ordered values.
  await derivedFrom('select percentile_disc(0.5) within group (order by ssn) from users', [U('ssn')]);
});

test('count, length and IS NULL reveal no values', async () => {
  const c = await analyse('select count(email), count(*), length(ssn), octet_length(email), email is null, ssn is not null from users');
  assert.ok(c.every((x) => x.sources.size === 0 && !x.direct && !x.opaque));
  assert.deepEqual(c.map((x) => x.name), ['count', 'count', 'length', 'octet_length', '?column?', '?column?']);
  assert.ok(NON_REVEALING_FUNCTIONS.has('count') && NON_REVEALING_FUNCTIONS.has('pg_column_size'));
});

test('IS [NOT] NULL over anything computed depends on it (a bit of the value per row)', async () => {
  await derivedFrom("select nullif(substr(email, 1, 1), 'q') is null from users", [U('email')]);
  await derivedFrom("select (case when ssn like '1%' then 1 end) is not null from users", [U('ssn')]);
  // (u).email is not a bare reference: the walk takes u's whole row (conservative).
  assert.ok((await one('select (u).email is null from users u')).sources.has(U('email')));
});

/** The sorted conditions of the only output of `sql`. */
async function conditionsOf(sql: string): Promise<string[]> {
  return [...((await one(sql)).conditions ?? [])].sort();
}

test('an aggregate FILTER contributes; an aggregate ORDER BY and a window PARTITION/ORDER BY are conditions', async () => {
  await derivedFrom("select count(*) filter (where ssn like '1%') from users", [U('ssn')]);
  await derivedFrom("select string_agg(name, ',' order by ssn) from users", [U('name')]);
  assert.deepEqual(await conditionsOf("select string_agg(name, ',' order by ssn) from users"), [U('ssn')]);
  await derivedFrom('select sum(id) over (partition by ssn order by email) from users', [U('id')]);
  assert.deepEqual(await conditionsOf('select sum(id) over (partition by ssn order by email) from users'), [U('email'), U('ssn')]);
  assert.deepEqual(await conditionsOf('select row_number() over (order by ssn) from users'), [U('ssn')]);
  // A named window, and one built on it, with a frame offset.
  assert.deepEqual(await conditionsOf('select count(*) over (w rows between id preceding and current row) from users window w as (order by email)'), [U('email'), U('id')]);
  assert.deepEqual(await conditionsOf('select count(*) over w from users window w as (partition by ssn)'), [U('ssn')]);
});

test('CASE conditions and results both contribute; COALESCE too', async () => {
  await derivedFrom("select case when ssn like '1%' then 'a' else name end from users", [U('ssn'), U('name')]);
  await derivedFrom("select coalesce(email, ssn, 'none') from users", [U('email'), U('ssn')]);
  assert.equal((await one("select case when true then 1 end from users")).name, 'case');
});

test('WHERE, GROUP BY, HAVING, ORDER BY and JOIN ON that only compare plain values or test one column add nothing', async () => {
  const c = await one("select u.id from users u join orders o on o.card = u.ssn where u.email like 'a%' group by u.id having max(u.ssn) > '1' order by max(u.email)");
  assert.deepEqual([...c.sources], [U('id')]);
  assert.equal(c.direct, true);
  assert.equal(c.conditions?.size ?? 0, 0);
  for (const sql of [
    'select name from users where email = $1',
    // (upper: this catalog's lower has a user overload, an untraced value of its own.)
    "select name from users where upper(email) = upper('x')",
    "select name from users where email like 'q%'",
    'select u.name from users u join orders o on u.ssn = o.card',
    'select u.name from users u where u.email in (select o.card from orders o)',
    'select u.name from users u where exists (select 1 from orders o where o.user_id = u.id)',
    "select name from users where email ilike $1 or ssn like '1%'",
    'select name from users where email is not null and id > 3',
    'select name from users order by email, upper(ssn)',
  ]) {
    assert.deepEqual(await conditionsOf(sql), [], sql);
  }
});

test('a condition that computes over a column and relates it to another makes every output of its level depend on it', async () => {
  // The rows kept show the value: g is the character code of the first letter.
  for (const sql of [
    'select g from generate_series(32, 126) g, users u where ascii(substr(u.email, 1, 1)) = g',
    'select g from generate_series(32, 126) g join users u on g = ascii(substr(u.email, 1, 1))',
    'select g from generate_series(32, 126) g, users u where substr(u.email, 1, 1) < left(g::text, 1)',
    "select g from generate_series(65, 90) g, users u where (g = 65 and u.email like 'A%') or (g = 66 and u.email like 'B%')",
    'select g from generate_series(32, 126) g, users u where not (g = length(repeat(u.email, 2)) or g = 0)',
    'select g from generate_series(32, 126) g where g in (select ascii(email) from users)',
    'select g from generate_series(32, 126) g where exists (select 1 from users u where ascii(u.email) = g)',
    'select max(g) from generate_series(0, 255) g, users u group by u.id having max(g) <= ascii(u.email)',
    'select count(*) from generate_series(0, 255) g, users u where g < ascii(u.email)',
    'select distinct on (u.id) g from generate_series(0, 255) g, users u order by u.id, abs(g - ascii(u.email))',
  ]) {
    assert.ok((await conditionsOf(sql)).includes(U('email')), sql);
  }
  // A plain output stays direct: its own style yields only if a condition is masked.
  const c = await one('select u.name from users u, orders o where upper(o.card) = u.ssn');
  assert.deepEqual([...c.sources], [U('name')]);
  assert.equal(c.direct, true);
  assert.deepEqual([...(c.conditions ?? [])].sort(), [O('card'), U('ssn')]);
});

test('LIMIT and OFFSET decide every output of their level', async () => {
  const c = await one('select l.x from users u, lateral (select name as x from users limit length(repeat(u.email, 2))) l');
  assert.deepEqual([...c.sources], [U('name')]);
  assert.deepEqual([...(c.conditions ?? [])], [U('email')]);
  assert.deepEqual(await conditionsOf('select (select count(*) from (select from generate_series(1, 255) offset length(repeat(u.email, 2))) s) from users u'), [U('email')]);
});

// ---------------------------------------------------------------------------------------
// Subqueries, CTEs, views, set operations, joins

test('a subquery in FROM passes columns through, keeping direct', async () => {
  assert.deepEqual(shape(await analyse('select s.e, s.r from (select email as e, reverse(ssn) as r from users) s')), [
    ['e', [U('email')], true, false],
    ['r', [U('ssn')], false, false],
  ]);
  assert.deepEqual(shape(await analyse('select x.a from (select email from users) as x(a)')), [['a', [U('email')], true, false]]);
});

test('a scalar subquery in the select list carries its output, correlated or not', async () => {
  assert.deepEqual(shape(await analyse('select (select o.card from orders o where o.user_id = u.id limit 1) from users u')), [['card', [O('card')], true, false]]);
  assert.deepEqual(shape(await analyse('select (select u.ssn) as s from users u')), [['s', [U('ssn')], true, false]]);
  await derivedFrom('select array(select card from orders) from users', [O('card')]);
  await derivedFrom('select exists(select card from orders) from users', []);
});

test('a subquery used as a value depends on every column referenced inside it', async () => {
  const c = await one('select (select o.card from orders o where o.user_id = u.id limit 1) from users u');
  assert.deepEqual([...(c.conditions ?? [])].sort(), [O('user_id'), U('id')]);
  for (const sql of [
    'select i, (select g from generate_series(0, 255) g where g = length(repeat(u.email, i))) from users u, generate_series(1, 3) i',
    'select (select count(*) from (select from generate_series(1, 255) limit length(repeat(u.email, 2))) s) from users u',
    'select (select (array_agg(g order by g - length(repeat(u.email, 2))))[1] from generate_series(0, 255) g) from users u',
    'select (select first_value(g) over (order by g - length(repeat(u.email, 2))) from generate_series(0, 255) g limit 1) from users u',
    "select exists(select where u.email like 'a%') from users u",
    "select 1 in (select 1 from orders o having max(u.email) > 'm') from users u",
    "select (select count(*) from users x group by x.email having count(*) > 0 order by min(x.email) limit 1)",
    "select (with c as (select id from users where email like 'a%') select count(*) from c)",
    "select (select 1 from users u join orders o on u.ssn like o.card limit 1)",
  ]) {
    const conds = (await analyse(sql)).flatMap((x) => [...(x.conditions ?? [])]);
    assert.ok(conds.includes(U('email')) || conds.includes(U('ssn')), sql);
  }
  // Output names and positions in ORDER BY / GROUP BY inside a subquery resolve.
  assert.deepEqual(await conditionsOf('select (select email as e from users order by e limit 1)'), [U('email')]);
  assert.deepEqual(await conditionsOf('select (select max(name) from users group by 1 limit 1)'), [U('name')]);
});

test('CTEs pass provenance through, with column aliases', async () => {
  assert.deepEqual(shape(await analyse('with a(x) as (select email from users), b as (select x from a) select x from b')), [['x', [U('email')], true, false]]);
});

test('a non-recursive CTE named like a table hides the table', async () => {
  assert.deepEqual(shape(await analyse("with users as (select 'x' as email) select email from users")), [['email', [], false, false]]);
});

test('WITH RECURSIVE unions the recursive term until it settles', async () => {
  const c = await analyse(`
    with recursive t(n, v) as (
      select 1, name from users
      union all
      select n + 1, v || (select ssn from users limit 1) from t where n < 3
    ) select n, v from t`);
  assert.deepEqual(shape(c), [
    ['n', [], false, false],
    ['v', [U('name'), U('ssn')], false, false],
  ]);
  const d = await analyse('with recursive r as (select id, email from users union all select id, email from r) select email from r');
  assert.deepEqual(shape(d), [['email', [U('email')], true, false]]);
});

test('SEARCH and CYCLE columns depend on the listed columns', async () => {
  const c = await analyse('with recursive r(e) as (select email from users union select e from r) cycle e set is_cycle using path select * from r');
  assert.deepEqual(shape(c), [
    ['e', [U('email')], true, false],
    ['is_cycle', [U('email')], false, false],
    ['path', [U('email')], false, false],
  ]);
});

test('a view renames: sources are the view column and the table column under it', async () => {
  assert.deepEqual(shape(await analyse('select contact from v_users')), [['contact', ['public.users.email', 'public.v_users.contact'], true, false]]);
  assert.deepEqual(shape(await analyse('select c from v_nested')), [['c', ['public.users.email', 'public.v_nested.c', 'public.v_users.contact'], true, false]]);
  assert.deepEqual(shape(await analyse('select upper(contact) from v_users')), [['upper', ['public.users.email', 'public.v_users.contact'], false, false]]);
});

test('a view without its definition fails closed: opaque', async () => {
  assert.deepEqual(shape(await analyse('select a from v_nodef')), [['a', ['public.v_nodef.a'], false, true]]);
});

test('UNION: per position union; direct only if every branch is', async () => {
  assert.deepEqual(shape(await analyse('select id, name from users union select id, card from orders')), [
    ['id', [O('id'), U('id')], true, false],
    ['name', [O('card'), U('name')], true, false],
  ]);
  assert.deepEqual(shape(await analyse("select name from users union all select 'x' except select upper(email) from users")), [['name', [U('email'), U('name')], false, false]]);
});

test('a long UNION chain is analysed without recursion', async () => {
  const sql = Array.from({ length: 3000 }, (_, i) => (i === 1500 ? 'select ssn from users' : `select 'c${i}'`)).join(' union all ');
  const c = await one(sql);
  assert.deepEqual([...c.sources], [U('ssn')]);
  assert.equal(c.direct, false);
});

test('VALUES columns are named columnN', async () => {
  assert.deepEqual(shape(await analyse("values (1, 'a'), (2, 'b')")).map((c) => c[0]), ['column1', 'column2']);
});

test('JOIN USING merges the column from both sides; * lists it once', async () => {
  const c = await analyse('select * from users join orders using (id)');
  assert.deepEqual(c.map((x) => x.name), ['id', 'name', 'email', 'ssn', 'user_id', 'card']);
  assert.deepEqual([...c[0]!.sources].sort(), [O('id'), U('id')]);
  assert.equal(c[0]!.direct, true);
  assert.deepEqual(shape(await analyse('select id, users.id from users natural join orders')).map((x) => x[1]), [[O('id'), U('id')], [U('id')]]);
});

test('an aliased join hides the inner names and takes the column aliases', async () => {
  assert.deepEqual(shape(await analyse('select j.e from (users u join orders o on true) as j(a, b, e)')), [['e', [U('email')], true, false]]);
  assert.ok((await failure('select u.id from (users u join orders o on true) as j')).includes('unknown'));
});

test('LATERAL subqueries see earlier FROM items', async () => {
  assert.deepEqual(shape(await analyse('select l.x from users u, lateral (select reverse(u.ssn) as x) l')), [['x', [U('ssn')], false, false]]);
  assert.deepEqual(shape(await analyse('select l.c from users u left join lateral (select card as c from orders o where o.user_id = u.id) l on true')), [['c', [O('card')], true, false]]);
});

test('functions in FROM: outputs depend on their arguments', async () => {
  assert.deepEqual(shape(await analyse('select * from generate_series(1, 3)')), [['generate_series', [], false, false]]);
  assert.deepEqual(shape(await analyse('select g from generate_series(1, 3) g')), [['g', [], false, false]]);
  assert.deepEqual(shape(await analyse('select x from users u, unnest(array[u.email, u.name]) as t(x)')), [['x', [U('email'), U('name')], false, false]]);
  assert.deepEqual(shape(await analyse('select r.a, r.b from users u, jsonb_to_recordset(to_jsonb(u.ssn)) as r(a int, b text)')), [
    ['a', [U('ssn')], false, false],
    ['b', [U('ssn')], false, false],
  ]);
  assert.deepEqual(shape(await analyse('select * from users u, jsonb_each(to_jsonb(u.email)) with ordinality')).slice(4).map((x) => x[0]), ['key', 'value', 'ordinality']);
});

test('field selection (u).col is that column; XMLTABLE and JSON_TABLE depend on their documents', async () => {
  assert.deepEqual(shape(await analyse('select (u).email from users u')), [['email', [U('email')], true, false]]);
  assert.deepEqual(shape(await analyse("select xmltable.a from users, xmltable('/r' passing email columns a text path 'a')")), [['a', [U('email')], false, false]]);
  assert.deepEqual(shape(await analyse("select * from users u, json_table(to_jsonb(u.ssn), '$' columns (a text path '$', nested path '$[*]' columns (b text path '$'))) j")).slice(4), [
    ['a', [U('ssn')], false, false],
    ['b', [U('ssn')], false, false],
  ]);
  assert.deepEqual(shape(await analyse('select generate_series.* from generate_series(1, 2)')), [['generate_series', [], false, false]]);
});

test('a FROM function that may return a composite row may have any column name', async () => {
  // unnest of an array of rows, and CAST to a row type, expand to that row's columns: an
  // unqualified name there may be one of them, not the clean outer column of that name.
  for (const sql of [
    "select (select split_part(email, '@', 1) from unnest(array(select u from users u)) x) from (values ('clean')) o(email)",
    "select (select split_part(email, '@', 1) from cast((select u from users u limit 1) as users) x) from (values ('clean')) o(email)",
    "select (select email from rows from (unnest(array(select u from users u))) with ordinality x) from (values ('clean')) o(email)",
    "select split_part(x.email, '@', 1) from unnest(array(select u from users u)) x(a), (values ('clean')) y(x)",
    "select (select x.email from unnest(array(select u from users u)) x(a, b, c, d, e)) from (values ('clean')) o(email)",
  ]) {
    const c = await one(sql);
    assert.ok(c.sources.has(U('email')) && !c.direct, sql);
  }
  // A relation's whole row is still found beside an open item.
  assert.ok((await one('select row_to_json(u) from users u, unnest(array[1, 2]) x')).sources.has(U('ssn')));
  // An array of clean values: its names take nothing else.
  assert.deepEqual(shape(await analyse('select x, name from unnest(array(select name from users)) x, (values (1)) o(name)')), [
    ['x', [U('name')], false, false],
    ['name', [U('name')], false, false],
  ]);
});

test('* over a FROM function of unknown shape is refused; named columns take its arguments', async () => {
  assert.match(await failure('select * from pg_get_keywords()'), /not known/);
  assert.deepEqual(shape(await analyse('select k.word from pg_get_keywords() k')), [['word', [], false, false]]);
});

test('a user function in FROM makes its columns opaque', async () => {
  const c = await analyse('select * from users u, f(u.email) as t(a text)');
  assert.deepEqual(shape(c.slice(4)), [['a', [U('email')], false, true]]);
});

// ---------------------------------------------------------------------------------------
// Fail closed

test('a user-defined function is opaque, also as an overload of a builtin name', async () => {
  assert.deepEqual(shape(await analyse('select f(email) from users')), [['f', [U('email')], false, true]]);
  assert.deepEqual(shape(await analyse('select public.f(1)')), [['f', [], false, true]]);
  assert.equal((await one('select lower(name) from users')).opaque, true);
  assert.equal((await one('select no_such_fn(name) from users')).opaque, true);
  // NON_REVEALING applies to builtins only: a user function of any name is opaque.
  // length hides what it measures only when that is a plain column: of a computed value it
  // could carry anything (length(repeat('x', ascii(email))) spells the email out).
  assert.equal((await one('select length(f(ssn)) from users')).opaque, true);
  assert.deepEqual([...(await one('select length(ssn) from users')).sources], []);
  assert.deepEqual([...(await one("select length(repeat('x', ascii(ssn))) from users")).sources], [U('ssn')]);
});

test('an untraced output linked to a clean column (a user function, an untraced setting) decides every output of its level', async () => {
  // f() may return users.ssn: the rows kept (or counted, or first) spell its value.
  for (const sql of [
    'select g from generate_series(32, 126) g where ascii(substr(f(), 1, 1)) = g',
    'select g from generate_series(32, 126) g where exists (select 1 where ascii(f()) = g)',
    'select g from generate_series(32, 126) g order by abs(ascii(f()) - g) limit 1',
    'select count(*) from generate_series(0, 255) g group by ascii(f()) >= g',
    'select g from (select g, ascii(f()) = g as hit from generate_series(32, 126) g) d where d.hit',
    'select g from generate_series(32, 126) g where f(g)',
    "select g from generate_series(32, 126) g where ascii(current_setting('application_name')) = g",
  ]) {
    assert.equal((await one(sql)).opaque, true, sql);
  }
  // Against a constant it decides all rows or none: a bit, as a filter on one column.
  assert.equal((await one('select g from generate_series(1, 3) g where f() = 1')).opaque, false);
});

test("a cast to a type a user cast function converts to is opaque: that function runs, and may read any table", async () => {
  assert.equal((await one('select (g::probe).x from generate_series(1, 3) g')).opaque, true);
  assert.equal((await one('select (g::public.probe[])[1] from generate_series(1, 3) g')).opaque, true);
  // length() of a cast's output is not a plain reference's length; a filter over it links it to g.
  assert.equal((await one('select length(g::probe::text) from generate_series(1, 3) g')).opaque, true);
  assert.equal((await one('select g from generate_series(32, 126) g where (g::probe).x = 0')).opaque, true);
  // Other casts are what they were: a text cast of a column keeps it direct.
  const c = await one('select email::text from users');
  assert.equal(c.opaque, false);
  assert.equal(c.direct, true);
  assert.equal((await one('select (g::other.probe) from generate_series(1, 3) g')).opaque, false);
  // A string literal is read by the type's input function, never by a cast.
  assert.equal((await one("select ('(5)'::probe).x")).opaque, false);
  assert.equal((await one("select ('5'::int::probe).x")).opaque, true);
});

test('builtins that run SQL text are opaque', async () => {
  assert.deepEqual(shape(await analyse("select query_to_xml('select ssn from users', true, false, '')")), [['query_to_xml', [], false, true]]);
  assert.ok(OPAQUE_BUILTINS.has('pg_read_file') && OPAQUE_BUILTINS.has('ts_stat') && !OPAQUE_BUILTINS.has('current_setting'));
  assert.equal((await one("select current_setting('search_path')")).opaque, false);
});

test('a schema-qualified user operator is opaque', async () => {
  assert.equal((await one('select name operator(public.===) email from users')).opaque, true);
  assert.equal((await one('select name operator(pg_catalog.||) email from users')).opaque, false);
});

test('an unknown relation or column is ok:false', async () => {
  assert.match(await failure('select * from nope'), /unknown relation nope/);
  assert.match(await failure('select nope from users'), /unknown column nope/);
  assert.match(await failure('select x.id from users'), /unknown/);
});

test('unqualified names in several schemas: union of the candidates', async () => {
  assert.deepEqual(shape(await analyse('select payload from events')), [['payload', ['archive.events.payload', 'public.events.payload'], true, false]]);
  assert.deepEqual(shape(await analyse('select payload from archive.events')), [['payload', ['archive.events.payload'], true, false]]);
  assert.equal((await analyse('select * from events')).length, 2);
  // Candidates with different columns: * would guess the count.
  assert.match(await failure('select * from notes'), /not known/);
  assert.deepEqual(shape(await analyse('select extra from notes')), [['extra', ['public.notes.extra'], true, false]]);
  assert.deepEqual(shape(await analyse('select archive.notes.body from notes')), [['body', ['archive.notes.body', 'public.notes.body'], true, false]]);
});

// ---------------------------------------------------------------------------------------
// Data-modifying statements and others

test('RETURNING: target columns plus what is written into them', async () => {
  assert.deepEqual(shape(await analyse('delete from users returning email, id')), [
    ['email', [U('email')], true, false],
    ['id', [U('id')], true, false],
  ]);
  assert.deepEqual(shape(await analyse('update users set name = reverse(ssn) returning name, email')), [
    ['name', [U('name'), U('ssn')], false, false],
    ['email', [U('email')], true, false],
  ]);
  assert.deepEqual(shape(await analyse('update users u set name = o.card from orders o where o.user_id = u.id returning u.name, o.id')), [
    ['name', [O('card'), U('name')], true, false],
    ['id', [O('id')], true, false],
  ]);
  assert.deepEqual(shape(await analyse('insert into orders (card) select ssn from users returning card')), [['card', [O('card'), U('ssn')], true, false]]);
  assert.deepEqual(shape(await analyse("insert into users values (1, 'n', 'e', 's') returning *")).map((c) => c[1]), [[U('id')], [U('name')], [U('email')], [U('ssn')]]);
  assert.deepEqual(shape(await analyse('delete from orders using users u where u.id = user_id returning u.ssn')), [['ssn', [U('ssn')], true, false]]);
  assert.deepEqual(await analyse('delete from users'), []);
});

test('MERGE RETURNING sees both sides and every action', async () => {
  const c = await analyse(
    'merge into orders o using users u on o.user_id = u.id when matched then update set card = u.ssn when not matched then insert (id, card) values (u.id, upper(u.name)) returning merge_action(), o.card',
  );
  assert.deepEqual(shape(c), [
    ['merge_action', [], false, false],
    ['card', [O('card'), U('name'), U('ssn')], false, false],
  ]);
});

test('EXPLAIN, SHOW, DECLARE, SELECT INTO, CREATE TABLE AS and utilities', async () => {
  assert.deepEqual(shape(await analyse('explain analyze select ssn from users')), [['QUERY PLAN', [], false, false]]);
  // Without ANALYZE: a plan over user code may show what the planner folded (an IMMUTABLE user function's result).
  assert.deepEqual(shape(await analyse("explain select ssn from users where email = 'x'")), [['QUERY PLAN', [], false, false]]);
  assert.deepEqual(shape(await analyse('explain select f() from users')), [['QUERY PLAN', [], false, true]]);
  assert.deepEqual(shape(await analyse('explain delete from users where ssn = f()')), [['QUERY PLAN', [], false, true]]);
  assert.deepEqual(shape(await analyse('explain execute p')), [['QUERY PLAN', [], false, true]]);
  // A write's plan computes its target's defaults and rule actions, which the text does not show.
  assert.deepEqual(shape(await analyse('explain insert into users (id) values (1)')), [['QUERY PLAN', [], false, true]]);
  assert.deepEqual(shape(await analyse('explain with x as (delete from users returning id) select id from x')), [['QUERY PLAN', [], false, true]]);
  assert.deepEqual(shape(await analyse('show search_path')), [['search_path', [], false, false]]);
  assert.deepEqual(shape(await analyse('declare c cursor for select reverse(ssn) from users')), [['reverse', [U('ssn')], false, false]]);
  assert.deepEqual(await analyse('select ssn into t2 from users'), []);
  assert.deepEqual(await analyse('create table t3 as select ssn from users'), []);
  assert.deepEqual(await analyse('set search_path = public'), []);
  assert.deepEqual(shape(await analyse('copy (select ssn from users) to stdout')), [['ssn', [U('ssn')], true, false]]);
  assert.deepEqual(shape(await analyse('copy users (email) to stdout')), [['email', [U('email')], true, false]]);
});

test('EXECUTE, FETCH and CALL are ok:false', async () => {
  assert.match(await failure('execute p'), /EXECUTE/);
  assert.match(await failure('fetch 1 from c'), /FETCH/);
  assert.match(await failure('call p()'), /CALL/);
  assert.deepEqual(await analyse('move 1 from c'), []);
});

test('multi-statement text: one result each, catalog lookups deduplicated', async () => {
  const cat = fakeCatalog();
  const res = await statementProvenance('select email from users; select reverse(ssn) from users; execute p', cat);
  assert.equal(res.length, 3);
  assert.ok(res[0]!.ok && res[0]!.columns[0]!.direct);
  assert.ok(res[1]!.ok && !res[1]!.columns[0]!.direct);
  assert.equal(res[2]!.ok, false);
  assert.equal(cat.calls.filter((c) => c === 'r:.users').length, 1);
  assert.equal(cat.calls.filter((c) => c === 'f:.reverse').length, 1);
});

test('parse errors are ok:false; empty text has no statements', async () => {
  const res = await statementProvenance('select from where', fakeCatalog());
  assert.equal(res.length, 1);
  assert.ok(!res[0]!.ok && res[0]!.reason.startsWith('parse error'));
  assert.deepEqual(await statementProvenance('  ', fakeCatalog()), []);
});

test('outputProvenance takes one parse-tree statement', async () => {
  const { parseSync } = (await import('libpg-query')) as unknown as { parseSync(s: string): { stmts: { stmt: unknown }[] } };
  const r = await outputProvenance(parseSync('select ssn from users').stmts[0]!.stmt, fakeCatalog());
  assert.ok(r.ok);
  assert.deepEqual([...r.columns[0]!.sources], [U('ssn')]);
});

test('deep nesting is ok:false, never a thrown stack overflow', async () => {
  let sql = 'select ssn from users';
  for (let i = 0; i < 120; i++) sql = `select * from (${sql}) s${i}`;
  const res = await statementProvenance(sql, fakeCatalog());
  assert.equal(res.length, 1);
  assert.ok(!res[0]!.ok);
  const deepExpr = `select ${'upper('.repeat(2000)}email${')'.repeat(2000)} from users`;
  const r2 = await statementProvenance(deepExpr, fakeCatalog());
  // The parser takes this depth (the statement nesting above is what it refuses), and no exception escapes.
  const deep = r2[0]!;
  assert.ok(deep.ok, 'a 2,000-deep expression is analysed');
  assert.deepEqual([...deep.columns[0]!.sources], [U('email')]);
});

test('a catalog that fails makes the analysis fail closed', async () => {
  const broken: ProvenanceCatalog = {
    relations: () => Promise.reject(new Error('connection lost')),
    functions: () => Promise.resolve([]),
    castTargets: () => Promise.resolve([]),
  };
  const [r] = await statementProvenance('select email from users', broken);
  assert.ok(r && !r.ok && r.reason.includes('connection lost'));
});

// The result masker caches an analysis by the statement's shape (sql-shape.ts: numbers
// replaced), so `… [1]` and `… [2]` share one answer. That is sound only while no number
// decides which column an output comes from. Each case below puts a number where it could
// pick a source (a subscript, a JSON index, a positional ORDER/GROUP BY, LIMIT 0, a CASE on
// constants, a VALUES row); the analysis must answer the same for every number there.
test('no number decides provenance: each statement traces the same with its numbers changed (what the shape cache relies on)', async () => {
  const { sqlShape } = await import('../../src/broker/policy/sql-shape.js');
  const corpus: { sql: string; mustInclude: string }[] = [
    { sql: 'select (array[name, email])[1] as x from users', mustInclude: U('email') },
    { sql: 'select (array[name, email])[1:1] as x from users', mustInclude: U('email') },
    { sql: 'select (array[array[name], array[email]])[2][1] as x from users', mustInclude: U('email') },
    { sql: "select to_jsonb(array[name, email])->1 as x from users", mustInclude: U('email') },
    { sql: "select to_jsonb(array[name, email])->>0 as x from users", mustInclude: U('email') },
    { sql: "select split_part(name || ',' || email, ',', 1) as x from users", mustInclude: U('email') },
    { sql: 'select substr(email, 1, 0) as x from users', mustInclude: U('email') },
    { sql: 'select case when 1 = 2 then email else name end as x from users', mustInclude: U('email') },
    { sql: 'select coalesce(null, name, email) as x from users where 1 = 0', mustInclude: U('email') },
    { sql: 'select x from (select name as x from users union all select email from users limit 0) s', mustInclude: U('email') },
    { sql: 'select x from (select email as x from users offset 100000 limit 0) s', mustInclude: U('email') },
    { sql: 'select email as x from users order by 1 limit 1', mustInclude: U('email') },
    { sql: 'select max(email) as x from users group by 1 having count(*) > 5', mustInclude: U('email') },
    { sql: 'select (select email from users order by id limit 1 offset 3) as x', mustInclude: U('email') },
    { sql: 'select x from (values (1, (select email from users limit 1)), (2, null)) v(n, x) where n = 2', mustInclude: U('email') },
    { sql: 'select (row(name, email)).f2 as x from users', mustInclude: U('email') },
    { sql: 'select string_agg(email, 1::text) as x from users', mustInclude: U('email') },
    { sql: 'select (select name from users order by 2 limit 1) as x, (select email from users order by 1 limit 1) as y', mustInclude: U('email') },
    { sql: 'select g as x from generate_series(1, 3) g, users u where upper(substr(u.email, 1, 1)) = left(g::text, 1) limit 2', mustInclude: U('email') },
  ];
  const renumber = (sql: string, n: number): string => sql.replace(/(?<![\w$])\d+/g, String(n));
  for (const { sql, mustInclude } of corpus) {
    const base = await statementProvenance(sql, fakeCatalog());
    assert.equal(base.length, 1, sql);
    const b = base[0]!;
    assert.ok(b.ok, `${sql}: analysable`);
    assert.ok(b.columns.some((c) => c.sources.has(mustInclude) || c.conditions?.has(mustInclude)), `${sql}: ${mustInclude} flows to the output`);
    const variants = [sqlShape(sql) ?? sql, renumber(sql, 2), renumber(sql, 7)];
    for (const v of variants) {
      const [r] = await statementProvenance(v, fakeCatalog());
      const view = (p: Provenance): unknown => (p.ok ? p.columns.map((c, i) => [...shape(p.columns)[i]!, [...(c.conditions ?? [])].sort()]) : 'not analysable');
      assert.deepEqual(view(r!), view(b), `${sql}\n  vs ${v}`);
    }
  }
});

// ---------------------------------------------------------------------------------------
// Wave 6: names judged by what they refer to; what decides how many rows a level has

test('count, length and IS NULL of a name pass only when it is a plain table column', async () => {
  // Still exempt: plain columns, through subqueries, CTEs and whole rows of plain columns.
  for (const sql of [
    'select length(e) from (select email as e from users) d',
    'with c as (select email from users) select c.email is null from c',
    'select count(u) from users u',
  ]) {
    assert.deepEqual([...(await one(sql)).sources], [], sql);
  }
  // A derived column computed from a value is a computation (repeat('x', code), nullif(bit)).
  for (const sql of [
    "select length(k) from (select repeat('x', ascii(email)) k from users) d",
    "select octet_length(d.k) from (select repeat('x', ascii(email)) k from users) d",
    'select k is null from (select nullif(ascii(email) & 1, 0) k from users) d',
    'with d as (select nullif(ascii(email) & 1, 0) k from users) select k is not null from d',
    'select cardinality(k) from (select array_fill(0, array[ascii(email)]) k from users) d',
    'select num_nonnulls(k) from (select nullif(ascii(email) & 1, 0) k from users) d',
    'select count(k) from (select nullif(ascii(email) > 64, false) k from users) d',
    'select count(d) from (select ascii(email) k from users) d',
  ]) {
    assert.ok((await one(sql)).sources.has(U('email')), sql);
  }
});

test('a comparison of names links values when a name refers to a computed column', async () => {
  for (const sql of [
    'select g from users u, lateral (select ascii(u.email) k) d, generate_series(0, 255) g where d.k = g',
    'with c as (select ascii(email) k from users) select g from c, generate_series(0, 255) g where c.k = g',
    'select g from users u, generate_series(ascii(u.email), ascii(u.email)) k, generate_series(0, 255) g where k = g',
    'select t.g from (select ascii(email) as g from users) d join generate_series(0, 255) t(g) using (g)',
    'select t.g from (select ascii(email) as g from users) d natural join generate_series(0, 255) t(g)',
    'select d.g from (select g, ascii(email) = g as hit from users, generate_series(0, 255) g) d where d.hit',
    'select g from (select g, row_number() over (order by abs(g - ascii(email))) r from users, generate_series(0, 255) g) d where r = 1',
    'select d.g from (select g, email from users, generate_series(0, 255) g) d where ascii((d).email) = (d).g',
    'select g from generate_series(0, 255) g where exists (select g intersect select ascii(email) from users)',
  ]) {
    assert.ok((await conditionsOf(sql)).includes(U('email')), sql);
  }
  // Plain columns compared, and a filter on one computed column, still add nothing.
  assert.deepEqual(await conditionsOf('select d.id from (select id, upper(email) le from users) d where d.le = $1'), []);
  assert.deepEqual(await conditionsOf('select o.card from users u join orders o on o.user_id = u.id'), []);
});

test('what decides how many rows a level has conditions every output, count(*) included', async () => {
  for (const sql of [
    'select count(*) from users u, generate_series(1, ascii(u.email)) s',
    'select i from users u, generate_series(1, 3) i, generate_series(1, ascii(u.email)) s',
    'select i, generate_series(1, ascii(u.email)) from users u, generate_series(1, 3) i',
    'select count(*) from (select generate_series(1, ascii(u.email)) from users u) d',
    'select count(*) from generate_series(1, 3) i, lateral (select from users u, generate_series(1, 255) g where g <= ascii(u.email)) l',
    'select i from generate_series(1, 3) i intersect all select i from users u, generate_series(1, 3) i, generate_series(1, ascii(u.email)) s',
    'select count(*) from generate_series(1, 3) i, generate_series(0, 255) g, users u group by i, ascii(u.email) >= g',
  ]) {
    const conds = (await analyse(sql)).flatMap((x) => [...(x.conditions ?? [])]);
    assert.ok(conds.includes(U('email')), sql);
  }
  // Clean sizes and single-column groups stay clean.
  assert.deepEqual(await conditionsOf('select count(*) from generate_series(1, 3) i, generate_series(1, i) g'), []);
  assert.deepEqual((await analyse('select upper(email), count(*) from users group by upper(email)')).map((c) => [...(c.conditions ?? [])]), [[], []]);
});

test('a top-level SELECT reports what decides its row count (a zero-column one has nothing else)', async () => {
  const rowsOf = async (sql: string): Promise<string[]> => {
    const [r] = await statementProvenance(sql, fakeCatalog());
    assert.ok(r?.ok, sql);
    return [...(r.rows ?? [])].sort();
  };
  const zero = await statementProvenance('select from users u, generate_series(1, ascii(u.email))', fakeCatalog());
  assert.ok(zero[0]?.ok);
  assert.deepEqual(zero[0].columns, []);
  assert.deepEqual(await rowsOf('select from users u, generate_series(1, ascii(u.email))'), [U('email')]);
  assert.deepEqual(await rowsOf('select from users u, generate_series(0, 255) g where g < ascii(u.email)'), [U('email')]);
  assert.deepEqual(await rowsOf('select from users u where u.id = 1'), []);
  assert.deepEqual(await rowsOf('select from generate_series(1, 3) i, generate_series(1, i) g'), []);
});

// ---------------------------------------------------------------------------------------
// Wave 7: a query carried by a name to a later statement; EXPLAIN ANALYZE

test('DECLARE and PREPARE name their query and report what decides its row count; FETCH, MOVE and EXECUTE name the query they return', async () => {
  const [declare] = await statementProvenance('declare c cursor for select 1 from users u, generate_series(1, ascii(u.email))', fakeCatalog());
  assert.ok(declare?.ok);
  assert.deepEqual(declare.declares, { kind: 'cursor', name: 'c' });
  assert.deepEqual([...(declare.rows ?? [])], [U('email')]);
  const [prepare] = await statementProvenance('prepare q as select from users u, generate_series(0, 255) g where g < ascii(u.email)', fakeCatalog());
  assert.ok(prepare?.ok);
  assert.deepEqual(prepare.declares, { kind: 'prepared', name: 'q' });
  assert.deepEqual(prepare.columns, [], 'PREPARE itself returns no rows');
  assert.deepEqual([...(prepare.rows ?? [])], [U('email')]);
  const [clean] = await statementProvenance('declare c cursor for select name from users', fakeCatalog());
  assert.ok(clean?.ok);
  assert.deepEqual([...(clean.rows ?? [])], []);
  for (const [sql, uses] of [
    ['fetch all in c', { kind: 'cursor', name: 'c' }],
    ['move all in c', { kind: 'cursor', name: 'c' }],
    ['execute q', { kind: 'prepared', name: 'q' }],
  ] as const) {
    const [r] = await statementProvenance(sql, fakeCatalog());
    assert.deepEqual(r?.uses, uses, sql);
  }
});

test('EXPLAIN ANALYZE depends on what its statement reads and on what decides its row count; plain EXPLAIN does not', async () => {
  const plan = async (sql: string): Promise<string[]> => [...((await one(sql)).conditions ?? [])].sort();
  assert.deepEqual(await plan('explain analyze select from users u, generate_series(1, ascii(u.email))'), [U('email')]);
  assert.deepEqual(await plan('explain (analyze, format json) select lower(email) from users'), [U('email')]);
  assert.deepEqual(await plan('explain (analyze) select name from users'), [U('name')]);
  assert.deepEqual(await plan('explain select lower(email) from users'), []);
  assert.match(await failure('explain analyze execute q'), /EXECUTE/);
});

// ---------------------------------------------------------------------------------------
// Wave 15: what decides a view's rows decides its reader's; what decides the rows a write writes

test("a view's own row-deciding conditions decide its reader's rows, as a derived table's do", async () => {
  const [r] = await statementProvenance('select count(*) from v_sized', fakeCatalog());
  assert.ok(r?.ok);
  assert.deepEqual([...(r.rows ?? [])], [U('email')]);
  assert.deepEqual([...(r.columns[0]?.conditions ?? [])], [U('email')]);
  const [clean] = await statementProvenance('select count(*), max(id) from v_kept', fakeCatalog());
  assert.ok(clean?.ok);
  assert.deepEqual([...(clean.rows ?? [])], []);
  assert.deepEqual(clean.columns.map((c) => [...(c.conditions ?? [])]), [[], []]);
});

test('a write reports what decides how many rows it writes (INSERT … SELECT, UPDATE/DELETE WHERE, MERGE, CREATE TABLE AS, a writable CTE)', async () => {
  const writeRowsOf = async (sql: string): Promise<string[]> => {
    const [r] = await statementProvenance(sql, fakeCatalog());
    assert.ok(r?.ok, sql);
    return [...(r.writeRows ?? [])].sort();
  };
  for (const sql of [
    'insert into notes (id) select 1 from users u, generate_series(1, ascii(u.email)) s',
    'update notes set body = body where id <= (select ascii(email) from users limit 1)',
    'delete from notes where id <= (select ascii(email) from users limit 1)',
    'merge into notes n using (select ascii(email) as c from users) s on n.id <= s.c when matched then delete',
    'create table t as select 1 from users u, generate_series(1, ascii(u.email)) s',
    'select 1 as a into t from users u, generate_series(1, ascii(u.email)) s',
    'create materialized view m as select 1 from users u, generate_series(1, ascii(u.email)) s',
    'with w as (insert into notes (id) select 1 from users u, generate_series(1, ascii(u.email)) s returning id) select count(*) from w',
    'create rule r as on insert to notes do also insert into notes (id) select 1 from users u, generate_series(1, ascii(substr(u.email, new.id, 1))) s',
  ]) {
    assert.ok((await writeRowsOf(sql)).includes(U('email')), sql);
  }
  for (const sql of [
    'insert into notes (id) values (1), (2)',
    'insert into notes (id, body) select id, email from users',
    'update notes set body = body where id <= 100',
    'delete from notes where id > 250',
    'create table t as select id, name from users where id < 5',
    'create rule r as on insert to notes do also insert into notes (id, body) values (new.id, new.body)',
  ]) {
    assert.deepEqual(await writeRowsOf(sql), [], sql);
  }
});
