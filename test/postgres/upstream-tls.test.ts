/**
 * The broker's connection to the target honours the target's `tls` mode against a real
 * PostgreSQL with TLS on: verify-full checks the CA and the host name, require encrypts
 * without checking, and a failure reaches the client as a readable error.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startPgStack, type PgStack } from './stack.js';

const run = promisify(execFile);
const stacks: PgStack[] = [];
after(async () => {
  for (const s of stacks) await s.close();
});

async function sslInUse(stack: PgStack): Promise<string> {
  // The broker's own upstream connection is the one with application_name psql.
  const { stdout } = await run('psql', ['-X', '-At', '-c', 'select ssl from pg_stat_ssl where pid = pg_backend_pid()'], { env: stack.env });
  return stdout.trim();
}

describe('upstream TLS', () => {
  test('verify-full with the right CA connects over TLS', async () => {
    const stack = await startPgStack({ pg: { ssl: true }, target: (pg) => ({ tls: 'verify-full', ca: pg.caPath, host: 'localhost' }) });
    stacks.push(stack);
    assert.equal(await sslInUse(stack), 't');
  });

  test('verify-full against a certificate the CA did not sign is refused with a TLS error', async () => {
    // No CA configured: the system store does not know the test CA.
    const stack = await startPgStack({ pg: { ssl: true }, target: { tls: 'verify-full', host: 'localhost' } });
    stacks.push(stack);
    await assert.rejects(
      run('psql', ['-X', '-At', '-c', 'select 1'], { env: stack.env }),
      (err: Error & { stderr?: string }) => /TLS to the server failed/.test(err.stderr ?? ''),
    );
  });

  test('require encrypts without verifying', async () => {
    const stack = await startPgStack({ pg: { ssl: true }, target: { tls: 'require' } });
    stacks.push(stack);
    assert.equal(await sslInUse(stack), 't');
  });
});
