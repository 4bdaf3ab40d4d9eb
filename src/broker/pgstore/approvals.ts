/**
 * Approvals across brokers on the PostgreSQL store.
 *
 * A held statement stays with the broker that holds its client (the owner): its request,
 * timers, one-shot approval and waiter live in that broker's approval service, as with one
 * broker. What is shared:
 *
 * - Every change of a request is published by its owner as a snapshot in
 *   `approval_requests` (newer revisions only) with a NOTIFY on `agentgate_approvals`;
 *   other brokers keep the snapshots in memory, so `agentgate requests` through any broker
 *   lists every broker's requests, and time-boxed grants (`grant: 1h`) approved on one
 *   broker cover the same statement on every other.
 * - A decision made through a broker that does not own the request is written to
 *   `approval_decisions` and NOTIFY'd; the owner (LISTENing) applies it at once through its
 *   own service — so self-approval, approver groups and kinds, distinct approvers and
 *   the audit event before it takes effect hold exactly as on one broker — and writes back
 *   the result (or the refusal), which the deciding broker returns to its caller.
 * - Polling fallback: every `pollMs` each broker also looks for decisions addressed to it
 *   and reloads the snapshots, so a lost notification (the LISTEN connection dropped) only
 *   delays, never loses, a decision.
 *
 * A request whose owner died stays listed until its `expires_at`, then reads `expired`.
 */
import type pg from 'pg';
import type { Logger } from '../log.js';
import type { Identity } from '../identity/types.js';
import { ApprovalServiceError, type ApprovalErrorCode } from '../approvals/errors.js';
import type { ApprovalChange, ApprovalRequest, ApprovalService } from '../approvals/types.js';
import { isListedFor } from '../approvals/view.js';
import { MAX_PAGE } from '../approvals/service.js';
import { parseNote, StoreListener } from './store-listener.js';

const CHANNEL = 'agentgate_approvals';
/** How long a decision relayed to another broker may take before the caller is told. */
const RELAY_TIMEOUT_MS = 15_000;

type Note = { t: 'req'; id: string; owner: string } | { t: 'dec'; no: string; owner: string } | { t: 'res'; no: string };

export interface SharedApprovalsOptions {
  local: ApprovalService;
  pool: pg.Pool;
  clientConfig: pg.ClientConfig;
  brokerId: string;
  logger: Logger;
  /** Polling fallback period. Default 1 s. */
  pollMs?: number;
}

export interface SharedApprovals extends ApprovalService {
  /** Requests of other brokers known here (tests, operators). */
  remoteCount(): number;
}

export async function createSharedApprovals(opts: SharedApprovalsOptions): Promise<SharedApprovals> {
  const { local, pool, brokerId } = opts;
  const logger = opts.logger.child({ component: 'approvals', broker_id: brokerId });
  const pollMs = opts.pollMs ?? 1000;
  const remote = new Map<string, ApprovalRequest>();
  const listeners = new Set<(c: ApprovalChange) => void>();
  const waiters = new Map<string, (r: { result: string | null; error: string | null }) => void>();
  const processing = new Set<string>();
  let publishing: Promise<void> = Promise.resolve();

  const emit = (c: ApprovalChange): void => {
    for (const l of listeners) {
      try {
        l(c);
      } catch (err) {
        logger.error('approval listener failed', { error: err });
      }
    }
  };

  const notify = (n: Note): Promise<unknown> => pool.query('SELECT pg_notify($1, $2)', [CHANNEL, JSON.stringify(n)]);

  /** The owner's snapshots, in order (a queue), newer revisions only. */
  const publish = (c: ApprovalChange): void => {
    const r = c.request;
    publishing = publishing
      .then(async () => {
        await pool.query(
          'INSERT INTO approval_requests (id, owner, revision, request, updated_at) VALUES ($1, $2, $3, $4, now()) ' +
            'ON CONFLICT (id) DO UPDATE SET revision = EXCLUDED.revision, request = EXCLUDED.request, updated_at = now() WHERE approval_requests.revision < EXCLUDED.revision',
          [r.id, brokerId, r.revision, JSON.stringify(r)],
        );
        await notify({ t: 'req', id: r.id, owner: brokerId });
      })
      .catch((err: unknown) => logger.warn('could not share an approval request with the other brokers', { request_id: r.id, error: (err as Error).message }));
  };
  const unsubscribeLocal = local.subscribe((c) => {
    publish(c);
    emit(c);
  });

  /** A remote snapshot as this broker shows it: a pending one past its expiry (owner gone) reads expired. */
  const view = (r: ApprovalRequest): ApprovalRequest => {
    const copy = structuredClone(r);
    if (copy.status === 'pending' && Date.parse(copy.expires_at) <= Date.now()) copy.status = 'expired';
    return copy;
  };

  const absorb = (owner: string, text: string): void => {
    if (owner === brokerId) return;
    const r = JSON.parse(text) as ApprovalRequest;
    const had = remote.get(r.id);
    if (had && had.revision >= r.revision) return;
    remote.set(r.id, r);
    emit({ type: had ? (r.status === 'pending' ? 'updated' : r.status === 'approved' || r.status === 'denied' ? 'decided' : r.status) : 'created', request: view(r) });
  };

  const reload = async (id?: string): Promise<void> => {
    const rows = id
      ? await pool.query<{ owner: string; request: string }>('SELECT owner, request FROM approval_requests WHERE id = $1', [id])
      : await pool.query<{ owner: string; request: string }>("SELECT owner, request FROM approval_requests WHERE owner <> $1 AND updated_at > now() - interval '24 hours'", [brokerId]);
    for (const r of rows.rows) absorb(r.owner, r.request);
  };

  /** Decisions other brokers relayed to this one: applied through the local service, in order. */
  const applyDecisions = async (): Promise<void> => {
    const todo = await pool.query<{ no: string; request_id: string; approver: string; decision: 'approve' | 'deny'; reason: string | null }>(
      'SELECT no::text AS no, request_id, approver, decision, reason FROM approval_decisions WHERE owner = $1 AND NOT done ORDER BY no',
      [brokerId],
    );
    for (const d of todo.rows) {
      if (processing.has(d.no)) continue;
      processing.add(d.no);
      try {
        let result: string | null = null;
        let error: string | null = null;
        try {
          result = JSON.stringify(await local.decide(d.request_id, JSON.parse(d.approver) as Identity, d.decision, d.reason));
        } catch (err) {
          const e = err as { code?: string; message?: string; hint?: string };
          error = JSON.stringify({ code: e.code ?? 'AG_APPROVALS_CLOSED', message: e.message ?? String(err), hint: e.hint });
        }
        await pool.query('UPDATE approval_decisions SET done = true, result = $2, error = $3 WHERE no = $1', [d.no, result, error]);
        await notify({ t: 'res', no: d.no });
        logger.info('applied a decision relayed from another broker', { request_id: d.request_id, approver: JSON.parse(d.approver).sub, ok: error === null });
      } finally {
        processing.delete(d.no);
      }
    }
  };

  const checkWaiters = async (): Promise<void> => {
    if (waiters.size === 0) return;
    const r = await pool.query<{ no: string; result: string | null; error: string | null }>('SELECT no::text AS no, result, error FROM approval_decisions WHERE no = ANY($1::bigint[]) AND done', [[...waiters.keys()]]);
    for (const row of r.rows) {
      const w = waiters.get(row.no);
      waiters.delete(row.no);
      w?.({ result: row.result, error: row.error });
    }
  };

  const onNote = (payload: string | undefined): void => {
    const n = parseNote<Note>(payload);
    if (!n) return;
    const step =
      n.t === 'req' ? (n.owner === brokerId ? Promise.resolve() : reload(n.id))
      : n.t === 'dec' ? (n.owner === brokerId ? applyDecisions() : Promise.resolve())
      : waiters.has(n.no) ? checkWaiters() : Promise.resolve();
    step.catch((err: unknown) => logger.warn('approvals: could not act on a notification (the poll retries)', { error: (err as Error).message }));
  };

  const listener = new StoreListener({ clientConfig: opts.clientConfig, channel: CHANNEL, retryMs: pollMs, logger, what: 'approvals', onNote });

  await listener.start().catch(async (err: unknown) => {
    await listener.close();
    throw err;
  });
  await reload();
  await applyDecisions();
  // Shared rows outlive their use by far (requests are listed for 24 h): each broker clears its own after a week.
  const sweep = (): Promise<unknown> =>
    Promise.all([
      pool.query("DELETE FROM approval_requests WHERE owner = $1 AND updated_at < now() - interval '7 days'", [brokerId]),
      pool.query("DELETE FROM approval_decisions WHERE owner = $1 AND done AND created_at < now() - interval '7 days'", [brokerId]),
    ]);
  const SWEEP_EVERY = Math.max(1, Math.round(3_600_000 / pollMs));
  let polls = 0;
  const poll = setInterval(() => {
    const steps = [applyDecisions(), reload(), checkWaiters(), ...(++polls % SWEEP_EVERY === 0 ? [sweep()] : [])];
    Promise.all(steps).catch((err: unknown) => logger.debug('approvals poll failed', { error: (err as Error).message }));
  }, pollMs);
  poll.unref();

  const relay = async (r: ApprovalRequest, approver: Identity, decision: 'approve' | 'deny', reason: string | null): Promise<ApprovalRequest> => {
    const owner = (await pool.query<{ owner: string }>('SELECT owner FROM approval_requests WHERE id = $1', [r.id])).rows[0]?.owner;
    if (!owner) throw new ApprovalServiceError('AG_REQUEST_NOT_FOUND', `no approval request ${r.id}`, { hint: 'list the requests you can see with: agentgate requests --all' });
    const ins = await pool.query<{ no: string }>('INSERT INTO approval_decisions (request_id, owner, approver, decision, reason) VALUES ($1, $2, $3, $4, $5) RETURNING no::text AS no', [
      r.id,
      owner,
      JSON.stringify(approver),
      decision,
      reason,
    ]);
    const no = ins.rows[0]!.no;
    const answered = new Promise<{ result: string | null; error: string | null }>((resolve) => waiters.set(no, resolve));
    await notify({ t: 'dec', no, owner });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        waiters.delete(no);
        reject(new ApprovalServiceError('AG_APPROVALS_CLOSED', `the broker holding request ${r.id} did not apply the decision within ${RELAY_TIMEOUT_MS / 1000} s`, {
          hint: 'it may be down; the decision stays queued and is applied when it is back, unless the request expires first',
        }));
      }, RELAY_TIMEOUT_MS);
    });
    try {
      const out = await Promise.race([answered, timeout]);
      if (out.error !== null) {
        const e = JSON.parse(out.error) as { code: ApprovalErrorCode; message: string; hint?: string };
        throw new ApprovalServiceError(e.code, e.message, e.hint !== undefined ? { hint: e.hint } : {});
      }
      const decided = JSON.parse(out.result ?? 'null') as ApprovalRequest;
      absorb(owner, out.result ?? '');
      return decided;
    } finally {
      clearTimeout(timer);
    }
  };

  const all = (viewer: Identity, includeAll: boolean): ApprovalRequest[] => {
    const out: ApprovalRequest[] = [];
    let after: string | undefined;
    for (;;) {
      const page = local.list(viewer, { all: includeAll, limit: MAX_PAGE, ...(after ? { after } : {}) });
      out.push(...page.requests);
      if (!page.next) break;
      after = page.next;
    }
    for (const r of remote.values()) {
      const v = view(r);
      if ((includeAll || v.status === 'pending') && isListedFor(viewer, v)) out.push(v);
    }
    return out.sort((x, y) => (x.created_at === y.created_at ? (x.id < y.id ? 1 : -1) : x.created_at < y.created_at ? 1 : -1));
  };

  return {
    signal: local.signal,
    remoteCount: () => remote.size,
    consumeGrant(sub, target, fingerprint) {
      const mine = local.consumeGrant(sub, target, fingerprint);
      if (mine) return mine;
      const t = Date.now();
      for (const r of remote.values()) {
        if (r.status === 'approved' && r.requester.sub === sub && r.target === target && r.fingerprint === fingerprint && r.grant_until !== undefined && Date.parse(r.grant_until) > t) return structuredClone(r);
      }
      return undefined;
    },
    request: (input, o) => local.request(input, o),
    withdraw: (id, why) => local.withdraw(id, why),
    // Only through the broker that holds the statement: the requester's own session is there.
    // (A withdrawal through another broker answers not found; relaying it like decide is not built.)
    withdrawOwn: (id, requester) => local.withdrawOwn(id, requester),
    async decide(id, approver, decision, reason) {
      if (local.get(id)) return local.decide(id, approver, decision, reason);
      let r = remote.get(id);
      if (!r) {
        await reload(id);
        r = remote.get(id);
      }
      if (!r) return local.decide(id, approver, decision, reason); // not found, said the local way
      return relay(r, approver, decision, reason);
    },
    get: (id) => local.get(id) ?? (remote.has(id) ? view(remote.get(id)!) : undefined),
    list(viewer, o = {}) {
      const limit = Math.max(1, Math.min(o.limit ?? MAX_PAGE, MAX_PAGE));
      const rows = all(viewer, o.all === true);
      let start = 0;
      if (o.after !== undefined) {
        const at = rows.findIndex((r) => r.id === o.after);
        if (at >= 0) start = at + 1;
      }
      const page = rows.slice(start, start + limit);
      return start + limit < rows.length && page.length > 0 ? { requests: page, next: page[page.length - 1]!.id } : { requests: page };
    },
    canReview: (viewer, request) => local.canReview(viewer, request),
    subscribe(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    async close() {
      clearInterval(poll);
      await listener.close();
      // Pending requests expire with the shutdown; their last snapshots go out before the store closes.
      await local.close();
      unsubscribeLocal();
      listeners.clear();
      await publishing;
    },
  };
}
