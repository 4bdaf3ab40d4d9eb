/**
 * Masking on the real path: seeded personal data in a real PostgreSQL, read through the
 * broker with real psql (text), node-postgres in binary mode, COPY, errors that echo
 * values, JSON holding secrets, Unicode and large values. Afterwards the SQLite audit file
 * is read byte for byte: no raw value may be in it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { startPgStack, TARGET, type PgStack } from '../postgres/stack.js';

const run = promisify(execFile);

const EMAIL = 'ada.lovelace@example.org';
const CARD = '4111111111111111';
const SSN = '078-05-1120';
const AWS = 'AKIAIOSFODNN7EXAMPLE';
const UNICODE_EMAIL = 'zoë.åström@exämple.com';
const JWT =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';
const BIG = 'x'.repeat(200_000) + ` contact ${EMAIL} `;
const RAW = [EMAIL, CARD, SSN, AWS, JWT, 'grace.hopper@example.net', '5555555555554444'];

describe('masking through the broker', () => {
  let stack: PgStack;

  before(async () => {
    stack = await startPgStack({
      policies: [
        {
          name: 'agents',
          subjects: { groups: ['ai-agents'] },
          targets: [TARGET],
          rules: [
            { name: 'reads', sql: ['select', 'copy', 'insert'], effect: 'allow', extra: {} },
            { name: 'rest', effect: 'deny', extra: {} },
          ],
        },
        { name: 'dba', subjects: { groups: ['dba'] }, targets: [TARGET], rules: [{ name: 'dba#1', effect: 'allow', extra: {} }], masking: { mode: 'off' } },
      ],
      config: {
        masking: {
          [TARGET]: { columns: ['customers.email', '*.ssn'], detectors: ['email', 'credit_card', 'aws_key', 'jwt'], style: 'partial' },
        },
      },
    });
    await stack.pg.psql(
      `CREATE TABLE customers (id int PRIMARY KEY, name text, email text UNIQUE, card text, ssn varchar(11), notes jsonb, bio text);
       INSERT INTO customers VALUES
         (1, 'Ada', '${EMAIL}', '${CARD}', '${SSN}', '{"aws": "${AWS}", "token": "${JWT}"}', 'ünïcødé ✓ write to grace.hopper@example.net'),
         (2, 'Bob', '${UNICODE_EMAIL}', 'card 5555 5555 5555 4444 on file', '219-09-9999', '{}', '${BIG}');
       GRANT ALL ON customers TO app;`,
      { database: 'app' },
    );
  });
  after(async () => {
    await stack?.close();
  });

  test('psql (text results): masked columns and detected values are replaced, the rest intact', async () => {
    const { stdout } = await run('psql', ['-X', '-At', '-c', 'SELECT id, name, email, card, ssn, notes, left(bio, 60) FROM customers WHERE id = 1'], { env: stack.env });
    for (const raw of RAW) assert.ok(!stdout.includes(raw), `raw value ${raw.slice(0, 12)}… leaked: ${stdout}`);
    assert.match(stdout, /^1\|Ada\|/, 'unmasked columns pass');
    assert.match(stdout, /\*\*\*\*@example\.org/, 'email column, partial style keeps the domain');
    assert.match(stdout, /\*\*\*\*1111/, 'card number found by the detector, partial');
    // bio holds a detector hit (an email), so a value computed from it (left(bio, 60)) is
    // masked whole: once transformed, the detectors could no longer recognise it.
    assert.match(stdout, /\|\*{8}$/m);
  });

  test('node-postgres in binary mode: text-like columns masked, JSON still parses', async () => {
    const client = new pg.Client({ connectionString: stack.url, binary: true } as pg.ClientConfig);
    await client.connect();
    try {
      const r = await client.query('SELECT email, card, ssn, notes::text AS notes_text, notes, bio FROM customers ORDER BY id');
      const text = JSON.stringify(r.rows);
      for (const raw of RAW) assert.ok(!text.includes(raw), `raw value leaked in binary mode: ${raw.slice(0, 12)}`);
      assert.equal(r.rows[1].email.includes('å'), false, 'unicode email masked');
      assert.equal(r.rows[1].bio.length > 200_000, true, 'the large value came through');
      assert.match(r.rows[1].bio, /\*\*\*\*@example\.org/);
    } finally {
      await client.end();
    }
  });

  test('COPY TO STDOUT, text and CSV, is masked', async () => {
    const text = await run('psql', ['-X', '-c', 'COPY (SELECT id, email, card FROM customers) TO STDOUT'], { env: stack.env });
    const csv = await run('psql', ['-X', '-c', 'COPY customers (id, email, ssn, notes) TO STDOUT WITH (FORMAT csv, HEADER)'], { env: stack.env });
    for (const out of [text.stdout, csv.stdout]) for (const raw of RAW) assert.ok(!out.includes(raw), `COPY leaked ${raw.slice(0, 12)}`);
    assert.match(csv.stdout, /^id,email,ssn,notes/);
  });

  test('an error that echoes a value (unique violation) is masked', async () => {
    const r = await run('psql', ['-X', '-c', `INSERT INTO customers (id, email) VALUES (3, '${EMAIL}')`], { env: stack.env }).catch((e: { stderr: string }) => e);
    assert.match(r.stderr, /duplicate key value violates unique constraint/);
    assert.ok(!r.stderr.includes(EMAIL), r.stderr);
  });

  test('an error of a COPY whose query reads a masked column quotes no part of its value', async () => {
    const local = EMAIL.slice(0, EMAIL.indexOf('@'));
    const r = await run('psql', ['-X', '-c', "COPY (SELECT current_setting(split_part(email, '@', 1)) FROM customers) TO STDOUT"], { env: stack.env }).catch(
      (e: { stderr: string }) => e,
    );
    assert.match(r.stderr, /unrecognized configuration parameter "\*{8}"/, r.stderr);
    assert.ok(!r.stderr.includes(local), r.stderr);
  });

  test('a policy with masking off (a DBA) sees raw values', async () => {
    const dba = await stack.connectAs('dba-1', ['dba']);
    const { stdout } = await run('psql', ['-X', '-At', '-c', 'SELECT email FROM customers WHERE id = 1'], {
      env: { ...stack.env, PGPORT: String(dba.port), PGPASSWORD: dba.session.secret },
    });
    assert.equal(stdout.trim(), EMAIL);
  });

  test('the audit log holds no raw value (byte for byte), but says what was masked', async () => {
    const events = await stack.events();
    const masked = events.filter((e) => e.type === 'query' && e.detail['masked'] !== undefined);
    assert.ok(masked.length >= 3, 'statements record how many values were masked');
    assert.ok(JSON.stringify(masked).includes('column:'), 'the firing rule is named');
    // Agent statements only: the DBA session above is unmasked by policy, and its SQL had no literal value.
    const files = (await readdir(stack.config.stateDir)).filter((f) => f.startsWith('agentgate.db'));
    assert.ok(files.some((f) => f.includes('.journal.')), `the live journal segment is searched too: ${files.join(', ')}`);
    for (const f of files) {
      const bytes = await readFile(join(stack.config.stateDir, f));
      for (const raw of [EMAIL, CARD, SSN, AWS, JWT]) {
        assert.equal(bytes.indexOf(Buffer.from(raw, 'utf8')), -1, `${f} contains ${raw.slice(0, 12)}…`);
      }
    }
  });
});
