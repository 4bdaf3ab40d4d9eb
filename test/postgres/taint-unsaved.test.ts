/**
 * A write that fills a relation from a masked column is refused when its taint cannot be
 * saved where it survives (masking/written-relations.ts): forwarded with the taint only in
 * memory, the copy would read unmasked after a restart or through another broker. Real
 * PostgreSQL, real broker, node-postgres; the state dir's taint directory is made unusable
 * (a file in its place) after the target's sessions started. Before, the write went through.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { startPgStack, TARGET, type PgStack } from './stack.js';

const EMAIL = 'wqzrt.ollen@victim.example';

let stack: PgStack;

before(async () => {
  stack = await startPgStack({ config: { masking: { [TARGET]: { columns: ['users.email'], detectors: [], style: 'full' } } } });
  await stack.pg.psql(`CREATE TABLE users (id int PRIMARY KEY, email text); INSERT INTO users VALUES (1, '${EMAIL}'); GRANT ALL ON users TO app;`, { database: 'app' });
});

after(async () => {
  await stack?.close();
});

test('a copy of a masked column whose taint cannot be saved is refused; once it can, it runs and reads masked', async () => {
  const c = new pg.Client({ connectionString: stack.url });
  await c.connect();
  try {
    // The target's taint list is open (read from the state dir) once a session ran.
    await c.query('SELECT 1');
    const dir = join(stack.config.stateDir, 'written-relations');
    await rm(dir, { recursive: true, force: true });
    await writeFile(dir, 'not a directory');
    await assert.rejects(c.query('CREATE TABLE copy AS SELECT email AS x FROM users'), /could not save that where it survives/);
    assert.equal((await stack.pg.psql("SELECT count(*) FROM pg_class WHERE relname = 'copy'", { database: 'app' })).trim(), '0', 'nothing ran');
    // CONTROL: with the directory back, the same statement runs and its copy reads masked.
    await rm(dir, { force: true });
    await mkdir(dir, { mode: 0o700 });
    await c.query('CREATE TABLE copy AS SELECT email AS x FROM users');
    assert.equal((await stack.pg.psql('SELECT x FROM copy', { database: 'app' })).trim(), EMAIL);
    const read = await c.query<{ x: string }>('SELECT x FROM copy');
    assert.notEqual(read.rows[0]?.x, EMAIL);
  } finally {
    await c.end().catch(() => {});
  }
});
