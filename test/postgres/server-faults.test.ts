/**
 * A server message the masker refuses, arriving while the masker looks up a result's
 * columns (the first read of a masked table in a session): the rows wait behind the
 * lookup and are masked when it answers, outside the chunk handler. A refusal there must
 * end that session with a FATAL naming the fault, as it does for a message handled at
 * once, and never take the broker down. Real PostgreSQL and node-postgres; a relay
 * between the broker and the server corrupts one DataRow (test/helpers/corrupting-relay.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startPgStack, eventually, TARGET, type PgStack } from './stack.js';
import { startCorruptingRelay, type CorruptingRelay } from '../helpers/corrupting-relay.js';

const MARKER = 'corrupt-the-next-row';

describe('a malformed server message behind a masking lookup', () => {
  let stack: PgStack;
  let relay: CorruptingRelay;

  before(async () => {
    relay = await startCorruptingRelay(MARKER);
    stack = await startPgStack({
      target: (server) => {
        relay.upstreamPort = server.port;
        return { port: relay.port };
      },
      policies: [
        {
          name: 'agents',
          subjects: { groups: ['ai-agents'] },
          targets: [TARGET],
          rules: [{ name: 'reads', sql: ['select'], effect: 'allow', extra: {} }],
        },
      ],
      config: { masking: { [TARGET]: { columns: ['customers.email'], detectors: [], style: 'partial' } } },
    });
    await stack.pg.psql(
      `CREATE TABLE customers (id int PRIMARY KEY, email text);
       INSERT INTO customers VALUES (1, 'ada@example.org'), (2, 'bob@example.org');
       GRANT ALL ON customers TO app;`,
    );
  });
  after(async () => {
    await stack?.close();
    await relay?.close();
  });

  test('ends that session with FATAL 08P01 naming the fault; the broker serves the next session', { timeout: 30_000 }, async () => {
    const client = new pg.Client({ connectionString: stack.url });
    client.on('error', () => {}); // the FATAL also arrives as a connection error
    await client.connect();
    const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
    const err = await client.query(`SELECT id, email FROM customers ORDER BY id /* ${MARKER} */`).then(
      () => assert.fail('the query succeeded over a corrupt DataRow'),
      (e: unknown) => e as pg.DatabaseError,
    );
    assert.equal(relay.corrupted, 1);
    assert.equal(err.code, '08P01');
    assert.equal(err.severity, 'FATAL');
    assert.match(err.message, /malformed DataRow message: value 0 claims \d+ bytes/);
    await ended;

    const summary = await eventually('session.end', async () => (await stack.events()).find((e) => e.type === 'session.end' && /malformed DataRow/.test(String(e.detail['reason']))));
    assert.equal(summary.actor?.sub, 'agent-7');

    // The broker is still up: a new session reads (masked) through the same relay.
    const next = new pg.Client({ connectionString: stack.url });
    await next.connect();
    try {
      const r = await next.query<{ email: string }>('SELECT email FROM customers ORDER BY id');
      assert.deepEqual(
        r.rows.map((row) => row.email.includes('ada')),
        [false, false],
      );
      assert.equal(r.rows.length, 2);
    } finally {
      await next.end();
    }
  });
});
