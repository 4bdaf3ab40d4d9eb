/**
 * What a protocol adapter hands the session core and what it gets back. The adapter
 * renders a verdict in its own wire language (a Postgres ErrorResponse, a Kubernetes
 * Status, an SSH exit status and a line on stderr).
 */
import type { AuditDecision } from '../../shared/audit-hash.js';
import type { PolicyRequest } from '../policy/decide-request.js';

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
}

/** Why a review could not be held (adapters map these to their protocol's status). */
export type DenyCode = 'no_approvals' | 'too_large' | 'too_many_pending' | 'approvals_unavailable';

export type Verdict =
  | { kind: 'allow'; decision: AuditDecision }
  /** `message`: one sentence, no `agentgate:` prefix (the adapter adds its own framing). */
  | { kind: 'deny'; decision: AuditDecision; message: string; code?: DenyCode; ended?: boolean }
  /**
   * Held for a human: `message` (no prefix) says who must approve; `outcome` settles with allow (the
   * approval was used) or deny (denied, expired, withdrawn). `withdraw` when the client left.
   */
  | { kind: 'hold'; decision: AuditDecision; approval: string; message: string; outcome: Promise<Verdict>; withdraw(why: string): void };

export interface SessionCounts {
  statements: number;
  allowed: number;
  denied: number;
  held: number;
  errors: number;
  bytes: number;
  masked: number;
}
