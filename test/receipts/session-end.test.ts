/**
 * The broker issues a receipt when a real Postgres session ends (the runBroker hook), and
 * it matches the audit log: same session, counts, and a head that covers session.end.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { receiptJwks } from '../../src/broker/keys.js';
import { verifyReceipt } from '../../src/shared/receipt.js';
import { eventually, startPgStack, TARGET, type PgStack } from '../postgres/stack.js';

describe('receipt at session end', { timeout: 60_000 }, () => {
  let stack: PgStack;
  before(async () => {
    stack = await startPgStack();
  });
  after(async () => {
    await stack?.close();
  });

  test('a finished Postgres session gets a signed receipt naming its connect session', async () => {
    const c = new pg.Client({ connectionString: stack.url });
    await c.connect();
    await c.query('select 1');
    await c.query('select $1::int as n', [2]);
    await c.end();

    const [stored] = await eventually('the receipt', async () => {
      const list = await stack.broker.receipts.listForConnect(stack.session.id, 'agent-7');
      return list.length > 0 ? list : undefined;
    });
    const { statement } = verifyReceipt(stored!.envelope, receiptJwks(stack.broker.keys));
    const p = statement.predicate;
    assert.equal(p.connect_session, stack.session.id);
    assert.equal(p.target, TARGET);
    assert.equal(p.actor.sub, 'agent-7');
    assert.equal(p.counts.statements, 2);

    const events = (await stack.events()).filter((e) => e.session === p.session);
    assert.equal(events[0]?.type, 'session.start');
    assert.equal(events[0]?.seq, p.audit.first_seq);
    const end = events.find((e) => e.type === 'session.end');
    assert.ok(end && end.seq <= p.audit.head_seq, 'the receipt was issued after session.end was durable');
    assert.equal(events.filter((e) => e.type === 'query').length, p.counts.statements);
  });
});
