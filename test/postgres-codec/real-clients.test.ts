/**
 * Real clients against a server built only from the codec: psql (libpq) and node-postgres
 * must accept our SSL refusal, SCRAM exchange, startup messages and query replies.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import pg from 'pg';

import { makeScramVerifier } from '../../src/broker/postgres/scram.js';
import { startTinyServer } from './tiny-server.js';
import type { TinyServer } from './tiny-server.js';

const PASSWORD = randomBytes(18).toString('base64url');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** psql with the password in the environment (never argv) and no outside PG* settings. */
function psql(port: number, password: string, sql: string): Promise<Run> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  env.PGPASSWORD = password;
  env.PGCONNECT_TIMEOUT = '10';
  return new Promise((resolve, reject) => {
    const child = spawn('psql', ['-X', '-h', '127.0.0.1', '-p', String(port), '-U', 'u', '-d', 'd', '-c', sql, '-At'], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('real clients against a codec-built server', () => {
  let server: TinyServer;

  before(async () => {
    server = await startTinyServer(makeScramVerifier(PASSWORD));
  });

  after(async () => {
    await server.close();
  });

  it('psql declines-TLS-then-SCRAM logs in and prints the row', async () => {
    const r = await psql(server.port, PASSWORD, 'select 1');
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    assert.equal(r.stdout, '1\n');
    // libpq's default sslmode=prefer asked for TLS first and got our 'N'.
    assert.ok(server.requests.includes('ssl'), `requests: ${server.requests.join(',')}`);
    const startup = server.startups.at(-1);
    assert.equal(startup?.get('user'), 'u');
    assert.equal(startup?.get('database'), 'd');
    assert.equal(startup?.get('application_name'), 'psql');
    assert.deepEqual(server.errors, []);
  });

  it('psql with the wrong password exits non-zero with PostgreSQL’s message', async () => {
    const r = await psql(server.port, 'not-the-password', 'select 1');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /password authentication failed for user "u"/);
    assert.equal(r.stdout, '');
    assert.equal(server.outcomes.at(-1), 'failed');
    assert.deepEqual(server.errors, []);
  });

  it('node-postgres connects, verifies our server signature, and reads the row', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: server.port, user: 'u', database: 'd', password: PASSWORD });
    await client.connect();
    try {
      const res = await client.query('select 7');
      assert.deepEqual(res.rows, [{ '?column?': 7 }]);
      assert.equal(res.fields[0]?.dataTypeID, 23);
      const empty = await client.query('');
      assert.equal(empty.rowCount, null);
      await assert.rejects(client.query('delete from t'), (e: Error & { code?: string }) => e.code === '0A000');
      // The connection survives an ERROR.
      assert.deepEqual((await client.query('select 8')).rows, [{ '?column?': 8 }]);
    } finally {
      await client.end();
    }
    assert.deepEqual(server.errors, []);
  });

  it('node-postgres with the wrong password gets 28P01', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: server.port, user: 'u', database: 'd', password: 'nope' });
    client.on('error', () => undefined);
    await assert.rejects(client.connect(), (e: Error & { code?: string }) => {
      assert.equal(e.code, '28P01');
      assert.match(e.message, /password authentication failed for user "u"/);
      return true;
    });
    await client.end().catch(() => undefined);
    assert.deepEqual(server.errors, []);
  });
});
