/**
 * Approvals across two brokers on one PostgreSQL store (real PostgreSQL 15), each with its
 * own approval service: a request held on A is listed and decided through B, A's waiter is
 * released at once (LISTEN/NOTIFY) and, with notifications lost, by the poll; self-approval
 * and approver rules are A's own; a time-boxed grant approved on A covers B.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { eventually } from '../helpers/eventually.js';
import { openPostgresStore, type PostgresStore } from '../../src/broker/pgstore/audit-store.js';
import { createApprovalService } from '../../src/broker/approvals/service.js';
import { ApprovalServiceError } from '../../src/broker/approvals/errors.js';
import type { SharedApprovals } from '../../src/broker/pgstore/approvals.js';
import { silentLogger } from '../../src/broker/log.js';
import { makeBrokerConfig, makeTempDir, type TempDir } from '../broker/fixtures.js';
import { AGENT, BOB, CAROL, EVE, held } from '../approvals/fixtures.js';

let server: PgServer;
let tmp: TempDir;
const stores: PostgresStore[] = [];
const shared: SharedApprovals[] = [];

before(async () => {
  [server, tmp] = await Promise.all([startPostgres(), makeTempDir('agentgate-pg-approvals-')]);
});

after(async () => {
  for (const s of shared) await s.close();
  for (const s of stores) await s.close();
  await server.stop();
  await tmp.remove();
});

const code = (c: string) => (err: unknown) => err instanceof ApprovalServiceError && err.code === c;

async function broker(id: string, pollMs = 1000): Promise<{ approvals: SharedApprovals; store: PostgresStore }> {
  const store = await openPostgresStore(server.url(), { brokerId: id, logger: silentLogger });
  stores.push(store);
  const config = makeBrokerConfig(tmp.path, { approvals: { timeoutSeconds: 600, webhooks: [] } });
  const approvals = await store.shareApprovals(createApprovalService({ config, audit: store, logger: silentLogger }), { pollMs });
  shared.push(approvals);
  return { approvals, store };
}

test('held on A, listed and approved through B; A releases it at once; the rules are A’s', async () => {
  // A long poll period: a release within it came by notification.
  const a = await broker('brk_aaaaaaaaaaaa', 60_000);
  const b = await broker('brk_bbbbbbbbbbbb', 60_000);
  const { request, outcome } = a.approvals.request(held({ fingerprint: 'fp-1' }));
  const listed = await eventually('the request listed through B', () => b.approvals.list(BOB).requests.find((r) => r.id === request.id));
  assert.equal(listed.status, 'pending');
  assert.equal(b.approvals.canReview(BOB, listed), true);
  assert.equal(b.approvals.list(EVE).requests.length, 0, 'not listed for someone who may not review it');

  await assert.rejects(b.approvals.decide(request.id, AGENT, 'approve', null), code('AG_SELF_APPROVAL'));
  await assert.rejects(b.approvals.decide(request.id, EVE, 'approve', null), code('AG_NOT_APPROVER'));
  const decided = await b.approvals.decide(request.id, BOB, 'approve', 'fine');
  assert.equal(decided.status, 'approved');
  const o = await outcome;
  assert.equal(o.status, 'approved');
  assert.deepEqual(o.request.decisions.map((d) => d.approver.sub), ['bob']);
  await assert.rejects(b.approvals.decide(request.id, CAROL, 'approve', null), code('AG_REQUEST_NOT_PENDING'));
  // The decision is on record before it took effect, in the one chain.
  const types: string[] = [];
  for await (const e of b.store.read({ session: 'sess-1' })) if (e.detail['id'] === request.id) types.push(e.type);
  assert.deepEqual(types, ['approval.requested', 'approval.decided']);
  // B's listing follows: no longer pending.
  await eventually('B sees it approved', () => b.approvals.get(request.id)?.status === 'approved');
});

test('a denial through B reaches A; a grant approved on A covers the same statement on B', async () => {
  const a = await broker('brk_cccccccccccc', 60_000);
  const b = await broker('brk_dddddddddddd', 60_000);
  const denied = a.approvals.request(held({ fingerprint: 'fp-deny', session: 'sess-2' }));
  await eventually('listed through B', () => b.approvals.get(denied.request.id));
  await assert.rejects(b.approvals.decide(denied.request.id, BOB, 'deny', null), code('AG_REASON_REQUIRED'));
  await b.approvals.decide(denied.request.id, BOB, 'deny', 'not now');
  const o = await denied.outcome;
  assert.equal(o.status, 'denied');

  const granted = a.approvals.request(held({ fingerprint: 'fp-grant', session: 'sess-3', grantSeconds: 3600 }));
  await a.approvals.decide(granted.request.id, CAROL, 'approve', null);
  assert.equal((await granted.outcome).status, 'approved');
  const g = await eventually('the grant known on B', () => b.approvals.consumeGrant(AGENT.sub, 'pg-prod', 'fp-grant'));
  assert.equal(g.id, granted.request.id);
  assert.equal(b.approvals.consumeGrant(AGENT.sub, 'pg-prod', 'fp-other'), undefined);
  assert.equal(b.approvals.consumeGrant('someone-else', 'pg-prod', 'fp-grant'), undefined);
});

test('without notifications, the poll still delivers the decision', async () => {
  const a = await broker('brk_eeeeeeeeeeee', 100);
  const b = await broker('brk_ffffffffffff', 100);
  // Every LISTEN connection goes: notifications are lost until they reconnect; the poll carries on.
  const killed = await server.psql("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN agentgate_approvals') t");
  assert.ok(Number(killed.trim()) >= 2, `LISTEN connections terminated: ${killed.trim()}`);
  const { request, outcome } = a.approvals.request(held({ fingerprint: 'fp-poll', session: 'sess-4' }));
  await eventually('listed through B', () => b.approvals.get(request.id));
  await b.approvals.decide(request.id, BOB, 'approve', null);
  assert.equal((await outcome).status, 'approved');
});
