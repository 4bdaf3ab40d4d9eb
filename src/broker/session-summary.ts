/**
 * What a protocol proxy (Postgres, Kubernetes) reports when one proxied connection ends:
 * the counts and approvals its receipt attests (receipts/types.ts SessionFacts).
 */
import type { AuditActor } from '../shared/audit-hash.js';

export interface SessionSummary {
  session: string;
  /** The `connect`/`run` session this connection belonged to, when the tunnel named one. */
  connectSession: string | undefined;
  actor: AuditActor;
  target: string;
  protocol: 'postgres' | 'kubernetes' | 'ssh';
  /** The deciding policy's name (null: none); absent = read from the session.start event. */
  policy?: string | null;
  /** The reason given for the session or its call (already masked). */
  reason?: string | undefined;
  /** ISO-8601. */
  startedAt: string;
  endedAt: string;
  /** Statements or requests executed, refused or held (one per simple Query / Execute / HTTP request). */
  statements: number;
  allowed: number;
  denied: number;
  /** Held for approval (whatever the outcome). */
  held: number;
  /** Statements that failed / requests answered with a status of 400 or more. */
  errors: number;
  rows: number;
  bytes: number;
  /** Values masked in results. */
  masked: number;
  /** Forwarded statements whose outcome is unknown (the broker stopped): sessions closed at the next start. */
  unknown?: number;
  approvals: SessionApproval[];
  /** Recordings finished in the session (terminal casts): the receipt lists each as a subject. */
  recordings?: SessionRecording[] | undefined;
}

export interface SessionRecording {
  /** File name under state_dir/recordings. */
  name: string;
  sha256: string;
}

export interface SessionApproval {
  id: string;
  status: string;
  decisions: { approver: string; decision: string; reason: string | null; at: string }[];
}
