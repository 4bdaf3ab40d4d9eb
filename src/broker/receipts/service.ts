/**
 * Issues session receipts: builds the in-toto Statement from what the proxy reports and
 * what the audit log holds, signs it as a DSSE envelope, and keeps it for the CLI and
 * auditors to fetch. Call `issue` once the session's session.end event is durable, so the
 * head the receipt cites covers every event of the session.
 */
import { join } from 'node:path';
import { BrokerError } from '../../errors.js';
import { canonicalJson, sha256Hex } from '../../shared/audit-hash.js';
import {
  DSSE_PAYLOAD_TYPE,
  IN_TOTO_STATEMENT_TYPE,
  RECEIPT_PREDICATE_TYPE,
  statementBytes,
  type DsseEnvelope,
  type ReceiptApproval,
  type SessionReceiptStatement,
} from '../../shared/receipt.js';
import type { AuditStore } from '../audit/store.js';
import { RECORDING_SUBJECT_PREFIX } from '../../shared/recording.js';
import type { BrokerConfig } from '../config/types.js';
import type { BrokerKeys } from '../keys.js';
import type { Logger } from '../log.js';
import { createFileKeySigner, signEnvelope } from './signer.js';
import { openSqliteReceiptStore } from './store.js';
import type { ReceiptSigner, ReceiptStore, SessionFacts, StoredReceipt } from './types.js';

export interface ReceiptServiceDeps {
  config: BrokerConfig;
  keys: BrokerKeys;
  audit: AuditStore;
  logger: Logger;
  /** The broker's URL as receipts name it; a function when it is known only after listening. */
  brokerUrl?: string | (() => string);
  /** Defaults to the Ed25519 file key in `keys`. */
  signer?: ReceiptSigner;
  /** Defaults to `<state_dir>/receipts.db`. */
  store?: ReceiptStore;
  now?: () => Date;
}

export interface ReceiptService {
  readonly signer: ReceiptSigner;
  /** Issues (or, if already issued, returns) the session's receipt. */
  issue(facts: SessionFacts): Promise<DsseEnvelope>;
  get(session: string): Promise<StoredReceipt | undefined>;
  listForConnect(connectSession: string, sub: string): Promise<StoredReceipt[]>;
  close(): void;
}

/** SHA-256 (hex) of the canonical JSON of the policies in force: what a receipt's policy.sha256 names. */
export function policiesDigest(config: Pick<BrokerConfig, 'policies'>): string {
  return sha256Hex(canonicalJson(config.policies));
}

export function createReceiptService(deps: ReceiptServiceDeps): ReceiptService {
  const { config, audit } = deps;
  const logger = deps.logger;
  const signer = deps.signer ?? createFileKeySigner(deps.keys);
  const store = deps.store ?? openSqliteReceiptStore(join(config.stateDir, 'receipts.db'));
  const now = deps.now ?? (() => new Date());
  const brokerUrl = (): string => (typeof deps.brokerUrl === 'function' ? deps.brokerUrl() : deps.brokerUrl ?? `https://${config.listen.host}:${config.listen.port}`);
  const policySha = policiesDigest(config);
  // One issuance per session even if the end hook fires twice concurrently.
  const inFlight = new Map<string, Promise<DsseEnvelope>>();

  async function build(facts: SessionFacts): Promise<DsseEnvelope> {
    if (audit.failed) {
      throw new BrokerError('AG_RECEIPT_NO_AUDIT', `the audit log failed, so session ${facts.session} gets no receipt: it could not cite a complete record`, {
        hint: "restore the audit store; the broker's log has the failure",
      });
    }
    const head = audit.head();
    let first: { seq: number; rule: string | null } | undefined;
    for await (const r of audit.read({ session: facts.session, limit: 1 })) first = { seq: r.seq, rule: r.decision?.rule ?? null };
    if (!first || first.seq > head.seq) {
      throw new BrokerError('AG_RECEIPT_NO_AUDIT', `no durable audit events for session ${facts.session}: a receipt would attest nothing`, {
        hint: 'receipts are issued after the session.end event is written; check the audit store',
      });
    }
    const issuedAt = now().toISOString();
    const statement: SessionReceiptStatement = {
      _type: IN_TOTO_STATEMENT_TYPE,
      // The subject is the audit chain at the receipt's head: its hash commits to every
      // event up to it, this session's included.
      subject: [
        { name: `agentgate-audit-chain@${head.seq}`, digest: { sha256: head.hash } },
        // Each recording's digest, also in the chain as its recording.end event.
        ...(facts.recordings ?? []).map((r) => ({ name: `${RECORDING_SUBJECT_PREFIX}${r.name}`, digest: { sha256: r.sha256 } })),
      ],
      predicateType: RECEIPT_PREDICATE_TYPE,
      predicate: {
        session: facts.session,
        connect_session: facts.connectSession ?? null,
        actor: facts.actor,
        target: facts.target,
        protocol: facts.protocol,
        started_at: facts.startedAt,
        ended_at: facts.endedAt,
        counts: { statements: facts.statements, allowed: facts.allowed, denied: facts.denied, held: facts.held, masked: facts.masked, ...(facts.unknown ? { unknown: facts.unknown } : {}) },
        approvals: flattenApprovals(facts),
        reason: facts.reason ?? null,
        policy: { name: facts.policy !== undefined ? facts.policy : first.rule, sha256: policySha },
        audit: { first_seq: first.seq, head_seq: head.seq, head_hash: head.hash },
        broker: { url: brokerUrl(), keyid: signer.keyid },
        issued_at: issuedAt,
      },
    };
    const envelope = await signEnvelope(signer, DSSE_PAYLOAD_TYPE, statementBytes(statement));
    await store.put({
      session: facts.session,
      connectSession: facts.connectSession ?? null,
      sub: facts.actor.sub,
      target: facts.target,
      issuedAt,
      envelope,
    });
    logger.info('receipt issued', { session: facts.session, sub: facts.actor.sub, target: facts.target, head_seq: head.seq, keyid: signer.keyid });
    return envelope;
  }

  return {
    signer,
    issue(facts) {
      let p = inFlight.get(facts.session);
      if (!p) {
        p = (async () => (await store.get(facts.session))?.envelope ?? (await build(facts)))().finally(() => inFlight.delete(facts.session));
        inFlight.set(facts.session, p);
      }
      return p;
    },
    get: async (session) => store.get(session),
    listForConnect: async (connectSession, sub) => store.listForConnect(connectSession, sub),
    close: () => store.close(),
  };
}

/** One entry per reviewer decision; a request nobody decided (timed out) gets one entry with its status. */
function flattenApprovals(facts: SessionFacts): ReceiptApproval[] {
  const out: ReceiptApproval[] = [];
  for (const a of facts.approvals) {
    if (a.decisions.length === 0) {
      out.push({ id: a.id, approver: null, decision: a.status ?? 'undecided', reason: null, at: facts.endedAt });
      continue;
    }
    for (const d of a.decisions) out.push({ id: a.id, approver: d.approver, decision: d.decision, reason: d.reason, at: d.at });
  }
  return out;
}
