/**
 * The demo config `agentgate dev` writes: it loads through the ordinary loader, and its
 * policy decides as the tour says (agents read, writes held for dba, DROP/TRUNCATE and
 * everything else denied; people allowed). The seed's card numbers are Luhn-valid, so the
 * credit_card detector has real work to do.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBrokerConfig } from '../../src/broker/config/load.js';
import { loadSqlParser } from '../../src/broker/policy/sql-classify.js';
import { createSqlGate } from '../../src/broker/policy/sql-gate.js';
import type { Identity } from '../../src/broker/identity/types.js';
import { DEMO_TARGET, DEV_PG_PASSWORD_ENV, DEV_USERS, renderDevConfig } from '../../src/dev/config.js';
import { DEMO_CUSTOMERS, luhnValid, seedSql } from '../../src/dev/seed.js';
import { shellQuote } from '../../src/dev/tour.js';

const text = renderDevConfig({
  port: 8443,
  issuer: 'http://127.0.0.1:40000',
  clientId: 'agentgate-cli',
  db: { host: '127.0.0.1', port: 5555, database: 'demo', user: 'agentgate_demo', hasPassword: true },
});

function who(user: { username: string; groups: readonly string[] }): Identity {
  return { sub: user.username, groups: [...user.groups], kind: user.groups.includes('ai-agents') ? 'agent' : 'human', issuer: 'http://127.0.0.1:40000', expiresAt: 0 };
}

describe('agentgate dev: demo config', () => {
  before(async () => {
    await loadSqlParser();
  });

  test('loads, with the password only from the loader environment', () => {
    const config = parseBrokerConfig(text, '/tmp/agentgate-dev-test/agentgate.yaml', { env: { [DEV_PG_PASSWORD_ENV]: 'pw-from-memory' } });
    assert.ok(!text.includes('pw-from-memory'));
    const target = config.targets[DEMO_TARGET];
    assert.equal(target?.type, 'postgres');
    assert.equal(target?.type === 'postgres' && target.password?.reveal(), 'pw-from-memory');
    assert.deepEqual(config.identity.agentGroups, ['ai-agents']);
    assert.deepEqual(config.auditors.groups, ['dba']);
    assert.deepEqual(config.masking[DEMO_TARGET], { columns: ['customers.email', '*.card*'], detectors: ['email', 'credit_card'], style: 'partial' });
    assert.equal(config.stateDir, '/tmp/agentgate-dev-test/state');
  });

  test('the demo policy decides as the tour says', () => {
    const config = parseBrokerConfig(text, '/tmp/agentgate-dev-test/agentgate.yaml', { env: { [DEV_PG_PASSWORD_ENV]: 'x' } });
    const agent = createSqlGate(who(DEV_USERS.agent), DEMO_TARGET, config);
    assert.equal(agent.judge('select * from customers').effect, 'allow');
    for (const sql of ["update orders set status = 'refunded' where id = 2", "insert into orders (customer_id, item, amount) values (1, 'x', 1)", 'delete from orders where id = 1']) {
      const v = agent.judge(sql);
      assert.equal(v.effect, 'review', sql);
      assert.deepEqual(v.approvers, { groups: ['dba'], count: 1, kinds: ['human'] });
    }
    for (const sql of ['drop table orders', 'truncate customers']) {
      const v = agent.judge(sql);
      assert.equal(v.effect, 'deny', sql);
      assert.equal(v.rule, 'no-drop-or-truncate');
    }
    assert.equal(agent.judge('create table t (a int)').rule, 'agents-default-deny');
    for (const u of [DEV_USERS.human, DEV_USERS.reviewer]) {
      assert.equal(createSqlGate(who(u), DEMO_TARGET, config).judge('drop table orders').effect, 'allow', u.username);
    }
    assert.equal(createSqlGate(who({ username: 'stranger', groups: ['interns'] }), DEMO_TARGET, config).judge('select 1').effect, 'deny');
  });

  test('seed cards are Luhn-valid test numbers, and the seed is plain SQL', () => {
    for (const c of DEMO_CUSTOMERS) assert.ok(luhnValid(c.card_number), c.card_number);
    assert.ok(!luhnValid('4111 1111 1111 1112'));
    const sql = seedSql().join('\n');
    assert.match(sql, /CREATE TABLE customers/);
    assert.match(sql, /CREATE TABLE orders/);
    assert.ok(DEMO_CUSTOMERS.every((c) => sql.includes(c.email)));
  });

  test('printed paths paste into a shell', () => {
    assert.equal(shellQuote('/home/a/.local/state/agentgate/dev/agent.token'), '/home/a/.local/state/agentgate/dev/agent.token');
    assert.equal(shellQuote("/tmp/it's here"), `'/tmp/it'\\''s here'`);
  });
});
