/**
 * What the broker needs to issue a session receipt, and the ports behind issuing one.
 */
import type { AuditActor } from '../../shared/audit-hash.js';
import type { DsseEnvelope, Ed25519Jwk } from '../../shared/receipt.js';

/**
 * One approval request the session raised. Shaped like the proxy's SessionSummary
 * approvals, so a summary can be handed over as it is.
 */
export interface SessionApprovalFacts {
  id: string;
  /** Final status of the request (approved, denied, expired, cancelled, …). */
  status?: string;
  /** Every reviewer's decision, in order. */
  decisions: { approver: string; decision: string; reason: string | null; at: string }[];
}

/**
 * What the proxy knows when a session ends. The proxy's SessionSummary has these fields
 * (and more, which are ignored), so `receipts.issue(summary)` works as is.
 */
export interface SessionFacts {
  /** The protocol session id (`pgs_…`), as in its audit events. */
  session: string;
  /** The `connect`/`run` session id the CLI sent on the tunnel, if any. */
  connectSession?: string | undefined;
  actor: AuditActor;
  target: string;
  protocol: string;
  /** ISO-8601. */
  startedAt: string;
  endedAt: string;
  statements: number;
  allowed: number;
  denied: number;
  held: number;
  masked: number;
  /** Forwarded statements whose outcome is unknown (the broker stopped). */
  unknown?: number;
  approvals: SessionApprovalFacts[];
  /** The deciding policy's name; when absent it is read from the session.start event. */
  policy?: string | null;
  /** The reason given for the session or its call (already masked). */
  reason?: string | undefined;
  /** Recordings of the session (name + SHA-256): subjects of the receipt beside the chain. */
  recordings?: { name: string; sha256: string }[] | undefined;
}

/**
 * Signs receipt and checkpoint bytes. The Ed25519 file key is the one implementation; a
 * KMS- or HSM-backed signer fits the same shape (Ed25519 in AWS KMS, GCP KMS, PKCS#11).
 */
export interface ReceiptSigner {
  /** RFC 7638 thumbprint of the signing key. */
  readonly keyid: string;
  /** Signs `data` (the DSSE PAE) and says which key did. */
  sign(data: Uint8Array): Promise<{ sig: Buffer; keyid: string }>;
  /** The current key and every retired one, as /.well-known/jwks.json serves them. */
  publicJwks(): { keys: Ed25519Jwk[] };
}

/**
 * Where issued receipts are kept. Receipts are immutable once stored. The SQLite store
 * answers synchronously, the PostgreSQL one with promises: callers await either.
 */
export interface ReceiptStore {
  /** Stores a receipt; a second put for the same session keeps the first. */
  put(entry: StoredReceipt): void | Promise<void>;
  get(session: string): StoredReceipt | undefined | Promise<StoredReceipt | undefined>;
  /** Receipts of one `connect`/`run` session that belong to `sub`, oldest first. */
  listForConnect(connectSession: string, sub: string): StoredReceipt[] | Promise<StoredReceipt[]>;
  close(): void;
}

export interface StoredReceipt {
  session: string;
  connectSession: string | null;
  /** The actor's sub: who may read it besides auditors. */
  sub: string;
  target: string;
  issuedAt: string;
  envelope: DsseEnvelope;
}
