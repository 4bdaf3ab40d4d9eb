/**
 * The approval service on its own, over a real SQLite audit store: who may decide, how
 * many approvals release a statement, denial, expiry, withdrawal, grants, and the audit
 * trail each step leaves.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createApprovalService, newRequestId, type ApprovalServiceDeps } from '../../src/broker/approvals/service.js';
import type { ApprovalChange, ApprovalService } from '../../src/broker/approvals/types.js';
import { ApprovalServiceError } from '../../src/broker/approvals/errors.js';
import type { SqliteAuditStore } from '../../src/broker/audit/sqlite-store.js';
import { silentLogger } from '../../src/broker/log.js';
import { makeBrokerConfig, makeTempDir, waitFor, type TempDir } from '../broker/fixtures.js';
import { freezeAuditJournal } from '../helpers/audit-faults.js';
import { AGENT, BOB, CAROL, EVE, SAM, allEvents, held, identity, openStore, settledNow } from './fixtures.js';

const code = (c: string) => (err: unknown) => err instanceof ApprovalServiceError && err.code === c;

describe('approval service', () => {
  let tmp: TempDir;
  let thaw: (() => void) | undefined;
  let store: SqliteAuditStore;
  const services: ApprovalService[] = [];
  const extraStores: SqliteAuditStore[] = [];
  let stores = 0;

  const make = async (opts: { timeoutSeconds?: number; fresh?: boolean } & Partial<Pick<ApprovalServiceDeps, 'now'>> = {}) => {
    const audit = opts.fresh ? await openStore(tmp.path, `audit-${++stores}.db`) : store;
    if (opts.fresh) extraStores.push(audit);
    const config = makeBrokerConfig(tmp.path, { approvals: { timeoutSeconds: opts.timeoutSeconds ?? 600, webhooks: [] } });
    const s = createApprovalService({ config, audit, logger: silentLogger, ...(opts.now ? { now: opts.now } : {}) });
    services.push(s);
    return { service: s, audit };
  };

  before(async () => {
    tmp = await makeTempDir('agentgate-approvals-');
    store = await openStore(tmp.path);
  });
  after(async () => {
    thaw?.(); // before the stores close: they delete their journals
    for (const s of services) await s.close();
    for (const s of extraStores) await s.close().catch(() => {});
    await store?.close();
    await tmp?.remove();
  });

  test('ids are apr_ and 12 base32 characters, and do not repeat', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newRequestId()));
    assert.equal(ids.size, 1000);
    for (const id of ids) assert.match(id, /^apr_[a-z2-7]{12}$/);
  });

  test('two approvals needed: the same approver twice is refused, a second approver releases it', async () => {
    const { service } = await make();
    const changes: ApprovalChange['type'][] = [];
    service.subscribe((c) => changes.push(c.type));
    const { request, outcome } = service.request(held({ approvers: { groups: ['dba'], count: 2 }, fingerprint: 'fp-two' }));
    assert.equal(request.status, 'pending');
    assert.deepEqual(request.decisions, []);

    const first = await service.decide(request.id, BOB, 'approve', null);
    assert.equal(first.status, 'pending', 'one of two approvals does not release it');
    assert.equal(await settledNow(outcome), 'unsettled');
    await assert.rejects(service.decide(request.id, BOB, 'approve', null), code('AG_ALREADY_DECIDED'));
    assert.equal(service.canReview(BOB, service.get(request.id)!), false);
    assert.equal(service.canReview(CAROL, service.get(request.id)!), true);

    const second = await service.decide(request.id, CAROL, 'approve', 'looks right');
    assert.equal(second.status, 'approved');
    assert.equal((await settledNow(outcome)) === 'unsettled', false, 'the second approval released it before decide returned');
    assert.deepEqual(
      second.decisions.map((d) => [d.approver.sub, d.decision, d.reason]),
      [
        ['bob', 'approve', null],
        ['carol', 'approve', 'looks right'],
      ],
    );
    const o = await outcome;
    assert.equal(o.status, 'approved');
    assert.equal(o.request.id, request.id);
    assert.deepEqual(changes, ['created', 'updated', 'decided']);
  });

  test('the requester can never approve, even as a member of the approver group', async () => {
    const { service } = await make();
    const dbaAgent = identity('agent-dba', ['ai-agents', 'dba']);
    const { request } = service.request(held({ fingerprint: 'fp-self' }, dbaAgent));
    await assert.rejects(service.decide(request.id, dbaAgent, 'approve', null), (err: unknown) => {
      assert.ok(err instanceof ApprovalServiceError);
      assert.equal(err.code, 'AG_SELF_APPROVAL');
      assert.equal(err.status, 403);
      assert.equal(err.exitCode, 4);
      assert.match(err.hint ?? '', /dba/);
      return true;
    });
    assert.equal(service.get(request.id)?.status, 'pending');
    assert.equal(service.canReview(dbaAgent, service.get(request.id)!), false);
  });

  test('someone outside the approver groups is refused; an unknown id is not found', async () => {
    const { service } = await make();
    const { request } = service.request(held({ fingerprint: 'fp-outsider' }));
    await assert.rejects(service.decide(request.id, EVE, 'approve', null), code('AG_NOT_APPROVER'));
    await assert.rejects(service.decide(request.id, SAM, 'deny', 'auditors read, they do not decide'), code('AG_NOT_APPROVER'));
    await assert.rejects(service.decide('apr_doesnotexist', BOB, 'approve', null), code('AG_REQUEST_NOT_FOUND'));
    assert.equal(service.get(request.id)?.status, 'pending');
  });

  test('one denial denies, with its reason; a denial without a reason is refused', async () => {
    const { service } = await make();
    const { request, outcome } = service.request(held({ approvers: { groups: ['dba'], count: 2 }, fingerprint: 'fp-deny' }));
    await assert.rejects(service.decide(request.id, BOB, 'deny', '   '), code('AG_REASON_REQUIRED'));
    await service.decide(request.id, BOB, 'approve', null);
    const denied = await service.decide(request.id, CAROL, 'deny', 'not during business hours');
    assert.equal(denied.status, 'denied');
    const o = await outcome;
    assert.equal(o.status, 'denied');
    assert.equal(o.status === 'denied' ? o.reason : '', 'not during business hours');
    await assert.rejects(service.decide(request.id, identity('dave', ['dba']), 'approve', null), code('AG_REQUEST_NOT_PENDING'));
  });

  test('an undecided request expires after the timeout', { timeout: 10_000 }, async () => {
    const { service } = await make({ timeoutSeconds: 0.2 });
    const { request, outcome } = service.request(held({ fingerprint: 'fp-expire' }));
    assert.equal(Date.parse(request.expires_at) - Date.parse(request.created_at), 200);
    const o = await outcome;
    assert.equal(o.status, 'expired');
    assert.equal(service.get(request.id)?.status, 'expired');
    await assert.rejects(service.decide(request.id, BOB, 'approve', null), code('AG_REQUEST_NOT_PENDING'));
  });

  test('withdraw settles the waiter and ends the request', async () => {
    const { service } = await make();
    const { request, outcome } = service.request(held({ fingerprint: 'fp-withdraw' }));
    service.withdraw(request.id, 'the client disconnected');
    assert.equal((await outcome).status, 'withdrawn');
    assert.equal(service.get(request.id)?.status, 'withdrawn');
    await assert.rejects(service.decide(request.id, BOB, 'approve', null), code('AG_REQUEST_NOT_PENDING'));
    service.withdraw(request.id, 'twice is harmless');
    service.withdraw('apr_unknown00000', 'unknown is harmless');
  });

  test('withdrawOwn: only the requester may take a pending request back; it is on record before it settles', async () => {
    const { service, audit } = await make();
    const { request, outcome } = service.request(held({ fingerprint: 'fp-withdraw-own' }));
    await assert.rejects(service.withdrawOwn(request.id, BOB), code('AG_NOT_REQUESTER'));
    await assert.rejects(service.withdrawOwn(request.id, EVE), code('AG_NOT_REQUESTER'));
    assert.equal(service.get(request.id)?.status, 'pending');
    const r = await service.withdrawOwn(request.id, AGENT);
    assert.equal(r.status, 'withdrawn');
    assert.equal((await outcome).status, 'withdrawn');
    const events = (await allEvents(audit)).filter((e) => e.type === 'approval.withdrawn' && e.detail['id'] === request.id);
    assert.deepEqual(events.map((e) => [e.actor?.sub, e.detail['reason']]), [['agent-7', 'withdrawn by the requester']]);
    await assert.rejects(service.withdrawOwn(request.id, AGENT), code('AG_REQUEST_NOT_PENDING'));
    await assert.rejects(service.withdrawOwn('apr_unknown00000', AGENT), code('AG_REQUEST_NOT_FOUND'));
  });

  test('an identical pending request is the same request with the same outcome', async () => {
    const { service } = await make();
    const a = service.request(held({ fingerprint: 'fp-dup' }));
    const b = service.request(held({ fingerprint: 'fp-dup' }));
    assert.equal(b.request.id, a.request.id);
    assert.equal(b.outcome, a.outcome);
    // Another session holding the same statement waits on its own request: one approval releases one.
    const otherSession = service.request(held({ fingerprint: 'fp-dup', session: 'sess-2' }));
    assert.notEqual(otherSession.request.id, a.request.id);
    const other = service.request(held({ fingerprint: 'fp-dup-other' }));
    assert.notEqual(other.request.id, a.request.id);
    const byOther = service.request(held({ fingerprint: 'fp-dup' }, identity('agent-8', ['ai-agents'])));
    assert.notEqual(byOther.request.id, a.request.id, 'another requester gets their own request');

    await service.decide(a.request.id, BOB, 'approve', null);
    const after = service.request(held({ fingerprint: 'fp-dup' }));
    assert.notEqual(after.request.id, a.request.id, 'once decided, the same statement makes a new request');
  });

  test('a time-boxed grant covers the same statement by the same requester until it runs out', async () => {
    let clock = Date.parse('2030-01-01T00:00:00Z');
    const { service } = await make({ now: () => clock });
    const { request, outcome } = service.request(held({ fingerprint: 'fp-grant', grantSeconds: 3600 }));
    const approved = await service.decide(request.id, BOB, 'approve', null);
    assert.equal(approved.grant_until, '2030-01-01T01:00:00.000Z');
    assert.equal((await outcome).status, 'approved');

    clock += 30 * 60_000;
    assert.equal(service.consumeGrant(AGENT.sub, 'pg-prod', 'fp-grant')?.id, request.id);
    assert.equal(service.consumeGrant(AGENT.sub, 'pg-prod', 'fp-grant')?.id, request.id, 'a grant is not used up');
    assert.equal(service.consumeGrant(AGENT.sub, 'pg-prod', 'fp-other'), undefined);
    assert.equal(service.consumeGrant('agent-8', 'pg-prod', 'fp-grant'), undefined);
    assert.equal(service.consumeGrant(AGENT.sub, 'pg-staging', 'fp-grant'), undefined);

    clock += 31 * 60_000;
    assert.equal(service.consumeGrant(AGENT.sub, 'pg-prod', 'fp-grant'), undefined, 'past grant_until');
  });

  test('a one-shot approval is used by its waiter', async () => {
    const { service } = await make();
    const { request, outcome } = service.request(held({ fingerprint: 'fp-oneshot-waiter' }));
    await service.decide(request.id, BOB, 'approve', null);
    assert.equal((await outcome).status, 'approved');
    assert.equal(service.consumeGrant(AGENT.sub, 'pg-prod', 'fp-oneshot-waiter'), undefined);
  });

  test('a one-shot approval nobody waits for is consumed once, and lapses unused after the timeout', async () => {
    let clock = Date.parse('2030-01-01T00:00:00Z');
    const { service } = await make({ now: () => clock });
    const changes: string[] = [];
    service.subscribe((c) => changes.push(`${c.type}:${c.request.revision}`));
    const first = service.request(held({ fingerprint: 'fp-k8s' }), { waiting: false });
    assert.equal(service.consumeGrant(AGENT.sub, 'pg-prod', 'fp-k8s'), undefined, 'nothing before approval');
    await service.decide(first.request.id, BOB, 'approve', null);
    assert.equal(service.consumeGrant(AGENT.sub, 'pg-prod', 'fp-k8s')?.id, first.request.id);
    assert.equal(service.consumeGrant(AGENT.sub, 'pg-prod', 'fp-k8s'), undefined, 'used up');
    await waitFor('created', () => (changes.length >= 3 ? true : undefined));
    assert.deepEqual(changes, ['created:1', 'decided:2', 'updated:3']);

    const second = service.request(held({ fingerprint: 'fp-k8s' }), { waiting: false });
    await service.decide(second.request.id, BOB, 'approve', null);
    clock += 600_001;
    assert.equal(service.consumeGrant(AGENT.sub, 'pg-prod', 'fp-k8s'), undefined, 'an approval not used within the timeout lapses');
  });

  test('list: what I made or may review, pending unless all, newest first; auditors are not reviewers', async () => {
    const { service } = await make({ fresh: true });
    const older = service.request(held({ fingerprint: 'fp-list-1' }));
    const newer = service.request(held({ fingerprint: 'fp-list-2', approvers: { groups: ['sre'], count: 1 } }));
    const decided = service.request(held({ fingerprint: 'fp-list-3' }));
    await service.decide(decided.request.id, BOB, 'approve', null);

    const ids = (xs: { requests: { id: string }[] }) => xs.requests.map((x) => x.id);
    assert.deepEqual(ids(service.list(AGENT)), [newer.request.id, older.request.id]);
    assert.deepEqual(ids(service.list(AGENT, { all: true })), [decided.request.id, newer.request.id, older.request.id]);
    assert.deepEqual(ids(service.list(BOB)), [older.request.id], 'bob reviews dba requests only');
    assert.deepEqual(ids(service.list(identity('sre-1', ['sre']))), [newer.request.id]);
    assert.deepEqual(service.list(EVE, { all: true }).requests, []);
    assert.deepEqual(service.list(SAM, { all: true }).requests, []);
  });

  test('every step is an audit event, in order, with the right actor, session and decision', async () => {
    const { service, audit } = await make({ fresh: true });
    const two = service.request(held({ approvers: { groups: ['dba'], count: 2 }, fingerprint: 'fp-audit-1' }));
    await service.decide(two.request.id, BOB, 'approve', null);
    await service.decide(two.request.id, CAROL, 'deny', 'wrong table');
    const gone = service.request(held({ fingerprint: 'fp-audit-2', session: 'sess-9' }));
    service.withdraw(gone.request.id, 'client went away');
    await gone.outcome;

    const events = await allEvents(audit);
    assert.deepEqual(
      events.map((e) => [e.type, e.actor?.sub, e.session, e.target, e.detail['id']]),
      [
        ['approval.requested', 'agent-7', 'sess-1', 'pg-prod', two.request.id],
        ['approval.decided', 'bob', 'sess-1', 'pg-prod', two.request.id],
        ['approval.decided', 'carol', 'sess-1', 'pg-prod', two.request.id],
        ['approval.requested', 'agent-7', 'sess-9', 'pg-prod', gone.request.id],
        ['approval.withdrawn', 'agent-7', 'sess-9', 'pg-prod', gone.request.id],
      ],
    );
    const [requested, approved, denied, , withdrawn] = events;
    assert.equal(requested?.detail['statement'], "UPDATE users SET plan = 'pro' WHERE id = 42");
    assert.deepEqual(requested?.detail['classification'], { kinds: ['update'], writes: ['public.users'], flags: [] });
    assert.equal(requested?.detail['rule'], 'agents#2');
    assert.deepEqual(requested?.detail['approvers'], { groups: ['dba'], count: 2, kinds: ['human'] });
    assert.equal(requested?.detail['expires_at'], two.request.expires_at);
    assert.deepEqual(requested?.decision, { effect: 'review', rule: 'agents#2' });
    assert.deepEqual(approved?.decision, { effect: 'allow', rule: 'agents#2' });
    assert.equal(approved?.detail['decision'], 'approve');
    assert.equal(approved?.detail['approver'], 'bob');
    assert.equal(approved?.actor?.name, 'Bob');
    assert.deepEqual(approved?.actor?.groups, ['dba']);
    assert.deepEqual(denied?.decision, { effect: 'deny', rule: 'agents#2' });
    assert.equal(denied?.detail['reason'], 'wrong table');
    assert.equal(withdrawn?.detail['reason'], 'client went away');

    const expiring = await make({ timeoutSeconds: 0.1, fresh: true });
    const e = expiring.service.request(held({ fingerprint: 'fp-audit-3' }));
    await e.outcome;
    const types = (await allEvents(expiring.audit)).map((x) => [x.type, x.actor?.sub]);
    assert.deepEqual(types, [
      ['approval.requested', 'agent-7'],
      ['approval.expired', 'agent-7'],
    ]);
  });

  test('a decision the audit log cannot record is refused and releases nothing', async () => {
    const { service, audit } = await make({ fresh: true });
    const { request, outcome } = service.request(held({ fingerprint: 'fp-poison' }));
    await waitFor('the request to be recorded', async () => ((await allEvents(audit)).length === 1 ? true : undefined));

    // A real write failure where the event becomes durable: the journal segment refuses writes.
    thaw = freezeAuditJournal(join(tmp.path, `audit-${stores}.db`));

    await assert.rejects(service.decide(request.id, BOB, 'approve', null), (err: Error) => /AUDIT/.test((err as { code?: string }).code ?? ''));
    assert.equal(service.get(request.id)?.status, 'pending');
    assert.deepEqual(service.get(request.id)?.decisions, []);
    assert.equal(await settledNow(outcome), 'unsettled', 'the held statement stays held');

    // A new request on a failed store is refused too (its outcome rejects).
    const next = service.request(held({ fingerprint: 'fp-poison-2' }));
    await assert.rejects(next.outcome);
    assert.equal(service.get(next.request.id), undefined, 'an unrecorded request cannot be decided');
  });

  test('close settles waiters as expired and refuses new requests', async () => {
    const { service } = await make();
    const { outcome } = service.request(held({ fingerprint: 'fp-close' }));
    await service.close();
    assert.equal((await outcome).status, 'expired');
    assert.ok(service.signal.aborted);
    const late = service.request(held({ fingerprint: 'fp-close-late' }));
    await assert.rejects(late.outcome, code('AG_APPROVALS_CLOSED'));
  });
});
