/**
 * Fail closed: when the audit store cannot write, the statement whose event could not be
 * made durable never completes to the client, and later statements are refused. The
 * failure is a real one: SQLite aborting the store's own transaction (a trigger added from
 * a second connection, as a damaged or full database would).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startPgStack, type PgStack } from './stack.js';

const run = promisify(execFile);

describe('audit store failure', () => {
  let stack: PgStack;
  before(async () => {
    stack = await startPgStack();
  });
  after(async () => {
    await stack?.close();
  });

  test('a statement whose event cannot be recorded does not complete, and new statements are refused', async () => {
    const psql = (sql: string) => run('psql', ['-X', '-At', '-c', sql], { env: stack.env });
    assert.equal((await psql('select 1')).stdout.trim(), '1');

    const path = stack.config.store.kind === 'sqlite' ? stack.config.store.path : '';
    const db = new DatabaseSync(path);
    // The broker's writer may be mid-commit (the first session's end): wait for its lock.
    db.exec('PRAGMA busy_timeout = 10000');
    db.exec(`CREATE TRIGGER poison BEFORE INSERT ON audit_events WHEN NEW.type = 'query'
      BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END`);
    db.close();

    // The statement runs upstream, but its result is withheld: the client sees a FATAL error instead.
    await assert.rejects(psql("select 'not recorded'"), (err: Error & { stderr?: string }) => /audit log is unavailable/.test(err.stderr ?? ''));
    assert.ok(stack.broker.audit.failed, 'the store is marked failed');

    // Later sessions are refused before anything runs upstream.
    await assert.rejects(psql('select 2'), (err: Error & { stderr?: string }) => /audit log is unavailable/.test(err.stderr ?? ''));
    const active = await stack.pg.psql("select count(*) from pg_stat_activity where query = 'select 2'");
    assert.equal(active.trim(), '0');
  });
});
