/**
 * Wave 1 of the approvals red team: "what the reviewer saw is exactly what runs, once, for
 * whom it was asked", tried on the real path (real PostgreSQL, the broker, the tunnel,
 * node-postgres and a bare protocol client). Each case asserts what reached the client,
 * what ran upstream and what the approval service holds.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { eventually, startPgStack, type PgStack } from '../postgres/stack.js';
import { APPROVAL_POLICIES as POLICIES, failure, pgApprovalHelpers } from './pg-helpers.js';
import { RawPg, errorMessages } from '../postgres/raw-client.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';
import { BackendType } from '../../src/broker/postgres/protocol.js';
import type { ApprovalRequest } from '../../src/broker/approvals/types.js';
import type { Identity } from '../../src/broker/identity/types.js';
import { requestView } from '../../src/broker/approvals/view.js';
import { describeClassification, requestDetails, requestsTable } from '../../src/ui/format.js';


function human(sub: string, groups = ['dba']): Identity {
  return { sub, groups, kind: 'human', issuer: 'test', expiresAt: Math.floor(Date.now() / 1000) + 3600 };
}
const DBA = human('dba-1');

describe('approvals, wave 1 adversary (Postgres)', () => {
  let stack: PgStack;

  const { pending, held, direct, client } = pgApprovalHelpers(() => stack, human('auditor'));

  before(async () => {
    stack = await startPgStack({ policies: POLICIES, config: { approvals: { timeoutSeconds: 600, webhooks: [] } } });
    await stack.pg.psql(
      "CREATE TABLE orders (id int PRIMARY KEY, status text); INSERT INTO orders SELECT g, 'new' FROM generate_series(1, 10) g;" +
        "CREATE SCHEMA archive; CREATE TABLE archive.orders (id int PRIMARY KEY, status text); INSERT INTO archive.orders SELECT g, 'kept' FROM generate_series(1, 10) g;" +
        'CREATE TABLE notes (id int PRIMARY KEY, body text);' +
        'GRANT USAGE ON SCHEMA archive TO app; GRANT ALL ON orders, archive.orders, notes TO app;',
      { database: 'app' },
    );
  });
  after(async () => {
    await stack?.close();
  });

  test('w1a-01: a grant covers the statement in the session state the reviewer saw; after SET search_path or set_config it is another request', async () => {
    const sql = "UPDATE orders SET status = 'paid' WHERE id = 1";
    const a = await client();
    const first = a.query(sql);
    const req = await held(sql);
    assert.equal(req.classification['session_state'], undefined, 'a session that changed nothing shows no state');
    await stack.broker.approvals.decide(req.id, DBA, 'approve', null);
    await first;
    // The grant works: the same text in the same state runs without a new request.
    await a.query(sql);
    assert.equal(pending().length, 0);
    await a.end();

    // Another session of the same agent points the unqualified name elsewhere first.
    const b = await client();
    await b.query('SET search_path = archive, public');
    const redirected = failure(b.query(sql));
    const again = await held(sql, [req.id]);
    assert.notEqual(again.fingerprint, req.fingerprint);
    assert.deepEqual(again.classification['session_state'], ['SET search_path = archive, public']);
    // The reviewer is shown the state it runs in.
    assert.match(describeClassification(again.classification), /runs after this session's SET search_path = archive, public/);
    assert.match(requestDetails(requestView(again, DBA)), /runs after this session's SET search_path = archive, public/);
    assert.equal(await direct("SELECT status FROM archive.orders WHERE id = 1"), 'kept', 'the grant did not run it against archive.orders');
    await stack.broker.approvals.decide(again.id, DBA, 'deny', 'not in archive');
    assert.match(await redirected, /denied by dba-1: not in archive/);
    await b.end();

    // The same through set_config inside an allowed SELECT.
    const c = await client();
    await c.query("SELECT set_config('search_path', 'archive, public', false)");
    const viaFunction = failure(c.query(sql));
    const third = await held(sql, [req.id, again.id]);
    assert.deepEqual(third.classification['session_state'], ["SELECT set_config('search_path', 'archive, public', false)"]);
    await stack.broker.approvals.decide(third.id, DBA, 'deny', 'not in archive either');
    assert.match(await viaFunction, /not in archive either/);
    await c.end();
    assert.equal(await direct("SELECT count(*) FROM archive.orders WHERE status = 'paid'"), '0');
    assert.equal(await direct("SELECT status FROM orders WHERE id = 1"), 'paid');
  });

  test('w1a-02: COPY FROM STDIN is refused, not held: the rows it loads would arrive after the approval, unseen', async () => {
    const raw = await RawPg.login(stack.port, stack.session.secret);
    raw.send(fe.query('COPY notes FROM STDIN'));
    const answer = await raw.untilReady();
    assert.ok(!answer.some((m) => m.type === BackendType.copyInResponse), 'the server never asked for rows');
    assert.match(errorMessages(answer).join('\n'), /COPY FROM STDIN loads rows the client sends after the approval, which no reviewer sees; it was not held and nothing ran/);
    assert.deepEqual(pending().filter((r) => r.statement.includes('COPY notes')), []);
    // The session goes on.
    raw.send(fe.query('SELECT 1'));
    assert.deepEqual(errorMessages(await raw.untilReady()), []);
    raw.close();
    assert.equal(await direct('SELECT count(*) FROM notes'), '0');
    const audit = (await stack.events()).find((e) => e.type === 'query' && e.detail['sql'] === 'COPY notes FROM STDIN');
    assert.equal(audit?.decision?.effect, 'deny');
  });

  test('w1a-03: a Bind value too long to be shown whole is refused, not held; one that fits is shown whole', async () => {
    const c = await client();
    const tail = 'x'.repeat(1992) + 'DROP-TAIL';
    assert.equal(tail.length, 2001);
    // Whichever comes first: the refusal, or a hold (which is the defect: it is denied so nothing waits).
    const refused = await Promise.race([
      failure(c.query('INSERT INTO notes (id, body) VALUES ($1, $2)', [1, tail])),
      held('INSERT INTO notes (id, body)').then(async (r) => {
        await stack.broker.approvals.decide(r.id, DBA, 'deny', 'cut');
        return `held as ${r.id} showing ${JSON.stringify(r.parameters)}`;
      }),
    ]);
    assert.match(refused, /parameter \$2 is longer than the 2000 characters a reviewer is shown/);
    assert.deepEqual(pending().filter((r) => r.statement.includes('INSERT INTO notes')), []);
    assert.equal((await stack.events()).find((e) => e.type === 'query' && e.detail['sql'] === 'INSERT INTO notes (id, body) VALUES ($1, $2)')?.decision?.effect, 'deny');
    // At the limit: held, and the reviewer sees every character.
    const fits = 'y'.repeat(2000);
    const ran = failure(c.query('INSERT INTO notes VALUES ($1, $2)', [2, fits]));
    const req = await held('INSERT INTO notes');
    assert.deepEqual(req.parameters, ["'2'", `'${fits}'`]);
    await stack.broker.approvals.decide(req.id, DBA, 'deny', 'no notes');
    assert.match(await ran, /no notes/);
    await c.end();
    assert.equal(await direct('SELECT count(*) FROM notes'), '0');
  });

  test('w1a-04: case, whitespace and width variants of a subject neither approve their own request nor count twice', async () => {
    const c = await client();
    const ran = failure(c.query('DELETE FROM orders WHERE id = 9'));
    const req = await held('DELETE FROM orders WHERE id = 9');
    for (const sub of ['AGENT-7', ' agent-7 ', '\uFF41gent-7']) {
      await assert.rejects(stack.broker.approvals.decide(req.id, human(sub), 'approve', null), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'AG_SELF_APPROVAL', sub);
        return true;
      });
    }
    await stack.broker.approvals.decide(req.id, DBA, 'approve', null);
    await assert.rejects(stack.broker.approvals.decide(req.id, human('DBA-1'), 'approve', null), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'AG_ALREADY_DECIDED');
      return true;
    });
    assert.equal(stack.broker.approvals.get(req.id)?.status, 'pending', 'one person, one approval of the two needed');
    assert.equal(await direct('SELECT count(*) FROM orders WHERE id = 9'), '1');
    await stack.broker.approvals.decide(req.id, human('dba-2'), 'deny', 'not today');
    assert.match(await ran, /not today/);
    await c.end();
  });

  test('w1a-05: a statement re-parsed behind a held Execute does not ride on its approval', async () => {
    const raw = await RawPg.login(stack.port, stack.session.secret);
    raw.send(
      fe.parse('s1', "INSERT INTO notes VALUES (10, 'shown')"),
      fe.bind('', 's1', []),
      fe.execute(''),
      fe.SYNC,
      // Sent behind the hold: the name now runs something else, executed again.
      fe.close('S', 's1'),
      fe.parse('s1', "INSERT INTO notes VALUES (99, 'swapped')"),
      fe.bind('', 's1', []),
      fe.execute(''),
      fe.SYNC,
    );
    const first = await held("VALUES (10, 'shown')");
    await stack.broker.approvals.decide(first.id, DBA, 'approve', null);
    assert.deepEqual(errorMessages(await raw.untilReady()), []);
    const second = await held("VALUES (99, 'swapped')", [first.id]);
    assert.equal(await direct('SELECT string_agg(id::text, \',\' ORDER BY id) FROM notes'), '10', 'only what was shown ran');
    await stack.broker.approvals.decide(second.id, DBA, 'deny', 'not shown');
    assert.match(errorMessages(await raw.untilReady()).join('\n'), /denied by dba-1: not shown/);
    raw.close();
    assert.equal(await direct('SELECT string_agg(id::text, \',\' ORDER BY id) FROM notes'), '10');
    await direct('DELETE FROM notes');
  });

  test('w1a-06: an approval of a withdrawn request, or a second one, releases nothing', async () => {
    const c = await client();
    const ran = failure(c.query("UPDATE orders SET status = 'gone' WHERE id = 5"));
    const req = await held("status = 'gone'");
    await c.end().catch(() => {});
    await ran;
    await eventually('withdrawn', () => stack.broker.approvals.get(req.id)?.status === 'withdrawn' || undefined);
    await assert.rejects(stack.broker.approvals.decide(req.id, DBA, 'approve', null), (e: Error & { code?: string }) => e.code === 'AG_REQUEST_NOT_PENDING');
    // A reconnecting client with the same text gets a request of its own, not the old one.
    const d = await client();
    const again = failure(d.query("UPDATE orders SET status = 'gone' WHERE id = 5"));
    const second = await held("status = 'gone'", [req.id]);
    await stack.broker.approvals.decide(second.id, DBA, 'deny', 'no');
    await assert.rejects(stack.broker.approvals.decide(second.id, human('dba-2'), 'approve', null), (e: Error & { code?: string }) => e.code === 'AG_REQUEST_NOT_PENDING');
    assert.match(await again, /denied by dba-1: no/);
    await d.end();
    assert.equal(await direct('SELECT status FROM orders WHERE id = 5'), 'new');
  });

  test('w1a-07: a requester reason cannot forge lines on the reviewer\'s terminal', () => {
    const forged = "fix\n\x1b[32mapr_x  approved by dba-1\x1b[0m\r\u202Edaer";
    const view = requestView({ ...(stack.broker.approvals.list(human('auditor'), { all: true }).requests[0] as ApprovalRequest), requesterReason: forged }, DBA);
    for (const text of [requestsTable([view]), requestDetails(view)]) {
      assert.ok(text.split('\n').some((l) => l.includes('fix')), text);
      assert.deepEqual(text.split('\n').filter((l) => /approved by|daer/.test(l) && !l.includes('fix')), [], 'the forged text stays on the reason\'s own line, escaped');
      // eslint-disable-next-line no-control-regex -- the raw escape must not reach the terminal
      assert.doesNotMatch(text, /[\x1b\r\u202E]/u);
    }
  });
});
