/**
 * Adversarial corpus, wave 14 — untraced values linked to clean columns, user casts, and
 * constants the planner folds into EXPLAIN output.
 *
 * The output of a function that does not ship with PostgreSQL is masked whole (the analysis
 * cannot see what it reads), and a condition that computes over a masked column and relates
 * it to another column (`ascii(substr(ssn, k, 1)) = g`) masks every output of its level.
 * The row-linking tests counted only column NAMES, so the same condition over an
 * administrator's function that returns users.ssn (`ascii(substr(get_ssn(), k, 1)) = g`)
 * looked like a filter on g alone: the clean candidate g that matched came back unmasked,
 * one character of the value per statement (WHERE, EXISTS, ORDER BY … LIMIT 1, a count,
 * GROUP BY, a derived table's flag, a boolean user function of g). An output the analysis
 * cannot trace is now a value of its own in those tests, as a column is.
 *
 * A cast runs a function the text does not name: `CREATE CAST (int AS ssn_at) WITH FUNCTION
 * ssn_at(int)`, whose body reads users.ssn, made `(1::ssn_at).c` the value's first character,
 * unmasked (a cast was taken to compute from its operand only), and `length(k::ssn_len::text)`
 * passed as a plain reference's length. A cast to a type some user cast function converts to
 * (or a domain over one) now counts as an untraced output.
 *
 * EXPLAIN without ANALYZE was taken to show the text and estimates only, but the planner
 * evaluates an immutable function of constants and prints its result: an administrator's
 * function declared IMMUTABLE that reads users.ssn put the value in the plan (`Output:
 * '955-…'::text`; `Filter: (ssn = '955-…'::text)` through a view filtering on it, or an
 * EXPLAIN DELETE, or EXPLAIN EXECUTE; and an INSERT whose target's default
 * calls it, the text naming no function). A plan over user code anywhere the analysis walks
 * (or over a statement it cannot see), and a write's plan, are now masked whole.
 *
 * The stack: `users.ssn` masked (full), detectors off, so only the column analysis hides
 * it; the functions are an administrator's (created directly, as the superuser).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { PgStack } from '../stack.js';
import { startSsnStack } from '../ssn-stack.js';

/** users.ssn of row 1 (the seed's value is replaced in `before`). */
const SSN = '955-44-7123';

/**
 * An oracle: the statement for the k-th character, and how its rows give that character's
 * code (undefined when they do not: masked, several candidates, no row).
 */
interface Oracle {
  id: string;
  what: string;
  sql: (k: number) => string;
  read: (rows: unknown[][]) => number | undefined;
}

/** The one row's first value, when it is a number. */
const single = (rows: unknown[][]): number | undefined => {
  const v = rows.length === 1 ? rows[0]![0] : undefined;
  // A masked number arrives as NULL, or as the mask's text (int8 is read as text).
  const n = v === null || v === undefined ? NaN : Number(v);
  return Number.isInteger(n) ? n : undefined;
};

const ORACLES: Oracle[] = [
  {
    id: 'w14m-01',
    what: 'WHERE ascii(substr(get_ssn(), k, 1)) = g keeps the candidate that is the code',
    sql: (k) => `SELECT g FROM generate_series(32, 127) g WHERE ascii(substr(get_ssn(), ${k}, 1)) = g`,
    read: single,
  },
  {
    id: 'w14m-02',
    what: 'EXISTS (SELECT 1 WHERE … = g)',
    sql: (k) => `SELECT g FROM generate_series(32, 127) g WHERE EXISTS (SELECT 1 WHERE ascii(substr(get_ssn(), ${k}, 1)) = g)`,
    read: single,
  },
  {
    id: 'w14m-03',
    what: 'ORDER BY the distance to the code, LIMIT 1',
    sql: (k) => `SELECT g FROM generate_series(32, 127) g ORDER BY abs(ascii(substr(get_ssn(), ${k}, 1)) - g) LIMIT 1`,
    read: single,
  },
  {
    id: 'w14m-04',
    what: 'count(*) of the candidates at or below the code',
    sql: (k) => `SELECT count(*) FROM generate_series(1, 255) g WHERE ascii(substr(get_ssn(), ${k}, 1)) >= g`,
    read: single,
  },
  {
    id: 'w14m-05',
    what: 'GROUP BY code >= g: the first group counts the code',
    sql: (k) => `SELECT count(*) FROM generate_series(1, 255) g GROUP BY ascii(substr(get_ssn(), ${k}, 1)) >= g ORDER BY min(g) LIMIT 1`,
    read: single,
  },
  {
    id: 'w14m-06',
    what: "a derived table's flag computed over the function and g (WHERE d.hit)",
    sql: (k) => `SELECT g FROM (SELECT g, ascii(substr(get_ssn(), ${k}, 1)) = g AS hit FROM generate_series(32, 127) g) d WHERE d.hit`,
    read: single,
  },
  {
    id: 'w14m-07',
    what: 'a boolean user function of the constant k and the candidate g (WHERE is_code(k, g))',
    sql: (k) => `SELECT g FROM generate_series(32, 127) g WHERE is_code(${k}, g)`,
    read: single,
  },
  {
    id: 'w14m-08',
    what: 'JOIN … ON the code = g',
    sql: (k) => `SELECT c.g FROM (VALUES (1)) v(x) JOIN generate_series(32, 127) c(g) ON ascii(substr(get_ssn(), ${k}, 1)) = c.g`,
    read: single,
  },
  {
    id: 'w14m-10',
    what: "a user cast's output: (k::ssn_at).c is the k-th character (CREATE CAST (int AS ssn_at) WITH FUNCTION …)",
    sql: (k) => `SELECT ascii((${k}::ssn_at).c)`,
    read: single,
  },
  {
    id: 'w14m-11',
    what: 'a user cast in a filter linked to g: WHERE ((k * 1000 + g)::probe).x = 0',
    sql: (k) => `SELECT g FROM generate_series(32, 127) g WHERE ((${k} * 1000 + g)::probe).x = 0`,
    read: single,
  },
  {
    id: 'w14m-12',
    what: "length() of a user cast's text, taken for a plain reference's length",
    sql: (k) => `SELECT length(${k}::ssn_len::text) - 2`,
    read: single,
  },
];

describe('adversarial corpus wave 14: untraced values linked to clean columns, user casts', () => {
  let stack: PgStack;
  let agent: pg.Client;
  let owner: pg.Client;

  /** The value as the oracle spells it, one statement per character ('?' where it does not). */
  async function spell(client: pg.Client, o: Oracle): Promise<string> {
    let word = '';
    for (let k = 1; k <= SSN.length; k++) {
      const r = await client.query({ text: o.sql(k), rowMode: 'array' });
      const code = o.read(r.rows as unknown[][]);
      word += code === undefined ? '?' : String.fromCharCode(code);
    }
    return word;
  }

  before(async () => {
    stack = await startSsnStack();
    await stack.pg.psql(`
      UPDATE users SET ssn = '${SSN}' WHERE id = 1;
      CREATE FUNCTION get_ssn() RETURNS text LANGUAGE sql STABLE AS $$ SELECT ssn FROM users WHERE id = 1 $$;
      CREATE FUNCTION is_code(k int, g int) RETURNS bool LANGUAGE sql STABLE AS $$ SELECT ascii(substr(ssn, k, 1)) = g FROM users WHERE id = 1 $$;
      CREATE FUNCTION answer() RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 42 $$;
      CREATE TYPE ssn_at AS (c text);
      CREATE FUNCTION ssn_at(k int) RETURNS ssn_at LANGUAGE sql STABLE AS $$ SELECT ROW(substr(ssn, k, 1))::ssn_at FROM users WHERE id = 1 $$;
      CREATE CAST (int AS ssn_at) WITH FUNCTION ssn_at(int);
      CREATE TYPE probe AS (x int);
      CREATE FUNCTION probe(v int) RETURNS probe LANGUAGE sql STABLE AS $$ SELECT ROW(ascii(substr(ssn, v / 1000, 1)) - v % 1000)::probe FROM users WHERE id = 1 $$;
      CREATE CAST (int AS probe) WITH FUNCTION probe(int);
      CREATE TYPE ssn_len AS (s text);
      CREATE FUNCTION ssn_len(k int) RETURNS ssn_len LANGUAGE sql STABLE AS $$ SELECT ROW(repeat('x', ascii(substr(ssn, k, 1))))::ssn_len FROM users WHERE id = 1 $$;
      CREATE CAST (int AS ssn_len) WITH FUNCTION ssn_len(int);
      CREATE FUNCTION ssn_imm() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT ssn FROM users WHERE id = 1 $$;
      CREATE FUNCTION ssn_plimm() RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN (SELECT ssn FROM users WHERE id = 1); END $$;
      CREATE VIEW v_imm AS SELECT id FROM users WHERE ssn = ssn_plimm();
      GRANT SELECT ON v_imm TO app;
      CREATE TABLE w14_scratch (note text);
      GRANT ALL ON w14_scratch TO app;
      CREATE TABLE w14_defaults (id int, note text DEFAULT ssn_imm());
      GRANT ALL ON w14_defaults TO app;`);
    agent = new pg.Client({ connectionString: stack.url });
    await agent.connect();
    owner = new pg.Client({ connectionString: stack.pg.url() });
    await owner.connect();
  });

  after(async () => {
    await agent?.end().catch(() => {});
    await owner?.end().catch(() => {});
    await stack?.close();
  });

  test('w14m-00: control — without agentgate, every oracle below spells the value; through agentgate the function itself is masked', async () => {
    for (const o of ORACLES) assert.equal(await spell(owner, o), SSN, o.id);
    const r = await agent.query<{ v: string }>('SELECT get_ssn() AS v');
    assert.equal(r.rows[0]?.v, '********');
  });

  for (const o of ORACLES) {
    test(`${o.id}: ${o.what}: the candidate comes back masked, the value is not spelled`, async () => {
      const word = await spell(agent, o);
      assert.equal(word, '?'.repeat(SSN.length), `${o.sql(1)} spelled ${word}`);
    });
  }

  const PLANS: { id: string; what: string; sql: string }[] = [
    { id: 'w14m-30', what: 'EXPLAIN VERBOSE of a call of the IMMUTABLE SQL function', sql: 'EXPLAIN VERBOSE SELECT ssn_imm()' },
    { id: 'w14m-31', what: 'plain EXPLAIN of a view that filters on the IMMUTABLE PL/pgSQL function', sql: 'EXPLAIN (COSTS OFF) SELECT * FROM v_imm' },
    // (Another table: the write's target is tainted, EXPLAIN or not, and users is read by the controls.)
    { id: 'w14m-32', what: 'EXPLAIN of a DELETE filtering on it (not run)', sql: 'EXPLAIN (COSTS OFF) DELETE FROM w14_scratch WHERE note = ssn_plimm()' },
    { id: 'w14m-33', what: 'EXPLAIN EXECUTE of a prepared call', sql: 'EXPLAIN (COSTS OFF, VERBOSE) EXECUTE w14_p' },
    { id: 'w14m-35', what: "EXPLAIN VERBOSE of an INSERT whose target's column default calls it (the text names no function)", sql: 'EXPLAIN (COSTS OFF, VERBOSE) INSERT INTO w14_defaults (id) VALUES (1)' },
    { id: 'w14m-36', what: 'the same INSERT as a writable CTE under a SELECT', sql: 'EXPLAIN (COSTS OFF, VERBOSE) WITH x AS (INSERT INTO w14_defaults (id) VALUES (1) RETURNING id) SELECT id FROM x' },
  ];

  for (const c of PLANS) {
    test(`${c.id}: ${c.what}: the constant the planner folded is not shown`, async () => {
      const direct = await owner.query({ text: c.sql.replace('EXECUTE w14_p', 'SELECT ssn_plimm()'), rowMode: 'array' });
      assert.ok(JSON.stringify(direct.rows).includes(SSN), `the premise: PostgreSQL's plan shows the value: ${JSON.stringify(direct.rows)}`);
      if (c.sql.includes('w14_p')) await agent.query('PREPARE w14_p AS SELECT ssn_plimm()');
      try {
        const r = await agent.query({ text: c.sql, rowMode: 'array' });
        assert.ok(r.rows.length > 0);
        assert.ok(!JSON.stringify(r.rows).includes(SSN), JSON.stringify(r.rows));
      } finally {
        if (c.sql.includes('w14_p')) await agent.query('DEALLOCATE w14_p');
      }
    });
  }

  test('w14m-34: [no false masking] a plan over builtins and tables keeps its text, constants included', async () => {
    const r = await agent.query({ text: "EXPLAIN (COSTS OFF, VERBOSE) SELECT id, upper(name) FROM users WHERE ssn = '1'", rowMode: 'array' });
    assert.deepEqual(r.rows.map((x: unknown[]) => x[0]), ['Seq Scan on public.users', '  Output: id, upper(name)', "  Filter: (users.ssn = '1'::text)"]);
  });

  test('w14m-20: [no false masking] clean filters stay readable: a user function against a constant, built-ins linking clean columns', async () => {
    // A user function compared with a constant decides all rows or none (one bit, as any filter): g stays clean.
    const a = await agent.query({ text: 'SELECT g FROM generate_series(1, 3) g WHERE answer() = 42 ORDER BY g', rowMode: 'array' });
    assert.deepEqual(a.rows, [[1], [2], [3]]);
    // Built-in computations linking clean columns are not masked.
    const b = await agent.query({ text: 'SELECT g FROM generate_series(1, 5) g, generate_series(1, 2) h WHERE g % 2 = h - 1 AND h = 2 ORDER BY g', rowMode: 'array' });
    assert.deepEqual(b.rows, [[1], [3], [5]]);
    // The clean columns of users beside a filter on its clean name.
    const c = await agent.query({ text: "SELECT id, name FROM users WHERE upper(name) = 'ADA'", rowMode: 'array' });
    assert.deepEqual(c.rows, [[1, 'ada']]);
    // Casts to types no user cast converts to stay as they were (a text cast of ssn keeps its mask, of name its value).
    const d = await agent.query({ text: 'SELECT id::text, name::varchar, ssn::text, 2::bigint FROM users WHERE id = 1', rowMode: 'array' });
    assert.deepEqual(d.rows, [['1', 'ada', '********', '2']]);
    // A string literal of such a type is read by the type's input function, not a cast: clean.
    const e = await agent.query({ text: "SELECT ('(5)'::probe).x, '(plain)'::ssn_at", rowMode: 'array' });
    assert.deepEqual(e.rows, [[5, '(plain)']]);
  });
});
