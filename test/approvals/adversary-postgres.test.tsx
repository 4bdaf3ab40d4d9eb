/**
 * The approval workflow tried as an attacker would (issue 22, items 1–6), on the real
 * path: real PostgreSQL, the broker, the tunnel, node-postgres, psql's protocol through a
 * bare client for SQL-level PREPARE, the real `agentgate requests`, a webhook receiver
 * and the Ink approve screen. Each case checks what reached the client, what ran upstream
 * and what the audit log recorded.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { render } from 'ink-testing-library';
import { eventually, startPgStack, TARGET, type PgStack } from '../postgres/stack.js';
import { pgApprovalHelpers } from './pg-helpers.js';
import { RawPg, errorMessages } from '../postgres/raw-client.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';
import { BackendType } from '../../src/broker/postgres/protocol.js';
import { decodeNoticeResponse } from '../../src/broker/postgres/decode-backend.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import type { ApprovalRequest } from '../../src/broker/approvals/types.js';
import type { Identity } from '../../src/broker/identity/types.js';
import type { ActorKind, ApprovalWebhookPayload } from '../../src/shared/api-types.js';
import { ApproveScreen } from '../../src/ui/approve-screen.js';
import { createRequestStore } from '../../src/ui/request-store.js';
import { requestView } from '../../src/broker/approvals/view.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));
const CAP = 3;

const POLICIES: PolicyConfig[] = [
  {
    name: 'agents',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'reads', sql: ['select', 'set'], effect: 'allow', extra: {} },
      { name: 'orders-hour', sql: ['update'], relations: ['public.orders'], effect: 'review', approvers: { groups: ['dba'], count: 1 }, grantSeconds: 3600, extra: {} },
      { name: 'shape-any', sql: ['update'], relations: ['public.shapes'], effect: 'review', approvers: { groups: ['dba'], count: 1 }, grantSeconds: 3600, anyValues: true, extra: {} },
      { name: 'writes', sql: ['update', 'insert'], effect: 'review', approvers: { groups: ['dba'], count: 1 }, extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

function identity(sub: string, kind: ActorKind = 'human', groups = ['dba']): Identity {
  return { sub, groups, kind, issuer: 'test', expiresAt: Math.floor(Date.now() / 1000) + 3600 };
}
const DBA = identity('dba-1');

describe('approvals against an adversarial agent (Postgres)', () => {
  let stack: PgStack;
  let dbaToken: string;
  let hook: http.Server;
  const hooks: { raw: string; body: ApprovalWebhookPayload }[] = [];

  const { pending, held, direct, client } = pgApprovalHelpers(() => stack, identity('auditor'));
  const cli = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      const env = {
        PATH: process.env['PATH'],
        HOME: stack.tmp.path,
        XDG_CONFIG_HOME: `${stack.tmp.path}/xdg`,
        AGENTGATE_BROKER: stack.broker.url,
        AGENTGATE_FINGERPRINT: stack.broker.fingerprint,
        AGENTGATE_TOKEN: dbaToken,
        AGENTGATE_KEYCHAIN: 'off',
      };
      execFile(process.execPath, [BIN, ...args], { env }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
    });

  before(async () => {
    hook = http.createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString('utf8')));
      req.on('end', () => {
        hooks.push({ raw, body: JSON.parse(raw) as ApprovalWebhookPayload });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
    const hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
    stack = await startPgStack({
      policies: POLICIES,
      config: { approvals: { timeoutSeconds: 600, webhooks: [{ url: hookUrl, secret: undefined, events: ['created'] }], maxPendingPerRequester: CAP } },
    });
    dbaToken = await stack.issuer.sign({ sub: 'dba-1', groups: ['dba'] }, { expiresIn: 3600 });
    await stack.pg.psql(
      "CREATE TABLE orders (id int PRIMARY KEY, status text); INSERT INTO orders SELECT g, 'new' FROM generate_series(1, 20) g;" +
        "CREATE TABLE shapes (id int PRIMARY KEY, v text); INSERT INTO shapes VALUES (1, 'a'), (2, 'b');" +
        'CREATE TABLE counters (id int PRIMARY KEY, n int); INSERT INTO counters VALUES (1, 0);' +
        'GRANT ALL ON orders, shapes, counters TO app;',
      { database: 'app' },
    );
  });
  after(async () => {
    await stack?.close();
    await new Promise<void>((resolve) => hook?.close(() => resolve()));
  });

  test('1. an approval and its grant cover the Bind values the reviewer saw, unless the rule approves any values', async () => {
    const c = await client();
    const first = c.query('UPDATE orders SET status = $1 WHERE id = $2', ['paid', 11]);
    const req = await held('UPDATE orders SET status = $1');
    // The reviewer sees the values, and what the approval covers.
    assert.deepEqual(req.parameters, ["'paid'", "'11'"]);
    const view = requestView(req, DBA);
    const screen = render(<ApproveScreen store={createRequestStore([view], 'live')} decide={async () => view} onExit={() => {}} initialId={req.id} />);
    assert.match(screen.lastFrame() ?? '', /\$1 = 'paid', \$2 = '11'/);
    assert.match(screen.lastFrame() ?? '', /exactly these values/);
    screen.unmount();
    await stack.broker.approvals.decide(req.id, DBA, 'approve', null);
    await first;
    // Same shape, other values, inside the hour's grant: held again, not run.
    const second = c.query('UPDATE orders SET status = $1 WHERE id = $2', ['pwned', 11]).then(
      () => 'ran',
      (e: Error) => e.message,
    );
    const again = await held('UPDATE orders SET status = $1', [req.id]);
    assert.deepEqual(again.parameters, ["'pwned'", "'11'"]);
    assert.notEqual(again.fingerprint, req.fingerprint);
    assert.equal(await direct('SELECT status FROM orders WHERE id = 11'), 'paid');
    await stack.broker.approvals.decide(again.id, DBA, 'deny', 'not these values');
    assert.match(await second, /denied by dba-1: not these values/);
    assert.equal(await direct('SELECT status FROM orders WHERE id = 11'), 'paid', 'the unreviewed values never ran');
    // The same values again: the grant covers them.
    await c.query('UPDATE orders SET status = $1 WHERE id = $2', ['paid', 11]);

    // A rule that says any_values: the grant covers the shape, and the screen says so.
    const shaped = c.query('UPDATE shapes SET v = $1 WHERE id = $2', ['x', 1]);
    const anyReq = await held('UPDATE shapes SET v = $1');
    assert.equal(anyReq.anyValues, true);
    const anyView = requestView(anyReq, DBA);
    const anyScreen = render(<ApproveScreen store={createRequestStore([anyView], 'live')} decide={async () => anyView} onExit={() => {}} initialId={anyReq.id} />);
    assert.match(anyScreen.lastFrame() ?? '', /ANY parameter values/);
    anyScreen.unmount();
    await stack.broker.approvals.decide(anyReq.id, DBA, 'approve', null);
    await shaped;
    await c.query('UPDATE shapes SET v = $1 WHERE id = $2', ['y', 2]);
    assert.equal(await direct("SELECT string_agg(v, ',' ORDER BY id) FROM shapes"), 'x,y');
    await c.end();

    const events = await stack.events();
    const requested = events.filter((e) => e.type === 'approval.requested' && String(e.detail['statement']).startsWith('UPDATE orders SET status = $1'));
    assert.deepEqual(requested.map((e) => e.detail['parameters']), [["'paid'", "'11'"], ["'pwned'", "'11'"]]);
    const denied = events.find((e) => e.type === 'query' && e.decision?.approval === again.id);
    assert.equal(denied?.decision?.effect, 'deny');
    assert.equal(events.find((e) => e.type === 'approval.requested' && e.detail['id'] === anyReq.id)?.detail['any_values'], true);
  });

  test('2. SQL PREPARE then protocol Bind/Execute is judged as the statement it names; an unknown name is refused', async () => {
    const raw = await RawPg.login(stack.port, stack.session.secret);
    raw.send(fe.query("PREPARE p(int) AS UPDATE orders SET status = 'prepared' WHERE id = $1"));
    const prep = await held('PREPARE p(int)');
    await stack.broker.approvals.decide(prep.id, DBA, 'approve', null);
    assert.deepEqual(errorMessages(await raw.untilReady()), []);
    // Bind/Execute of p three times in one batch: held as the UPDATE it runs, nothing ran.
    raw.send(fe.bind('', 'p', ['3']), fe.execute(''), fe.bind('', 'p', ['4']), fe.execute(''), fe.SYNC);
    const notice = await raw.next();
    assert.equal(notice.type, BackendType.noticeResponse);
    assert.match(decodeNoticeResponse(notice.body).message, /waiting for 1 approval from dba \(apr_\w+\); a reviewer runs: agentgate approve apr_/);
    const exec = await held('PREPARE p(int)', [prep.id]);
    assert.deepEqual(exec.parameters, ["'3'"]);
    assert.equal(await direct("SELECT count(*) FROM orders WHERE status = 'prepared'"), '0');
    await stack.broker.approvals.decide(exec.id, DBA, 'deny', 'no prepared updates');
    const answer = await raw.untilReady();
    assert.match(errorMessages(answer).join('\n'), /denied by dba-1: no prepared updates/);
    assert.equal(await direct("SELECT count(*) FROM orders WHERE status = 'prepared'"), '0', 'neither Execute ran');
    // A name the server never confirmed: refused, never forwarded.
    raw.send(fe.bind('', 'never_prepared', ['5']), fe.execute(''), fe.SYNC);
    assert.match(errorMessages(await raw.untilReady()).join('\n'), /names prepared statement "never_prepared", which does not exist/);
    raw.close();
    const events = await stack.events();
    const execs = events.filter((e) => e.type === 'query' && e.decision?.approval === exec.id);
    assert.equal(execs.length, 1);
    assert.equal(execs[0]?.decision?.effect, 'deny');
    assert.match(String(execs[0]?.detail['sql']), /^PREPARE p\(int\) AS UPDATE orders/);
    const unknown = events.find((e) => e.type === 'query' && e.detail['statement'] === 'never_prepared');
    assert.equal(unknown?.decision?.effect, 'deny');
  });

  test('3. one one-shot approval releases one session: a second session holding the same statement has its own request', async () => {
    const a = await client();
    const b = await client();
    const sql = 'UPDATE counters SET n = n + 1 WHERE id = 1';
    const ranA = a.query(sql);
    const reqA = await held(sql);
    const ranB = b.query(sql).then(
      () => 'ran',
      (e: Error) => e.message,
    );
    const reqB = await held(sql, [reqA.id]);
    assert.notEqual(reqA.id, reqB.id);
    assert.notEqual(reqA.session, reqB.session);
    await stack.broker.approvals.decide(reqA.id, DBA, 'approve', null);
    await ranA;
    assert.equal(await direct('SELECT n FROM counters WHERE id = 1'), '1');
    assert.equal(stack.broker.approvals.get(reqB.id)?.status, 'pending', 'the other session still waits');
    await stack.broker.approvals.decide(reqB.id, DBA, 'deny', 'once is enough');
    assert.match(await ranB, /once is enough/);
    assert.equal(await direct('SELECT n FROM counters WHERE id = 1'), '1', 'ran exactly once');
    await a.end();
    await b.end();
    const runs = (await stack.events()).filter((e) => e.type === 'query' && e.detail['sql'] === sql && e.decision?.effect === 'allow');
    assert.deepEqual(runs.map((e) => e.decision?.approval), [reqA.id]);
  });

  test('4. a CI token or another agent in the approver group cannot approve: holds are for a human', async () => {
    const c = await client();
    const ran = c.query("UPDATE orders SET status = 'by-robot' WHERE id = 6");
    const req = await held("status = 'by-robot'");
    for (const kind of ['ci', 'agent'] as const) {
      await assert.rejects(stack.broker.approvals.decide(req.id, identity(`robot-${kind}`, kind), 'approve', null), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'AG_NOT_APPROVER');
        assert.match(e.message, new RegExp(`a ${kind} identity; rule orders-hour takes decisions from human identities only`));
        return true;
      });
    }
    assert.equal(stack.broker.approvals.get(req.id)?.status, 'pending');
    assert.equal(await direct('SELECT status FROM orders WHERE id = 6'), 'new');
    const decided = (await stack.events()).filter((e) => e.type === 'approval.decided' && e.detail['id'] === req.id);
    assert.deepEqual(decided, [], 'nothing recorded for the refused decisions');
    await stack.broker.approvals.decide(req.id, DBA, 'approve', null);
    await ran;
    assert.equal(await direct('SELECT status FROM orders WHERE id = 6'), 'by-robot');
    await c.end();
  });

  test('5. a flood of held statements stops at the per-requester cap with a clear refusal; listings are paged', async () => {
    const clients = await Promise.all(Array.from({ length: CAP + 1 }, () => client()));
    const outcomes = clients.slice(0, CAP).map((c, i) =>
      c.query(`INSERT INTO counters VALUES (${100 + i}, 0)`).then(
        () => 'ran',
        (e: Error) => e.message,
      ),
    );
    await eventually(`${CAP} pending`, () => pending().length === CAP || undefined);
    const refused = await (clients[CAP] as pg.Client).query('INSERT INTO counters VALUES (200, 0)').then(
      () => 'ran',
      (e: Error & { code?: string }) => `${e.code}: ${e.message}`,
    );
    assert.match(refused, /^42501: agentgate: agent-7 already has 3 requests waiting for approval \(the limit is 3\); this one was not queued and nothing ran/);
    assert.equal(pending().length, CAP);
    assert.equal(await direct('SELECT count(*) FROM counters WHERE id >= 100'), '0');
    const audit = (await stack.events()).find((e) => e.type === 'query' && String(e.detail['sql']).includes('VALUES (200, 0)'));
    assert.equal(audit?.decision?.effect, 'deny');
    assert.match(String(audit?.decision?.reason), /limit is 3/);

    // The reviewer's listing comes a page at a time.
    const page1 = await cli(['requests', '--limit', '2']);
    assert.equal(page1.code, 0, page1.stderr);
    assert.equal(page1.stdout.trim().split('\n').length, 3, 'a header and two requests');
    const next = /--after (apr_\w+)/.exec(page1.stderr)?.[1];
    assert.ok(next, page1.stderr);
    const page2 = await cli(['requests', '--limit', '2', '--after', next]);
    assert.equal(page2.stdout.trim().split('\n').length, 2, 'a header and the last request');
    assert.doesNotMatch(page2.stderr, /more follow/);
    for (const r of pending()) await stack.broker.approvals.decide(r.id, DBA, 'deny', 'flood');
    for (const o of await Promise.all(outcomes)) assert.match(o, /denied by dba-1: flood/);
    for (const c of clients) await c.end();
  });

  test('6. control characters and bidi overrides are shown escaped on the screen, in `requests` and in webhooks', async () => {
    const c = await client();
    const sneaky = "UPDATE orders SET status = 'ok' WHERE id = 7 /* \u202Egnp.exe \x1b[2K\x1b[1A */";
    const ran = c.query(sneaky).then(
      () => 'ran',
      (e: Error) => e.message,
    );
    const req = await held("status = 'ok' WHERE id = 7");
    assert.ok(req.statement.includes('\u202E'), 'the broker keeps the statement as it was sent');

    const listed = await cli(['requests']);
    assert.match(listed.stdout, /\\u\{202e\}gnp\.exe \\x1b\[2K\\x1b\[1A/);
    assert.ok(!listed.stdout.includes("\u202E") && !listed.stdout.includes("\u001b"), "no raw bidi override or escape reaches the terminal");

    const view = requestView(req, DBA);
    const screen = render(<ApproveScreen store={createRequestStore([view], 'live')} decide={async () => view} onExit={() => {}} initialId={req.id} />);
    const frame = screen.lastFrame() ?? '';
    screen.unmount();
    assert.match(frame, /\\u\{202e\}gnp\.exe/);
    // eslint-disable-next-line no-control-regex -- stripping the colour codes the screen itself draws
    assert.doesNotMatch(frame.replace(/\x1b\[[0-9;]*m/g, ''), /[\u202E\u001b]/u);

    const delivered = await eventually('the webhook', () => hooks.find((h) => h.body.request.id === req.id));
    assert.match(delivered.body.request.statement, /\\u\{202e\}gnp\.exe \\x1b\[2K/);
    assert.doesNotMatch(delivered.raw, /[\u202E]|\\u001b/);

    await stack.broker.approvals.decide(req.id, DBA, 'deny', 'disguised');
    assert.match(await ran, /disguised/);
    assert.equal(await direct('SELECT status FROM orders WHERE id = 7'), 'new');
    await c.end();
    const requested = (await stack.events()).find((e) => e.type === 'approval.requested' && e.detail['id'] === req.id);
    assert.ok(String(requested?.detail['statement']).includes('\u202E'), 'the audit log keeps the exact text');
  });
});
