/**
 * What a protocol adapter hands the session core and what it gets back. The adapter
 * renders a verdict in its own wire language (a Postgres ErrorResponse, a Kubernetes
 * Status, an SSH exit status and a line on stderr).
 */
import type { AuditDecision } from '../../shared/audit-hash.js';
import type { PolicyRequest } from '../policy/decide-request.js';
import type { ApproverSpec } from '../config/types.js';

export interface EnforceRequest {
  /** What policy judges. */
  policy: PolicyRequest;
  /** The request as shown to reviewers and recorded (already masked). */
  statement: string;
  /** Shown to reviewers next to the statement. */
  classification: Record<string, unknown>;
  /** Why the requester says they need it (this request's reason, masked); default the session's. */
  requesterReason?: string;
  /** "The same request" for grants and approvals; a function when computing it costs (a body to read): undefined = too large to hold. */
  fingerprint: string | (() => Promise<string | undefined>);
  /**
   * The values the request runs with (Postgres bind parameters): an approval covers them —
   * `fingerprint` is the request's fingerprint bound to them — unless the rule approves the
   * shape with any values (`any_values`). `shown()`: as reviewers see them (masked).
   */
  values?: { fingerprint: string; shown(): string[] };
  /**
   * The body a held write sends (Kubernetes), as reviewers see it (masked, cut); read once
   * the fingerprint has been computed (which reads the body). Part of what is approved.
   */
  body?: () => HeldBody | undefined;
}

/** A held request's body as shown to reviewers: its Content-Type and (masked, cut) text. */
export interface HeldBody {
  contentType: string;
  text: string;
  /** Cut to what a reviewer is shown: such a request is refused, not held (an approval would release what nobody saw). */
  cut?: true;
}

/** How a held request was settled when it was not approved (adapters that word it themselves). */
export interface Settled {
  status: 'denied' | 'expired' | 'withdrawn';
  /** The approver's reason (denied). */
  reason?: string;
  /** Who denied it. */
  by?: string;
}

/** Why a review could not be held (adapters map these to their protocol's status). */
export type DenyCode = 'no_approvals' | 'too_large' | 'too_many_pending' | 'approvals_unavailable' | 'approval_failed';

export type Verdict =
  | { kind: 'allow'; decision: AuditDecision }
  /** `message`: one sentence, no `agentgate:` prefix (the adapter adds its own framing). */
  | {
      kind: 'deny';
      decision: AuditDecision;
      message: string;
      code?: DenyCode;
      ended?: boolean;
      /** What the client may do about it (too many pending). */
      hint?: string;
      /** A hold's outcome that was not an approval. */
      settled?: Settled;
      /** The approval service's error (approvals_unavailable, approval_failed). */
      cause?: unknown;
    }
  /**
   * Held for a human: `message` (no prefix) says who must approve; `outcome` settles with allow (the
   * approval was used) or deny (denied, expired, withdrawn; `approval_failed` when it could not be
   * recorded). `withdraw` when the client left or cancelled: its denial is counted when the outcome
   * settles, or `now` (the client is answered at once), or `never` (nobody is answered).
   */
  | {
      kind: 'hold';
      decision: AuditDecision;
      approval: string;
      message: string;
      approvers: ApproverSpec;
      /** ISO-8601: when the request expires unless decided. */
      expiresAt: string;
      outcome: Promise<Verdict>;
      withdraw(why: string, counted?: 'now' | 'never'): void;
    };

export interface SessionCounts {
  statements: number;
  allowed: number;
  denied: number;
  held: number;
  errors: number;
  bytes: number;
  masked: number;
  /** Rows returned (Postgres): in session.end and the summary when the adapter counts them. */
  rows?: number;
}
