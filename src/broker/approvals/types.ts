/**
 * The approvals port: what the protocol proxies (Postgres, Kubernetes) and the HTTP API
 * need from the just-in-time approval service. Implementation: service.ts.
 */
import type { ApproverSpec } from '../config/types.js';
import type { AuditActor } from '../../shared/audit-hash.js';
import type { Identity } from '../identity/types.js';

export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired' | 'withdrawn';

export interface ApprovalDecisionRecord {
  approver: { sub: string; name?: string };
  decision: 'approve' | 'deny';
  reason: string | null;
  /** ISO-8601. */
  at: string;
}

/** What a proxy hands in when policy says `review`. */
export interface NewApprovalRequest {
  requester: AuditActor;
  /** The proxy session the statement/request belongs to (audit `session`). */
  session: string;
  /**
   * The client session (`agentgate connect`/`run`/`mcp`) that proxy session came through,
   * when it named one: a client acts (withdraws) only on requests of its own session.
   */
  connectSession?: string;
  target: string;
  protocol: 'postgres' | 'kubernetes' | 'ssh';
  /** The statement or request line as it will be shown to reviewers (already masked). */
  statement: string;
  /** Bind parameter values as shown to reviewers (already masked); part of what is approved. */
  parameters?: string[];
  /** A held write's body (Kubernetes) as shown to reviewers (already masked and cut); part of what is approved. */
  body?: { contentType: string; text: string };
  /** The rule approves the shape with any parameter values: the fingerprint leaves them out. */
  anyValues?: boolean;
  /** Classification summary shown to reviewers (kinds, relations, flags / verb, resource…). */
  classification: Record<string, unknown>;
  policy: string;
  rule: string;
  /** Why it was held (the policy decision's reason). */
  reason: string;
  /** Why the requester says they need it (the session's or the call's reason), already masked. */
  requesterReason?: string;
  approvers: ApproverSpec;
  /** Identifies "the same statement/request" for grants (with its parameter values, unless anyValues). */
  fingerprint: string;
  /** From the rule: an approval then covers the same fingerprint for this long. */
  grantSeconds?: number;
}

export interface ApprovalRequest extends NewApprovalRequest {
  id: string;
  status: ApprovalStatus;
  /** ISO-8601. */
  created_at: string;
  expires_at: string;
  decisions: ApprovalDecisionRecord[];
  /** For approved requests with a grant: until when the fingerprint stays approved. */
  grant_until?: string;
  /** Increases with every change (decision, expiry, use of a one-shot approval). */
  revision: number;
}

export interface RequestOptions {
  /**
   * Whether a caller holds the client and waits for `outcome` (Postgres: true, the default).
   * False when nobody waits (the client re-runs the request later, e.g. Kubernetes): a one-shot
   * approval is then kept for one `consumeGrant` until `approvals.timeoutSeconds` pass.
   */
  waiting?: boolean;
}

export type ApprovalOutcome =
  | { status: 'approved'; request: ApprovalRequest }
  | { status: 'denied'; request: ApprovalRequest; reason: string }
  | { status: 'expired'; request: ApprovalRequest }
  | { status: 'withdrawn'; request: ApprovalRequest };

export interface ApprovalChange {
  type: 'created' | 'decided' | 'expired' | 'withdrawn' | 'updated';
  request: ApprovalRequest;
}

export interface ApprovalService {
  /**
   * An approval that already covers this fingerprint for this requester and target: a live
   * time-boxed grant, or an approved one-shot request not used yet (which this consumes).
   */
  consumeGrant(requesterSub: string, target: string, fingerprint: string): ApprovalRequest | undefined;
  /**
   * Creates a pending request, or returns the pending one for the same requester, target and
   * fingerprint in the same session (another session gets its own request: one approval
   * releases one statement). Throws AG_TOO_MANY_PENDING when the requester already has
   * `approvals.maxPendingPerRequester` pending. `outcome` settles when it is decided, expires or is withdrawn; a waiter
   * that receives `approved` has used the one-shot approval. It rejects (fail closed) only
   * when the audit log cannot record the request, or the service is closed.
   */
  request(input: NewApprovalRequest, opts?: RequestOptions): { request: ApprovalRequest; outcome: Promise<ApprovalOutcome> };
  /** The requester went away (client disconnected): the request is withdrawn. */
  withdraw(id: string, why: string): void;
  /**
   * The requester takes back a pending request (e.g. an MCP tool call cancelled by its
   * client). Only the identity that made it may; durable before it answers.
   */
  withdrawOwn(id: string, requester: Identity): Promise<ApprovalRequest>;
  /** Throws ApprovalError-coded AgentgateErrors: not found, not pending, self-approval, not an approver, already decided by this approver. */
  decide(id: string, approver: Identity, decision: 'approve' | 'deny', reason: string | null): Promise<ApprovalRequest>;
  get(id: string): ApprovalRequest | undefined;
  /**
   * Requests this identity made or may review; pending only unless `all`. Newest first, one
   * page of at most `limit` after the request `after`; `next` names the last one when more follow.
   */
  list(viewer: Identity, opts?: { all?: boolean; limit?: number; after?: string }): { requests: ApprovalRequest[]; next?: string };
  /** Whether `viewer` may decide this request (approver group, not the requester, not yet decided by them). */
  canReview(viewer: Identity, request: ApprovalRequest): boolean;
  subscribe(listener: (change: ApprovalChange) => void): () => void;
  /** Aborted by close(): long-lived consumers (the SSE stream) end with it. */
  readonly signal: AbortSignal;
  /** Clears timers, settles waiters as expired, ends subscribers and webhook deliveries. */
  close(): Promise<void>;
}
