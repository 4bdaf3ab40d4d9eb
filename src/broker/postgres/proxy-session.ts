/**
 * One client connection through the Postgres proxy, from the StartupMessage to the end.
 *
 *   startup ──► auth (SCRAM against the session secret's verifier) ──► connecting
 *   (log in upstream with the target's credentials) ──► relay ──► closed
 *
 * In the relay phase both directions are framed by the streaming readers and forwarded
 * as the original bytes (frames of one chunk go out as one write); the few messages that
 * matter are decoded to follow each statement to its outcome. Every statement becomes an
 * audit event, and the ReadyForQuery that completes a statement is released to the
 * client only once that event is durable. If the audit store has failed, statements are
 * refused (fail closed).
 */
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';

import type { PostgresTargetConfig } from '../config/types.js';
import type { AuditStore, NewAuditEvent } from '../audit/store.js';
import type { AuditActor, JsonValue } from '../../shared/audit-hash.js';
import type { Logger } from '../log.js';
import { FrontendReader, type BackendReader, type PgMessage } from './reader.js';
import { BackendType, FrontendType, SCRAM_SHA_256, type TransactionStatus } from './protocol.js';
import {
  decodeBind,
  decodeCancelRequest,
  decodeClose,
  decodeExecute,
  decodeParse,
  decodeQuery,
  decodeSASLInitialResponse,
  decodeSASLResponse,
  decodeStartupMessage,
  startupRequestKind,
} from './decode-frontend.js';
import { decodeCommandComplete, decodeErrorResponse, decodeReadyForQuery, type BackendKeyData } from './decode-backend.js';
import {
  AUTHENTICATION_OK,
  authenticationSASL,
  authenticationSASLContinue,
  authenticationSASLFinal,
  backendKeyData,
  ENCRYPTION_DECLINED,
  errorResponse,
  readyForQuery,
} from './build-backend.js';
import { TERMINATE } from './build-frontend.js';
import { PgError, ProtocolError, SqlState, passwordAuthFailed } from './errors.js';
import { ScramServer, type ScramVerifier } from './scram.js';
import type { SessionApproval, SessionSummary } from '../session-summary.js';
import { StatementTracker, type StatementNote, type StatementRecord } from './proxy-statements.js';
import { raiseStatement, type GateVerdict, type StatementGate } from './proxy-gate.js';
import type { ApprovalOutcome, ApprovalService } from '../approvals/types.js';
import { bind as bindFrame, execute as executeFrame, parse as parseFrame, query as queryFrame } from './build-frontend.js';
import { noticeResponse } from './build-backend.js';
import { createCatalogLookup, maskSqlText, ResultMasker } from './proxy-masking.js';
import type { MaskingPlan } from '../masking/rules.js';
import { CancelRegistry } from './proxy-cancel.js';
import { connectUpstream, sendCancel } from './upstream.js';

/** Whether this identity may use this target at all (policy subjects/targets), decided by the caller. */
export type TargetAccess = { allowed: true; policy: string } | { allowed: false; message: string };

export interface PgProxySessionOptions {
  target: PostgresTargetConfig;
  actor: AuditActor;
  access: TargetAccess;
  /** The verifier of this `connect`/`run` session's secret; undefined when the tunnel sent none. */
  verifier: ScramVerifier | undefined;
  /** Judges every statement before it runs (policy). */
  gate: StatementGate;
  /** Where `review` statements wait for a human; without it they are refused. */
  approvals?: ApprovalService;
  /** What to mask in results and in recorded statement text; absent = nothing. */
  masking?: { plan: MaskingPlan; key: Buffer };
  audit: AuditStore;
  cancels: CancelRegistry;
  logger: Logger;
  /** Extra detail for session.start (connect session id, tunnel id, client address). */
  origin?: Record<string, string | number>;
  /** Cap on one client message once authenticated. */
  maxMessageLength?: number;
  /** Called once when the session has ended and its session.end event is durable (or failed). */
  onEnd?: (summary: SessionSummary) => void;
}

/** A statement waiting for a decision; everything the client sends meanwhile waits behind it. */
interface Hold {
  kind: 'simple' | 'execute';
  /** The held Query or Execute message (a copy). */
  frame: Buffer;
  sql: string;
  portal: string;
  verdict: GateVerdict;
  requestId: string;
}

/**
 * Startup parameters passed upstream; user/database come from the target, replication is
 * refused. Dropped on purpose: `options` (`-c role=…` would switch roles before any
 * statement is inspected), `search_path` (policy resolves unqualified names in `public`),
 * and `client_encoding`, which is always UTF8 upstream so the server splits statement
 * text exactly as the policy's parser did (clients that asked for another encoding get
 * UTF8 reported in ParameterStatus, as with any server-side setting).
 */
const FORWARDED_PARAMS = new Set(['application_name', 'DateStyle', 'TimeZone', 'IntervalStyle', 'extra_float_digits']);

type Phase = 'startup' | 'auth' | 'connecting' | 'relay' | 'closed';

/** Result bytes held back to share one write with the ReadyForQuery that follows them. */
const COALESCE_BELOW = 64 * 1024;

/** What a client may pipeline behind a held statement before we stop reading it. */
const MAX_PENDING_BYTES = 8 * 1024 * 1024;

/** A promise whose settlement can be checked synchronously. */
interface Barrier {
  promise: Promise<unknown>;
  done: boolean;
}

export class PgProxySession {
  readonly id = `pgs_${randomUUID()}`;
  readonly #o: PgProxySessionOptions;
  readonly #client: Duplex;
  readonly #reader: FrontendReader;
  #phase: Phase = 'startup';
  #scram: ScramServer | undefined;
  #clientParams = new Map<string, string>();
  #clientUser = '';
  /** Client messages that arrived while the upstream login was under way (copies). */
  #held: Buffer[] = [];

  #upstream: Duplex | undefined;
  #backend: BackendReader | undefined;
  #upstreamKey: BackendKeyData | undefined;
  #clientKey: BackendKeyData | undefined;
  readonly #tracker: StatementTracker;
  #status: TransactionStatus = 'I';

  /** Client-bound output, in order: frames and durability barriers. */
  #out: (Buffer | Barrier)[] = [];
  /** Frames bound for the server during one client chunk. */
  #toServer: Buffer[] = [];
  /** Audit appends since the last ReadyForQuery. */
  #batch: Promise<unknown>[] = [];
  readonly #startedAt = performance.now();
  readonly #startedIso = new Date().toISOString();
  readonly #counts = { statements: 0, allowed: 0, denied: 0, held: 0, errors: 0, rows: 0, bytes: 0, masked: 0 };
  readonly #approvals: SessionApproval[] = [];
  /** The statement held for approval, if any. */
  #hold: Hold | undefined;
  /** Client messages that arrived behind a held statement (copies), in order. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** After a refused Execute: what to send with the next Sync (messages up to it are dropped). */
  #skipUntilSync: { portal: string; note: StatementNote; sql: string } | undefined;
  #masker: ResultMasker | undefined;
  #catalog: { close(): void } | undefined;
  /** Set while the masker looks up a result's columns: server messages wait behind it. */
  #maskWait: Promise<void> | undefined;
  #backendHeld: PgMessage[] = [];
  /** Masked-value counts at the last statement's end, to record each statement's share. */
  #maskedSoFar: Record<string, number> = {};
  /** Refusals in flight, oldest first: the server's raised error is swapped for this frame. */
  #refusals: { code: string; frame: Buffer }[] = [];
  #endReason = 'client closed the connection';
  #ended = false;

  constructor(client: Duplex, options: PgProxySessionOptions) {
    this.#o = options;
    this.#client = client;
    this.#reader = new FrontendReader(options.maxMessageLength === undefined ? {} : { maxMessageLength: options.maxMessageLength });
    this.#tracker = new StatementTracker((rec) => this.#onStatement(rec));
    client.on('data', this.#onClientData);
    client.on('end', () => this.#close('client closed the connection'));
    client.on('close', () => this.#close('client closed the connection'));
    client.on('error', (err: Error) => this.#close(`client connection error: ${err.message}`));
  }

  // ───────────────────────────── client → broker ─────────────────────────────

  readonly #onClientData = (chunk: Buffer): void => {
    if (this.#phase === 'closed') return;
    try {
      this.#reader.push(chunk, this.#onFrontend);
    } catch (err) {
      this.#fatal(err);
      return;
    }
    this.#flushToServer();
  };

  readonly #onFrontend = (m: PgMessage): void => {
    switch (this.#phase) {
      case 'startup':
        return this.#onStartup(m);
      case 'auth':
        return this.#onAuth(m);
      case 'connecting':
        this.#held.push(Buffer.from(m.frame));
        return;
      case 'relay':
        return this.#relayFrontend(m);
      case 'closed':
        return;
    }
  };

  #onStartup(m: PgMessage): void {
    switch (startupRequestKind(m.body)) {
      case 'ssl':
      case 'gssenc':
        // The tunnel is already encrypted end to end; the client may proceed in the clear.
        this.#client.write(ENCRYPTION_DECLINED);
        return;
      case 'cancel':
        this.#forwardCancel(decodeCancelRequest(m.body));
        return;
      case 'startup': {
        const startup = decodeStartupMessage(m.body);
        if (startup.params.has('replication')) {
          throw new PgError(SqlState.featureNotSupported, 'replication connections are not supported through agentgate', { severity: 'FATAL' });
        }
        this.#clientUser = startup.params.get('user') ?? '';
        for (const [k, v] of startup.params) if (FORWARDED_PARAMS.has(k)) this.#clientParams.set(k, v);
        this.#clientParams.set('client_encoding', 'UTF8');
        if (!this.#o.verifier) {
          throw new PgError(SqlState.invalidAuthorizationSpecification, 'this tunnel carries no session secret', {
            severity: 'FATAL',
            hint: 'connect through `agentgate connect` or `agentgate run`, which create one',
          });
        }
        this.#phase = 'auth';
        this.#client.write(authenticationSASL([SCRAM_SHA_256]));
        return;
      }
    }
  }

  #onAuth(m: PgMessage): void {
    if (m.type === FrontendType.terminate) {
      this.#close('client gave up during authentication');
      return;
    }
    if (!this.#scram) {
      const initial = decodeSASLInitialResponse(m.body);
      if (initial.mechanism !== SCRAM_SHA_256 || initial.data === null) {
        throw new ProtocolError(`client selected an invalid SASL authentication mechanism "${initial.mechanism}"`);
      }
      this.#scram = new ScramServer(this.#o.verifier as ScramVerifier);
      this.#client.write(authenticationSASLContinue(this.#scram.start(initial.data)));
      return;
    }
    const result = this.#scram.finish(decodeSASLResponse(m.body));
    if (!result.ok) throw passwordAuthFailed(this.#clientUser);
    this.#reader.authenticated();
    this.#client.write(Buffer.concat([authenticationSASLFinal(result.serverFinal), AUTHENTICATION_OK]));
    if (!this.#o.access.allowed) {
      throw new PgError(SqlState.insufficientPrivilege, this.#o.access.message, { severity: 'FATAL' });
    }
    this.#phase = 'connecting';
    this.#client.pause();
    void this.#connect();
  }

  async #connect(): Promise<void> {
    const { target, logger } = this.#o;
    try {
      if (this.#o.audit.failed) throw auditUnavailable();
      const up = await connectUpstream(target, this.#clientParams);
      if (this.#phase === 'closed') {
        up.socket.end(TERMINATE);
        return;
      }
      this.#upstream = up.socket;
      this.#backend = up.reader;
      if (this.#o.masking) {
        const catalog = createCatalogLookup(target);
        this.#catalog = catalog;
        this.#masker = new ResultMasker(this.#o.masking.plan, this.#o.masking.key, catalog);
      }
      this.#upstreamKey = up.key;
      this.#clientKey = this.#o.cancels.register(this.#o.actor.sub, target, up.key, () => this.#cancelHold());
      up.socket.on('data', this.#onUpstreamData);
      up.socket.on('end', () => this.#close('the server closed the connection'));
      up.socket.on('close', () => this.#close('the server closed the connection'));
      up.socket.on('error', (err: Error) => this.#close(`server connection error: ${err.message}`));

      // ParameterStatus etc. go through (masked like later ones); our key replaces the server's.
      const masker = this.#masker;
      for (const f of up.relayFrames) {
        if (masker === undefined) this.#out.push(f);
        else if (f[0] === BackendType.parameterStatus) this.#out.push(masker.parameterStatus(f));
        else if (f[0] === BackendType.noticeResponse) this.#out.push(masker.errorOrNotice(f));
        else this.#out.push(f);
      }
      this.#out.push(backendKeyData(this.#clientKey.processId, this.#clientKey.secretKey));
      const start = this.#append({
        type: 'session.start',
        detail: {
          protocol: 'postgres',
          client_user: this.#clientUser,
          application_name: this.#clientParams.get('application_name') ?? null,
          upstream: { host: target.host, port: target.port, database: target.database, user: target.user, tls: target.tls },
          ...(this.#o.origin ?? {}),
        },
        decision: { effect: 'allow', rule: this.#o.access.allowed ? this.#o.access.policy : null },
        outcome: null,
      });
      this.#pushBarrier(start);
      this.#out.push(readyForQuery('I'));
      this.#phase = 'relay';
      this.#flushToClient();

      // Replay whatever the client pipelined behind its authentication.
      const held = this.#held;
      this.#held = [];
      for (const frame of held) this.#onClientData(frame);
      this.#client.resume();
      logger.info('postgres session started', { session: this.id, target: target.name, sub: this.#o.actor.sub });
    } catch (err) {
      this.#fatal(err);
    }
  }

  #relayFrontend(m: PgMessage): void {
    if (this.#hold) {
      this.#pending.push(Buffer.from(m.frame));
      this.#pendingBytes += m.frame.length;
      if (this.#pendingBytes > MAX_PENDING_BYTES) this.#client.pause();
      return;
    }
    const t = this.#tracker;
    if (this.#skipUntilSync !== undefined) {
      // The server would skip these after an error; it never saw the error, so we skip them.
      if (m.type === FrontendType.sync) {
        const { portal, note, sql } = this.#skipUntilSync;
        this.#skipUntilSync = undefined;
        t.refusalBatch(portal, note);
        this.#send(parseFrame('', sql), bindFrame('', '', []), executeFrame(''), m.frame);
      } else if (m.type === FrontendType.terminate) {
        this.#endReason = 'client terminated the session';
        this.#send(m.frame);
      }
      return;
    }
    switch (m.type) {
      case FrontendType.query: {
        if (this.#o.audit.failed) {
          this.#refuseSimple();
          return;
        }
        const sql = decodeQuery(m.body);
        const verdict = this.#o.gate.judge(sql);
        if (verdict.effect === 'allow') {
          this.#counts.allowed++;
          t.query(sql, noteOf(verdict));
          break;
        }
        if (verdict.effect === 'review') {
          const granted = this.#o.approvals?.consumeGrant(this.#o.actor.sub, this.#o.target.name, verdict.fingerprint);
          if (granted) {
            this.#counts.allowed++;
            t.query(sql, { ...noteOf(verdict), effect: 'allow', approval: granted.id });
            break;
          }
          this.#startHold('simple', m.frame, sql, '', verdict);
          return;
        }
        this.#counts.denied++;
        t.query(sql, noteOf(verdict));
        this.#send(this.#refusal(SqlState.insufficientPrivilege, `agentgate: ${verdict.reason}`, denyHint(verdict)));
        return;
      }
      case FrontendType.parse: {
        const p = decodeParse(m.body);
        t.parse(p.statement, p.sql);
        break;
      }
      case FrontendType.bind: {
        const b = decodeBind(m.body);
        t.bind(b.portal, b.statement, b.paramCount);
        break;
      }
      case FrontendType.describe:
        t.describe();
        break;
      case FrontendType.close: {
        const c = decodeClose(m.body);
        t.close(c.kind, c.name);
        break;
      }
      case FrontendType.execute: {
        if (this.#o.audit.failed) throw auditUnavailable();
        const portal = decodeExecute(m.body).portal;
        const sql = t.portalSql(portal);
        const verdict = this.#o.gate.judge(sql);
        if (verdict.effect === 'allow') {
          this.#counts.allowed++;
          t.execute(portal, noteOf(verdict));
          break;
        }
        if (verdict.effect === 'review') {
          const granted = this.#o.approvals?.consumeGrant(this.#o.actor.sub, this.#o.target.name, verdict.fingerprint);
          if (granted) {
            this.#counts.allowed++;
            t.execute(portal, { ...noteOf(verdict), effect: 'allow', approval: granted.id });
            break;
          }
          this.#startHold('execute', m.frame, sql, portal, verdict);
          return;
        }
        this.#counts.denied++;
        this.#skipUntilSync = { portal, note: noteOf(verdict), sql: this.#refusalSql(SqlState.insufficientPrivilege, `agentgate: ${verdict.reason}`, denyHint(verdict)) };
        return;
      }
      case FrontendType.sync:
        t.sync();
        break;
      case FrontendType.functionCall:
        if (this.#o.audit.failed) throw auditUnavailable();
        t.functionCall(m.body.length >= 4 ? m.body.readInt32BE(0) : 0);
        break;
      case FrontendType.copyData:
        t.copyIn(m.frame.length);
        break;
      case FrontendType.terminate:
        this.#endReason = 'client terminated the session';
        break;
      default:
        break;
    }
    this.#send(m.frame);
  }

  // ───────────────────────────── holds (review) ─────────────────────────────

  #startHold(kind: Hold['kind'], frame: Buffer, sql: string, portal: string, verdict: GateVerdict): void {
    const approvals = this.#o.approvals;
    this.#counts.held++;
    if (!approvals || !verdict.approvers) {
      // Nobody can approve here: refuse rather than run.
      const v: GateVerdict = { ...verdict, reason: `${verdict.reason}, and this broker has no approval service` };
      this.#counts.denied++;
      this.#refuseHeld(kind, sql, portal, v, SqlState.insufficientPrivilege, `agentgate: ${v.reason}`);
      return;
    }
    const { request, outcome } = approvals.request({
      requester: this.#o.actor,
      session: this.id,
      target: this.#o.target.name,
      protocol: 'postgres',
      statement: this.#auditText(sql),
      classification: verdict.classification,
      policy: verdict.policy ?? '',
      rule: verdict.rule ?? '',
      reason: verdict.reason,
      approvers: verdict.approvers,
      fingerprint: verdict.fingerprint,
      ...(verdict.grantSeconds !== undefined ? { grantSeconds: verdict.grantSeconds } : {}),
    });
    this.#hold = { kind, frame: Buffer.from(frame), sql, portal, verdict, requestId: request.id };
    // What was relayed before the held statement goes now; nothing after it does. The
    // client is still read (so a disconnect is seen and withdraws the request); what it
    // pipelines meanwhile waits in #pending, up to a cap before reading stops.
    this.#flushToServer();
    const who = `${verdict.approvers.count} of ${verdict.approvers.groups.join(', ')}`;
    this.#out.push(
      noticeResponse({
        severity: 'NOTICE',
        code: '01000',
        message: `held for approval: ${request.id} — run: agentgate approve ${request.id}`,
        detail: `${verdict.reason}; waiting for ${who} until ${request.expires_at}`,
        hint: `a reviewer runs: agentgate approve ${request.id} --approve`,
      }),
    );
    this.#flushToClient();
    outcome.then(
      (o) => this.#onDecision(o),
      (err: unknown) => this.#fatal(err),
    );
  }

  #onDecision(o: ApprovalOutcome): void {
    const hold = this.#hold;
    if (!hold || hold.requestId !== o.request.id || this.#phase === 'closed') return;
    this.#approvals.push({
      id: o.request.id,
      status: o.status,
      decisions: o.request.decisions.map((d) => ({ approver: d.approver.sub, decision: d.decision, reason: d.reason, at: d.at })),
    });
    this.#hold = undefined;
    const t = this.#tracker;
    const base = { ...noteOf(hold.verdict), approval: o.request.id };
    if (o.status === 'approved') {
      this.#counts.allowed++;
      if (hold.kind === 'simple') t.query(hold.sql, { ...base, effect: 'allow' });
      else t.execute(hold.portal, { ...base, effect: 'allow' });
      this.#send(hold.frame);
    } else if (o.status === 'denied') {
      this.#counts.denied++;
      const who = o.request.decisions.find((d) => d.decision === 'deny')?.approver.sub ?? 'a reviewer';
      this.#refuseHeld(hold.kind, hold.sql, hold.portal, { ...hold.verdict, reason: `denied by ${who}: ${o.reason}` }, SqlState.insufficientPrivilege, `agentgate: ${o.request.id} denied by ${who}: ${o.reason}`, o.request.id);
    } else {
      // expired (withdrawn only happens once the client is gone)
      this.#counts.denied++;
      this.#refuseHeld(hold.kind, hold.sql, hold.portal, { ...hold.verdict, reason: `approval ${o.request.id} ${o.status}` }, SqlState.queryCanceled, `agentgate: approval request ${o.request.id} ${o.status === 'expired' ? 'timed out' : o.status}: nothing ran`, o.request.id);
    }
    this.#releaseHold();
  }

  /** Refuses a statement that was held: in place of the Query, or of the Sync that ends the Execute's batch. */
  #refuseHeld(kind: Hold['kind'], sql: string, portal: string, verdict: GateVerdict, code: SqlState, message: string, approval?: string): void {
    const note: StatementNote = { ...noteOf(verdict), effect: 'deny', ...(approval ? { approval } : {}) };
    if (kind === 'simple') {
      this.#tracker.query(sql, note);
      this.#send(this.#refusal(code, message));
    } else {
      this.#skipUntilSync = { portal, note, sql: this.#refusalSql(code, message) };
    }
  }

  /** Replays what waited behind the hold, then lets the client speak again. */
  #releaseHold(): void {
    const frames = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    for (let i = 0; i < frames.length; i++) {
      if (this.#hold || this.#phase !== 'relay') {
        for (const f of frames.slice(i)) {
          this.#pending.push(f);
          this.#pendingBytes += f.length;
        }
        break;
      }
      const frame = frames[i] as Buffer;
      this.#onFrontend({ type: frame[0] as number, length: frame.readInt32BE(1), frame, body: frame.subarray(5) });
    }
    this.#flushToServer();
    if (!this.#hold && this.#phase === 'relay') this.#client.resume();
  }

  /** A held statement is withdrawn when its client cancels it (CancelRequest). */
  #cancelHold(): boolean {
    const hold = this.#hold;
    if (!hold) return false;
    this.#o.approvals?.withdraw(hold.requestId, 'the client cancelled the statement');
    this.#hold = undefined;
    this.#counts.denied++;
    this.#approvals.push({ id: hold.requestId, status: 'withdrawn', decisions: [] });
    this.#refuseHeld(hold.kind, hold.sql, hold.portal, { ...hold.verdict, reason: 'cancelled while held' }, SqlState.queryCanceled, 'canceling statement due to user request (it was held for approval and did not run)', hold.requestId);
    this.#releaseHold();
    return true;
  }

  /** The Query message that makes the server raise a refusal; its error is swapped for ours on the way back. */
  #refusal(code: SqlState, message: string, hint?: string): Buffer {
    return queryFrame(this.#refusalSql(code, message, hint));
  }

  #refusalSql(code: SqlState, message: string, hint?: string): string {
    this.#refusals.push({ code, frame: errorResponse({ severity: 'ERROR', code, message, ...(hint ? { hint } : {}) }) });
    return raiseStatement(code, message, hint);
  }

  /** The audit log is down: answer a simple Query with an error instead of running it. */
  #refuseSimple(): void {
    if (this.#tracker.busy) throw auditUnavailable();
    this.#out.push(auditUnavailable(false).toErrorResponse(), readyForQuery(this.#status));
    this.#flushToClient();
  }

  /** Queues frames for the server; the masker follows what the server is asked, to read its answers. */
  #send(...frames: Buffer[]): void {
    for (const f of frames) {
      this.#toServer.push(f);
      this.#masker?.frontend(f[0] as number, f.subarray(5));
    }
  }

  #flushToServer(): void {
    const frames = this.#toServer;
    if (frames.length === 0 || !this.#upstream) return;
    this.#toServer = [];
    this.#upstream.write(joinFrames(frames));
  }

  #forwardCancel(req: { processId: number; secretKey: Buffer }): void {
    const entry = this.#o.cancels.lookup(req.processId, req.secretKey, this.#o.actor.sub);
    this.#phase = 'closed';
    this.#client.end();
    if (!entry) {
      this.#o.logger.warn('cancel request with an unknown key ignored', { sub: this.#o.actor.sub });
      return;
    }
    if (entry.onCancel?.()) return;
    sendCancel(entry.target, entry.upstreamKey).catch((err: Error) => {
      this.#o.logger.warn('could not forward cancel request', { target: entry.target.name, error: err.message });
    });
  }

  // ───────────────────────────── server → client ─────────────────────────────

  readonly #onUpstreamData = (chunk: Buffer): void => {
    if (this.#phase === 'closed') return;
    try {
      (this.#backend as BackendReader).push(chunk, this.#onBackend);
    } catch (err) {
      this.#fatal(err);
      return;
    }
    this.#flushToClient();
  };

  readonly #onBackend = (m: PgMessage): void => {
    if (this.#maskWait) {
      this.#backendHeld.push(copyMessage(m));
      return;
    }
    const masker = this.#masker;
    if (!masker) {
      this.#process(m, m.frame);
      return;
    }
    const out = masker.backend(m);
    if (out instanceof Promise) {
      // The masker must learn which tables these columns come from before any row passes.
      const held = copyMessage(m);
      this.#maskWait = out;
      this.#upstream?.pause();
      void out.then(() => {
        this.#maskWait = undefined;
        if (this.#phase === 'closed') return;
        this.#process(held, held.frame);
        this.#takeMaskNotices();
        const rest = this.#backendHeld;
        this.#backendHeld = [];
        for (let i = 0; i < rest.length; i++) {
          if (this.#maskWait) {
            this.#backendHeld.push(...rest.slice(i));
            break;
          }
          this.#onBackend(rest[i] as PgMessage);
        }
        this.#flushToClient();
      });
      return;
    }
    this.#process(m, out);
    this.#takeMaskNotices();
  };

  #takeMaskNotices(): void {
    const masker = this.#masker;
    if (!masker) return;
    for (let n = masker.takeNoticeFrame(); n; n = masker.takeNoticeFrame()) this.#out.push(n);
  }

  /** Follows one server message (decoded from the original) and queues `frame` (possibly masked) for the client. */
  #process(m: PgMessage, frame: Buffer): void {
    const t = this.#tracker;
    switch (m.type) {
      case BackendType.dataRow:
        t.row(m.frame.length);
        break;
      case BackendType.commandComplete: {
        const cc = decodeCommandComplete(m.body);
        t.commandComplete(cc.tag, cc.rows);
        break;
      }
      case BackendType.emptyQueryResponse:
        t.emptyQuery();
        break;
      case BackendType.portalSuspended:
        t.portalSuspended();
        break;
      case BackendType.errorResponse: {
        const f = decodeErrorResponse(m.body);
        const refused = t.refusalHead;
        t.error(f.code);
        if (f.severity === 'FATAL' || f.severity === 'PANIC') this.#endReason = `the server ended the session: ${f.message}`;
        const refusal = this.#refusals[0];
        if (refusal && refused) {
          // Our raise statement failed as intended (or the transaction was already aborted: keep that error).
          this.#refusals.shift();
          if (refused === 'statement' && f.code === refusal.code) {
            this.#out.push(refusal.frame);
            return;
          }
        }
        break;
      }
      case BackendType.parseComplete:
        if (t.parseComplete()) return;
        break;
      case BackendType.bindComplete:
        if (t.bindComplete()) return;
        break;
      case BackendType.closeComplete:
        t.closeComplete();
        break;
      case BackendType.rowDescription:
      case BackendType.noData:
        t.described();
        break;
      case BackendType.copyData:
        t.copyOut(m.frame.length);
        break;
      case BackendType.readyForQuery: {
        this.#status = decodeReadyForQuery(m.body);
        t.ready();
        if (this.#batch.length > 0) {
          const batch = this.#batch;
          this.#batch = [];
          this.#pushBarrier(batch.length === 1 ? (batch[0] as Promise<unknown>) : Promise.all(batch));
        }
        break;
      }
      case BackendType.backendKeyData:
        return; // never reveal a server key
      default:
        break;
    }
    if (frame.length > 0) this.#out.push(frame);
  }

  #onStatement(rec: StatementRecord): void {
    const c = this.#counts;
    c.statements++;
    if (rec.status === 'error') c.errors++;
    c.rows += rec.rows;
    c.bytes += rec.bytes;
    const outcome: NewAuditEvent['outcome'] = {
      status: rec.status,
      rows: rec.rows,
      bytes: rec.bytes,
      duration_ms: Math.round(rec.durationMs * 1000) / 1000,
    };
    if (rec.sqlstate) outcome.sqlstate = rec.sqlstate;
    const masked = this.#maskedDelta();
    this.#batch.push(
      this.#append({
        type: 'query',
        detail: {
          sql: this.#auditText(rec.sql),
          ...(masked ? { masked } : {}),
          protocol: rec.protocol,
          params: rec.params,
          ...(rec.statement !== undefined && rec.statement !== '' ? { statement: rec.statement } : {}),
          tag: rec.tags.join('; '),
          ...(rec.note?.classification ? { classification: rec.note.classification as { [k: string]: JsonValue } } : {}),
          ...(rec.suspended ? { suspended: true } : {}),
        },
        decision: decisionOf(rec.note),
        outcome,
      }),
    );
  }

  /** Statement text as it may be recorded or shown: detector hits and masked-column literals replaced. */
  #auditText(sql: string): string {
    const m = this.#o.masking;
    return m ? maskSqlText(sql, m.plan, m.key).text : sql;
  }

  /** Values masked since the previous statement ended, by rule or detector; undefined when none. */
  #maskedDelta(): { values: number; by_rule: Record<string, number> } | undefined {
    if (!this.#masker) return undefined;
    const now = this.#masker.counts().byRule;
    const by: Record<string, number> = {};
    let values = 0;
    for (const [rule, n] of Object.entries(now)) {
      const d = n - (this.#maskedSoFar[rule] ?? 0);
      if (d > 0) {
        by[rule] = d;
        values += d;
      }
    }
    this.#maskedSoFar = { ...now };
    return values > 0 ? { values, by_rule: by } : undefined;
  }

  #pushBarrier(promise: Promise<unknown>): void {
    const barrier: Barrier = { promise, done: false };
    promise.then(
      () => {
        barrier.done = true;
        this.#flushToClient();
      },
      (err: unknown) => {
        this.#o.logger.error('audit write failed: closing the session', { session: this.id, error: (err as Error).message });
        this.#fatal(auditUnavailable());
      },
    );
    this.#out.push(barrier);
  }

  /** Write every frame up to the first unsettled barrier, as one buffer. */
  #flushToClient(): void {
    if (this.#phase === 'closed') return;
    const out = this.#out;
    let i = 0;
    let bytes = 0;
    const frames: Buffer[] = [];
    for (; i < out.length; i++) {
      const item = out[i] as Buffer | Barrier;
      if (Buffer.isBuffer(item)) {
        frames.push(item);
        bytes += item.length;
      } else if (!item.done) break;
    }
    // A small result waiting only for its audit event goes out with its ReadyForQuery in
    // one write (every write crosses the SSH and TLS framing twice); big ones stream.
    if (i < out.length && bytes < COALESCE_BELOW) {
      this.#upstream?.pause();
      return;
    }
    this.#out = i === out.length ? [] : out.slice(i);
    if (frames.length > 0) {
      const ok = this.#client.write(joinFrames(frames));
      if (!ok) this.#pauseUpstreamUntilDrain();
    }
    // While a barrier holds output back, stop reading the server so nothing piles up here.
    if (this.#out.length > 0 || this.#maskWait) this.#upstream?.pause();
    else if (!this.#waitingDrain) this.#upstream?.resume();
  }

  #waitingDrain = false;
  #pauseUpstreamUntilDrain(): void {
    if (this.#waitingDrain) return;
    this.#waitingDrain = true;
    this.#upstream?.pause();
    this.#client.once('drain', () => {
      this.#waitingDrain = false;
      if (this.#out.length === 0 && !this.#maskWait) this.#upstream?.resume();
    });
  }

  // ───────────────────────────── audit and ending ─────────────────────────────

  #append(e: Omit<NewAuditEvent, 'session' | 'actor' | 'target'>): Promise<unknown> {
    return this.#o.audit.append({ ...e, session: this.id, actor: this.#o.actor, target: this.#o.target.name });
  }

  /** Send an error the client will understand, then close. */
  #fatal(err: unknown): void {
    if (this.#phase === 'closed') return;
    const pgErr =
      err instanceof PgError
        ? err
        : new PgError(SqlState.internalError, `agentgate: ${(err as Error)?.message ?? String(err)}`, { severity: 'FATAL' });
    this.#endReason = pgErr.message;
    if (!(err instanceof PgError)) this.#o.logger.error('postgres session failed', { session: this.id, error: (err as Error)?.message });
    const frame = pgErr.fatal ? pgErr.toErrorResponse() : errorResponse({ ...pgErr.toFields(), severity: 'FATAL' });
    // Frames already released go first; held ones are dropped (their statement is not durable).
    this.#client.end(frame);
    this.#close(pgErr.message);
  }

  #close(reason: string): void {
    if (this.#phase === 'closed') {
      return;
    }
    const wasRelaying = this.#phase === 'relay';
    this.#phase = 'closed';
    if (this.#endReason === 'client closed the connection') this.#endReason = reason;
    if (!this.#client.destroyed) this.#client.end();
    const up = this.#upstream;
    if (up) {
      // A client gone mid-statement must not leave the statement running.
      if (this.#tracker.executing && this.#upstreamKey) {
        sendCancel(this.#o.target, this.#upstreamKey).catch(() => {});
      }
      if (!up.destroyed) up.end(TERMINATE);
      setTimeout(() => up.destroy(), 5_000).unref();
    }
    if (this.#clientKey) this.#o.cancels.unregister(this.#clientKey.processId);
    this.#catalog?.close();
    if (this.#hold) {
      this.#o.approvals?.withdraw(this.#hold.requestId, 'the client disconnected while the statement was held');
      this.#approvals.push({ id: this.#hold.requestId, status: 'withdrawn', decisions: [] });
      this.#hold = undefined;
    }
    if (!wasRelaying) return;
    this.#tracker.abort(SqlState.connectionFailure);
    void this.#finish();
  }

  async #finish(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#masker) this.#counts.masked = this.#masker.counts().values;
    const summary: SessionSummary = {
      session: this.id,
      connectSession: typeof this.#o.origin?.['connect_session'] === 'string' ? this.#o.origin['connect_session'] : undefined,
      actor: this.#o.actor,
      target: this.#o.target.name,
      protocol: 'postgres',
      startedAt: this.#startedIso,
      endedAt: new Date().toISOString(),
      ...this.#counts,
      approvals: this.#approvals,
    };
    try {
      await Promise.allSettled(this.#batch);
      if (!this.#o.audit.failed) {
        await this.#append({
          type: 'session.end',
          detail: {
            ...this.#counts,
            ...(this.#masker ? { masked_by_rule: this.#masker.counts().byRule } : {}),
            duration_ms: Math.round(performance.now() - this.#startedAt),
            reason: this.#endReason,
          },
          decision: null,
          outcome: { status: 'ok' },
        });
      }
    } catch (err) {
      this.#o.logger.error('could not record session end', { session: this.id, error: (err as Error).message });
    }
    this.#o.logger.info('postgres session ended', { session: this.id, ...this.#counts });
    this.#o.onEnd?.(summary);
  }
}

function noteOf(v: GateVerdict): StatementNote {
  return { effect: v.effect, rule: v.rule, ...(v.effect !== 'allow' ? { reason: v.reason } : {}), classification: v.classification };
}

function decisionOf(note: StatementNote | undefined): NewAuditEvent['decision'] {
  if (!note) return { effect: 'allow', rule: null };
  const d: NonNullable<NewAuditEvent['decision']> = { effect: note.effect, rule: note.rule };
  if (note.approval) d.approval = note.approval;
  if (note.reason) d.reason = note.reason;
  return d;
}

function denyHint(v: GateVerdict): string {
  return v.rule ? `policy ${v.policy ?? ''} rule ${v.rule}; ask the broker's operator if you need it` : 'no rule allows this; ask the broker\'s operator if you need it';
}

function auditUnavailable(fatal = true): PgError {
  return new PgError('53000' as SqlState, 'agentgate: the audit log is unavailable, so statements are refused', {
    severity: fatal ? 'FATAL' : 'ERROR',
    hint: "the broker's operator must restore the audit store; nothing ran",
  });
}

/** A message detached from the chunk it arrived in (the chunk's buffer may be reused). */
function copyMessage(m: PgMessage): PgMessage {
  const frame = Buffer.from(m.frame);
  return { type: m.type, length: m.length, frame, body: frame.subarray(frame.length - m.body.length) };
}

/** Frames of one chunk are usually adjacent views of it: hand them out as one view, else concatenate. */
function joinFrames(frames: Buffer[]): Buffer {
  if (frames.length === 1) return frames[0] as Buffer;
  const first = frames[0] as Buffer;
  let end = first.byteOffset + first.length;
  let contiguous = true;
  for (let i = 1; i < frames.length; i++) {
    const f = frames[i] as Buffer;
    if (f.buffer !== first.buffer || f.byteOffset !== end) {
      contiguous = false;
      break;
    }
    end += f.length;
  }
  return contiguous ? Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset) : Buffer.concat(frames);
}

export { CancelRegistry };
export type { SessionApproval, SessionSummary };
