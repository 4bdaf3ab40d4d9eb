/**
 * The service behind `agentgate receipt verify`: signature first (offline), then, with an
 * export, that the export proves the receipt — its chain verifies, it holds the session's
 * first event and its end, and the event at the receipt's head seq has the head hash.
 */
import { readFile } from 'node:fs/promises';
import { UsageError } from '../errors.js';
import type { AuditRecord } from '../shared/audit-hash.js';
import { basename } from 'node:path';
import { ReceiptVerifyError, checkReceiptSession, peekStatement, verifyReceipt, type SessionReceiptStatement } from '../shared/receipt.js';
import { verifyExportFile } from './audit-export.js';
import type { BrokerTrust } from './broker-http.js';
import { loadJwks, savedJwksFor } from './receipts.js';
import { trustedKeysFor } from './pinned-keys.js';

export interface ReceiptAuditCheck {
  file: string;
  /** Events of this session in the export. */
  sessionEvents: number;
  /** Its `query`, `k8s.request` and `ssh.command` events. */
  statements: number;
  notes: string[];
}

export type ReceiptCheck =
  | { ok: true; file: string; keyid: string; keysFrom: string; statement: SessionReceiptStatement; audit?: ReceiptAuditCheck }
  | { ok: false; file: string; error: { code: string; problem: string; message: string; hint: string }; claims?: SessionReceiptStatement['predicate'] };

export interface ReceiptCheckOptions {
  key?: string;
  /** The session the receipt must attest (besides what its file name claims). */
  session?: string;
  audit?: string;
  trust?: BrokerTrust;
  env?: NodeJS.ProcessEnv;
}

const STATEMENT_TYPES = new Set(['query', 'k8s.request', 'ssh.command']);

export async function checkReceipt(file: string, opts: ReceiptCheckOptions = {}): Promise<ReceiptCheck> {
  let envelope: unknown;
  try {
    envelope = JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code) throw new UsageError(`cannot read ${file}: ${code}`, { hint: 'pass the path of a saved receipt (<session>.receipt.json)' });
    return fail(file, envelope, new ReceiptVerifyError('malformed envelope', 'the file is not JSON'));
  }

  let jwks: { keys: unknown[] };
  let keysFrom: string;
  if (opts.key) {
    jwks = await loadJwks(opts.key, opts.trust ?? {}, opts.env);
    keysFrom = `key set ${opts.key}`;
  } else {
    // Not the jwks.json beside the receipt: whoever could swap the receipt could swap that too.
    const claimed = peekStatement(envelope)?.predicate.broker.url;
    const trusted = await trustedKeysFor(typeof claimed === 'string' && URL.canParse(claimed) ? claimed : undefined, opts.env);
    if (!trusted) {
      const beside = await savedJwksFor(file);
      throw new UsageError(`no pinned key for the broker that signed ${file}${typeof claimed === 'string' ? ` (${claimed})` : ''}`, {
        hint: `run agentgate login --broker <that broker> (or connect/run through it once) so its key is pinned, or pass --key with its JWKS${beside ? `; ${beside.path} beside the receipt is used only as --key ${beside.path}, if you trust where it came from` : ''}`,
      });
    }
    jwks = trusted.jwks;
    keysFrom = trusted.from;
  }

  let statement: SessionReceiptStatement;
  let keyid: string;
  try {
    ({ statement, keyid } = verifyReceipt(envelope, jwks));
    checkReceiptSession(statement.predicate, { fileName: basename(file), ...(opts.session !== undefined ? { session: opts.session } : {}) });
  } catch (err) {
    if (err instanceof ReceiptVerifyError) return fail(file, envelope, err);
    throw err;
  }
  if (!opts.audit) return { ok: true, file, keyid, keysFrom, statement };

  const p = statement.predicate;
  let sawStart = false;
  let sawEnd = false;
  let sessionEvents = 0;
  let statements = 0;
  let atHead: AuditRecord | undefined;
  const result = await verifyExportFile(opts.audit, {
    jwks,
    onRecord: (r) => {
      if (r.seq === p.audit.head_seq) atHead = r;
      if (r.session !== p.session) return;
      sessionEvents++;
      // A skipped statement (the server skipped it after an earlier error) did not run.
      if (STATEMENT_TYPES.has(r.type) && r.outcome?.status !== 'skipped') statements++;
      if (r.type === 'session.start' && r.seq === p.audit.first_seq) sawStart = true;
      if (r.type === 'session.end' && r.seq <= p.audit.head_seq) sawEnd = true;
    },
  });
  const auditFail = (problem: string, message: string, hint: string): ReceiptCheck => ({
    ok: false,
    file,
    error: { code: 'AG_RECEIPT_AUDIT_MISMATCH', problem, message: `${problem}: ${message}`, hint },
    claims: p,
  });
  const reexport = `export the log from seq ${p.audit.first_seq} to at least seq ${p.audit.head_seq} without --session/--target: agentgate audit export --after-seq ${p.audit.first_seq - 1} --out FILE`;
  if (!result.ok) {
    return auditFail('export does not verify', `${opts.audit}: ${result.problem} at ${result.seq !== null ? `seq ${result.seq}` : `line ${result.line}`}: ${result.message}`, 'the export was altered or cut short; export it again');
  }
  if (!sawStart) return auditFail('session missing from export', `${opts.audit} does not hold the session's first event (session.start of ${p.session} at seq ${p.audit.first_seq})`, reexport);
  if (!atHead) {
    return auditFail(
      'export does not reach the head',
      `${opts.audit} ${result.last ? `ends at seq ${result.last.seq}` : 'is empty'}${result.filtered ? ' and is filtered' : ''}; the receipt's head is seq ${p.audit.head_seq}`,
      reexport,
    );
  }
  if (atHead.hash !== p.audit.head_hash) {
    return auditFail('head mismatch', `the export's event at seq ${p.audit.head_seq} hashes to ${atHead.hash}, but the receipt attests ${p.audit.head_hash}: the export and the receipt describe different logs`, 'get the export and the receipt from the same broker again and compare');
  }
  if (!sawEnd) return auditFail('session missing from export', `${opts.audit} has no session.end for ${p.session} at or before the receipt's head`, reexport);
  if (result.filtered && result.gaps > 0) {
    return auditFail('export does not reach the head', `${opts.audit} is a filtered export: the chain between the session's events and the head cannot be checked`, reexport);
  }
  const notes = [...result.notes];
  if (statements !== p.counts.statements) notes.push(`the export holds ${statements} statement events for the session; the receipt counts ${p.counts.statements}`);
  return { ok: true, file, keyid, keysFrom, statement, audit: { file: opts.audit, sessionEvents, statements, notes } };
}

function fail(file: string, envelope: unknown, err: ReceiptVerifyError): ReceiptCheck {
  const claims = peekStatement(envelope)?.predicate;
  return { ok: false, file, error: { code: err.code, problem: err.problem, message: err.message, hint: err.hint ?? '' }, ...(claims ? { claims } : {}) };
}
