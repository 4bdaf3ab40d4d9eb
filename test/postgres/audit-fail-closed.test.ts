/**
 * Fail closed: once the audit store cannot write, the statement whose intent could not be
 * made durable is never sent to PostgreSQL (nothing ran), and later statements are refused.
 * The failure is real: the audit journal's segment is made immutable (chattr +i), so the
 * broker's next write gets EPERM from the kernel, as a failing disk would give it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { freezeAuditJournal } from '../helpers/audit-faults.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startPgStack, type PgStack } from './stack.js';

const run = promisify(execFile);

describe('audit store failure', () => {
  let stack: PgStack;
  let thaw: (() => void) | undefined;
  before(async () => {
    stack = await startPgStack();
  });
  after(async () => {
    thaw?.(); // before the broker closes: it deletes the journal
    await stack?.close();
  });

  test('a statement whose event cannot be recorded does not complete, and new statements are refused', async () => {
    const psql = (sql: string) => run('psql', ['-X', '-At', '-c', sql], { env: stack.env });
    assert.equal((await psql('select 1')).stdout.trim(), '1');
    await stack.pg.psql('create table fail_closed (x int)');
    await stack.pg.psql('grant all on fail_closed to public');

    const path = stack.config.store.kind === 'sqlite' ? stack.config.store.path : '';
    thaw = freezeAuditJournal(path);

    // Its intent cannot be made durable, so the statement is never forwarded: the client sees
    // a FATAL error and the row is not there.
    await assert.rejects(psql('insert into fail_closed values (42)'), (err: Error & { stderr?: string }) => /audit log is unavailable/.test(err.stderr ?? ''));
    assert.ok(stack.broker.audit.failed, 'the store is marked failed');
    assert.equal((await stack.pg.psql('select count(*) from fail_closed')).trim(), '0', 'nothing ran upstream');

    // Later sessions are refused before anything runs upstream.
    await assert.rejects(psql('select 2'), (err: Error & { stderr?: string }) => /audit log is unavailable/.test(err.stderr ?? ''));
    const active = await stack.pg.psql("select count(*) from pg_stat_activity where query = 'select 2'");
    assert.equal(active.trim(), '0');
  });
});
