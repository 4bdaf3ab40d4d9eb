/**
 * Masking by provenance on the real path: expressions computed from a masked column
 * (encodings, string functions, aggregates, views that rename it, whole-row values) must
 * not deliver the value, in text or binary results; what does not reveal it (count,
 * length, IS NULL) passes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { startPgStack, TARGET, type PgStack } from '../postgres/stack.js';

const run = promisify(execFile);

const EMAIL = 'zed.quux@victim.example';
/** The value and transforms of it that anyone could undo. */
const LEAKS = [
  EMAIL,
  'zed.quux',
  [...EMAIL].reverse().join(''),
  EMAIL.replace('@', '#'),
  Buffer.from(EMAIL).toString('base64'),
  Buffer.from(EMAIL).toString('hex'),
  EMAIL.toUpperCase(),
];

function assertNoLeak(text: string, what: string): void {
  for (const l of LEAKS) assert.ok(!text.includes(l), `${what}: "${l}" leaked in ${text.slice(0, 300)}`);
}

describe('masking by provenance through the broker', () => {
  let stack: PgStack;

  before(async () => {
    stack = await startPgStack({
      policies: [
        {
          name: 'agents',
          subjects: { groups: ['ai-agents'] },
          targets: [TARGET],
          rules: [
            { name: 'ro#1', sql: ['select', 'show', 'explain', 'transaction', 'copy'], effect: 'allow', extra: {} },
            { name: 'ro#2', effect: 'deny', extra: {} },
          ],
        },
      ],
      config: { masking: { [TARGET]: { columns: ['*.email'], detectors: [], style: 'partial' } } },
    });
    await stack.pg.psql(
      `CREATE TABLE users (id int PRIMARY KEY, name text, email text);
       INSERT INTO users VALUES (1, 'Zed', '${EMAIL}'), (2, 'Amy', NULL);
       CREATE VIEW v_users AS SELECT id, email AS contact FROM users;
       CREATE FUNCTION f_say(t text) RETURNS int STABLE LANGUAGE plpgsql AS $$
         BEGIN RAISE NOTICE 'n %', t; RAISE EXCEPTION 'e %', t USING DETAIL = t, HINT = t; END $$;
       GRANT SELECT ON users, v_users TO app;
       GRANT EXECUTE ON FUNCTION f_say(text) TO app;`,
      { database: 'app' },
    );
  });
  after(async () => {
    await stack?.close();
  });

  const computed = [
    'SELECT reverse(email) FROM users',
    "SELECT translate(email, '@', '#') FROM users",
    "SELECT split_part(email, '@', 1) AS local FROM users",
    "SELECT encode(convert_to(email, 'UTF8'), 'base64') FROM users",
    "SELECT encode(convert_to(email, 'UTF8'), 'hex') AS h FROM users",
    'SELECT upper(email) FROM users',
    "SELECT string_agg(email, ',') FROM users",
    'SELECT contact FROM v_users',
    'SELECT x.e FROM (SELECT email AS e FROM users) x',
    'WITH c AS (SELECT email AS e FROM users) SELECT e FROM c',
    'SELECT u FROM users u',
    'SELECT row_to_json(u) FROM users u',
    'SELECT (SELECT email FROM users WHERE id = 1) AS s',
    "SELECT name FROM users UNION ALL SELECT email FROM users",
    "SELECT format('%s', email) FROM users",
    "SELECT email || '' FROM users",
  ];

  for (const sql of computed) {
    test(`psql: ${sql}`, async () => {
      const { stdout } = await run('psql', ['-X', '-At', '-c', sql], { env: stack.env });
      assertNoLeak(stdout, sql);
    });
  }

  test('binary results (node-postgres): email::bytea and a renamed column', async () => {
    const client = new pg.Client({ connectionString: stack.url, binary: true } as pg.ClientConfig);
    await client.connect();
    try {
      const r = await client.query('SELECT email::bytea AS b, email AS renamed, reverse(email) AS r FROM users WHERE id = 1');
      const row = r.rows[0] as { b: Buffer | null; renamed: string; r: string };
      assertNoLeak(JSON.stringify({ b: row.b?.toString('utf8') ?? null, renamed: row.renamed, r: row.r }), 'binary');
      assert.match(row.renamed, /\*\*\*\*@victim\.example/, 'a plain reference keeps the rule style (partial)');
    } finally {
      await client.end();
    }
  });

  test('COPY (SELECT reverse(email) …) TO STDOUT is masked', async () => {
    const { stdout } = await run('psql', ['-X', '-At', '-c', 'COPY (SELECT id, reverse(email) FROM users) TO STDOUT'], { env: stack.env });
    assertNoLeak(stdout, 'COPY');
    assert.match(stdout, /^1\t/m);
  });

  test('what does not reveal the value passes: count, length, IS NULL, other columns', async () => {
    const { stdout } = await run('psql', ['-X', '-At', '-c', 'SELECT (SELECT count(email) FROM users), length(email), email IS NULL, name FROM users WHERE id = 1'], { env: stack.env });
    assert.equal(stdout.trim(), `1|${EMAIL.length}|f|Zed`);
  });

  for (const sql of ['SELECT reverse(email)::int FROM users WHERE id = 1', 'SELECT f_say(reverse(email)) FROM users WHERE id = 1']) {
    test(`errors and notices echoing a computed value: ${sql}`, async () => {
      const r = await run('psql', ['-X', '-At', '-v', 'VERBOSITY=verbose', '-c', sql], { env: stack.env }).then(
        () => assert.fail('the statement was expected to fail'),
        (err: { stdout: string; stderr: string; code: number }) => err,
      );
      assert.equal(r.code, 1);
      assertNoLeak(r.stdout + r.stderr, sql);
      assert.match(r.stderr, /ERROR/);
    });
  }

  test('nothing raw in the audit log', async () => {
    const events = JSON.stringify(await stack.events());
    assertNoLeak(events, 'audit');
  });
});
