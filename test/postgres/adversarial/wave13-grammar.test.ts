/**
 * Adversarial corpus, wave 13 (grammar) — the rest of the "newer grammar than the server"
 * family that wave 12 opened (SQL/JSON syntax, grammar-qualified names).
 *
 * agentgate parses with PostgreSQL 18's grammar; the stack's server is PostgreSQL 15. Each
 * lead below was checked against the real server first, to tell the constructs PostgreSQL 15
 * ACCEPTS with another meaning (danger) from the ones it rejects (the server errors):
 *
 * - SYSTEM_USER (16). The new grammar reads a bare `system_user` as the SQL-syntax call
 *   pg_catalog.system_user(); PostgreSQL 15 reads it as a column, or as the whole row of a
 *   relation aliased "system_user". So `SELECT system_user FROM (SELECT ssn AS system_user
 *   FROM users) s` returns users.ssn on PostgreSQL 15, while a masker that trusted the tree
 *   would see a session value. The gate resolves every function it judges in the server's
 *   catalog, and PostgreSQL 15 has no pg_catalog.system_user: the statement is refused. A
 *   view's stored text is safe too: PostgreSQL 15 deparses the column qualified
 *   (`s.system_user`, a column to either grammar), and a whole-row alias `system_user` does
 *   not parse with the new grammar (a reserved word), so the view is unanalysable: refused.
 * - Numeric literal forms new in 16 (0x1F, 0o17, 0b101, 1_000) and trailing junk (123abc,
 *   0.5x): PostgreSQL 15 already rejects trailing junk after a number (42601), so none of
 *   them can be read as `0 AS x1F` or `1 AS _000`.
 * - ANY_VALUE (16) is an ordinary function, not syntax: both grammars read the same call,
 *   and PostgreSQL 15 has no such built-in (refused as an unknown function).
 * - Syntax PostgreSQL 15 rejects: IS JSON, AT LOCAL, EXPLAIN (MEMORY | SERIALIZE), COPY …
 *   (ON_ERROR …), GRANT MAINTAIN, MERGE … RETURNING, RETURNING WITH (OLD AS …), GENERATED …
 *   VIRTUAL, WITHOUT OVERLAPS, NOT ENFORCED: the server's syntax or option error ends them.
 *
 * None of these reached a value before this corpus was written (no case failed without a
 * change in src/): the corpus pins the behaviour so that a parser upgrade or a loosened
 * unknown-function rule cannot silently open them. `system_user` written bare is therefore a
 * false denial against a pre-16 server (qualified `s.system_user` works, see the controls).
 *
 * The stack: `users.ssn` masked (full), detectors off, so only the column analysis hides it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { PgStack } from '../stack.js';
import { startSsnStack } from '../ssn-stack.js';
import { REFUSAL_CODES } from './harness.js';

const SSN = '955-44-7123';
const SYNTAX_ERROR = '42601';
/** PostgreSQL 15's answers to syntax it lacks: a syntax error, or an unrecognized option/privilege. */
const SERVER_REJECTIONS: readonly string[] = [SYNTAX_ERROR, '22023'];

interface Outcome {
  rows?: unknown[][];
  code?: string;
  message?: string;
}

async function run(client: pg.Client, sql: string): Promise<Outcome> {
  try {
    const r = await client.query({ text: sql, rowMode: 'array' });
    return { rows: r.rows as unknown[][] };
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return { code: err.code, message: err.message };
  }
}

/** Bare `system_user` is a column (or a whole row) to PostgreSQL 15: each reads users.ssn there. */
const SYSTEM_USER_READS: { id: string; what: string; sql: string }[] = [
  { id: 'w13g-01', what: 'a derived column named system_user', sql: 'SELECT system_user FROM (SELECT ssn AS system_user FROM users) s' },
  { id: 'w13g-02', what: 'the whole row of users aliased "system_user"', sql: 'SELECT system_user FROM users "system_user"' },
  { id: 'w13g-03', what: 'a field of that whole row', sql: 'SELECT (system_user).ssn FROM users "system_user"' },
  { id: 'w13g-04', what: 'a view column named system_user, read bare', sql: 'SELECT system_user FROM w13_v_su' },
  { id: 'w13g-05', what: 'the column in a filter deciding a clean output', sql: "SELECT name FROM (SELECT name, ssn AS system_user FROM users) s WHERE substr(system_user, 1, 1) = '9'" },
  { id: 'w13g-06', what: 'the column cast and concatenated', sql: "SELECT system_user::text || '' FROM (SELECT ssn AS system_user FROM users) s" },
  { id: 'w13g-07', what: 'a view whose stored text holds the whole-row alias system_user', sql: 'SELECT r FROM w13_v_row' },
];

/** Forms PostgreSQL 15 rejects as trailing junk after a numeric literal. */
const NUMERIC_FORMS: { id: string; sql: string }[] = [
  { id: 'w13g-10', sql: 'SELECT 0x1F, ssn FROM users' },
  { id: 'w13g-11', sql: 'SELECT 1_000, ssn FROM users' },
  { id: 'w13g-12', sql: 'SELECT 0o17, ssn FROM users' },
  { id: 'w13g-13', sql: 'SELECT 0b101, ssn FROM users' },
  { id: 'w13g-14', sql: 'SELECT 123abc, ssn FROM users' },
  { id: 'w13g-15', sql: 'SELECT 0.5x, ssn FROM users' },
  { id: 'w13g-16', sql: 'SELECT ssn FROM users WHERE id = 0x1' },
];

/** Syntax new in 16–18 that PostgreSQL 15 rejects (its syntax or option error). */
const REJECTED: { id: string; sql: string }[] = [
  { id: 'w13g-20', sql: 'SELECT name FROM users WHERE ssn IS JSON' },
  { id: 'w13g-21', sql: 'SELECT now() AT LOCAL' },
  { id: 'w13g-22', sql: 'EXPLAIN (MEMORY) SELECT ssn FROM users' },
  { id: 'w13g-23', sql: 'EXPLAIN (SERIALIZE) SELECT ssn FROM users' },
  { id: 'w13g-24', sql: 'COPY users TO STDOUT (ON_ERROR ignore)' },
  { id: 'w13g-25', sql: 'GRANT MAINTAIN ON w13_scratch TO app' },
  { id: 'w13g-26', sql: "MERGE INTO w13_scratch t USING users u ON t.note = u.name WHEN NOT MATCHED THEN INSERT VALUES (u.ssn) RETURNING merge_action(), t.note" },
  { id: 'w13g-27', sql: "UPDATE w13_scratch SET note = 'x' RETURNING WITH (OLD AS o) o.note" },
  { id: 'w13g-28', sql: 'CREATE TABLE w13_virt (a text, b text GENERATED ALWAYS AS (upper(a)) VIRTUAL)' },
  { id: 'w13g-29', sql: 'CREATE TABLE w13_wo (id int, r int4range, PRIMARY KEY (id, r WITHOUT OVERLAPS))' },
  { id: 'w13g-30', sql: 'CREATE TABLE w13_ne (a int CHECK (a > 0) NOT ENFORCED)' },
];

describe('adversarial corpus wave 13: grammar newer than the server (SYSTEM_USER, numeric literals, 16–18 syntax)', () => {
  let stack: PgStack;
  let agent: pg.Client;
  let owner: pg.Client;

  before(async () => {
    stack = await startSsnStack();
    await stack.pg.psql(`UPDATE users SET ssn = '${SSN}' WHERE id = 1;
      CREATE VIEW w13_v_su AS SELECT ssn AS system_user FROM users;
      GRANT SELECT ON w13_v_su TO app;
      CREATE VIEW w13_v_su2 AS SELECT system_user FROM (SELECT ssn AS system_user FROM users) s;
      GRANT SELECT ON w13_v_su2 TO app;
      CREATE VIEW w13_v_row AS SELECT "system_user" AS r FROM users "system_user";
      GRANT SELECT ON w13_v_row TO app;
      CREATE TABLE w13_scratch (note text);
      GRANT ALL ON w13_scratch TO app;`);
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

  test('w13g-00: control — without agentgate, PostgreSQL 15 reads each bare system_user as the column (or row) holding the value', async () => {
    for (const c of SYSTEM_USER_READS) {
      const o = await run(owner, c.sql);
      const text = JSON.stringify(o.rows ?? []);
      // The filter case returns the clean name; the others spell the value (whole or in the row).
      if (c.id === 'w13g-05') assert.deepEqual(o.rows, [['ada']], `${c.id}: ${JSON.stringify(o)}`);
      else assert.ok(text.includes(SSN), `${c.id}: PostgreSQL 15 returned ${JSON.stringify(o)}`);
    }
    // …and its stored view text keeps the words the new grammar reads otherwise.
    const def = await run(owner, "SELECT pg_get_viewdef('w13_v_row')");
    assert.match(JSON.stringify(def.rows), /FROM users system_user/);
  });

  // Runs before the writes below: a statement naming a relation as written (even one the
  // server rejects) leaves that relation masked whole for the session.
  test('w13g-40: [no false denial] the column written qualified, the session functions, and a view column named system_user read with *', async () => {
    const cases: [string, unknown[][]][] = [
      ['SELECT s.system_user FROM (SELECT ssn AS system_user FROM users) s', [['********']]],
      ['SELECT * FROM w13_v_su', [['********']]],
      ['SELECT * FROM w13_v_su2', [['********']]],
      ['SELECT w13_v_su.system_user FROM w13_v_su', [['********']]],
      ['SELECT ssn AS system_user, name FROM users', [['********', 'ada']]],
      ['SELECT name AS system_user FROM users', [['ada']]],
      ['SELECT current_user, session_user', [['app', 'app']]],
      // A number followed by whitespace and an alias is the same to both grammars.
      ['SELECT 1 _000, 0 x1f', [[1, 0]]],
      ['SELECT 1000, 31', [[1000, 31]]],
    ];
    for (const [sql, rows] of cases) {
      const o = await run(agent, sql);
      assert.deepEqual(o.rows, rows, `${sql}: ${JSON.stringify(o)}`);
    }
  });

  for (const c of SYSTEM_USER_READS) {
    test(`${c.id}: ${c.what} — refused (a call of pg_catalog.system_user to the new grammar, which PostgreSQL 15 lacks), nothing spelled`, async () => {
      const o = await run(agent, c.sql);
      assert.ok(o.code !== undefined && REFUSAL_CODES.includes(o.code), `${c.sql}: ${JSON.stringify(o)}`);
      assert.ok(!JSON.stringify(o).includes(SSN), JSON.stringify(o));
    });
  }

  test('w13g-09: control — without agentgate, each numeric form and each newer syntax is an error on PostgreSQL 15', async () => {
    for (const c of [...NUMERIC_FORMS, ...REJECTED]) {
      const o = await run(owner, c.sql);
      assert.equal(o.rows, undefined, `${c.id}: ${c.sql} ran on PostgreSQL 15: ${JSON.stringify(o)}`);
      assert.ok(o.code !== undefined && SERVER_REJECTIONS.includes(o.code), `${c.id}: ${JSON.stringify(o)}`);
    }
  });

  for (const c of NUMERIC_FORMS) {
    test(`${c.id}: ${c.sql} — an error (trailing junk on PostgreSQL 15), no row, no value`, async () => {
      const o = await run(agent, c.sql);
      assert.equal(o.rows, undefined, JSON.stringify(o));
      assert.ok(o.code === SYNTAX_ERROR || (o.code !== undefined && REFUSAL_CODES.includes(o.code)), JSON.stringify(o));
      assert.ok(!JSON.stringify(o).includes(SSN), JSON.stringify(o));
    });
  }

  for (const c of REJECTED) {
    test(`${c.id}: ${c.sql} — an error (refused, or rejected by PostgreSQL 15), nothing written or spelled`, async () => {
      const o = await run(agent, c.sql);
      assert.equal(o.rows, undefined, JSON.stringify(o));
      assert.ok(o.code !== undefined && [...SERVER_REJECTIONS, ...REFUSAL_CODES].includes(o.code), JSON.stringify(o));
      assert.ok(!JSON.stringify(o).includes(SSN), JSON.stringify(o));
    });
  }

  test('w13g-31: nothing above wrote: the scratch table is empty and no table was created', async () => {
    const o = await run(owner, "SELECT (SELECT count(*) FROM w13_scratch), (SELECT count(*) FROM pg_class WHERE relname IN ('w13_virt', 'w13_wo', 'w13_ne'))");
    assert.deepEqual(o.rows, [['0', '0']]);
  });
});
