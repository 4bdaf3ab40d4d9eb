/** The `options` startup parameter read as PostgreSQL reads it, and the helpers startup-params.ts judges with. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseStartupOptions, splitOptionWords } from '../../src/broker/postgres/startup-options.js';
import { isDefaultSearchPath, setStatement } from '../../src/broker/postgres/startup-params.js';
import { classifySql, loadSqlParser } from '../../src/broker/policy/sql-classify.js';

test('options words: whitespace separates, a backslash keeps the next character, a trailing one is dropped', () => {
  assert.deepEqual(splitOptionWords('  -c  a=b\t--x-y=1 '), ['-c', 'a=b', '--x-y=1']);
  assert.deepEqual(splitOptionWords('-c application_name=two\\ words -c x=\\\\'), ['-c', 'application_name=two words', '-c', 'x=\\']);
  assert.deepEqual(splitOptionWords('-cx=1\\'), ['-cx=1']);
});

test('options settings: -c name=value, -cname=value and --name=value (dashes become underscores); other switches unsupported', () => {
  const p = parseStartupOptions('-c statement_timeout=5s -clock_timeout=1s --idle-session-timeout=9 -d 5 -c role -c');
  assert.deepEqual(p.settings.map((s) => [s.name, s.value, s.written]), [
    ['statement_timeout', '5s', '-c statement_timeout=5s'],
    ['lock_timeout', '1s', '-clock_timeout=1s'],
    ['idle_session_timeout', '9', '--idle-session-timeout=9'],
  ]);
  assert.deepEqual(p.unsupported.map((u) => u.written), ['-d', '5', '-c role', '-c']);
});

test('search_path: only the server default passes', () => {
  for (const v of ['public', 'PUBLIC', ' "$user" , public', '$user,public', '"public"']) assert.equal(isDefaultSearchPath(v), true, v);
  for (const v of ['', 'shadow,public', 'public,shadow', '"PUBLIC"', '"$user"', 'pg_catalog,public', '"$user",public,x']) assert.equal(isDefaultSearchPath(v), false, v);
});

test('setStatement quotes name and value so the classifier sees one SET of that name', async () => {
  await loadSqlParser();
  const dangerousFunctions = new Set<string>();
  const c = classifySql(setStatement('statement_timeout', "1'; drop table t; --"), { dangerousFunctions });
  assert.ok(c.ok);
  assert.equal(c.statements.length, 1);
  assert.deepEqual(c.statements[0]?.kinds, ['session']);
  const role = classifySql(setStatement('ro"le', 'x'), { dangerousFunctions });
  assert.ok(role.ok);
  assert.deepEqual(role.statements[0]?.kinds, ['set']);
});
