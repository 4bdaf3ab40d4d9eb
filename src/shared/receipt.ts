/**
 * Session receipts: what the broker signs when a session ends, and how anyone checks one
 * offline. Shared by the broker (which signs) and the CLI (`agentgate receipt verify`), so
 * nothing here may import broker code.
 *
 * The format is standard on purpose, so tools other than ours can check a receipt:
 * - a DSSE envelope (github.com/secure-systems-lab/dsse, envelope.md and protocol.md)
 *   with payloadType `application/vnd.in-toto+json`;
 * - its payload an in-toto Statement v1 (github.com/in-toto/attestation, spec/v1);
 * - signed with Ed25519 over the DSSE pre-authentication encoding (PAE);
 * - `keyid` = the RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key, which
 *   the broker publishes at `/.well-known/jwks.json`.
 *
 * The same envelope form carries the audit log's signed checkpoints (a different
 * payloadType), so one verifier serves both.
 */
import { createHash, createPublicKey, verify as verifySignature, type KeyObject } from 'node:crypto';
import { AgentgateError, ExitCode } from '../errors.js';
import type { AuditActor } from './audit-hash.js';
import { canonicalJson } from './audit-hash.js';
import { visibleDeep } from './display-text.js';

export const DSSE_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const IN_TOTO_STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const RECEIPT_PREDICATE_TYPE = 'https://agentgate.dev/session-receipt/v1';

export interface DsseSignature {
  /** RFC 7638 thumbprint of the signing key's public JWK. */
  keyid: string;
  /** Base64 (standard alphabet) Ed25519 signature over PAE(payloadType, payload). */
  sig: string;
}

export interface DsseEnvelope {
  payloadType: string;
  /** Base64 (standard alphabet) of the serialized payload. */
  payload: string;
  signatures: DsseSignature[];
}

export interface InTotoSubject {
  name: string;
  digest: Record<string, string>;
}

export interface InTotoStatement<P> {
  _type: typeof IN_TOTO_STATEMENT_TYPE;
  subject: InTotoSubject[];
  predicateType: string;
  predicate: P;
}

export interface ReceiptCounts {
  /** Statements or requests the session sent (run, refused or held). */
  statements: number;
  allowed: number;
  denied: number;
  /** Held for a human's approval, whatever the outcome. */
  held: number;
  /** Values masked before they left the broker. */
  masked: number;
  /**
   * Statements forwarded whose outcome is unknown: the broker stopped before the server
   * answered (present only then).
   */
  unknown?: number;
}

export interface ReceiptApproval {
  /** The approval request's id. */
  id: string;
  /** Who decided (their `sub`); null when nobody did (the request timed out or was cancelled). */
  approver: string | null;
  decision: string;
  reason: string | null;
  /** ISO-8601. */
  at: string;
}

export interface SessionReceiptPredicate {
  /** The protocol session (one client connection), e.g. `pgs_…`. */
  session: string;
  /** The `connect`/`run` invocation it belonged to, when the CLI named one. */
  connect_session: string | null;
  actor: AuditActor;
  target: string;
  protocol: string;
  /** ISO-8601. */
  started_at: string;
  ended_at: string;
  counts: ReceiptCounts;
  approvals: ReceiptApproval[];
  /** The reason given for the session (`--reason`) or its one call (MCP), masked; null when none. */
  reason?: string | null;
  policy: {
    /** The policy that decided this identity's access to the target; null if none did. */
    name: string | null;
    /** SHA-256 (hex) of the canonical JSON of every policy in force at the session's end. */
    sha256: string;
  };
  audit: {
    /** The session's first event (session.start). */
    first_seq: number;
    /** The chain's head when the receipt was issued: every event of the session is at or before it. */
    head_seq: number;
    head_hash: string;
  };
  broker: {
    url: string;
    /** Same as the envelope signature's keyid. */
    keyid: string;
  };
  /** ISO-8601. */
  issued_at: string;
}

export type SessionReceiptStatement = InTotoStatement<SessionReceiptPredicate>;

/** One key of a JWKS as the broker publishes it (Ed25519 only). */
export interface Ed25519Jwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid?: string;
  alg?: string;
  use?: string;
}

export interface Jwks {
  keys: unknown[];
}

/** What `GET /v1/receipts?connect=…` answers. */
export interface ReceiptListResponse {
  receipts: { session: string; envelope: DsseEnvelope }[];
}

export type ReceiptProblem = 'malformed envelope' | 'wrong payload type' | 'unknown key' | 'bad signature' | 'malformed statement' | 'session mismatch';

/** A receipt (or checkpoint) failed verification; `problem` names what failed. */
export class ReceiptVerifyError extends AgentgateError {
  override readonly name = 'ReceiptVerifyError';
  readonly problem: ReceiptProblem;
  constructor(problem: ReceiptProblem, message: string, hint?: string) {
    super(`AG_RECEIPT_${problem.toUpperCase().replace(/ /g, '_')}`, `${problem}: ${message}`, ExitCode.error, {
      hint: hint ?? 'do not rely on this receipt; fetch it again from the broker (GET /v1/receipts/<session>) and compare',
    });
    this.problem = problem;
  }
}

/**
 * DSSE v1 pre-authentication encoding:
 * `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, LEN = byte length in ASCII decimal.
 */
export function dssePae(payloadType: string, payload: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `, 'utf8'), type, Buffer.from(` ${payload.length} `, 'utf8'), payload]);
}

/** RFC 7638 thumbprint of an Ed25519 public JWK: base64url(SHA-256 of {"crv","kty","x"} in that order). */
export function jwkThumbprint(jwk: Pick<Ed25519Jwk, 'crv' | 'kty' | 'x'>): string {
  const members = `{"crv":${JSON.stringify(jwk.crv)},"kty":${JSON.stringify(jwk.kty)},"x":${JSON.stringify(jwk.x)}}`;
  return createHash('sha256').update(members, 'utf8').digest('base64url');
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2,3})?$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** DSSE allows either base64 alphabet; anything else is refused rather than silently skipped. */
function decodeBase64(text: string): Buffer | undefined {
  if (BASE64.test(text)) return Buffer.from(text, 'base64');
  if (BASE64URL.test(text)) return Buffer.from(text, 'base64url');
  return undefined;
}

/** Checks an unknown value has the DSSE envelope shape; names the first thing missing. */
export function parseEnvelope(value: unknown): DsseEnvelope {
  const bad = (why: string): never => {
    throw new ReceiptVerifyError('malformed envelope', why, 'the file is not a DSSE envelope as the broker issues them; fetch the receipt again');
  };
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return bad('not a JSON object');
  const e = value as Record<string, unknown>;
  if (typeof e['payloadType'] !== 'string') bad('payloadType is missing');
  if (typeof e['payload'] !== 'string') bad('payload is missing');
  if (!Array.isArray(e['signatures']) || e['signatures'].length === 0) bad('signatures is missing or empty');
  for (const [i, s] of (e['signatures'] as unknown[]).entries()) {
    const sig = s as Record<string, unknown> | null;
    if (sig === null || typeof sig !== 'object' || typeof sig['sig'] !== 'string') bad(`signatures[${i}].sig is missing`);
    if (typeof sig?.['keyid'] !== 'string' || sig['keyid'] === '') bad(`signatures[${i}].keyid is missing`);
  }
  return { payloadType: e['payloadType'] as string, payload: e['payload'] as string, signatures: e['signatures'] as DsseSignature[] };
}

/** The Ed25519 keys of a JWKS by their computed thumbprint (a `kid` member is not trusted). */
export function jwksKeys(jwks: unknown): Map<string, KeyObject> {
  const out = new Map<string, KeyObject>();
  const keys = (jwks as Jwks | null)?.keys;
  if (!Array.isArray(keys)) return out;
  for (const k of keys) {
    const jwk = k as Partial<Ed25519Jwk> | null;
    if (!jwk || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') continue;
    try {
      const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
      out.set(jwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: jwk.x }), key);
    } catch {
      // Not a usable key; it simply cannot verify anything.
    }
  }
  return out;
}

export interface VerifiedEnvelope {
  payload: Buffer;
  keyid: string;
}

/**
 * Verifies a DSSE envelope's signature against a JWKS: at least one signature must be by a
 * key in the set (matched by thumbprint) and verify over PAE. Returns the payload bytes.
 */
export function verifyEnvelope(value: unknown, jwks: unknown, expectedPayloadType: string): VerifiedEnvelope {
  const env = parseEnvelope(value);
  if (env.payloadType !== expectedPayloadType) {
    throw new ReceiptVerifyError('wrong payload type', `payloadType is ${JSON.stringify(env.payloadType)}, expected ${JSON.stringify(expectedPayloadType)}`);
  }
  const payload = decodeBase64(env.payload);
  if (!payload) throw new ReceiptVerifyError('malformed envelope', 'payload is not valid base64');
  const keys = jwksKeys(jwks);
  const pae = dssePae(env.payloadType, payload);
  const tried: string[] = [];
  for (const s of env.signatures) {
    const key = keys.get(s.keyid);
    if (!key) continue;
    tried.push(s.keyid);
    const sig = decodeBase64(s.sig);
    if (sig && sig.length === 64 && verifySignature(null, pae, key, sig)) return { payload, keyid: s.keyid };
  }
  if (tried.length > 0) {
    throw new ReceiptVerifyError(
      'bad signature',
      `the signature by key ${tried.join(', ')} does not match the payload: the receipt was altered after signing, or signed by another key`,
    );
  }
  const known = [...keys.keys()];
  throw new ReceiptVerifyError(
    'unknown key',
    `signed by ${env.signatures.map((s) => s.keyid).join(', ')}, which is not in the key set (${known.length ? known.join(', ') : 'no Ed25519 keys'})`,
    "check the receipt against the broker's JWKS (GET /.well-known/jwks.json, which lists current and previous keys); a key not listed there did not come from the broker",
  );
}

export interface VerifiedReceipt {
  ok: true;
  statement: SessionReceiptStatement;
  keyid: string;
}

/** Verifies a session receipt offline; throws ReceiptVerifyError naming what failed. */
export function verifyReceipt(envelope: unknown, jwks: unknown): VerifiedReceipt {
  const { payload, keyid } = verifyEnvelope(envelope, jwks, DSSE_PAYLOAD_TYPE);
  let statement: unknown;
  try {
    statement = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new ReceiptVerifyError('malformed statement', 'the signed payload is not JSON');
  }
  checkStatement(statement);
  if (statement.predicate.broker.keyid !== keyid) {
    throw new ReceiptVerifyError('malformed statement', `predicate.broker.keyid is ${statement.predicate.broker.keyid}, but the envelope is signed by ${keyid}`);
  }
  return { ok: true, statement, keyid };
}

function checkStatement(s: unknown): asserts s is SessionReceiptStatement {
  const bad = (why: string): never => {
    throw new ReceiptVerifyError('malformed statement', why);
  };
  const o = s as Record<string, unknown> | null;
  if (o === null || typeof o !== 'object') bad('the statement is not an object');
  if (o!['_type'] !== IN_TOTO_STATEMENT_TYPE) bad(`_type is ${JSON.stringify(o!['_type'])}, expected ${IN_TOTO_STATEMENT_TYPE}`);
  if (o!['predicateType'] !== RECEIPT_PREDICATE_TYPE) bad(`predicateType is ${JSON.stringify(o!['predicateType'])}, expected ${RECEIPT_PREDICATE_TYPE}`);
  if (!Array.isArray(o!['subject']) || o!['subject'].length === 0) bad('subject is missing');
  const p = o!['predicate'] as Record<string, unknown> | null;
  if (p === null || typeof p !== 'object') return bad('predicate is missing');
  for (const f of ['session', 'target', 'protocol', 'started_at', 'ended_at', 'issued_at'] as const) {
    if (typeof p[f] !== 'string') bad(`predicate.${f} is missing`);
  }
  const actor = p['actor'] as Record<string, unknown> | null;
  if (actor === null || typeof actor !== 'object' || typeof actor['sub'] !== 'string') bad('predicate.actor.sub is missing');
  const counts = p['counts'] as Record<string, unknown> | null;
  for (const f of ['statements', 'allowed', 'denied', 'held', 'masked'] as const) {
    if (typeof counts?.[f] !== 'number') bad(`predicate.counts.${f} is missing`);
  }
  if (!Array.isArray(p['approvals'])) bad('predicate.approvals is missing');
  const policy = p['policy'] as Record<string, unknown> | null;
  if (typeof policy?.['sha256'] !== 'string') bad('predicate.policy.sha256 is missing');
  const audit = p['audit'] as Record<string, unknown> | null;
  if (typeof audit?.['first_seq'] !== 'number' || typeof audit['head_seq'] !== 'number' || typeof audit['head_hash'] !== 'string') {
    bad('predicate.audit (first_seq, head_seq, head_hash) is incomplete');
  }
  const broker = p['broker'] as Record<string, unknown> | null;
  if (typeof broker?.['keyid'] !== 'string' || typeof broker['url'] !== 'string') bad('predicate.broker (url, keyid) is incomplete');
}

/** The envelope's statement without checking anything (to show what a failed receipt claims). */
export function peekStatement(envelope: unknown): SessionReceiptStatement | undefined {
  try {
    const env = parseEnvelope(envelope);
    const payload = decodeBase64(env.payload);
    return payload ? (JSON.parse(payload.toString('utf8')) as SessionReceiptStatement) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A protocol session id as the broker makes them (`pgs_…`, `k8s_…`, `sshs_…`). The CLI saves
 * a receipt as `<session>.receipt.json`; a file so named claims to be that session's receipt.
 */
const SESSION_FILE = /^((?:pgs|k8s|sshs)_[A-Za-z0-9-]{1,100})\.receipt\.json$/;

/** The session a receipt's file name claims, if it is named the way the CLI saves receipts. */
export function sessionNamedBy(fileName: string): string | undefined {
  return SESSION_FILE.exec(fileName)?.[1];
}

/**
 * A verified receipt attests one session; presented as another's (renamed over it, or
 * checked with --session) it proves nothing about that one. Throws 'session mismatch'.
 */
export function checkReceiptSession(predicate: Pick<SessionReceiptPredicate, 'session'>, expected: { session?: string; fileName?: string }): void {
  const named = expected.fileName !== undefined ? sessionNamedBy(expected.fileName) : undefined;
  for (const [claim, why] of [
    [expected.session, '--session'],
    [named, `the file name ${expected.fileName ?? ''}`],
  ] as const) {
    if (claim !== undefined && claim !== predicate.session) {
      throw new ReceiptVerifyError(
        'session mismatch',
        `the receipt is signed for session ${predicate.session}, but ${why} names session ${claim}`,
        `this is not ${claim}'s receipt; fetch that session's receipt from the broker (GET /v1/receipts/${claim}) and check it`,
      );
    }
  }
}

/** One line: what a receipt attests. */
export function describeReceipt(predicate: SessionReceiptPredicate): string {
  const p = visibleDeep(predicate);
  const c = p.counts;
  const approvals = p.approvals.length ? `, ${p.approvals.length} approval decision${p.approvals.length === 1 ? '' : 's'}` : '';
  return (
    `${p.actor.sub} on ${p.target} (${p.protocol}) ${p.started_at} → ${p.ended_at}: ` +
    `${c.statements} statement${c.statements === 1 ? '' : 's'} (${c.allowed} allowed, ${c.denied} denied, ${c.held} held), ${c.masked} masked${approvals}` +
    (c.unknown ? `; ${c.unknown} with unknown outcome (the broker stopped)` : '')
  );
}

/** Payload bytes of a statement (or checkpoint) as the broker signs it: its canonical JSON. */
export function statementBytes(statement: InTotoStatement<unknown> | AuditCheckpoint): Buffer {
  return Buffer.from(canonicalJson(statement), 'utf8');
}

// ---- signed audit checkpoints -----------------------------------------------------------

export const CHECKPOINT_PAYLOAD_TYPE = 'application/vnd.agentgate.audit-checkpoint+json';

/** The broker's signed statement "the event at `seq` has hash `hash`". */
export interface AuditCheckpoint {
  type: 'agentgate.audit.checkpoint';
  version: 1;
  /** Why it was made: `retention` (events up to seq were pruned) or `export` (the end of an export). */
  reason: 'retention' | 'export';
  seq: number;
  hash: string;
  /** The event's time (retention: the cut). */
  time: string;
  /** When the checkpoint was signed. */
  created_at: string;
  /** Export checkpoints: how many events the export segment holds, and a digest of their hashes. */
  export?: {
    count: number;
    /** SHA-256 (hex) over the concatenated hashes of every event in the segment, in order. */
    events_sha256: string;
    /**
     * SHA-256 (hex) of the segment header's canonical JSON: the anchor, the selection
     * (`filtered`, `query.after_seq`) and the broker it names are signed too, so a verifier
     * may rely on them (without it a forger could mark an export filtered and drop events).
     */
    header_sha256?: string;
  };
}

export interface VerifiedCheckpoint {
  checkpoint: AuditCheckpoint;
  keyid: string;
}

/** Verifies a signed checkpoint; throws ReceiptVerifyError naming what failed. */
export function verifyCheckpoint(envelope: unknown, jwks: unknown): VerifiedCheckpoint {
  const { payload, keyid } = verifyEnvelope(envelope, jwks, CHECKPOINT_PAYLOAD_TYPE);
  const checkpoint = parseCheckpointPayload(payload);
  return { checkpoint, keyid };
}

/** Reads a checkpoint envelope's payload without checking the signature. */
export function peekCheckpoint(envelope: unknown): AuditCheckpoint {
  const env = parseEnvelope(envelope);
  if (env.payloadType !== CHECKPOINT_PAYLOAD_TYPE) throw new ReceiptVerifyError('wrong payload type', `payloadType is ${JSON.stringify(env.payloadType)}, expected ${CHECKPOINT_PAYLOAD_TYPE}`);
  const payload = decodeBase64(env.payload);
  if (!payload) throw new ReceiptVerifyError('malformed envelope', 'payload is not valid base64');
  return parseCheckpointPayload(payload);
}

function parseCheckpointPayload(payload: Buffer): AuditCheckpoint {
  let c: Partial<AuditCheckpoint>;
  try {
    c = JSON.parse(payload.toString('utf8')) as Partial<AuditCheckpoint>;
  } catch {
    throw new ReceiptVerifyError('malformed statement', 'the checkpoint payload is not JSON');
  }
  if (c?.type !== 'agentgate.audit.checkpoint' || !Number.isSafeInteger(c.seq) || typeof c.hash !== 'string' || !/^[0-9a-f]{64}$/.test(c.hash)) {
    throw new ReceiptVerifyError('malformed statement', 'the checkpoint payload lacks type, seq or hash');
  }
  return c as AuditCheckpoint;
}
