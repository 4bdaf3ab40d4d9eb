/**
 * Adversarial corpus, wave 15 — row counts that carry a masked value out through a view or
 * through a write.
 *
 * A derived table's own row-deciding conditions (a FROM function sized by a value, a WHERE
 * linking a value to another column) were carried to the level that reads it, so
 * `SELECT count(*) FROM (SELECT … generate_series(1, ascii(substr(ssn, k, 1)))) d` was
 * masked; a VIEW (or materialized view) with the same definition was not: its columns were
 * followed, the conditions that decide its rows dropped, and `SELECT count(*) FROM v WHERE
 * k = 3` was the third character's code, unmasked. A view now decides its reader's rows as
 * a derived table does.
 *
 * A write counts the rows it writes in its tag (`INSERT 0 57`, `UPDATE 57`, `DELETE 57`,
 * `MERGE 57`, `SELECT 57` of CREATE TABLE AS / SELECT INTO / CREATE MATERIALIZED VIEW), and
 * the count stays in its target (`count(*)` of the copy, the statistics views). An
 * `INSERT … SELECT 1 FROM users, generate_series(1, ascii(substr(ssn, k, 1)))`, a `DELETE
 * … WHERE g <= (SELECT ascii(substr(ssn, k, 1)) …)` or a writable CTE's `count(*)` spelled
 * the value one statement per character (the copy's columns were masked, its row count
 * not). A write whose number of rows a masked column decides is now refused before it
 * runs (and a tag of such a statement that still arrives has its count withheld).
 *
 * The stack: `users.ssn` masked (full), detectors off, so only the column analysis hides
 * it; the agent's policy allows everything (it may create views and tables).
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { PgStack } from '../stack.js';
import { startSsnStack } from '../ssn-stack.js';

/** users.ssn of row 1 (the seed's value is replaced in `before`). */
const SSN = '955-44-7123';
const UNSPELLED = '?'.repeat(SSN.length);

/** A count as the client read it (bigint arrives as text), or undefined when it is not a count (masked). */
const asCount = (v: unknown): number | undefined => {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : NaN;
  return Number.isInteger(n) ? n : undefined;
};

const letter = (code: number | undefined): string => (code === undefined || code < 32 || code > 126 ? '?' : String.fromCharCode(code));

/** A view whose reader's count is the k-th character's code. */
interface ViewOracle {
  id: string;
  what: string;
  sql: (k: number) => string;
}

const VIEW_ORACLES: ViewOracle[] = [
  { id: 'w15m-01', what: 'count(*) of a view whose FROM function is sized by the value', sql: (k) => `SELECT count(*) FROM v15_fn WHERE k = ${k}` },
  { id: 'w15m-02', what: 'count(*) of a view whose WHERE links the value to a generated g', sql: (k) => `SELECT count(*) FROM v15_link WHERE k = ${k}` },
  { id: 'w15m-03', what: 'count(*) of a view over that view', sql: (k) => `SELECT count(*) FROM v15_outer WHERE k = ${k}` },
  { id: 'w15m-05', what: "count(*) of an administrator's materialized view sized by the value", sql: (k) => `SELECT count(*) FROM w15_mv WHERE k = ${k}` },
  { id: 'w15m-06', what: 'count(*) per k, GROUP BY k, of the view', sql: (k) => `SELECT count(*) FROM v15_link GROUP BY k HAVING k = ${k}` },
];

/** A write whose number of rows is the k-th character's code. */
interface WriteOracle {
  id: string;
  what: string;
  sql: (k: number) => string;
  /** The code as the owner reads it: the tag's count, or the one row's count for a writable CTE. */
  fromResult: 'tag' | 'row';
  /** What reads the code back from the target afterwards (the owner's control), where it stays. */
  readBack?: string;
  /** What shows the target untouched (after a refusal): it answers `seeded`. */
  intact: string;
  seeded: number;
}

const SIZED = (k: number): string => `FROM users, generate_series(1, ascii(substr(ssn, ${k}, 1))) WHERE id = 1`;
const CODE = (k: number): string => `(SELECT ascii(substr(ssn, ${k}, 1)) FROM users WHERE id = 1)`;
const EXISTS = (rel: string): string => `SELECT count(*) FROM pg_class WHERE relname = '${rel}'`;

const WRITE_ORACLES: WriteOracle[] = [
  { id: 'w15m-10', what: 'INSERT … SELECT sized by the value: the tag INSERT 0 n, and count(*) of the target', sql: (k) => `INSERT INTO w15_rows SELECT 1 ${SIZED(k)}`, fromResult: 'tag', readBack: 'SELECT count(*) FROM w15_rows', intact: 'SELECT count(*) FROM w15_rows', seeded: 0 },
  { id: 'w15m-11', what: 'CREATE TABLE AS sized by the value: the tag SELECT n, and count(*) of the table', sql: (k) => `CREATE TABLE w15_ctas AS SELECT 1 AS a ${SIZED(k)}`, fromResult: 'tag', readBack: 'SELECT count(*) FROM w15_ctas', intact: EXISTS('w15_ctas'), seeded: 0 },
  { id: 'w15m-12', what: 'SELECT INTO sized by the value: the tag SELECT n', sql: (k) => `SELECT 1 AS a INTO w15_into ${SIZED(k)}`, fromResult: 'tag', readBack: 'SELECT count(*) FROM w15_into', intact: EXISTS('w15_into'), seeded: 0 },
  { id: 'w15m-13', what: 'CREATE MATERIALIZED VIEW sized by the value: the tag SELECT n', sql: (k) => `CREATE MATERIALIZED VIEW w15_mvk AS SELECT 1 AS a ${SIZED(k)}`, fromResult: 'tag', readBack: 'SELECT count(*) FROM w15_mvk', intact: EXISTS('w15_mvk'), seeded: 0 },
  { id: 'w15m-14', what: 'UPDATE … WHERE g <= the code: the tag UPDATE n', sql: (k) => `UPDATE w15_g SET g = g WHERE g <= ${CODE(k)}`, fromResult: 'tag', intact: 'SELECT count(*) FROM w15_g', seeded: 255 },
  { id: 'w15m-15', what: 'DELETE … WHERE g <= the code: the tag DELETE n, and the rows left', sql: (k) => `DELETE FROM w15_g WHERE g <= ${CODE(k)}`, fromResult: 'tag', readBack: 'SELECT 255 - count(*) FROM w15_g', intact: 'SELECT count(*) FROM w15_g', seeded: 255 },
  { id: 'w15m-16', what: 'MERGE … ON g <= the code: the tag MERGE n', sql: (k) => `MERGE INTO w15_g USING (SELECT ascii(substr(ssn, ${k}, 1)) AS c FROM users WHERE id = 1) s ON w15_g.g <= s.c WHEN MATCHED THEN UPDATE SET g = w15_g.g`, fromResult: 'tag', intact: 'SELECT count(*) FROM w15_g', seeded: 255 },
  { id: 'w15m-17', what: "a writable CTE's count(*) of the rows its INSERT returned", sql: (k) => `WITH w AS (INSERT INTO w15_rows SELECT 1 ${SIZED(k)} RETURNING a) SELECT count(*) FROM w`, fromResult: 'row', readBack: 'SELECT count(*) FROM w15_rows', intact: 'SELECT count(*) FROM w15_rows', seeded: 0 },
];

const RESET = `TRUNCATE w15_rows; TRUNCATE w15_g; INSERT INTO w15_g SELECT generate_series(1, 255);
  DROP TABLE IF EXISTS w15_ctas, w15_into; DROP MATERIALIZED VIEW IF EXISTS w15_mvk;`;

describe('adversarial corpus wave 15: row counts through views and writes', () => {
  let stack: PgStack;
  let agent: pg.Client;
  let owner: pg.Client;
  let superuser: pg.Client;

  const one = async (client: pg.Client, sql: string): Promise<unknown> => (await client.query({ text: sql, rowMode: 'array' })).rows[0]?.[0];

  before(async () => {
    stack = await startSsnStack();
    await stack.pg.psql(`
      UPDATE users SET ssn = '${SSN}' WHERE id = 1;
      INSERT INTO users VALUES (2, 'bob', '123-45-6789');
      CREATE TABLE w15_rows (a int);
      CREATE TABLE w15_g (g int);
      GRANT ALL ON w15_rows, w15_g TO app;
      CREATE MATERIALIZED VIEW w15_mv AS
        SELECT k FROM users, generate_series(1, ${SSN.length}) k, generate_series(1, ascii(substr(ssn, k, 1))) g WHERE id = 1;
      GRANT SELECT ON w15_mv TO app;`);
    agent = new pg.Client({ connectionString: stack.url });
    await agent.connect();
    owner = new pg.Client({ connectionString: stack.pg.url() });
    await owner.connect();
    superuser = new pg.Client({ connectionString: stack.pg.url('postgres') });
    await superuser.connect();
    // The agent's own views, made through agentgate (its policy allows it).
    for (const sql of [
      `CREATE VIEW v15_fn AS SELECT k FROM users, generate_series(1, ${SSN.length}) k, generate_series(1, ascii(substr(ssn, k, 1))) g WHERE id = 1`,
      `CREATE VIEW v15_link AS SELECT k, g FROM users, generate_series(1, ${SSN.length}) k, generate_series(1, 255) g WHERE id = 1 AND g <= ascii(substr(ssn, k, 1))`,
      'CREATE VIEW v15_outer AS SELECT k FROM v15_link',
      'CREATE VIEW v15_clean AS SELECT id, name FROM users WHERE id < 5',
      'CREATE VIEW v15_plain AS SELECT id, ssn FROM users',
    ]) {
      await agent.query(sql);
    }
  });

  beforeEach(async () => {
    await superuser.query(RESET);
  });

  after(async () => {
    await agent?.end().catch(() => {});
    await owner?.end().catch(() => {});
    await superuser?.end().catch(() => {});
    await stack?.close();
  });

  /** The value as a view oracle spells it through `client`, one statement per character. */
  async function spellView(client: pg.Client, o: ViewOracle): Promise<string> {
    let word = '';
    for (let k = 1; k <= SSN.length; k++) word += letter(asCount(await one(client, o.sql(k))));
    return word;
  }

  test('w15m-00: control — without agentgate, every view oracle and every write below spells the value', async () => {
    for (const o of VIEW_ORACLES) assert.equal(await spellView(owner, o), SSN, o.id);
    for (const o of WRITE_ORACLES) {
      let fromResult = '';
      let stored = '';
      for (let k = 1; k <= SSN.length; k++) {
        await superuser.query(RESET);
        const r = await owner.query({ text: o.sql(k), rowMode: 'array' });
        fromResult += letter(o.fromResult === 'tag' ? (r.rowCount ?? undefined) : asCount(r.rows[0]?.[0]));
        if (o.readBack !== undefined) stored += letter(asCount(await one(superuser, o.readBack)));
      }
      assert.equal(fromResult, SSN, `${o.id}: the owner's ${o.fromResult}`);
      assert.equal(stored, o.readBack === undefined ? '' : SSN, `${o.id}: what the target holds`);
    }
  });

  for (const o of VIEW_ORACLES) {
    test(`${o.id}: ${o.what}: the count comes back masked, the value is not spelled`, async () => {
      assert.equal(await spellView(agent, o), UNSPELLED, o.sql(1));
    });
  }

  for (const o of WRITE_ORACLES) {
    test(`${o.id}: ${o.what} — refused before it runs, the target as it was`, async () => {
      for (let k = 1; k <= SSN.length; k++) {
        await superuser.query(RESET);
        await assert.rejects(agent.query(o.sql(k)), (e: { code?: string; message?: string }) => {
          assert.equal(e.code, '42501', e.message);
          assert.match(e.message ?? '', /a masked column decides how many rows this statement writes/);
          return true;
        });
        assert.equal(asCount(await one(superuser, o.intact)), o.seeded, `${o.sql(k)} changed its target`);
      }
    });
  }

  test('w15m-20: [no false denial] writes whose rows clean columns and constants choose run, with their counts', async () => {
    const tag = async (sql: string): Promise<[string, number | null]> => {
      const r = await agent.query(sql);
      return [r.command, r.rowCount];
    };
    assert.deepEqual(await tag('INSERT INTO w15_rows VALUES (1), (2), (3)'), ['INSERT', 3]);
    assert.deepEqual(await tag('INSERT INTO w15_rows SELECT id FROM users'), ['INSERT', 2]);
    assert.deepEqual(await tag('INSERT INTO w15_rows SELECT g FROM generate_series(1, 10) g WHERE g % 2 = 0'), ['INSERT', 5]);
    assert.deepEqual(await tag('UPDATE w15_g SET g = g WHERE g <= 100'), ['UPDATE', 100]);
    assert.deepEqual(await tag('DELETE FROM w15_g WHERE g > 250'), ['DELETE', 5]);
    assert.deepEqual(await tag('MERGE INTO w15_g USING (SELECT 3 AS c) s ON w15_g.g <= s.c WHEN MATCHED THEN UPDATE SET g = w15_g.g'), ['MERGE', 3]);
    assert.deepEqual(await tag('CREATE TABLE w15_ctas AS SELECT id, name FROM users WHERE id < 5'), ['SELECT', 2]);
    const r = await agent.query({ text: 'SELECT count(*), sum(a) FROM w15_rows', rowMode: 'array' });
    assert.deepEqual(r.rows, [['10', '39']]);
    const c = await agent.query({ text: 'SELECT id, name FROM w15_ctas ORDER BY id', rowMode: 'array' });
    assert.deepEqual(c.rows, [[1, 'ada'], [2, 'bob']]);
  });

  test('w15m-21: [no false masking] a view with clean filters keeps its counts and values; a view of the column keeps its rows, the column masked', async () => {
    const r = await agent.query({ text: "SELECT count(*), max(id), string_agg(name, ',' ORDER BY id) FROM v15_clean", rowMode: 'array' });
    assert.deepEqual(r.rows, [['2', 2, 'ada,bob']]);
    const p = await agent.query({ text: 'SELECT id, ssn FROM v15_plain ORDER BY id', rowMode: 'array' });
    assert.deepEqual(p.rows, [[1, '********'], [2, '********']]);
    const n = await agent.query({ text: 'SELECT count(*) FROM v15_plain', rowMode: 'array' });
    assert.deepEqual(n.rows, [['2']]);
  });
});
