/**
 * The protocol-neutral session core: one proxied connection's record, from its
 * `session.start` to its `session.end`, summary and receipt.
 *
 *   adapter ──enforce(request)──► policy decision → grant / hold for approval → counts
 *   adapter ◄── verdict ───────── (rendered in the adapter's wire language)
 *   adapter ──intent()──► `<kind>.intent` durable before anything is forwarded
 *   adapter ──outcome()─► `<kind>` with its outcome, once the target answered
 *
 * Access to the target at all ("a policy that can only deny grants no access") is decided
 * here through access.ts; the live-session lease (credential expiry, max_duration,
 * revocation) is taken here; the summary the receipt attests is built here.
 *
 * The audit store failing closes the door: `enforce` denies while it is down.
 */
import { randomUUID } from 'node:crypto';
import type { AuditStore, NewAuditEvent } from '../audit/store.js';
import { unsettledFor } from '../audit/unsettled.js';
import type { AuditActor, AuditDecision, JsonValue } from '../../shared/audit-hash.js';
import type { BrokerConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';
import type { Logger } from '../log.js';
import type { ApprovalService } from '../approvals/types.js';
import { ApprovalServiceError } from '../approvals/errors.js';
import type { EndNotice, SessionLease } from '../live-sessions.js';
import type { SessionApproval, SessionSummary } from '../session-summary.js';
import { decidingPolicy, policyGrantsAccess } from '../access.js';
import { decideRequest, type PolicyRequest } from '../policy/decide-request.js';
import { withReasonRequirement } from '../policy/reason.js';
import type { PolicyDecision } from '../policy/decision.js';
import type { DenyCode, EnforceRequest, SessionCounts, Settled, Verdict } from './types.js';

export type SessionProtocol = SessionSummary['protocol'];

export interface ProtocolSessionOptions {
  protocol: SessionProtocol;
  /** Session id prefix, e.g. `sshs` → `sshs_<uuid>`. */
  idPrefix: string;
  identity: Identity;
  actor: AuditActor;
  target: string;
  config: Pick<BrokerConfig, 'policies'>;
  audit: AuditStore;
  approvals?: ApprovalService | undefined;
  logger: Logger;
  connectSession?: string | undefined;
  /** Extra detail for session.start (tunnel, client address, upstream). */
  origin: Record<string, JsonValue>;
  lease?: SessionLease | undefined;
  onEnd?: ((summary: SessionSummary) => void) | undefined;
  /** The reason the session gave (`--reason`), already masked: in session.start and the summary. */
  reason?: string | undefined;
}

export class ProtocolSession {
  readonly id: string;
  readonly counts: SessionCounts = { statements: 0, allowed: 0, denied: 0, held: 0, errors: 0, bytes: 0, masked: 0 };
  /** The deciding policy's name (receipts name it); null when none applies. */
  readonly policy: string | null;
  /** Whether this identity may use the target at all. */
  readonly access: boolean;
  /** The deciding policy has `require_reason: true`. */
  readonly requireReason: boolean;
  readonly #o: ProtocolSessionOptions;
  readonly #startedAt = new Date().toISOString();
  readonly #approvalIds = new Set<string>();
  #reason: string | undefined;
  #started: Promise<void> | undefined;
  /** The seq of session.start, once durable. */
  #startSeq: number | undefined;
  /** The store's failure count when the session began: a change means it may have lost events. */
  readonly #failuresAtStart: number;
  #ended = false;
  #nextId = 1;
  #endNotice: EndNotice | undefined;

  constructor(o: ProtocolSessionOptions) {
    this.#o = o;
    this.#reason = o.reason;
    this.#failuresAtStart = o.audit.failures;
    this.id = `${o.idPrefix}_${randomUUID()}`;
    const policy = decidingPolicy(o.identity, o.target, o.config.policies);
    this.policy = policy?.name ?? null;
    this.access = policyGrantsAccess(policy);
    this.requireReason = policy?.requireReason === true;
  }

  /** Why this session may not run at all (no access, a lapsed or revoked credential, the audit log down); undefined when it may. */
  get refusal(): { message: string; hint: string } | undefined {
    if (!this.access) {
      return {
        message: `agentgate: ${this.#o.actor.sub} may not use target "${this.#o.target}": no policy matches this identity and target`,
        hint: 'run `agentgate targets` to see what you may use, or ask the broker operator for access',
      };
    }
    const ended = this.#o.lease?.refusal;
    if (ended) return { message: ended.message, hint: ended.hint };
    if (this.#o.audit.failed) return { message: 'agentgate: the audit log is unavailable, so sessions are refused', hint: 'try again later; the broker operator has been told' };
    return undefined;
  }

  /** Why the broker will not let this session run (its tunnel's credential lapsed or was revoked, or it was ended); undefined while it may. */
  get ended(): EndNotice | undefined {
    return this.#o.lease?.refusal;
  }

  /** Takes the live-session lease; `onEndNotice` is called (once) when the broker ends the session. */
  takeLease(onEndNotice: (notice: EndNotice) => void): void {
    this.#o.lease?.start(this.id, (notice) => {
      this.#endNotice = notice;
      onEndNotice(notice);
    });
  }

  /** The reason on record for the session (masked). */
  get reason(): string | undefined {
    return this.#reason;
  }

  /** A reason learnt after the session was made (Postgres: the `agentgate.reason` startup parameter replaces the tunnel's); before start(). */
  setReason(reason: string | undefined): void {
    this.#reason = reason;
  }

  /**
   * `session.start`, once; every later event follows it in the log. `detail`: the adapter's
   * own start record (it then names the protocol, reason and origin itself).
   */
  start(detail?: Record<string, JsonValue>): Promise<void> {
    this.#started ??= this.#o.audit
      .append({
        ...this.#base(),
        type: 'session.start',
        detail: detail ?? {
          protocol: this.#o.protocol,
          ...(this.#o.connectSession ? { connect_session: this.#o.connectSession } : {}),
          reason: this.#reason ?? null,
          ...this.#o.origin,
        },
        decision: { effect: this.access ? 'allow' : 'deny', rule: this.policy },
        outcome: null,
      })
      .then((r) => {
        this.#startSeq = r.seq;
      });
    return this.#started;
  }

  /**
   * A `session.start` that refuses the session before it runs (e.g. a startup parameter the
   * policy refuses): on record like any refused request; the session never starts, so
   * end() writes no session.end and hands on no summary.
   */
  async refuseStart(detail: Record<string, JsonValue>, decision: AuditDecision, outcome: NewAuditEvent['outcome']): Promise<void> {
    await this.#o.audit.append({ ...this.#base(), type: 'session.start', detail, decision, outcome });
  }

  /** A new request number, shared by a request's intent and outcome events. */
  nextRequestId(): number {
    return this.#nextId++;
  }

  /**
   * Policy's decision about one request, nothing counted (adapters with protocol checks of
   * their own). `reason`: the request's own (a call's), else the session's; a policy that
   * requires one refuses what it would allow or hold without it.
   */
  decide(req: PolicyRequest, reason: string | undefined = this.#reason): PolicyDecision {
    return withReasonRequirement(decideRequest(this.#o.identity, this.#o.target, this.#o.config.policies, req), this.requireReason, reason);
  }

  /** Decide one request: policy, then a grant or a hold for review. Counts it. */
  async enforce(req: EnforceRequest): Promise<Verdict> {
    this.counts.statements++;
    if (this.#o.audit.failed) return this.#deny({ effect: 'deny', rule: null, reason: 'the audit log is unavailable' }, 'the audit log is unavailable, so nothing is forwarded; try again later');
    const ended = this.#o.lease?.refusal;
    if (ended) return this.#deny({ effect: 'deny', rule: null, reason: ended.reason }, `${ended.message}; ${ended.hint}`, true);
    const d = this.decide(req.policy, req.requesterReason ?? this.#o.reason);
    const decision: AuditDecision = { effect: d.effect, rule: d.rule };
    if (d.effect === 'deny') return this.#deny({ ...decision, reason: d.reason }, d.reason);
    if (d.effect === 'allow') {
      this.counts.allowed++;
      return { kind: 'allow', decision };
    }
    const v = await this.review(d, req, { waiting: true });
    if (v.kind === 'allow') this.counts.allowed++;
    return v;
  }

  /**
   * A `review` decision: an approval that already covers the request (a live grant or an
   * unused one-shot) lets it through; otherwise it is held for the rule's approvers.
   * `waiting`: the caller keeps the client while the hold waits (SSH, Postgres); false when
   * the client is told to come back (Kubernetes), and the re-run finds the approval.
   * Counts held and denied; allowed is the caller's (it may still refuse).
   */
  async review(d: PolicyDecision, req: Omit<EnforceRequest, 'policy'>, opts: { waiting: boolean }): Promise<Verdict> {
    if (typeof req.fingerprint === 'string' || !this.#canHold(d)) return this.reviewNow(d, { ...req, fingerprint: typeof req.fingerprint === 'string' ? req.fingerprint : '' }, opts);
    const fingerprint = await req.fingerprint();
    if (fingerprint === undefined) return this.#deny({ effect: d.effect, rule: d.rule }, 'the request is too large to hold for review', false, 'too_large');
    return this.reviewNow(d, { ...req, fingerprint }, opts);
  }

  #canHold(d: PolicyDecision): boolean {
    return this.#o.approvals !== undefined && d.approvers !== undefined && !!d.policy && !!d.rule;
  }

  /**
   * review() for a request whose fingerprint is at hand, answered in the same turn (an adapter
   * that must keep its wire in order, like Postgres's pipeline). Values bound to the request
   * (`values`) are part of what is approved unless the rule says `any_values`.
   */
  reviewNow(d: PolicyDecision, req: Omit<EnforceRequest, 'policy' | 'fingerprint'> & { fingerprint: string }, opts: { waiting: boolean }): Verdict {
    const decision: AuditDecision = { effect: d.effect, rule: d.rule };
    const approvals = this.#o.approvals;
    if (!approvals || !d.approvers || !d.policy || !d.rule) {
      return this.#deny({ ...decision, reason: `${d.reason}, but this broker has no approval service` }, `${d.reason}, but approvals are not available on this broker`, false, 'no_approvals');
    }
    const fingerprint = req.values && !d.anyValues ? req.values.fingerprint : req.fingerprint;
    const grant = approvals.consumeGrant(this.#o.actor.sub, this.#o.target, fingerprint);
    if (grant) {
      this.#approvalIds.add(grant.id);
      return { kind: 'allow', decision: { ...decision, approval: grant.id } };
    }
    const body = req.body?.();
    if (body?.cut === true) {
      // What a reviewer cannot be shown whole cannot be approved.
      const why = `${d.reason}, but its body is too long to be shown to a reviewer whole`;
      return this.#deny({ effect: 'deny', rule: d.rule, reason: why }, `${why}, so it was not held for review and nothing was sent`);
    }
    let held;
    try {
      held = approvals.request(
        {
          requester: this.#o.actor,
          session: this.id,
          ...(this.#o.connectSession !== undefined ? { connectSession: this.#o.connectSession } : {}),
          target: this.#o.target,
          protocol: this.#o.protocol,
          statement: req.statement,
          ...(req.values ? { parameters: req.values.shown() } : {}),
          ...(body !== undefined ? { body: { contentType: body.contentType, text: body.text } } : {}),
          ...(d.anyValues ? { anyValues: true } : {}),
          classification: req.classification,
          policy: d.policy,
          rule: d.rule,
          reason: d.reason,
          ...(req.requesterReason !== undefined ? { requesterReason: req.requesterReason } : this.#reason !== undefined ? { requesterReason: this.#reason } : {}),
          approvers: d.approvers,
          fingerprint,
          ...(d.grantSeconds !== undefined ? { grantSeconds: d.grantSeconds } : {}),
        },
        { waiting: opts.waiting },
      );
    } catch (err) {
      if (err instanceof ApprovalServiceError && err.code === 'AG_TOO_MANY_PENDING') {
        // Not queued: the requester already has as many waiting as the broker allows.
        const v = this.#deny({ effect: 'deny', rule: d.rule, reason: err.message }, err.message, false, 'too_many_pending');
        return err.hint !== undefined && v.kind === 'deny' ? { ...v, hint: err.hint } : v;
      }
      this.#o.logger.error('could not create an approval request', { session: this.id, error: err });
      const v = this.#deny({ ...decision, reason: 'the approval request could not be created' }, 'this needs approval, but the approval service is unavailable', false, 'approvals_unavailable');
      return v.kind === 'deny' ? { ...v, cause: err } : v;
    }
    const id = held.request.id;
    this.counts.held++;
    this.#approvalIds.add(id);
    const heldDecision: AuditDecision = { ...decision, approval: id, reason: d.reason };
    const who = `${d.approvers.count} of ${d.approvers.groups.join(', ')}`;
    /** How a withdrawal's denial is counted: when the outcome settles (default), already, or not at all. */
    let counting: 'outcome' | 'now' | 'never' = 'outcome';
    let settledYet = false;
    const denied = (dec: AuditDecision, message: string, extra: Partial<Extract<Verdict, { kind: 'deny' }>>): Verdict =>
      counting === 'outcome' ? { ...(this.#deny(dec, message) as Extract<Verdict, { kind: 'deny' }>), ...extra } : { kind: 'deny', decision: dec, message, ...extra };
    const outcome = opts.waiting
      ? held.outcome.then(
          (o): Verdict => {
            settledYet = true;
            if (o.status === 'approved') {
              this.counts.allowed++;
              return { kind: 'allow', decision: heldDecision };
            }
            const why = o.status === 'denied' ? `denied${o.reason ? `: ${o.reason}` : ''}` : o.status;
            const settled: Settled =
              o.status === 'denied'
                ? { status: 'denied', reason: o.reason, by: o.request.decisions.find((x) => x.decision === 'deny')?.approver.sub ?? 'a reviewer' }
                : { status: o.status };
            return denied({ ...heldDecision, reason: `approval ${id} ${why}` }, `approval ${id} was ${why}`, { settled });
          },
          (err: unknown): Verdict => {
            settledYet = true;
            return denied({ ...heldDecision, reason: 'the approval could not be recorded' }, 'the approval could not be recorded', { code: 'approval_failed', cause: err });
          },
        )
      : held.outcome.then(
          (): Verdict => ({ kind: 'deny', decision: heldDecision, message: 'nobody waits for this hold' }),
          (): Verdict => ({ kind: 'deny', decision: heldDecision, message: 'nobody waits for this hold' }),
        );
    return {
      kind: 'hold',
      decision: heldDecision,
      approval: id,
      message: `${d.reason}; held for approval by ${who}: ${id} — an approver runs: agentgate approve ${id}`,
      approvers: d.approvers,
      expiresAt: held.request.expires_at,
      outcome,
      withdraw: (why, counted) => {
        if (!settledYet && counting === 'outcome' && counted !== undefined) {
          counting = counted;
          if (counted === 'now') this.counts.denied++;
        }
        approvals.withdraw(id, why);
      },
    };
  }

  /** An approval this session used or asked for (adapters that decide holds themselves); its receipt lists it. */
  noteApproval(id: string): void {
    this.#approvalIds.add(id);
  }

  #deny(decision: AuditDecision, message: string, ended = false, code?: DenyCode): Verdict {
    this.counts.denied++;
    return { kind: 'deny', decision, message, ...(code ? { code } : {}), ...(ended ? { ended: true } : {}) };
  }

  /** Appends one event of this session (after session.start). */
  async record(e: Omit<NewAuditEvent, 'session' | 'actor' | 'target'>): Promise<void> {
    await this.start();
    await this.#o.audit.append({ ...this.#base(), ...e });
  }

  /**
   * Appends one event of this session at once, without waiting a turn for session.start: for an
   * adapter that already orders its events after it (Postgres: session.start is a barrier before
   * the client may speak, and a statement's intent must be appended in the turn it is relayed).
   */
  append(e: Omit<NewAuditEvent, 'session' | 'actor' | 'target'>): Promise<unknown> {
    return this.#o.audit.append({ ...this.#base(), ...e });
  }

  #base(): Pick<NewAuditEvent, 'session' | 'actor' | 'target'> {
    return { session: this.id, actor: this.#o.actor, target: this.#o.target };
  }

  /**
   * `session.end` (when it started), the lease released, the summary handed on for the receipt.
   * Idempotent; the lease is released at once. `detail`: the adapter's additions to session.end
   * (e.g. masked values by rule); `after`: the adapter's pending events, settled before session.end.
   */
  async end(reason?: string, extra: { detail?: Record<string, JsonValue>; after?: Promise<unknown> } = {}): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    this.#o.lease?.release();
    if (!this.#started) return;
    const detail = extra.detail;
    await this.#started.catch(() => {});
    await extra.after?.catch(() => {});
    const endedAt = new Date().toISOString();
    // Ended by the broker, or refused from the start because the tunnel's credential lapsed.
    const n = this.#endNotice ?? this.#o.lease?.refusal;
    const why: Record<string, JsonValue> = n ? { reason: n.reason, message: n.message, ...(n.by ? { revoked_by: n.by } : {}) } : { reason: reason ?? 'client closed the connection' };
    let endRecorded = false;
    try {
      if (!this.#o.audit.failed) {
        await this.#o.audit.append({
          ...this.#base(),
          type: 'session.end',
          detail: { ...this.counts, ...detail, duration_ms: Date.parse(endedAt) - Date.parse(this.#startedAt), ...why },
          decision: null,
          outcome: { status: 'ok' },
        });
        endRecorded = true;
      }
    } catch (err) {
      // The summary still goes out: the receipt says what the log holds.
      this.#o.logger.error('could not record session end', { session: this.id, error: err });
    }
    // The store failed during the session: an outcome or this end may be missing from the
    // log. Once it answers, the log closes what was left open (audit/unsettled.ts).
    if (this.#startSeq !== undefined && (!endRecorded || this.#o.audit.failures !== this.#failuresAtStart)) {
      unsettledFor(this.#o.audit)?.owe(this.id, this.#startSeq - 1);
    }
    const approvals: SessionApproval[] = [];
    for (const id of this.#approvalIds) {
      const r = this.#o.approvals?.get(id);
      approvals.push({
        id,
        status: r?.status ?? 'unknown',
        decisions: (r?.decisions ?? []).map((d) => ({ approver: d.approver.sub, decision: d.decision, reason: d.reason, at: d.at })),
      });
    }
    const c = this.counts;
    this.#o.onEnd?.({
      session: this.id,
      connectSession: this.#o.connectSession,
      actor: this.#o.actor,
      target: this.#o.target,
      protocol: this.#o.protocol,
      policy: this.policy,
      ...(this.#reason !== undefined ? { reason: this.#reason } : {}),
      startedAt: this.#startedAt,
      endedAt,
      statements: c.statements,
      allowed: c.allowed,
      denied: c.denied,
      held: c.held,
      errors: c.errors,
      rows: c.rows ?? 0,
      bytes: c.bytes,
      masked: c.masked,
      approvals,
    });
  }
}
