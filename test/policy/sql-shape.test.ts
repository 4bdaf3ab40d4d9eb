/**
 * sql-shape: texts that differ only in numeric literals share a shape; anything that
 * could change what a statement does or touches (identifiers, parameters, strings,
 * quoted names, comments, dollar quotes) never makes two texts share one wrongly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sqlShape } from '../../src/broker/policy/sql-shape.js';
import { classifySql, loadSqlParser } from '../../src/broker/policy/sql-classify.js';
import { createSqlGate } from '../../src/broker/policy/sql-gate.js';
import { DEFAULT_DANGEROUS_FUNCTIONS } from '../../src/broker/config/schema.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';

const shape = (s: string): string => sqlShape(s) ?? s;

test('numbers outside strings and names are replaced', () => {
  assert.equal(shape('SELECT abalance FROM pgbench_accounts WHERE aid = 12345;'), 'SELECT abalance FROM pgbench_accounts WHERE aid = 0;');
  assert.equal(shape('select * from t limit 10 offset 200'), 'select * from t limit 0 offset 0');
  assert.equal(shape('select 1.25, 3e10, 0x1F, 1_000'), 'select 0.0, 0e10, 0x1F, 1_000', 'digits joined by _ are one number to a newer grammar: kept');
  assert.equal(sqlShape('select a from t'), undefined, 'nothing to replace');
  assert.equal(sqlShape('select 0'), undefined, 'already 0');
});

test('a literal that may not be an int4 keeps its digits: its type picks the operator the server runs', async () => {
  // Up to 9 digits is always int4; 10 or more may be int8 or numeric to PostgreSQL.
  assert.equal(shape('select 999999999 ### 1'), 'select 0 ### 0');
  assert.equal(shape('select 3000000000 ### 1'), 'select 3000000000 ### 0');
  assert.notEqual(shape('select 2147483647 ### 1'), shape('select 2147483648 ### 1'));
  assert.notEqual(shape('select 1 ### 1'), shape('select 3000000000 ### 1'));
  assert.equal(shape('select 1234567890123.5'), 'select 1234567890123.0');
  // The classifier reads the operand's type from the literal's magnitude: texts that differ
  // there must not share a shape.
  await loadSqlParser();
  const opts = { dangerousFunctions: new Set<string>() };
  const hints = (sql: string): unknown => {
    const c = classifySql(sql, opts);
    assert.ok(c.ok);
    return c.statements[0]!.operands;
  };
  assert.notDeepEqual(hints('select 1 ### 1'), hints('select 3000000000 ### 1'));
});

test('identifiers, parameters, strings, quoted names, comments and dollar quotes keep their digits', () => {
  const same = [
    'select * from t1 where c2 = $1',
    "select 'order 12' from t",
    "select E'it\\'s 12' from t",
    'select * from "1t"',
    'select * from "a""1"',
    'select 1 /* 5 /* nested 6 */ 7 */',
    'select 1 -- 42\n',
    'select $$ 99 $$, $body$ 12 $body$',
    'select ü1 from t',
    "select U&'d\\0061t' from t",
  ];
  for (const sql of same) {
    const s = shape(sql);
    // The only digit run a shape may change is a bare literal, written here as `1` after `select `.
    assert.equal(s.replace(/^select 0/, 'select 1'), sql, `changed inside a protected span: ${sql} → ${s}`);
  }
  assert.notEqual(shape('select * from "1t"'), shape('select * from "2t"'));
  assert.notEqual(shape('select * from t1'), shape('select * from t2'));
  assert.notEqual(shape('select $1'), shape('select $2'));
  assert.notEqual(shape("select E'\\'' , \"1t\""), shape("select E'\\'' , \"2t\""), 'an escaped quote does not end an E-string early');
});

test('texts that share a shape classify the same (a table of pairs through the real parser)', async () => {
  await loadSqlParser();
  const opts = { dangerousFunctions: new Set(DEFAULT_DANGEROUS_FUNCTIONS) };
  const pairs = [
    ['DELETE FROM t WHERE id = 1', 'DELETE FROM t WHERE id = 99999'],
    ['SELECT * FROM a JOIN b ON a.x = b.y WHERE a.z > 10 LIMIT 5', 'SELECT * FROM a JOIN b ON a.x = b.y WHERE a.z > 77 LIMIT 500'],
    ['UPDATE t SET v = 1.5 WHERE k IN (1, 2, 3)', 'UPDATE t SET v = 8.25 WHERE k IN (4, 5, 6)'],
  ];
  for (const [a, b] of pairs) {
    assert.equal(shape(a as string), shape(b as string));
    const ca = classifySql(a as string, opts);
    const cb = classifySql(b as string, opts);
    assert.ok(ca.ok && cb.ok);
    assert.deepEqual(
      ca.statements.map((s) => [s.kinds, s.reads, s.writes, s.functions, s.flags]),
      cb.statements.map((s) => [s.kinds, s.reads, s.writes, s.functions, s.flags]),
    );
  }
});

test('the gate reuses a shape for allow, but a held statement gets its own fingerprint', async () => {
  await loadSqlParser();
  const policies: PolicyConfig[] = [
    {
      name: 'p',
      subjects: { groups: ['g'] },
      targets: ['db'],
      rules: [
        { name: 'r', sql: ['select'], effect: 'allow', extra: {} },
        { name: 'w', sql: ['delete'], effect: 'review', approvers: { groups: ['dba'], count: 1 }, extra: {} },
      ],
    },
  ];
  const gate = createSqlGate({ sub: 'a', groups: ['g'], kind: 'agent', issuer: 'i', expiresAt: 0 }, 'db', { policies, dangerousFunctions: [...DEFAULT_DANGEROUS_FUNCTIONS] });
  assert.equal(gate.judge('select * from t where id = 1').effect, 'allow');
  assert.equal(gate.judge('select * from t where id = 2').effect, 'allow');
  const d1 = gate.judge('delete from t where id = 1');
  const d2 = gate.judge('delete from t where id = 2');
  assert.equal(d1.effect, 'review');
  assert.equal(d2.effect, 'review');
  assert.notEqual(d1.fingerprint, d2.fingerprint, 'an approval for id = 1 must not cover id = 2');
});

test('a number the verdict depends on is never shared by shape: the harmless text first, then the one it would have covered', async () => {
  await loadSqlParser();
  const policies: PolicyConfig[] = [
    { name: 'ro', subjects: { groups: ['g'] }, targets: ['db'], rules: [{ name: 'r', sql: ['select', 'explain', 'set', 'prepare'], effect: 'allow', extra: {} }] },
  ];
  const gate = createSqlGate({ sub: 'a', groups: ['g'], kind: 'agent', issuer: 'i', expiresAt: 0 }, 'db', { policies, dangerousFunctions: [...DEFAULT_DANGEROUS_FUNCTIONS] });
  // Each pair has one shape (`00` and `01` both become `0`); the first is allowed, the second
  // changes data or makes the server read SQL differently from the parser.
  const pairs: [string, string][] = [
    ['EXPLAIN (ANALYZE 00) DELETE FROM shape_t', 'EXPLAIN (ANALYZE 1) DELETE FROM shape_t'],
    ['EXPLAIN (ANALYZE 00, COSTS 1) UPDATE shape_t SET v = 1', 'EXPLAIN (ANALYZE 2, COSTS 1) UPDATE shape_t SET v = 1'],
    ['SET standard_conforming_strings = 01', 'SET standard_conforming_strings = 00'],
    ["SELECT set_config('standard_conforming_strings', 01::text, false)", "SELECT set_config('standard_conforming_strings', 00::text, false)"],
  ];
  for (const [harmless, harmful] of pairs) {
    assert.equal(shape(harmless), shape(harmful), `one shape: ${harmless} / ${harmful}`);
    assert.equal(gate.judge(harmless).effect, 'allow', harmless);
    assert.equal(gate.judge(harmful).effect, 'deny', harmful);
  }
  // PREPARE keeps its text for the statements Bind and EXECUTE later run: each its own.
  const p1 = gate.judge('PREPARE shape_p AS SELECT * FROM shape_t WHERE id = 1');
  const p2 = gate.judge('PREPARE shape_p AS SELECT * FROM shape_t WHERE id = 2');
  assert.equal(p1.changes?.[0]?.text, 'PREPARE shape_p AS SELECT * FROM shape_t WHERE id = 1');
  assert.equal(p2.changes?.[0]?.text, 'PREPARE shape_p AS SELECT * FROM shape_t WHERE id = 2');
});
