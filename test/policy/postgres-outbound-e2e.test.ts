/**
 * Masked means masked, outside result columns too, against a real PostgreSQL through
 * the broker: an email a statement puts in an error's COLUMN field, in a bytea value,
 * in application_name (ParameterStatus) or in a NOTIFY channel never reaches psql or
 * node-postgres.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { startPgStack, TARGET, type PgStack } from '../postgres/stack.js';

const run = promisify(execFile);

const EMAIL = 'alice@example.com';
const EMAIL_HEX = Buffer.from(EMAIL).toString('hex');
const MASK_HEX = '\\x' + Buffer.from('********').toString('hex');

describe('masking of errors, bytea, ParameterStatus and NOTIFY through the broker', () => {
  let stack: PgStack;

  before(async () => {
    stack = await startPgStack({
      policies: [{ name: 'agents', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: [{ name: 'all', effect: 'allow', extra: {} }] }],
      config: { masking: { [TARGET]: { columns: ['*.email'], detectors: ['email', 'credit_card', 'aws_key', 'jwt'], style: 'full' } } },
    });
  });
  after(async () => {
    await stack?.close();
  });

  test('RAISE … USING COLUMN = email: psql (verbose) and node-postgres never see the email', async () => {
    const sql = `DO $$ BEGIN RAISE EXCEPTION 'x' USING COLUMN = '${EMAIL}', CONSTRAINT = '${EMAIL}', DATATYPE = '${EMAIL}', TABLE = '${EMAIL}', SCHEMA = '${EMAIL}'; END $$`;
    const r = await run('psql', ['-X', '-v', 'VERBOSITY=verbose', '-v', 'SHOW_CONTEXT=always', '-c', sql], { env: stack.env }).catch((e: { stderr: string; stdout: string }) => e);
    // With column rules, whatever the RAISE wrote is withheld (it could be a masked value in any form).
    assert.match(r.stderr, /ERROR: +P0001: agentgate: withheld/);
    assert.ok(!r.stderr.includes(EMAIL) && !r.stdout.includes(EMAIL), r.stderr);

    const client = new pg.Client({ connectionString: stack.url });
    await client.connect();
    try {
      const err = (await client.query(sql).then(
        () => undefined,
        (e: unknown) => e,
      )) as (Error & Record<string, unknown>) | undefined;
      assert.ok(err, 'the DO block fails');
      assert.equal(err['code'], 'P0001');
      assert.equal(err['column'], 'agentgate: withheld (text from a function may carry masked data)');
      assert.equal(err['constraint'], 'agentgate: withheld (text from a function may carry masked data)');
      assert.ok(!JSON.stringify({ ...err, message: err.message }).includes(EMAIL), JSON.stringify(err));
    } finally {
      await client.end();
    }
  });

  test("select 'alice@example.com'::bytea comes back masked, as valid bytea, in text and binary", async () => {
    const { stdout } = await run('psql', ['-X', '-At', '-c', `SELECT '${EMAIL}'::bytea, convert_to('${EMAIL}', 'UTF8'), 'hello'::bytea`], { env: stack.env });
    assert.ok(!stdout.includes(EMAIL_HEX) && !stdout.includes(EMAIL), stdout);
    assert.equal(stdout.trim(), `${MASK_HEX}|${MASK_HEX}|\\x${Buffer.from('hello').toString('hex')}`);

    const escape = await run('psql', ['-X', '-At', '-c', `SET bytea_output = escape; SELECT '${EMAIL}'::bytea`], { env: stack.env });
    assert.ok(!escape.stdout.includes(EMAIL), escape.stdout);
    assert.match(escape.stdout, /\\x2a2a2a2a2a2a2a2a/);

    const client = new pg.Client({ connectionString: stack.url, binary: true } as pg.ClientConfig);
    await client.connect();
    try {
      const r = await client.query(`SELECT '${EMAIL}'::bytea AS b`);
      assert.ok(Buffer.isBuffer(r.rows[0].b));
      assert.equal((r.rows[0].b as Buffer).toString(), '********');
    } finally {
      await client.end();
    }
  });

  test('application_name set to an email is reported masked; NOTIFY channel names are masked', async () => {
    const client = new pg.Client({ connectionString: stack.url });
    const reported: string[] = [];
    const notes: { channel: string; payload?: string }[] = [];
    await client.connect();
    try {
      const conn = (client as unknown as { connection: NodeJS.EventEmitter }).connection;
      conn.on('parameterStatus', (m: { parameterName: string; parameterValue: string }) => reported.push(`${m.parameterName}=${m.parameterValue}`));
      client.on('notification', (n) => notes.push({ channel: n.channel, payload: n.payload }));
      // (set_config is refused by the policy's function list; SET reports the same way.)
      await client.query(`SET application_name = '${EMAIL}'`);
      await client.query(`LISTEN "${EMAIL}"`);
      await client.query(`NOTIFY "${EMAIL}", 'for ${EMAIL}'`);
      await client.query('SELECT 1');
    } finally {
      await client.end();
    }
    assert.ok(reported.some((r) => r.startsWith('application_name=')), `a ParameterStatus for application_name: ${reported.join(', ')}`);
    assert.ok(!reported.join('\n').includes(EMAIL), reported.join('\n'));
    assert.equal(notes.length, 1);
    assert.ok(!JSON.stringify(notes).includes(EMAIL), JSON.stringify(notes));
  });
});
