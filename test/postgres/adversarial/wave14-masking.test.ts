/**
 * Adversarial corpus, wave 14 — an untraced value linked to a clean column.
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
];

describe('adversarial corpus wave 14: untraced values linked to clean columns', () => {
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
      CREATE FUNCTION answer() RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 42 $$;`);
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
  });
});
