/**
 * Which literals of audit text the parse tree ties to a masked column: what must be masked,
 * and what must stay readable (an auditor needs `id = 42`). The integration test
 * (test/postgres/audit-literals) runs such statements through a real broker.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { bindValueMasker, maskSqlText } from '../../src/broker/masking/sql-text.js';
import { loadSqlParser } from '../../src/broker/policy/sql-classify.js';
import { maskingPlan } from './helpers.js';

const plan = maskingPlan({ style: 'full', columns: ['users.ssn', '*password*'], detectors: [] });
const mask = (sql: string): string => maskSqlText(sql, plan).text;

before(async () => {
  await loadSqlParser();
});

test('masked: literals that meet a masked column', () => {
  const cases: [string, string][] = [
    ["SELECT id FROM users WHERE ssn > '1' AND id = 42", "SELECT id FROM users WHERE ssn > '********' AND id = 42"],
    ["SELECT id FROM users WHERE lower(ssn) = 'a' OR name = 'bob'", "SELECT id FROM users WHERE lower(ssn) = '********' OR name = 'bob'"],
    ["SELECT id FROM users WHERE NOT (ssn ~ 'p') AND id > 3", "SELECT id FROM users WHERE NOT (ssn ~ '********') AND id > 3"],
    ["UPDATE users SET name = 'x', password_hash = md5('p') WHERE id = 9", "UPDATE users SET name = 'x', password_hash = md5('********') WHERE id = 9"],
    ["INSERT INTO users (id, name, ssn) SELECT 5, 'n', 's' UNION ALL SELECT 6, 'm', 't'", "INSERT INTO users (id, name, ssn) SELECT 5, 'n', '********' UNION ALL SELECT 6, 'm', '********'"],
    ["WITH v(s) AS (VALUES ('q')) INSERT INTO users (id, ssn) SELECT 1, s FROM v", "WITH v(s) AS (VALUES ('********')) INSERT INTO users (id, ssn) SELECT 1, s FROM v"],
    ["SELECT id FROM users WHERE ssn = -5", "SELECT id FROM users WHERE ssn = -********"],
    ["ALTER TABLE users ALTER COLUMN ssn SET DEFAULT 'd'", "ALTER TABLE users ALTER COLUMN ssn SET DEFAULT '********'"],
    ["SELECT s FROM (SELECT ssn AS s FROM users) t WHERE s = 'z'", "SELECT s FROM (SELECT ssn AS s FROM users) t WHERE s = '********'"],
    // A value compared with a masked column through a name: a join, a CTE, a subquery, LATERAL.
    ["SELECT u.id FROM users u JOIN (VALUES ('v')) v(s) ON u.ssn = v.s", "SELECT u.id FROM users u JOIN (VALUES ('********')) v(s) ON u.ssn = v.s"],
    ["WITH g(s) AS (VALUES ('v')) SELECT id FROM users, g WHERE ssn = g.s", "WITH g(s) AS (VALUES ('********')) SELECT id FROM users, g WHERE ssn = g.s"],
    ["SELECT id FROM users WHERE ssn IN (SELECT s FROM (VALUES ('v')) v(s))", "SELECT id FROM users WHERE ssn IN (SELECT s FROM (VALUES ('********')) v(s))"],
    ["SELECT id FROM users, LATERAL (SELECT 'v' AS s) x WHERE users.ssn = x.s", "SELECT id FROM users, LATERAL (SELECT '********' AS s) x WHERE users.ssn = x.s"],
    ["SELECT id FROM users WHERE EXISTS (SELECT 1 FROM (SELECT 'v' AS s) x WHERE x.s = users.ssn)", "SELECT id FROM users WHERE EXISTS (SELECT 1 FROM (SELECT '********' AS s) x WHERE x.s = users.ssn)"],
    ["SELECT id FROM users WHERE ssn = (SELECT max(s) FROM (VALUES ('v')) v(s))", "SELECT id FROM users WHERE ssn = (SELECT max(s) FROM (VALUES ('********')) v(s))"],
  ];
  for (const [sql, want] of cases) assert.equal(mask(sql), want, sql);
});

test('kept: literals that meet no masked column', () => {
  for (const sql of [
    "SELECT ssn FROM users WHERE id = 42 AND name = 'bob'",
    "UPDATE users SET name = 'x' WHERE id = 1",
    "INSERT INTO users (id, name) VALUES (1, 'n')",
    "SELECT 'plain', 7",
  ]) assert.equal(mask(sql), sql);
  // No column list: positions are unknown, so a table some rule may touch is masked whole;
  // a bare pattern (`*password*`) may touch any table, a table pattern only its own.
  const tableOnly = maskingPlan({ style: 'full', columns: ['users.ssn'], detectors: [] });
  assert.equal(maskSqlText("INSERT INTO orders VALUES (1, 'n')", tableOnly).text, "INSERT INTO orders VALUES (1, 'n')");
  assert.equal(maskSqlText("INSERT INTO users VALUES (1, 'n')", tableOnly).text, "INSERT INTO users VALUES (********, '********')");
  assert.equal(mask("INSERT INTO orders VALUES (1, 'n')"), "INSERT INTO orders VALUES (********, '********')");
});

test('text that does not parse is masked whole where it names a masked column', () => {
  assert.equal(mask("SELECT id FROM users WHERE ssn = 'a' 'b' AND id = 1"), "SELECT id FROM users WHERE ssn = '********' '********' AND id = ********");
  assert.equal(mask("SELEC id FROM users WHERE id = 'a'"), "SELEC id FROM users WHERE id = 'a'");
});

test('Bind parameters: a $n that meets a masked column is masked, others shown; text that does not parse masks them all', () => {
  const shown = (sql: string, values: string[]): string[] => {
    const m = bindValueMasker(sql, plan);
    return values.map((v, i) => m(`'${v}'`, i));
  };
  assert.deepEqual(shown('UPDATE users SET ssn = $1 WHERE id = $2', ['s', '4']), ["'********'", "'4'"]);
  assert.deepEqual(shown('SELECT id FROM users WHERE lower(ssn) = $2 AND name = $1', ['bob', 's']), ["'bob'", "'********'"]);
  assert.deepEqual(shown('INSERT INTO users (id, ssn) VALUES ($1, $2)', ['1', 's']), ["'1'", "'********'"]);
  assert.deepEqual(shown('WITH v(s) AS (VALUES ($1)) UPDATE users SET ssn = v.s FROM v', ['s']), ["'********'"]);
  // No column list: the table's positions are unknown here.
  assert.deepEqual(shown('INSERT INTO users VALUES ($1, $2)', ['1', 's']), ["'********'", "'********'"]);
  // Far from any masked column: not even parsed.
  assert.deepEqual(shown('SELECT * FROM orders WHERE id = $1', ['7']), ["'7'"]);
  // Names a masked column but does not parse: every value masked.
  assert.deepEqual(shown('UPDATE users SET ssn = $1 WHERE (', ['s']), ["'********'"]);
});
