/**
 * Against a real PostgreSQL 15: function and operator lookups in the catalog, and the
 * side-effect judgement on real pg_proc rows.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { createFunctionCatalog, sqlLiteral, type CatalogRun } from '../../src/broker/postgres/function-catalog.js';
import { judgeFunctionEffects, type FunctionInfo } from '../../src/broker/policy/function-effects.js';

let pg: PgServer;
let queries = 0;

/** One query through psql; rows come back as JSON so no separator can collide with a value. */
const run: CatalogRun = async (sql) => {
  queries++;
  const out = await pg.psql(`SELECT coalesce(json_agg(r), '[]') FROM (${sql}) r`);
  const rows = JSON.parse(out) as Record<string, unknown>[];
  return rows.map((r) => Object.values(r).map((v) => (v === null ? null : String(v))));
};

before(async () => {
  pg = await startPostgres();
  await pg.psql(`
    CREATE TABLE public.t (id int);
    CREATE FUNCTION public.f_del() RETURNS int VOLATILE LANGUAGE sql AS 'DELETE FROM public.t RETURNING 1';
    CREATE FUNCTION public.f_imm(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1 + 1';
    CREATE FUNCTION public.f_eq(int, int) RETURNS bool VOLATILE LANGUAGE sql AS 'SELECT $1 = $2';
    CREATE OPERATOR public.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = public.f_eq);
    CREATE FUNCTION public.f_acc(int, int) RETURNS int VOLATILE LANGUAGE sql AS 'SELECT coalesce($1, 0) + $2';
    CREATE AGGREGATE public.agg_v(int) (SFUNC = public.f_acc, STYPE = int);
    CREATE PROCEDURE public.p_del() LANGUAGE sql AS 'DELETE FROM public.t';
    CREATE SCHEMA other;
    CREATE FUNCTION other.lower(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1';
  `);
});

after(async () => {
  await pg?.stop();
});

function judge(map: Map<string, FunctionInfo[]>) {
  return judgeFunctionEffects([...map].map(([name, infos]) => ({ name, infos })));
}

test('byNames: every candidate in every schema; qualified names in their schema; unknown is empty', async () => {
  const cat = createFunctionCatalog(run);
  const m = await cat.byNames(['lower', 'public.f_del', 'f_imm', 'nextval', 'pg_catalog.nextval', 'random', 'pg_stat_reset', 'query_to_xml', 'no_such_fn', 'public.lower', 'agg_v', 'p_del', 'F_DEL']);
  const lower = m.get('lower')!;
  assert.ok(lower.some((f) => f.schema === 'pg_catalog' && f.volatility === 'i'));
  assert.ok(lower.some((f) => f.schema === 'other'), 'a look-alike in another schema is a candidate too');
  assert.deepEqual(m.get('public.f_del')!.map((f) => [f.schema, f.name, f.volatility, f.kind, f.nargs]), [['public', 'f_del', 'v', 'f', 0]]);
  assert.deepEqual(m.get('f_imm')!.map((f) => [f.schema, f.volatility, f.nargs]), [['public', 'i', 1]]);
  assert.deepEqual(m.get('pg_catalog.nextval')!.map((f) => f.schema), ['pg_catalog']);
  assert.deepEqual(m.get('no_such_fn'), []);
  assert.deepEqual(m.get('public.lower'), []);
  assert.equal(m.get('agg_v')![0]!.volatility, 'v', 'an aggregate takes the volatility of its transition function');
  assert.equal(m.get('p_del')![0]!.kind, 'p');
  assert.equal(m.get('F_DEL')![0]!.name, 'f_del', 'case-insensitive, filed under the caller spelling');

  const j = judge(m);
  assert.deepEqual(j.unknown.sort(), ['no_such_fn', 'public.lower']);
  assert.deepEqual(j.effectful.sort(), ['F_DEL', 'agg_v', 'nextval', 'p_del', 'pg_catalog.nextval', 'pg_stat_reset', 'public.f_del', 'query_to_xml']);
  for (const harmless of ['lower', 'f_imm', 'random']) assert.ok(!j.effectful.includes(harmless), harmless);
});

test('byOperators: operators resolve to their implementing functions', async () => {
  const cat = createFunctionCatalog(run);
  const m = await cat.byOperators(['=', '||', '===', 'public.===', 'pg_catalog.===', '@@@@']);
  assert.ok(m.get('=')!.length > 10);
  assert.ok(m.get('||')!.some((f) => f.name === 'textcat'));
  assert.deepEqual(m.get('===')!.map((f) => `${f.schema}.${f.name}`), ['public.f_eq']);
  assert.deepEqual(m.get('public.===')!.map((f) => f.name), ['f_eq']);
  assert.deepEqual(m.get('pg_catalog.==='), []);
  assert.deepEqual(m.get('@@@@'), []);
  const j = judge(m);
  assert.deepEqual(j.effectful.sort(), ['===', 'public.===']);
  assert.deepEqual(j.unknown.sort(), ['@@@@', 'pg_catalog.===']);
});

test('byOid, and the cache: answers reused until invalidate() or the TTL', async () => {
  let now = 0;
  const cat = createFunctionCatalog(run, { ttlMs: 1000, now: () => now });
  const oid = Number((await pg.psql(`SELECT 'public.f_del'::regproc::oid`)).trim());
  const f = await cat.byOid(oid);
  assert.deepEqual(f && [f.oid, f.schema, f.name, f.volatility, f.kind], [oid, 'public', 'f_del', 'v', 'f']);
  assert.equal(await cat.byOid(4_000_000_000), undefined);
  assert.equal(await cat.byOid(-1), undefined);

  const before = queries;
  await cat.byNames(['f_new']);
  assert.deepEqual((await cat.byNames(['f_new'])).get('f_new'), []);
  assert.equal(queries, before + 1, 'the second lookup came from the cache');
  await pg.psql('CREATE FUNCTION public.f_new() RETURNS int VOLATILE LANGUAGE sql AS $$SELECT 1$$');
  assert.deepEqual((await cat.byNames(['f_new'])).get('f_new'), [], 'still cached');
  cat.invalidate();
  assert.equal((await cat.byNames(['f_new'])).get('f_new')!.length, 1);
  await pg.psql('DROP FUNCTION public.f_new()');
  now = 1500;
  assert.deepEqual((await cat.byNames(['f_new'])).get('f_new'), [], 'expired after the TTL');
});

test('names with quotes and backslashes are sent as literals, not SQL', async () => {
  assert.equal(sqlLiteral("a'b\\c"), "E'a''b\\\\c'");
  const cat = createFunctionCatalog(run);
  const evil = ["x'); drop table public.t; --", 'x\\', "pg_catalog.lower' or '1'='1"];
  const m = await cat.byNames(evil);
  for (const e of evil) assert.deepEqual(m.get(e), [], e);
  assert.equal((await pg.psql("SELECT count(*) FROM pg_class WHERE relname = 't'")).trim(), '1');
});

test('relationSchemas: every schema holding a relation of that name (catalog included), none for unknown names; cached', async () => {
  await pg.psql(`
    CREATE SCHEMA hr;
    CREATE TABLE hr.t (id int);
    CREATE VIEW hr.only_hr AS SELECT 1 AS one;
  `);
  const cat = createFunctionCatalog(run);
  const before = queries;
  const m = await cat.relationSchemas(['t', 'only_hr', 'pg_class', 'no_such_rel', 'T']);
  assert.deepEqual(m.get('t'), ['hr', 'public']);
  assert.deepEqual(m.get('only_hr'), ['hr']);
  assert.deepEqual(m.get('pg_class'), ['pg_catalog']);
  assert.deepEqual(m.get('no_such_rel'), []);
  assert.deepEqual(m.get('T'), [], 'names are as the parser folded them: "T" is not t');
  assert.equal(queries - before, 1, 'one query for the batch');
  assert.deepEqual((await cat.relationSchemas(['t'])).get('t'), ['hr', 'public']);
  assert.equal(queries - before, 1, 'answered from the cache');
  cat.invalidate();
  await cat.relationSchemas(['t']);
  assert.equal(queries - before, 2, 'invalidate() drops the cache');
});

test('types: names in every schema, closures through arrays, domains, composites and ranges, and the user code each type runs', async () => {
  await pg.psql(`
    CREATE FUNCTION public.f_chk(int) RETURNS bool VOLATILE LANGUAGE plpgsql AS 'BEGIN RETURN true; END';
    CREATE DOMAIN public.d_chk AS int CHECK (public.f_chk(VALUE));
    CREATE DOMAIN public.d_op AS int CHECK (VALUE OPERATOR(public.===) 1);
    CREATE TYPE public.c_chk AS (x public.d_chk, y text);
    CREATE TYPE public.r_chk AS RANGE (subtype = public.d_chk);
    CREATE FUNCTION public.f_cast(public.c_chk) RETURNS int VOLATILE LANGUAGE plpgsql AS 'BEGIN RETURN 1; END';
    CREATE CAST (public.c_chk AS int) WITH FUNCTION public.f_cast(public.c_chk);
    CREATE TYPE public.my;
    CREATE FUNCTION public.my_in(cstring) RETURNS public.my LANGUAGE internal IMMUTABLE STRICT AS 'textin';
    CREATE FUNCTION public.my_out(public.my) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'textout';
    CREATE FUNCTION public.my_reset(public.my) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'pg_stat_reset';
    CREATE TYPE public.my (INPUT = public.my_in, OUTPUT = public.my_out, LIKE = text);
    CREATE FUNCTION public.my_cmp(public.my, public.my) RETURNS int VOLATILE LANGUAGE plpgsql AS 'BEGIN RETURN 0; END';
    CREATE OPERATOR CLASS public.my_ops DEFAULT FOR TYPE public.my USING btree AS FUNCTION 1 public.my_cmp(public.my, public.my);
    CREATE SCHEMA other_types;
    CREATE DOMAIN other_types.d_chk AS text;
  `);
  const cat = createFunctionCatalog(run);
  const names = await cat.typesByName(['d_chk', 'public.d_chk', 'c_chk', 'r_chk', 'd_op', 'my', 'pg_catalog.int4', 'no_such_type']);
  assert.equal(names.get('d_chk')!.length, 2, 'every schema');
  assert.equal(names.get('public.d_chk')!.length, 1);
  assert.deepEqual(names.get('pg_catalog.int4'), [23]);
  assert.deepEqual(names.get('no_such_type'), []);
  const [dChk] = names.get('public.d_chk')!;
  const [cChk] = names.get('c_chk')!;
  const [rChk] = names.get('r_chk')!;
  const [dOp] = names.get('d_op')!;
  const [my] = names.get('my')!;
  const closures = await cat.typeClosure([cChk!, rChk!, 23]);
  assert.ok(closures.get(cChk!)!.includes(dChk!) && closures.get(cChk!)!.includes(23) && closures.get(cChk!)!.includes(25), 'a composite brings its members and their bases');
  assert.ok(closures.get(rChk!)!.includes(dChk!), 'a range brings its subtype');
  assert.deepEqual(closures.get(23), [23]);
  const facts = await cat.typeFacts([dChk!, dOp!, cChk!, my!, 23]);
  assert.deepEqual(facts.get(dChk!)!.functions.map((f) => f.name), ['f_chk'], 'a function the CHECK calls');
  assert.deepEqual(facts.get(dOp!)!.functions.map((f) => f.name), ['f_eq'], 'the function behind an operator the CHECK uses');
  assert.deepEqual(
    facts.get(cChk!)!.casts.map((c) => [c.source, c.target, c.context, c.fn.name]),
    [[cChk, 23, 'e', 'f_cast']],
  );
  assert.ok(facts.get(23)!.casts.some((c) => c.fn.name === 'f_cast'), 'the cast is a fact of its target too');
  const myFns = facts.get(my!)!.functions;
  assert.deepEqual(myFns.map((f) => f.name).sort(), ['my_cmp', 'my_in', 'my_out'], 'input, output and the default operator class');
  assert.equal(myFns.find((f) => f.name === 'my_in')!.wraps, 'i', 'a LANGUAGE internal wrapper names the built-in it runs');
  const reset = (await cat.byNames(['my_reset'])).get('my_reset')![0]!;
  assert.equal(reset.wraps, 'v', 'pg_stat_reset is volatile, whatever the wrapper declares');
  assert.deepEqual(reset.wrapsNames, ['pg_stat_reset'], 'and the wrapper is named for the built-in it runs');
  assert.equal((await cat.byNames(['f_cast'])).get('f_cast')![0]!.types!.includes(cChk!), true, 'argument types are reported');
});

test('relationFacts: row type, column types and every descendant; statisticsRelations: what pg_stats shows', async () => {
  await pg.psql(`
    CREATE TABLE public.p (id int, band text);
    CREATE SCHEMA sub;
    CREATE TABLE sub.c () INHERITS (public.p);
    CREATE TABLE sub.gc () INHERITS (sub.c);
    CREATE TABLE public.parted (id int) PARTITION BY LIST (id);
    CREATE TABLE sub.part1 PARTITION OF public.parted FOR VALUES IN (1);
    INSERT INTO sub.gc VALUES (1, 'x');
    ANALYZE sub.gc;
  `);
  const cat = createFunctionCatalog(run);
  const f = await cat.relationFacts(['public.p', 'public.parted', 'sub.gc', 'public.nope']);
  assert.deepEqual(f.get('public.p')!.descendants.sort(), ['sub.c', 'sub.gc']);
  assert.deepEqual([...f.get('public.p')!.columns], [['id', 23], ['band', 25]], 'in column order');
  assert.ok(f.get('public.p')!.rowType > 0);
  assert.deepEqual(f.get('public.parted')!.descendants, ['sub.part1']);
  assert.deepEqual(f.get('sub.gc')!.descendants, []);
  assert.equal(f.get('public.nope'), undefined);
  const stats = await cat.statisticsRelations();
  assert.ok(stats.includes('sub.gc'), 'an analysed table');
  assert.ok(!stats.includes('public.p'), 'one never analysed shows nothing');
});

test('relationFacts.code: the user code planning or reading a relation runs unnamed; negators and commutators of operators', async () => {
  await pg.psql(`
    CREATE FUNCTION public.rc_imm(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN $1; END $$;
    CREATE FUNCTION public.rc_chk(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN $1; END $$;
    CREATE FUNCTION public.rc_stx(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN $1; END $$;
    CREATE FUNCTION public.rc_cmp(int, int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN btint4cmp($1, $2); END $$;
    CREATE OPERATOR CLASS public.rc_ops FOR TYPE int4 USING btree AS
      OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >, FUNCTION 1 public.rc_cmp(int4, int4);
    CREATE TABLE public.rc_t (a int, b int CHECK (b < public.rc_chk(10)));
    CREATE INDEX ON public.rc_t ((public.rc_imm(a)));
    CREATE INDEX ON public.rc_t (b rc_ops);
    CREATE STATISTICS public.rc_s ON (public.rc_stx(a)), b FROM public.rc_t;
    CREATE TABLE public.rc_part (v int) PARTITION BY RANGE (v public.rc_ops);
    CREATE TABLE public.rc_plain (v int PRIMARY KEY, w text CHECK (w <> ''));
    CREATE INDEX ON public.rc_plain (lower(w));
    CREATE FUNCTION public.rc_ne(int, int) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN $1 <> $2; END $$;
    CREATE OPERATOR public.=~~= (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq, NEGATOR = !~~=);
    CREATE OPERATOR public.!~~= (LEFTARG = int, RIGHTARG = int, FUNCTION = public.rc_ne, NEGATOR = =~~=);
  `);
  const cat = createFunctionCatalog(run);
  const f = await cat.relationFacts(['public.rc_t', 'public.rc_part', 'public.rc_plain']);
  const names = (rel: string): string[] => [...new Set(f.get(rel)!.code.map((x) => x.name))].sort();
  assert.deepEqual(names('public.rc_t'), ['rc_chk', 'rc_cmp', 'rc_imm', 'rc_stx']);
  assert.deepEqual(names('public.rc_part'), ['rc_cmp']);
  assert.deepEqual(names('public.rc_plain'), [], 'built-in code is not listed');
  const ops = await cat.byOperators(['=~~=']);
  assert.deepEqual(ops.get('=~~=')!.map((x) => x.name).sort(), ['int4eq', 'rc_ne'], 'the negator runs when the planner rewrites NOT');
});

test('relationWriteFacts (asked for writes only): runCode/alsoWrites/referencedBy: triggers (disabled too) and WHEN, volatile defaults, cascading and plain foreign keys, a view’s base; a user operator’s family support', async () => {
  await pg.psql(`
    CREATE FUNCTION public.rw_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
    CREATE FUNCTION public.rw_when(int) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$ BEGIN RETURN true; END $$;
    CREATE FUNCTION public.rw_def() RETURNS int LANGUAGE plpgsql VOLATILE AS $$ BEGIN RETURN 1; END $$;
    CREATE TABLE public.rw_t (id int PRIMARY KEY, d int DEFAULT public.rw_def());
    CREATE TRIGGER rw_tg BEFORE UPDATE ON public.rw_t FOR EACH ROW WHEN (public.rw_when(NEW.id)) EXECUTE FUNCTION suppress_redundant_updates_trigger();
    CREATE TRIGGER rw_tg2 AFTER INSERT ON public.rw_t FOR EACH ROW EXECUTE FUNCTION public.rw_trg();
    ALTER TABLE public.rw_t DISABLE TRIGGER rw_tg2;
    CREATE TABLE public.rw_cascade (id int REFERENCES public.rw_t ON DELETE CASCADE);
    CREATE TABLE public.rw_plain (id int REFERENCES public.rw_t);
    CREATE VIEW public.rw_v AS SELECT id FROM public.rw_t;
    CREATE FUNCTION public.rw_lt(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT $1 < $2';
    CREATE FUNCTION public.rw_cmp(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT btint4cmp($1, $2)';
    CREATE FUNCTION public.rw_in_range(int, int, int, bool, bool) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN true; END $$;
    CREATE OPERATOR public.<#< (LEFTARG = int, RIGHTARG = int, FUNCTION = public.rw_lt);
    CREATE OPERATOR CLASS public.rw_ops FOR TYPE int USING btree AS
      OPERATOR 1 <#<, OPERATOR 3 =, FUNCTION 1 public.rw_cmp(int, int), FUNCTION 3 public.rw_in_range(int, int, int, bool, bool);
  `);
  const asked: string[] = [];
  const cat = createFunctionCatalog((sql) => (asked.push(sql), run(sql)));
  // Reading (and the masker's column scan) asks only for the read facts: two queries, none about writes.
  await cat.relationFacts(['public.rw_t', 'public.rw_v']);
  assert.equal(asked.length, 2);
  assert.ok(!asked.some((q) => /pg_trigger|pg_attrdef|pg_rewrite|pg_constraint c ON c.confrelid/.test(q)), 'no write-facts query for a read');
  const f = await cat.relationWriteFacts(['public.rw_t', 'public.rw_v']);
  const t = f.get('public.rw_t')!;
  assert.deepEqual([...new Set((t.runCode ?? []).map((x) => x.name))].sort(), ['rw_def', 'rw_trg', 'rw_when']);
  assert.deepEqual(t.writeCode ?? [], [], 'a volatile PL/pgSQL default is not folded while planning');
  assert.deepEqual(t.alsoWrites, ['public.rw_cascade']);
  assert.deepEqual(t.referencedBy, ['public.rw_plain']);
  assert.deepEqual(f.get('public.rw_v')!.alsoWrites, ['public.rw_t']);
  const ops = await cat.byOperators(['<#<', '=']);
  assert.deepEqual(ops.get('<#<')!.map((x) => x.name).sort(), ['rw_cmp', 'rw_in_range', 'rw_lt']);
  assert.ok(!ops.get('=')!.some((x) => x.name.startsWith('rw_')), 'a built-in operator sorts with its built-in family');
});

test('eventTriggerFunctions: the function of every event trigger, whatever its event, tags or enabled state; cached until invalidate()', async () => {
  await pg.psql(`
    CREATE FUNCTION public.ev_a() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
    CREATE FUNCTION public.ev_b() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
    CREATE FUNCTION public.ev_c() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
  `);
  // A clock that stands still: only invalidate() drops the cached answer.
  const cat = createFunctionCatalog(run, { now: () => 0 });
  assert.deepEqual(await cat.eventTriggerFunctions(), [], 'none yet');
  await pg.psql(`
    CREATE EVENT TRIGGER ev_start ON ddl_command_start WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION public.ev_a();
    CREATE EVENT TRIGGER ev_drop ON sql_drop EXECUTE FUNCTION public.ev_b();
    ALTER EVENT TRIGGER ev_drop DISABLE;
    CREATE EVENT TRIGGER ev_rewrite ON table_rewrite EXECUTE FUNCTION public.ev_c();
    ALTER EVENT TRIGGER ev_rewrite ENABLE REPLICA;
    CREATE EVENT TRIGGER ev_end ON ddl_command_end EXECUTE FUNCTION public.ev_a();
    ALTER EVENT TRIGGER ev_end ENABLE ALWAYS;
  `);
  try {
    assert.deepEqual(await cat.eventTriggerFunctions(), [], 'the cached answer until invalidate()');
    cat.invalidate();
    const fns = await cat.eventTriggerFunctions();
    assert.deepEqual(fns.map((f) => `${f.schema}.${f.name}`).sort(), ['public.ev_a', 'public.ev_b', 'public.ev_c'], 'each function once, disabled and replica triggers too');
    assert.ok(fns.every((f) => f.volatility === 'v' && f.language === 'plpgsql'));
  } finally {
    await pg.psql('DROP EVENT TRIGGER ev_start; DROP EVENT TRIGGER ev_drop; DROP EVENT TRIGGER ev_rewrite; DROP EVENT TRIGGER ev_end;');
  }
});
