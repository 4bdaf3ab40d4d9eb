/**
 * The audit log holds no value that masking hides, however a statement writes it: a literal
 * compared with, assigned to, or flowing into a masked column is masked in the recorded
 * text (the parse tree decides, not the spelling). Real PostgreSQL, real broker, the
 * statements really run; the log is read back from the broker's store.
 *
 * Detectors are off: these values are secret only because of the column rule, so nothing
 * but the column analysis can catch them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { type PgStack } from './stack.js';
import { startSsnStack } from './ssn-stack.js';

/** `{S}` is replaced by the case's secret; `{N}` by its number (a comment names the case in the log). */
const CASES: readonly [string, string][] = [
  // First: a later case's write taints users (written-relations.ts: a relation written while a
  // masked column is read is tainted whole), and a MERGE matching on a tainted relation's column
  // is refused (the column could decide how many rows it writes: masking wave 15).
  ['MERGE insert without a column list', "MERGE INTO users u USING (SELECT 300 + {N} AS id) s ON u.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'n', {S}) /* case {N} */"],
  ['function of the assigned value', "UPDATE users SET ssn = upper({S}) WHERE id = 1 /* case {N} */"],
  ['row assignment', "UPDATE users SET (name, ssn) = ('n', {S}) WHERE id = 1 /* case {N} */"],
  ['INSERT … SELECT by position', "INSERT INTO users (id, ssn) SELECT 100 + {N}, {S} /* case {N} */"],
  ['INSERT without a column list', "INSERT INTO users VALUES (200 + {N}, 'n', {S}) /* case {N} */"],
  ['cast of the column', "SELECT id FROM users WHERE ssn::text = {S} /* case {N} */"],
  ['parenthesised column', "SELECT id FROM users WHERE (ssn) = {S} /* case {N} */"],
  ['regular expression', "SELECT id FROM users WHERE ssn ~ {S} /* case {N} */"],
  ['BETWEEN', "SELECT id FROM users WHERE ssn BETWEEN {S} AND {S} /* case {N} */"],
  ['ordering comparison', "SELECT id FROM users WHERE ssn > {S} /* case {N} */"],
  ['IS NOT DISTINCT FROM', "SELECT id FROM users WHERE ssn IS NOT DISTINCT FROM {S} /* case {N} */"],
  ['function of the column', "SELECT id FROM users WHERE lower(ssn) = {S} /* case {N} */"],
  ['scalar subquery', "SELECT id FROM users WHERE ssn = (SELECT {S}) /* case {N} */"],
  ['IN subquery', "SELECT id FROM users WHERE ssn IN (SELECT {S}) /* case {N} */"],
  ['CAST( AS )', "SELECT id FROM users WHERE ssn = CAST({S} AS text) /* case {N} */"],
  ['typed literal', "SELECT id FROM users WHERE ssn = text {S} /* case {N} */"],
  ['ANY(array)', "SELECT id FROM users WHERE ssn = ANY(ARRAY[{S}]) /* case {N} */"],
  ['SIMILAR TO', "SELECT id FROM users WHERE ssn SIMILAR TO {S} /* case {N} */"],
  ['position()', "SELECT id FROM users WHERE position({S} in ssn) > 0 /* case {N} */"],
  ['through a CTE', "WITH x AS (SELECT {S} AS s) UPDATE users SET ssn = x.s FROM x WHERE users.id = 1 /* case {N} */"],
  ['through a derived table', "UPDATE users SET ssn = d.v FROM (SELECT {S}) AS d(v) WHERE users.id = 1 /* case {N} */"],
  ['ON CONFLICT from EXCLUDED', "INSERT INTO users (id, name, ssn) VALUES (1, 'n', {S}) ON CONFLICT (id) DO UPDATE SET ssn = EXCLUDED.ssn /* case {N} */"],
  ['EXECUTE arguments', "EXECUTE by_ssn({S}) /* case {N} */"],
  ['compared through a join', "SELECT u.id FROM users u JOIN (VALUES ({S})) v(s) ON u.ssn = v.s /* case {N} */"],
  ['compared through a CTE', "WITH g(s) AS (VALUES ({S})) SELECT id FROM users, g WHERE ssn = g.s /* case {N} */"],
  ['compared through LATERAL', "SELECT id FROM users, LATERAL (SELECT {S} AS s) x WHERE users.ssn = x.s /* case {N} */"],
];

const secretOf = (n: number): string => `9${String(n).padStart(2, '0')}-44-71${String(n).padStart(2, '0')}`;

describe('audit log: literals tied to a masked column', () => {
  let stack: PgStack;
  let client: pg.Client;

  before(async () => {
    stack = await startSsnStack();
    client = new pg.Client({ connectionString: stack.url });
    await client.connect();
    await client.query('PREPARE by_ssn(text) AS SELECT id FROM users WHERE ssn = $1');
    for (const [i, [, template]] of CASES.entries()) {
      const sql = template.replaceAll('{S}', `'${secretOf(i)}'`).replaceAll('{N}', String(i));
      await client.query(sql);
    }
    // Control: a literal tied to no masked column is recorded as written.
    await client.query("SELECT id FROM users WHERE name = 'visible-7731' AND ssn = '955-44-7199' /* control */");
  });

  after(async () => {
    await client?.end().catch(() => {});
    await stack?.close();
  });

  test('every case ran and was recorded, with its secret masked', async () => {
    const queries = (await stack.events()).filter((e) => e.type === 'query');
    for (const [i, [name]] of CASES.entries()) {
      const recorded = queries.filter((e) => String(e.detail['sql']).includes(`/* case ${i} */`));
      assert.ok(recorded.length > 0, `${name}: recorded`);
      for (const e of recorded) {
        const sql = String(e.detail['sql']);
        assert.equal(sql.includes(secretOf(i)), false, `${name}: ${sql}`);
        assert.match(sql, /\*{8}/, `${name}: masked in place`);
        assert.equal(e.outcome?.status, 'ok', `${name}: ran`);
      }
    }
  });

  test('the control keeps an unmasked literal and masks the masked one', async () => {
    const control = (await stack.events()).find((e) => e.type === 'query' && String(e.detail['sql']).includes('/* control */'));
    assert.equal(String(control?.detail['sql']), "SELECT id FROM users WHERE name = 'visible-7731' AND ssn = '********' /* control */");
  });

  test('no secret anywhere in the store', async () => {
    const all = JSON.stringify(await stack.events());
    for (let i = 0; i < CASES.length; i++) assert.equal(all.includes(secretOf(i)), false, `case ${i} (${CASES[i]![0]})`);
    assert.equal(all.includes('955-44-7199'), false, 'control secret');
  });
});
