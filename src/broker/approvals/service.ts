/**
 * The just-in-time approval service (port: types.ts).
 *
 * A proxy whose policy says `review` creates a request and holds the statement until the
 * outcome settles: approved by `approvers.count` distinct members of the rule's approver
 * groups (never the requester), denied by any one of them with a reason, expired after
 * `approvals.timeoutSeconds`, or withdrawn when the client goes away.
 *
 * State is in memory: pending requests and grants do not survive a broker restart (the
 * held clients are disconnected by the restart anyway); the audit log keeps the record.
 *
 * Every transition of one request runs in that request's queue and is recorded in the
 * audit log before it takes effect: a decision whose event cannot be written is refused
 * (decide() rejects) and nothing is released — approvals fail closed.
 */
import { randomBytes } from 'node:crypto';
import type { AuditActor, JsonValue } from '../../shared/audit-hash.js';
import type { AuditStore, NewAuditEvent } from '../audit/store.js';
import type { BrokerConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';
import type { Logger } from '../log.js';
import { ApprovalServiceError } from './errors.js';
import type { ApprovalChange, ApprovalOutcome, ApprovalRequest, ApprovalService, NewApprovalRequest, RequestOptions } from './types.js';
import { isListedFor, isReviewer, mayDecide, requestJson, sameSubject } from './view.js';
import { createWebhookSender, type WebhookSenderOptions } from './webhooks.js';

export interface ApprovalServiceDeps {
  config: BrokerConfig;
  audit: AuditStore;
  logger: Logger;
  /** Clock in ms (tests). Timers still run on real time. */
  now?: () => number;
  /** Webhook delivery tuning (tests). */
  webhooks?: Pick<WebhookSenderOptions, 'timeoutMs' | 'attempts' | 'retryDelayMs' | 'dispatcher'>;
  /** Finished requests kept for listing (`--all`). Default 1 000, each at most 24 h. */
  historyLimit?: number;
}

/** Longest reviewer reason kept; the rest is cut (it lands in the audit log and receipts). */
export const MAX_REASON_LENGTH = 2_000;
const HISTORY_MS = 24 * 3600_000;
/** Pending requests one requester may have at once unless configured. */
export const DEFAULT_MAX_PENDING = 20;
/** Largest page of a listing (and the default). */
export const MAX_PAGE = 200;
/** setTimeout's ceiling; longer waits re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

/** `apr_` + 12 base32 characters: 60 random bits, URL-safe, easy to read out. */
export function newRequestId(): string {
  const bytes = randomBytes(12);
  let id = 'apr_';
  for (const b of bytes) id += ID_ALPHABET[b & 31];
  return id;
}

interface Entry {
  req: ApprovalRequest;
  waiting: boolean;
  /** Created for a waiting caller: its pending key names the session. */
  keyedBySession: boolean;
  outcome: Promise<ApprovalOutcome>;
  settle(o: ApprovalOutcome): void;
  fail(err: unknown): void;
  /** Resolves once `approval.requested` is durable; rejects if it could not be written. */
  recorded: Promise<void>;
  /** Tail of this request's transition queue. */
  queue: Promise<unknown>;
  timer: NodeJS.Timeout | undefined;
  /** One-shot approvals (no grantSeconds): whether the single execution is still to come. */
  oneShot: 'none' | 'available' | 'used' | 'lapsed';
  /** An available one-shot counts until then (ms). */
  usableUntil: number;
  /** When it stopped mattering (final and nothing left to grant), for pruning. */
  finishedAt: number | undefined;
}

export function createApprovalService(deps: ApprovalServiceDeps): ApprovalService {
  const { config, audit } = deps;
  const logger = deps.logger.child({ component: 'approvals' });
  const now = deps.now ?? Date.now;
  const historyLimit = deps.historyLimit ?? 1_000;
  const timeoutMs = Math.max(0, config.approvals.timeoutSeconds * 1000);
  const closer = new AbortController();
  let closing: Promise<void> | undefined;
  const webhooks = createWebhookSender({ webhooks: config.approvals.webhooks, logger, signal: closer.signal, ...deps.webhooks });
  const entries = new Map<string, Entry>();
  /**
   * requester sub, target, fingerprint and — for a waiting caller — session → id of the
   * pending request. A held statement in another session is another request: one approval
   * releases exactly the statement it was given for. Callers that do not wait (kubectl is
   * told to come back) share one request, which releases one later execution.
   */
  const pendingByKey = new Map<string, string>();
  const maxPending = config.approvals.maxPendingPerRequester ?? DEFAULT_MAX_PENDING;
  const listeners = new Set<(change: ApprovalChange) => void>();
  const iso = (ms: number): string => new Date(ms).toISOString();
  const keyOf = (r: Pick<ApprovalRequest, 'requester' | 'target' | 'fingerprint' | 'session'>, waiting: boolean): string =>
    JSON.stringify([r.requester.sub, r.target, r.fingerprint, waiting ? r.session : '']);

  const emit = (type: ApprovalChange['type'], e: Entry): void => {
    e.req.revision++;
    for (const l of listeners) {
      try {
        l({ type, request: structuredClone(e.req) });
      } catch (err) {
        logger.error('approval listener failed', { error: err });
      }
    }
  };

  /** Runs `step` after every earlier transition of this request. */
  const enqueue = <T>(e: Entry, step: () => Promise<T>): Promise<T> => {
    const run = e.queue.then(step);
    e.queue = run.catch(() => {});
    return run;
  };

  /** Calls `fn` at `atMs`, re-arming past setTimeout's ceiling; never keeps the process alive. */
  const schedule = (e: Entry, atMs: number, fn: () => void): void => {
    clearTimeout(e.timer);
    const arm = (): void => {
      const wait = atMs - now();
      if (wait <= 0) {
        e.timer = undefined;
        fn();
        return;
      }
      e.timer = setTimeout(arm, Math.min(wait, MAX_TIMER_MS));
      e.timer.unref();
    };
    const wait = Math.max(0, atMs - now());
    e.timer = setTimeout(arm, Math.min(wait, MAX_TIMER_MS));
    e.timer.unref();
  };

  const record = (e: Entry, type: string, actor: AuditActor, detail: NewAuditEvent['detail'], decision: NewAuditEvent['decision'] = null): Promise<unknown> =>
    audit.append({ session: e.req.session, actor, target: e.req.target, type, detail: { id: e.req.id, ...detail }, decision, outcome: null });

  /** Final (or grant-lapsed) requests leave the pending index and become history. */
  const finish = (e: Entry): void => {
    const key = keyOf(e.req, e.keyedBySession);
    if (pendingByKey.get(key) === e.req.id) pendingByKey.delete(key);
    clearTimeout(e.timer);
    e.timer = undefined;
    if (e.oneShot !== 'available' && e.req.grant_until === undefined) e.finishedAt = now();
  };

  const prune = (): void => {
    const t = now();
    const finished: Entry[] = [];
    for (const e of entries.values()) {
      if (e.req.grant_until !== undefined && e.finishedAt === undefined && Date.parse(e.req.grant_until) <= t) e.finishedAt = t;
      if (e.finishedAt !== undefined) finished.push(e);
    }
    let excess = finished.length - historyLimit;
    for (const e of finished) {
      // Map order is creation order, so the oldest go first.
      if (excess > 0 || t - (e.finishedAt ?? t) > HISTORY_MS) {
        entries.delete(e.req.id);
        excess--;
      }
    }
  };

  const expire = (e: Entry): void => {
    enqueue(e, async () => {
      if (e.req.status !== 'pending') return;
      e.req.status = 'expired';
      finish(e);
      const approvals = e.req.decisions.filter((d) => d.decision === 'approve').length;
      try {
        await record(e, 'approval.expired', e.req.requester, { expires_at: e.req.expires_at, approvals, required: e.req.approvers.count });
      } catch (err) {
        // Expiry releases nothing, so it stands even unrecorded.
        logger.error('could not record an approval expiry', { request_id: e.req.id, error: err });
      }
      emit('expired', e);
      e.settle({ status: 'expired', request: structuredClone(e.req) });
    }).catch((err: unknown) => logger.error('could not expire an approval request', { request_id: e.req.id, error: err }));
  };

  /** An approved one-shot that nobody came back for stops counting after the timeout. */
  const lapse = (e: Entry): void => {
    enqueue(e, async () => {
      if (e.oneShot !== 'available') return;
      e.oneShot = 'lapsed';
      finish(e);
      try {
        await record(e, 'approval.expired', e.req.requester, { unused: true, note: 'approved, but not used within the approval timeout' });
      } catch (err) {
        logger.error('could not record an unused approval lapsing', { request_id: e.req.id, error: err });
      }
      emit('updated', e);
    }).catch((err: unknown) => logger.error('could not lapse an unused approval', { request_id: e.req.id, error: err }));
  };

  const approve = (e: Entry): void => {
    const t = now();
    e.req.status = 'approved';
    const grant = e.req.grantSeconds;
    if (grant !== undefined && grant > 0) {
      e.req.grant_until = iso(t + grant * 1000);
    } else if (e.waiting) {
      e.oneShot = 'used';
    } else {
      e.oneShot = 'available';
      e.usableUntil = t + timeoutMs;
    }
    finish(e);
    if (e.oneShot === 'available') schedule(e, e.usableUntil, () => lapse(e));
  };

  const notFound = (id: string): ApprovalServiceError =>
    new ApprovalServiceError('AG_REQUEST_NOT_FOUND', `no approval request ${id}`, { hint: 'list the requests you can see with: agentgate requests --all' });

  const service: ApprovalService = {
    signal: closer.signal,

    consumeGrant(requesterSub, target, fingerprint) {
      const t = now();
      let oneShot: Entry | undefined;
      for (const e of entries.values()) {
        const r = e.req;
        if (r.status !== 'approved' || r.requester.sub !== requesterSub || r.target !== target || r.fingerprint !== fingerprint) continue;
        if (r.grant_until !== undefined && Date.parse(r.grant_until) > t) return structuredClone(r);
        if (e.oneShot === 'available' && e.usableUntil > t) oneShot ??= e;
      }
      if (!oneShot) return undefined;
      oneShot.oneShot = 'used';
      finish(oneShot);
      emit('updated', oneShot);
      return structuredClone(oneShot.req);
    },

    request(input: NewApprovalRequest, opts: RequestOptions = {}) {
      const key = keyOf(input, opts.waiting !== false);
      const existingId = pendingByKey.get(key);
      const existing = existingId === undefined ? undefined : entries.get(existingId);
      if (existing && existing.req.status === 'pending') {
        // A client that waits turns a "come back later" request into one with a waiter.
        if (opts.waiting !== false) existing.waiting = true;
        return { request: structuredClone(existing.req), outcome: existing.outcome };
      }
      prune();
      let pending = 0;
      for (const e of entries.values()) if (e.req.status === 'pending' && e.req.requester.sub === input.requester.sub) pending++;
      if (pending >= maxPending) {
        // A flood of held statements would bury the reviewers' queue: the next one is refused.
        throw new ApprovalServiceError('AG_TOO_MANY_PENDING', `${input.requester.sub} already has ${pending} requests waiting for approval (the limit is ${maxPending}); this one was not queued and nothing ran`, {
          hint: 'wait for a reviewer to decide the pending ones (agentgate requests), or cancel them; the broker operator sets approvals.max_pending_per_requester',
        });
      }

      const t = now();
      const id = newRequestId();
      const req: ApprovalRequest = {
        requester: { ...input.requester, groups: [...input.requester.groups] },
        session: input.session,
        ...(input.connectSession !== undefined ? { connectSession: input.connectSession } : {}),
        target: input.target,
        protocol: input.protocol,
        statement: input.statement,
        ...(input.parameters !== undefined ? { parameters: [...input.parameters] } : {}),
        ...(input.body !== undefined ? { body: { contentType: input.body.contentType, text: input.body.text } } : {}),
        ...(input.anyValues === true ? { anyValues: true } : {}),
        // Plain JSON only: it goes into the audit log and over the wire.
        classification: JSON.parse(JSON.stringify(input.classification ?? {})) as Record<string, unknown>,
        policy: input.policy,
        rule: input.rule,
        reason: input.reason,
        ...(input.requesterReason !== undefined ? { requesterReason: input.requesterReason } : {}),
        approvers: { groups: [...input.approvers.groups], count: Math.max(1, Math.floor(input.approvers.count)), kinds: [...(input.approvers.kinds ?? ['human'])] },
        fingerprint: input.fingerprint,
        ...(input.grantSeconds !== undefined && input.grantSeconds > 0 ? { grantSeconds: input.grantSeconds } : {}),
        id,
        status: 'pending',
        created_at: iso(t),
        expires_at: iso(t + timeoutMs),
        decisions: [],
        revision: 0,
      };
      let settle!: (o: ApprovalOutcome) => void;
      let fail!: (err: unknown) => void;
      const outcome = new Promise<ApprovalOutcome>((resolve, reject) => {
        settle = resolve;
        fail = reject;
      });
      // A caller that does not wait (nor listen for failure) must not crash the broker.
      outcome.catch(() => {});
      const e: Entry = { req, waiting: opts.waiting !== false, keyedBySession: opts.waiting !== false, outcome, settle, fail, recorded: Promise.resolve(), queue: Promise.resolve(), timer: undefined, oneShot: 'none', usableUntil: 0, finishedAt: undefined };

      if (closing) {
        fail(new ApprovalServiceError('AG_APPROVALS_CLOSED', 'the broker is shutting down: nothing can be approved now', { hint: 'run the statement again once the broker is back' }));
        return { request: structuredClone(req), outcome };
      }
      entries.set(id, e);
      pendingByKey.set(key, id);
      schedule(e, t + timeoutMs, () => expire(e));

      e.recorded = record(
        e,
        'approval.requested',
        req.requester,
        {
          statement: req.statement,
          ...(req.parameters !== undefined ? { parameters: req.parameters } : {}),
          ...(req.body !== undefined ? { body: { content_type: req.body.contentType, text: req.body.text } } : {}),
          ...(req.anyValues === true ? { any_values: true } : {}),
          classification: req.classification as JsonValue,
          policy: req.policy,
          rule: req.rule,
          reason: req.reason,
          ...(req.requesterReason !== undefined ? { requester_reason: req.requesterReason } : {}),
          protocol: req.protocol,
          approvers: { groups: req.approvers.groups, count: req.approvers.count, kinds: req.approvers.kinds ?? ['human'] },
          expires_at: req.expires_at,
          ...(req.grantSeconds !== undefined ? { grant_seconds: req.grantSeconds } : {}),
        },
        { effect: 'review', rule: req.rule },
      ).then(
        () => {
          if (req.status !== 'pending') return;
          emit('created', e);
          webhooks.send('created', requestJson(req));
        },
        (err: unknown) => {
          // Unrecorded, it must not be decidable: drop it and refuse the statement.
          logger.error('could not record an approval request; the statement is refused', { request_id: id, error: err });
          clearTimeout(e.timer);
          entries.delete(id);
          if (pendingByKey.get(key) === id) pendingByKey.delete(key);
          fail(err);
          throw err;
        },
      );
      e.queue = e.recorded.catch(() => {});
      return { request: structuredClone(req), outcome };
    },

    withdraw(id, why) {
      const e = entries.get(id);
      if (!e) return;
      enqueue(e, async () => {
        if (e.req.status !== 'pending') return;
        e.req.status = 'withdrawn';
        finish(e);
        try {
          await record(e, 'approval.withdrawn', e.req.requester, { reason: why });
        } catch (err) {
          logger.error('could not record an approval withdrawal', { request_id: id, error: err });
        }
        emit('withdrawn', e);
        e.settle({ status: 'withdrawn', request: structuredClone(e.req) });
      }).catch((err: unknown) => logger.error('could not withdraw an approval request', { request_id: id, error: err }));
    },

    async withdrawOwn(id, requester) {
      const e = entries.get(id);
      if (!e) throw notFound(id);
      return enqueue(e, async () => {
        await e.recorded;
        const r = e.req;
        if (requester.sub !== r.requester.sub) {
          throw new ApprovalServiceError('AG_NOT_REQUESTER', `${requester.sub} did not make request ${id} and cannot withdraw it`, {
            hint: 'only the requester may withdraw a request; reviewers deny it instead: agentgate approve ID --deny --reason "…"',
          });
        }
        if (r.status !== 'pending') {
          throw new ApprovalServiceError('AG_REQUEST_NOT_PENDING', `request ${id} is ${r.status}, not pending`, { hint: 'see it with: agentgate requests --all' });
        }
        // Durable before it takes effect, like a decision.
        await record(e, 'approval.withdrawn', actorOf(requester), { reason: 'withdrawn by the requester' });
        if (r.status !== 'pending') throw new ApprovalServiceError('AG_APPROVALS_CLOSED', 'the broker is shutting down: the withdrawal was not applied', { hint: 'the request expired with the shutdown' });
        r.status = 'withdrawn';
        finish(e);
        emit('withdrawn', e);
        e.settle({ status: 'withdrawn', request: structuredClone(r) });
        return structuredClone(r);
      });
    },

    async decide(id, approver, decision, reason) {
      const e = entries.get(id);
      if (!e) throw notFound(id);
      const why = normalizeReason(reason);
      if (decision === 'deny' && why === null) {
        throw new ApprovalServiceError('AG_REASON_REQUIRED', 'a denial needs a reason', { hint: 'say why, e.g. --reason "run it in the maintenance window"; the requester sees it' });
      }
      return enqueue(e, async () => {
        // An unrecorded request rejects here: nothing is decided on it.
        await e.recorded;
        const r = e.req;
        if (sameSubject(approver.sub, r.requester.sub)) {
          throw new ApprovalServiceError('AG_SELF_APPROVAL', `${approver.sub} made request ${id} and cannot decide it`, {
            hint: `ask someone in ${r.approvers.groups.join(', ') || 'the approver groups'} to review it`,
          });
        }
        if (!isReviewer(approver, r)) {
          const kinds = r.approvers.kinds ?? ['human'];
          const why = kinds.includes(approver.kind) ? '' : ` (a ${approver.kind} identity; rule ${r.rule} takes decisions from ${kinds.join(', ')} identities only)`;
          throw new ApprovalServiceError('AG_NOT_APPROVER', `${approver.sub} is not an approver for request ${id}${why}`, {
            hint: `rule ${r.rule} needs ${kinds.join(' or ')} members of ${r.approvers.groups.join(', ') || '(no group)'} to decide`,
          });
        }
        if (r.status !== 'pending') {
          throw new ApprovalServiceError('AG_REQUEST_NOT_PENDING', `request ${id} is ${r.status}, not pending`, { hint: `see it with: agentgate requests --all` });
        }
        if (r.decisions.some((d) => sameSubject(d.approver.sub, approver.sub))) {
          throw new ApprovalServiceError('AG_ALREADY_DECIDED', `${approver.sub} has already decided request ${id}`, {
            hint: `it needs ${r.approvers.count} distinct approvers; another member of ${r.approvers.groups.join(', ')} must approve`,
          });
        }
        const at = iso(now());
        const approvals = r.decisions.filter((d) => d.decision === 'approve').length + (decision === 'approve' ? 1 : 0);
        // Durable before it takes effect: an unrecorded decision releases nothing.
        await record(
          e,
          'approval.decided',
          actorOf(approver),
          { approver: approver.sub, decision, reason: why, approvals, required: r.approvers.count },
          { effect: decision === 'approve' ? 'allow' : 'deny', rule: r.rule },
        );
        // close() settles pending requests outside the queue.
        if (r.status !== 'pending') throw new ApprovalServiceError('AG_APPROVALS_CLOSED', 'the broker is shutting down: the decision was not applied', { hint: 'the request expired with the shutdown' });
        r.decisions.push({ approver: approver.name !== undefined ? { sub: approver.sub, name: approver.name } : { sub: approver.sub }, decision, reason: why, at });
        if (decision === 'approve' && approvals < r.approvers.count) {
          emit('updated', e);
          return structuredClone(r);
        }
        if (decision === 'deny') {
          r.status = 'denied';
          finish(e);
        } else {
          approve(e);
        }
        emit('decided', e);
        e.settle(r.status === 'denied' ? { status: 'denied', request: structuredClone(r), reason: why ?? '' } : { status: 'approved', request: structuredClone(r) });
        webhooks.send('decided', requestJson(r));
        return structuredClone(r);
      });
    },

    get(id) {
      const e = entries.get(id);
      return e ? structuredClone(e.req) : undefined;
    },

    list(viewer, opts = {}) {
      const limit = Math.max(1, Math.min(opts.limit ?? MAX_PAGE, MAX_PAGE));
      const all = [...entries.values()];
      // Map order is creation order; pages go newest first, each after the one named.
      let i = all.length - 1;
      if (opts.after !== undefined) {
        const at = all.findIndex((e) => e.req.id === opts.after);
        // A cursor that has been pruned meanwhile starts over rather than skipping requests.
        if (at >= 0) i = at - 1;
      }
      const out: ApprovalRequest[] = [];
      for (; i >= 0; i--) {
        const e = all[i] as Entry;
        if (!((opts.all || e.req.status === 'pending') && isListedFor(viewer, e.req))) continue;
        if (out.length === limit) return { requests: out, next: (out[out.length - 1] as ApprovalRequest).id };
        out.push(structuredClone(e.req));
      }
      return { requests: out };
    },

    canReview(viewer, request) {
      return mayDecide(viewer, request);
    },

    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    close() {
      closing ??= (async () => {
        const ends: Promise<unknown>[] = [];
        for (const e of entries.values()) {
          clearTimeout(e.timer);
          e.timer = undefined;
          if (e.req.status !== 'pending') continue;
          e.req.status = 'expired';
          finish(e);
          ends.push(record(e, 'approval.expired', e.req.requester, { expires_at: e.req.expires_at, note: 'the broker shut down' }).catch(() => {}));
          emit('expired', e);
          e.settle({ status: 'expired', request: structuredClone(e.req) });
        }
        // After the last changes went out: streams end, webhook retries stop.
        closer.abort();
        listeners.clear();
        await Promise.allSettled([...ends, webhooks.idle()]);
      })();
      return closing;
    },
  };
  return service;
}

function normalizeReason(reason: string | null | undefined): string | null {
  const r = reason?.trim() ?? '';
  if (r === '') return null;
  return r.length > MAX_REASON_LENGTH ? r.slice(0, MAX_REASON_LENGTH) : r;
}

function actorOf(identity: Identity): AuditActor {
  return { sub: identity.sub, name: identity.name ?? null, groups: identity.groups, kind: identity.kind };
}
