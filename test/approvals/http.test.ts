/**
 * The approvals API on a real broker over HTTPS (runBroker: generated keys, SQLite audit,
 * a real token issuer): who sees which request, deciding through the API with its refusal
 * codes, and the server-sent event stream.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { runBroker, type Broker } from '../../src/broker/index.js';
import { startBroker, type RunningBroker } from '../../src/broker/server.js';
import { approvalRoutes } from '../../src/broker/approvals/routes.js';
import { createApprovalService } from '../../src/broker/approvals/service.js';
import type { ApprovalService } from '../../src/broker/approvals/types.js';
import { readSse, type SseMessage } from '../../src/client/approvals.js';
import type { ApiErrorBody, RequestView, RequestsResponse } from '../../src/shared/api-types.js';
import { silentLogger } from '../../src/broker/log.js';
import type { SqliteAuditStore } from '../../src/broker/audit/sqlite-store.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { captureLogger, makeBrokerConfig, makeTempDir, waitFor, type CapturedLog, type TempDir } from '../broker/fixtures.js';
import { held, identity, openStore } from './fixtures.js';

interface Res<T> {
  status: number;
  body: T;
}

/** Reads SSE messages from a live stream into an array the test can poll. */
function follow(body: AsyncIterable<Buffer>): { messages: SseMessage[]; ended: Promise<void> } {
  const messages: SseMessage[] = [];
  const ended = (async () => {
    try {
      for await (const m of readSse(body)) messages.push(m);
    } catch {
      // destroyed by the test
    }
  })();
  return { messages, ended };
}

describe('approvals API', () => {
  let tmp: TempDir;
  let issuer: TestIssuer;
  let broker: Broker;
  let dispatcher: Agent;
  const tokens: Record<string, string> = {};

  const call = async <T>(who: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<Res<T>> => {
    const res = await request(`${broker.url}${path}`, {
      method,
      dispatcher,
      headers: { authorization: `Bearer ${tokens[who]}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: (text ? JSON.parse(text) : undefined) as T };
  };
  const stream = async (who: string) => {
    const res = await request(`${broker.url}/v1/requests/events`, { method: 'GET', dispatcher, headers: { authorization: `Bearer ${tokens[who]}`, accept: 'text/event-stream' } });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/event-stream/);
    return { ...follow(res.body), close: () => res.body.destroy() };
  };

  before(async () => {
    tmp = await makeTempDir('agentgate-approvals-http-');
    issuer = await startTestIssuer();
    broker = await runBroker(makeBrokerConfig(tmp.path, { identity: { issuer: issuer.issuer } }), { port: 0, logger: silentLogger, closeGraceMs: 100 });
    dispatcher = new Agent({ connect: { ca: broker.keys.tlsCertPem } });
    const people: Record<string, string[]> = { 'agent-7': ['ai-agents'], bob: ['dba'], carol: ['dba'], eve: ['dev'], sam: ['security'] };
    for (const [sub, groups] of Object.entries(people)) tokens[sub] = await issuer.sign({ sub, groups }, { expiresIn: 3600 });
  });

  after(async () => {
    // The broker first: it ends any event stream a failed test left open.
    await broker?.close();
    await dispatcher?.close();
    await issuer?.close();
    await tmp?.remove();
  });

  test('withdraw: only the requester may take a pending request back (403 for a reviewer or an auditor, 404 for others)', async () => {
    const { request: r, outcome } = broker.approvals.request(held({ fingerprint: 'fp-http-withdraw' }));
    const path = `/v1/requests/${r.id}/withdraw`;
    for (const who of ['bob', 'sam']) {
      const refused = await call<ApiErrorBody>(who, 'POST', path);
      assert.equal(refused.status, 403, who);
      assert.equal(refused.body.error.code, 'AG_NOT_REQUESTER');
    }
    assert.equal((await call<ApiErrorBody>('eve', 'POST', path)).status, 404);
    assert.equal(broker.approvals.get(r.id)?.status, 'pending');
    const ok = await call<RequestView>('agent-7', 'POST', path);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.status, 'withdrawn');
    assert.equal((await outcome).status, 'withdrawn');
    const again = await call<ApiErrorBody>('agent-7', 'POST', path);
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'AG_REQUEST_NOT_PENDING');
  });

  test('list and get: the requester, its reviewers and auditors see it; others get 404', async () => {
    const { request: r } = broker.approvals.request(held({ fingerprint: 'fp-visibility' }));

    const bobList = await call<RequestsResponse>('bob', 'GET', '/v1/requests');
    assert.equal(bobList.status, 200);
    const forBob = bobList.body.requests.find((x) => x.id === r.id);
    assert.ok(forBob, 'a reviewer sees it');
    assert.equal(forBob.can_decide, true);
    assert.equal(forBob.mine, false);
    assert.equal(forBob.statement, "UPDATE users SET plan = 'pro' WHERE id = 42");
    assert.equal(forBob.reason, 'update needs review by dba');
    assert.deepEqual(forBob.approvers, { groups: ['dba'], count: 1, kinds: ['human'] });

    const mine = (await call<RequestsResponse>('agent-7', 'GET', '/v1/requests')).body.requests.find((x) => x.id === r.id);
    assert.equal(mine?.mine, true);
    assert.equal(mine?.can_decide, false);

    assert.deepEqual((await call<RequestsResponse>('eve', 'GET', '/v1/requests?all=1')).body.requests, []);

    const get = (who: string) => call<RequestView | ApiErrorBody>(who, 'GET', `/v1/requests/${r.id}`);
    assert.equal((await get('bob')).status, 200);
    assert.equal((await get('agent-7')).status, 200);
    const audited = await get('sam');
    assert.equal(audited.status, 200, 'auditors may read every request');
    assert.equal((audited.body as RequestView).can_decide, false);
    const hidden = await get('eve');
    assert.equal(hidden.status, 404);
    assert.equal((hidden.body as ApiErrorBody).error.code, 'AG_REQUEST_NOT_FOUND');
    const missing = await call<ApiErrorBody>('bob', 'GET', '/v1/requests/apr_aaaaaaaaaaaa');
    assert.equal(missing.status, 404);
    assert.deepEqual(Object.keys(missing.body.error).sort(), Object.keys((hidden.body as ApiErrorBody).error).sort(), 'hidden looks like missing');

    const anonymous = await request(`${broker.url}/v1/requests`, { dispatcher });
    await anonymous.body.dump();
    assert.equal(anonymous.statusCode, 401);
  });

  test('decide: self-approval and non-approvers are 403, repeated and late decisions 409, bad bodies 400', async () => {
    const { request: r, outcome } = broker.approvals.request(held({ fingerprint: 'fp-decide', approvers: { groups: ['dba'], count: 2 } }));
    const decide = (who: string, body: unknown) => call<RequestView & ApiErrorBody>(who, 'POST', `/v1/requests/${r.id}/decision`, body);

    const self = await decide('agent-7', { decision: 'approve' });
    assert.equal(self.status, 403);
    assert.equal(self.body.error.code, 'AG_SELF_APPROVAL');
    assert.ok(self.body.error.hint);
    const auditor = await decide('sam', { decision: 'approve' });
    assert.equal(auditor.status, 403);
    assert.equal(auditor.body.error.code, 'AG_NOT_APPROVER');
    assert.equal((await decide('eve', { decision: 'approve' })).status, 404, 'a stranger learns nothing');

    for (const bad of [{ decision: 'maybe' }, { decision: 'approve', extra: 1 }, { decision: 'deny', reason: 7 }, []]) {
      const res = await decide('bob', bad);
      assert.equal(res.status, 400, JSON.stringify(bad));
      assert.equal(res.body.error.code, 'AG_BAD_REQUEST');
    }
    const noReason = await decide('bob', { decision: 'deny' });
    assert.equal(noReason.status, 400);
    assert.equal(noReason.body.error.code, 'AG_REASON_REQUIRED');

    const first = await decide('bob', { decision: 'approve' });
    assert.equal(first.status, 200);
    assert.equal(first.body.status, 'pending');
    assert.equal(first.body.can_decide, false);
    const again = await decide('bob', { decision: 'approve' });
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'AG_ALREADY_DECIDED');

    const second = await decide('carol', { decision: 'approve', reason: 'checked the WHERE' });
    assert.equal(second.status, 200);
    assert.equal(second.body.status, 'approved');
    assert.equal((await outcome).status, 'approved');
    const late = await call<ApiErrorBody>('carol', 'POST', `/v1/requests/${r.id}/decision`, { decision: 'deny', reason: 'too late' });
    assert.equal(late.status, 409);
    assert.equal(late.body.error.code, 'AG_REQUEST_NOT_PENDING');

    const history = await call<RequestsResponse>('bob', 'GET', '/v1/requests?all=1');
    assert.equal(history.body.requests.find((x) => x.id === r.id)?.status, 'approved');
    assert.equal((await call<RequestsResponse>('bob', 'GET', '/v1/requests')).body.requests.find((x) => x.id === r.id), undefined, 'pending only by default');
  });

  test('the event stream sends created then decided to a reviewer, and only what the viewer may see', async () => {
    const bob = await stream('bob');
    const eve = await stream('eve');
    await waitFor('both subscriptions', () => (bob.messages.length > 0 && eve.messages.length > 0 ? true : undefined));

    const { request: r } = broker.approvals.request(held({ fingerprint: 'fp-sse' }));
    const forEve = broker.approvals.request(held({ fingerprint: 'fp-sse-dev', approvers: { groups: ['dev'], count: 1 } }));
    const events = (m: SseMessage[]) => m.filter((x) => x.event !== undefined).map((x) => ({ event: x.event, view: JSON.parse(x.data) as RequestView }));
    await waitFor('created', () => (events(bob.messages).length >= 1 ? true : undefined));
    const decided = await call<RequestView>('bob', 'POST', `/v1/requests/${r.id}/decision`, { decision: 'deny', reason: 'use a migration' });
    assert.equal(decided.status, 200);
    await waitFor('decided', () => (events(bob.messages).length >= 2 ? true : undefined));
    await waitFor('eve to hear of hers', () => (events(eve.messages).length >= 1 ? true : undefined));

    const seen = events(bob.messages);
    assert.deepEqual(
      seen.map((e) => [e.event, e.view.id, e.view.status]),
      [
        ['created', r.id, 'pending'],
        ['decided', r.id, 'denied'],
      ],
    );
    assert.equal(seen[0]?.view.can_decide, true, 'views are for the viewer');
    assert.equal(seen[1]?.view.decisions[0]?.reason, 'use a migration');
    assert.ok(seen[1]!.view.revision > seen[0]!.view.revision);
    assert.deepEqual(
      events(eve.messages).map((e) => [e.event, e.view.id]),
      [['created', forEve.request.id]],
      'eve hears nothing about the dba request',
    );
    bob.close();
    eve.close();
    await Promise.all([bob.ended, eve.ended]);
  });
});

describe('approvals event stream lifecycle', () => {
  let tmp: TempDir;
  let issuer: TestIssuer;
  let audit: SqliteAuditStore;
  let service: ApprovalService;
  let broker: RunningBroker;
  let dispatcher: Agent;
  let log: CapturedLog;
  let token: string;

  before(async () => {
    tmp = await makeTempDir('agentgate-approvals-sse-');
    issuer = await startTestIssuer();
    audit = await openStore(tmp.path);
    const config = makeBrokerConfig(tmp.path, { identity: { issuer: issuer.issuer } });
    service = createApprovalService({ config, audit, logger: silentLogger });
    log = captureLogger('info');
    broker = await startBroker(config, { port: 0, logger: log.logger, closeGraceMs: 100, routes: approvalRoutes(service, { heartbeatMs: 30 }) });
    dispatcher = new Agent({ connect: { ca: broker.keys.tlsCertPem } });
    token = await issuer.sign({ sub: 'bob', groups: ['dba'] }, { expiresIn: 3600 });
  });

  after(async () => {
    await service?.close();
    await broker?.close();
    await dispatcher?.close();
    await audit?.close();
    await issuer?.close();
    await tmp?.remove();
  });

  const open = async () => {
    const res = await request(`${broker.url}/v1/requests/events`, { dispatcher, headers: { authorization: `Bearer ${token}` } });
    return { ...follow(res.body), close: () => res.body.destroy() };
  };

  test('heartbeats keep the stream alive, and a client that leaves is cleaned up', async () => {
    const s = await open();
    // The subscribe comment, then at least two heartbeats.
    await waitFor('heartbeats', () => (s.messages.filter((m) => m.event === undefined).length >= 3 ? true : undefined));
    s.close();
    await s.ended;
    const line = await waitFor('the server to see the client go', () => log.records().find((r) => r['path'] === '/v1/requests/events'));
    assert.equal(line['status'], 200);
    assert.equal(line['sub'], 'bob');
  });

  test('closing the service ends open streams', async () => {
    const s = await open();
    await waitFor('subscribed', () => (s.messages.length > 0 ? true : undefined));
    const { request: r } = service.request(held({ fingerprint: 'fp-closing' }, identity('agent-7', ['ai-agents'])));
    await service.close();
    await s.ended;
    const last = s.messages.filter((m) => m.event !== undefined).map((m) => [m.event, (JSON.parse(m.data) as RequestView).id]);
    assert.deepEqual(last.at(-1), ['expired', r.id], 'the held request expired with the shutdown, and the stream said so');
  });
});
