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
import { BackendType, FrontendType, type TransactionStatus } from './protocol.js';
import { decodeBind, decodeClose, decodeDescribe, decodeExecute, decodeFunctionCall, decodeParse, decodeQuery } from './decode-frontend.js';
import { decodeErrorResponse, decodeReadyForQuery, type BackendKeyData } from './decode-backend.js';
import { backendKeyData, errorResponse, noticeResponse, readyForQuery } from './build-backend.js';
import { TERMINATE, bind as bindFrame, execute as executeFrame, parse as parseFrame, query as queryFrame } from './build-frontend.js';
import { PgError, SqlState } from './errors.js';
import type { ScramVerifier } from './scram.js';
import type { SessionApproval, SessionSummary } from '../session-summary.js';
import { followBackend, PipelineTracker, type Portal, type StatementNote, type StatementRecord } from './pipeline.js';
import { raiseStatement, type GateVerdict, type StatementGate } from './proxy-gate.js';
import type { ApprovalOutcome, ApprovalService } from '../approvals/types.js';
import { createCatalogLookup, maskSqlText, ResultMasker } from './proxy-masking.js';
import type { MaskingPlan } from '../masking/rules.js';
import { CancelRegistry } from './proxy-cancel.js';
import { connectUpstream, sendCancel } from './upstream.js';
import { ClientOutbox, joinFrames } from './client-outbox.js';
import { ClientHandshake } from './proxy-handshake.js';
import { createProvenanceCatalog, type CatalogRows } from './provenance-catalog.js';
import { statementProvenance } from '../masking/provenance.js';
import { createColumnScanner } from './column-scan.js';

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
  /**
   * The deciding policy grants no write: the upstream session is opened with
   * `default_transaction_read_only=on` (its reset value, so RESET and DISCARD keep it), and
   * the gate refuses every statement that would turn it off. A classifier miss then fails
   * inside PostgreSQL with 25006.
   */
  readOnly?: boolean;
  /** Called once when the session has ended and its session.end event is durable (or failed). */
  onEnd?: (summary: SessionSummary) => void;
}

/** A statement waiting for a decision; everything the client sends meanwhile waits behind it. */
interface Hold {
  kind: 'simple' | 'execute';
  /** The held Query or Execute message (a copy). */
  frame: Buffer;
  sql: string;
  /** The portal an Execute runs (resolved when it arrived). */
  portal: Portal | undefined;
  verdict: GateVerdict;
  requestId: string;
}

/** A refused extended-protocol message: what to send at the client's Sync (messages up to it are dropped). */
interface SkipToSync {
  /** What the audit record shows as the refused statement. */
  sql: string;
  params: number;
  statement: string | undefined;
  note: StatementNote;
  /** The raise statement that answers it. */
  raise: string;
}

type Phase = 'startup' | 'connecting' | 'relay' | 'closed';

/** SQLSTATE of any statement sent inside an aborted transaction. */
const IN_FAILED_TRANSACTION = '25P02';

/** What a client may pipeline behind a held statement before we stop reading it. */
const MAX_PENDING_BYTES = 8 * 1024 * 1024;

export class PgProxySession {
  readonly id = `pgs_${randomUUID()}`;
  readonly #o: PgProxySessionOptions;
  readonly #client: Duplex;
  readonly #reader: FrontendReader;
  readonly #handshake: ClientHandshake;
  #phase: Phase = 'startup';
  #clientParams = new Map<string, string>();
  #clientUser = '';
  /** Client messages that arrived while the upstream login was under way (copies). */
  #held: Buffer[] = [];

  #upstream: Duplex | undefined;
  #backend: BackendReader | undefined;
  #upstreamKey: BackendKeyData | undefined;
  #clientKey: BackendKeyData | undefined;
  readonly #tracker: PipelineTracker;
  #status: TransactionStatus = 'I';

  readonly #outbox: ClientOutbox;
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
  /**
   * Set while the next client message cannot be judged yet: `confirm` until the server has
   * answered what an earlier batch did to the names it uses, `lookup` until the catalog has
   * answered what its functions do. The message and all after it wait in #pending.
   */
  #waiting: 'confirm' | 'lookup' | undefined;
  /** Client messages that arrived behind a held or waiting message (copies), in order. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** After a refused extended-protocol message: what to send with the next Sync. */
  #skipUntilSync: SkipToSync | undefined;
  #masker: ResultMasker | undefined;
  #provenanceCatalog: { invalidate(): void } | undefined;
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
    this.#handshake = new ClientHandshake(client, options.verifier);
    this.#tracker = new PipelineTracker((rec) => this.#onStatement(rec));
    this.#outbox = new ClientOutbox(client, {
      pauseServer: () => this.#upstream?.pause(),
      resumeServer: () => this.#upstream?.resume(),
      serverHeld: () => this.#maskWait !== undefined,
      closed: () => this.#phase === 'closed',
      barrierFailed: (err) => {
        this.#o.logger.error('audit write failed: closing the session', { session: this.id, error: (err as Error).message });
        this.#fatal(auditUnavailable());
      },
    });
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
        return this.#onHandshake(m);
      case 'connecting':
        this.#held.push(Buffer.from(m.frame));
        return;
      case 'relay':
        return this.#relayFrontend(m);
      case 'closed':
        return;
    }
  };

  #onHandshake(m: PgMessage): void {
    const step = this.#handshake.step(m);
    switch (step.step) {
      case 'continue':
        return;
      case 'cancel':
        return this.#forwardCancel(step);
      case 'gave-up':
        return this.#close('client gave up during authentication');
      case 'authenticated':
        this.#clientParams = step.params;
        this.#clientUser = step.user;
        this.#reader.authenticated();
        if (!this.#o.access.allowed) {
          throw new PgError(SqlState.insufficientPrivilege, this.#o.access.message, { severity: 'FATAL' });
        }
        this.#phase = 'connecting';
        this.#client.pause();
        void this.#connect();
    }
  }

  async #connect(): Promise<void> {
    const { target, logger } = this.#o;
    try {
      if (this.#o.audit.failed) throw auditUnavailable();
      const params = new Map(this.#clientParams);
      // Startup parameters become the session's reset values: RESET ALL keeps this on.
      if (this.#o.readOnly) params.set('default_transaction_read_only', 'on');
      const up = await connectUpstream(target, params);
      if (this.#phase === 'closed') {
        up.socket.end(TERMINATE);
        return;
      }
      this.#upstream = up.socket;
      this.#backend = up.reader;
      if (this.#o.masking) {
        const catalog = createCatalogLookup(target, this.#o.readOnly ? { params: new Map([['default_transaction_read_only', 'on']]) } : {});
        this.#catalog = catalog;
        const relations = createProvenanceCatalog(catalog.rows as CatalogRows);
        this.#provenanceCatalog = relations;
        const scanner = createColumnScanner(target.name, catalog.rows as CatalogRows, this.#o.masking.plan);
        this.#masker = new ResultMasker(this.#o.masking.plan, this.#o.masking.key, catalog, this.#tracker, (sql) => statementProvenance(sql, relations), scanner);
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
        if (masker === undefined) this.#outbox.push(f);
        else if (f[0] === BackendType.parameterStatus) this.#outbox.push(masker.parameterStatus(f));
        else if (f[0] === BackendType.noticeResponse) this.#outbox.push(masker.errorOrNotice(f));
        else this.#outbox.push(f);
      }
      this.#outbox.push(backendKeyData(this.#clientKey.processId, this.#clientKey.secretKey));
      const start = this.#append({
        type: 'session.start',
        detail: {
          protocol: 'postgres',
          client_user: this.#clientUser,
          application_name: this.#auditText(this.#clientParams.get('application_name') ?? '') || null,
          upstream: { host: target.host, port: target.port, database: target.database, user: target.user, tls: target.tls },
          read_only: this.#o.readOnly === true,
          ...(this.#o.origin ?? {}),
        },
        decision: { effect: 'allow', rule: this.#o.access.allowed ? this.#o.access.policy : null },
        outcome: null,
      });
      this.#outbox.barrier(start);
      this.#outbox.push(readyForQuery('I'));
      this.#phase = 'relay';
      this.#outbox.flush();

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
    if (this.#hold || this.#waiting) {
      this.#defer(m.frame);
      return;
    }
    const t = this.#tracker;
    if (this.#skipUntilSync !== undefined) {
      // The server would skip these after an error; it never saw the error, so we skip them.
      if (m.type === FrontendType.sync) {
        const r = this.#skipUntilSync;
        this.#skipUntilSync = undefined;
        t.refusalBatch(r.sql, r.params, r.statement, r.note);
        this.#send(parseFrame('', r.raise), bindFrame('', '', []), executeFrame(''), m.frame);
      } else if (m.type === FrontendType.terminate) {
        this.#endReason = 'client terminated the session';
        this.#send(m.frame);
      }
      return;
    }
    switch (m.type) {
      case FrontendType.query:
        return this.#onQuery(m);
      case FrontendType.parse: {
        const p = decodeParse(m.body);
        t.parse(p.statement, p.sql, p.paramTypes.length);
        break;
      }
      case FrontendType.bind: {
        const b = decodeBind(m.body);
        const st = t.statement(b.statement);
        if (st === 'wait') return this.#waitForServer(m.frame);
        if (st === 'unknown') return this.#refuseUnknown('Bind', 'prepared statement', b.statement, b.paramCount);
        t.bind(b.portal, st, b.paramCount, b.resultFormats);
        break;
      }
      case FrontendType.describe: {
        const d = decodeDescribe(m.body);
        const target = d.kind === 'S' ? t.statement(d.name) : t.portal(d.name);
        if (target === 'wait') return this.#waitForServer(m.frame);
        if (target === 'unknown') return this.#refuseUnknown('Describe', d.kind === 'S' ? 'prepared statement' : 'portal', d.name, 0);
        t.describe(target);
        break;
      }
      case FrontendType.close: {
        // Closing a name that does not exist is not an error for the server either.
        const c = decodeClose(m.body);
        t.close(c.kind, c.name);
        break;
      }
      case FrontendType.execute:
        return this.#onExecute(m);
      case FrontendType.sync:
        t.sync();
        break;
      case FrontendType.functionCall:
        return this.#onFunctionCall(m);
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

  #onQuery(m: PgMessage): void {
    const t = this.#tracker;
    if (this.#o.audit.failed) {
      this.#refuseSimple();
      return;
    }
    const sql = decodeQuery(m.body);
    const prepared = this.#executed(sql);
    if (prepared === 'wait') return this.#waitForServer(m.frame);
    const lookup = this.#o.gate.prepare(sql, prepared);
    if (lookup) return this.#waitForLookup(m.frame, lookup);
    const verdict = this.#o.gate.judge(sql, prepared);
    if (verdict.ddl) this.#schemaChanged();
    if (verdict.effect === 'allow') {
      this.#counts.allowed++;
      t.query(sql, noteOf(verdict), verdict.changes);
      this.#send(m.frame);
      return;
    }
    if (verdict.effect === 'review') {
      const granted = this.#o.approvals?.consumeGrant(this.#o.actor.sub, this.#o.target.name, verdict.fingerprint);
      if (granted) {
        this.#counts.allowed++;
        t.query(sql, { ...noteOf(verdict), effect: 'allow', approval: granted.id }, verdict.changes);
        this.#send(m.frame);
        return;
      }
      this.#startHold('simple', m.frame, sql, undefined, verdict);
      return;
    }
    this.#counts.denied++;
    t.query(sql, noteOf(verdict));
    this.#send(this.#refusal(SqlState.insufficientPrivilege, `agentgate: ${verdict.reason}`, denyHint(verdict)));
  }

  #onExecute(m: PgMessage): void {
    const t = this.#tracker;
    if (this.#o.audit.failed) throw auditUnavailable();
    const name = decodeExecute(m.body).portal;
    const portal = t.portal(name);
    if (portal === 'wait') return this.#waitForServer(m.frame);
    if (portal === 'unknown') return this.#refuseUnknown('Execute', 'portal', name, 0);
    const sql = portal.statement.sql;
    const prepared = this.#executed(sql);
    if (prepared === 'wait') return this.#waitForServer(m.frame);
    const lookup = this.#o.gate.prepare(sql, prepared);
    if (lookup) return this.#waitForLookup(m.frame, lookup);
    const verdict = this.#o.gate.judge(sql, prepared);
    if (verdict.ddl) this.#schemaChanged();
    if (verdict.effect === 'allow') {
      this.#counts.allowed++;
      t.execute(portal, noteOf(verdict));
      this.#send(m.frame);
      return;
    }
    if (verdict.effect === 'review') {
      const granted = this.#o.approvals?.consumeGrant(this.#o.actor.sub, this.#o.target.name, verdict.fingerprint);
      if (granted) {
        this.#counts.allowed++;
        t.execute(portal, { ...noteOf(verdict), effect: 'allow', approval: granted.id });
        this.#send(m.frame);
        return;
      }
      this.#startHold('execute', m.frame, sql, portal, verdict);
      return;
    }
    this.#counts.denied++;
    this.#skipUntilSync = {
      sql,
      params: portal.params,
      statement: portal.statement.name,
      note: noteOf(verdict),
      raise: this.#refusalSql(SqlState.insufficientPrivilege, `agentgate: ${verdict.reason}`, denyHint(verdict)),
    };
  }

  /**
   * The prepared statements `sql` EXECUTEs, with the text each runs (undefined when the
   * name does not exist); `wait` when an unconfirmed earlier batch may change one.
   */
  #executed(sql: string): ReadonlyMap<string, string | undefined> | undefined | 'wait' {
    const names = this.#o.gate.executes(sql);
    if (names.length === 0) return undefined;
    const out = new Map<string, string | undefined>();
    for (const name of names) {
      const st = this.#tracker.statement(name);
      if (st === 'wait') return 'wait';
      out.set(name, st === 'unknown' ? undefined : st.sql);
    }
    return out;
  }

  /** A FunctionCall is judged like the statement `SELECT f(…)`, with the function resolved by OID. */
  #onFunctionCall(m: PgMessage): void {
    if (this.#o.audit.failed) throw auditUnavailable();
    const call = decodeFunctionCall(m.body);
    const lookup = this.#o.gate.prepareFunctionCall(call.oid);
    if (lookup) return this.#waitForLookup(m.frame, lookup);
    const verdict = this.#o.gate.judgeFunctionCall(call.oid, call.argCount);
    const t = this.#tracker;
    if (verdict.effect === 'allow') {
      this.#counts.allowed++;
      t.functionCall(verdict.label, call.argCount, noteOf(verdict), verdict.builtin);
      this.#send(m.frame);
      return;
    }
    // No approvals for the fast path: a call that needs review is refused with the reason.
    this.#counts.denied++;
    const reason = verdict.effect === 'review' ? `${verdict.reason} (function calls cannot be held for review; run it as a statement)` : verdict.reason;
    t.functionCall(verdict.label, call.argCount, { ...noteOf(verdict), effect: 'deny', reason });
    // A FunctionCall is answered like a simple Query (a result or an error, then ReadyForQuery).
    this.#send(this.#refusal(SqlState.insufficientPrivilege, `agentgate: ${reason}`, denyHint(verdict)));
  }

  /**
   * A Bind, Describe or Execute naming a statement or portal that does not exist as far as
   * the server has confirmed: refused (the batch fails at its Sync), never forwarded.
   */
  #refuseUnknown(message: string, what: string, name: string, params: number): void {
    this.#counts.denied++;
    const reason = `${message} names ${what} "${name}", which does not exist (as far as the server has confirmed)`;
    this.#skipUntilSync = {
      sql: '',
      params,
      statement: name,
      note: { effect: 'deny', rule: null, reason },
      raise: this.#refusalSql(SqlState.protocolViolation, `agentgate: ${reason}`, 'Parse (or Bind) it again; nothing ran'),
    };
  }

  /** A statement may change the schema: what was resolved in the catalog may be stale. */
  #schemaChanged(): void {
    this.#o.gate.invalidate();
    this.#provenanceCatalog?.invalidate();
    this.#masker?.invalidate();
  }

  /** Queue a client message (a copy) behind a hold or a wait. */
  #defer(frame: Buffer): void {
    this.#pending.push(Buffer.from(frame));
    this.#pendingBytes += frame.length;
    if (this.#pendingBytes > MAX_PENDING_BYTES) this.#client.pause();
  }

  /** The message depends on what an earlier batch did: judge it again after the next ReadyForQuery. */
  #waitForServer(frame: Buffer): void {
    this.#waiting = 'confirm';
    this.#defer(frame);
  }

  /** The gate needs the catalog first: judge the message again once it has answered. */
  #waitForLookup(frame: Buffer, lookup: Promise<void>): void {
    this.#waiting = 'lookup';
    this.#defer(frame);
    // What was relayed before this message goes now.
    this.#flushToServer();
    void lookup.then(() => {
      if (this.#waiting !== 'lookup' || this.#phase !== 'relay') return;
      this.#waiting = undefined;
      this.#releasePending();
    });
  }

  // ───────────────────────────── holds (review) ─────────────────────────────

  #startHold(kind: Hold['kind'], frame: Buffer, sql: string, portal: Portal | undefined, verdict: GateVerdict): void {
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
    this.#outbox.push(
      noticeResponse({
        severity: 'NOTICE',
        code: '01000',
        message: `held for approval: ${request.id} — run: agentgate approve ${request.id}`,
        detail: `${verdict.reason}; waiting for ${who} until ${request.expires_at}`,
        hint: `a reviewer runs: agentgate approve ${request.id} --approve`,
      }),
    );
    this.#outbox.flush();
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
      if (hold.kind === 'simple') t.query(hold.sql, { ...base, effect: 'allow' }, hold.verdict.changes);
      else t.execute(hold.portal as Portal, { ...base, effect: 'allow' });
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
    this.#releasePending();
  }

  /** Refuses a statement that was held: in place of the Query, or of the Sync that ends the Execute's batch. */
  #refuseHeld(kind: Hold['kind'], sql: string, portal: Portal | undefined, verdict: GateVerdict, code: SqlState, message: string, approval?: string): void {
    const note: StatementNote = { ...noteOf(verdict), effect: 'deny', ...(approval ? { approval } : {}) };
    if (kind === 'simple') {
      this.#tracker.query(sql, note);
      this.#send(this.#refusal(code, message));
    } else {
      this.#skipUntilSync = { sql, params: portal?.params ?? 0, statement: portal?.statement.name, note, raise: this.#refusalSql(code, message) };
    }
  }

  /** Replays what waited behind a hold or a wait, then lets the client speak again. */
  #releasePending(): void {
    const frames = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    for (let i = 0; i < frames.length; i++) {
      if (this.#hold || this.#waiting || this.#phase !== 'relay') {
        for (const f of frames.slice(i)) {
          this.#pending.push(f);
          this.#pendingBytes += f.length;
        }
        break;
      }
      const frame = frames[i] as Buffer;
      try {
        this.#onFrontend({ type: frame[0] as number, length: frame.readInt32BE(1), frame, body: frame.subarray(5) });
      } catch (err) {
        this.#fatal(err);
        return;
      }
    }
    this.#flushToServer();
    this.#outbox.flush();
    if (!this.#hold && !this.#waiting && this.#phase === 'relay') this.#client.resume();
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
    this.#releasePending();
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
    this.#outbox.push(auditUnavailable(false).toErrorResponse(), readyForQuery(this.#status));
    this.#outbox.flush();
  }

  /** Queues frames for the server. */
  #send(...frames: Buffer[]): void {
    for (const f of frames) this.#toServer.push(f);
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
    this.#outbox.flush();
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
        this.#outbox.flush();
      });
      return;
    }
    this.#process(m, out);
    this.#takeMaskNotices();
  };

  #takeMaskNotices(): void {
    const masker = this.#masker;
    if (!masker) return;
    for (let n = masker.takeNoticeFrame(); n; n = masker.takeNoticeFrame()) this.#outbox.push(n);
  }

  /** Follows one server message (decoded from the original) and queues `frame` (possibly masked) for the client. */
  #process(m: PgMessage, frame: Buffer): void {
    const t = this.#tracker;
    switch (m.type) {
      case BackendType.errorResponse: {
        const f = decodeErrorResponse(m.body);
        const refused = t.refusalHead;
        t.error(f.code);
        if (f.severity === 'FATAL' || f.severity === 'PANIC') this.#endReason = `the server ended the session: ${f.message}`;
        const refusal = this.#refusals[0];
        if (refusal && refused) {
          // Our raise statement failed as intended, or the transaction was already aborted
          // (25P02): either way the refused statement's answer is the refusal. When the
          // refusal's own Parse/Bind failed first, that error stands.
          this.#refusals.shift();
          if (refused === 'statement' && (f.code === refusal.code || f.code === IN_FAILED_TRANSACTION)) {
            this.#outbox.push(refusal.frame);
            return;
          }
        }
        break;
      }
      case BackendType.readyForQuery: {
        this.#status = decodeReadyForQuery(m.body);
        t.ready(this.#status);
        if (this.#batch.length > 0) {
          const batch = this.#batch;
          this.#batch = [];
          this.#outbox.barrier(batch.length === 1 ? (batch[0] as Promise<unknown>) : Promise.all(batch));
        }
        this.#outbox.push(frame);
        // A message that waited for this answer can be judged now.
        if (this.#waiting === 'confirm') {
          this.#waiting = undefined;
          this.#releasePending();
        }
        return;
      }
      case BackendType.backendKeyData:
        return; // never reveal a server key
      default:
        if (followBackend(t, m)) return;
        break;
    }
    if (frame.length > 0) this.#outbox.push(frame);
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
          ...(rec.statement !== undefined && rec.statement !== '' ? { statement: this.#auditText(rec.statement) } : {}),
          tag: rec.tags.join('; '),
          ...(rec.note?.classification ? { classification: rec.note.classification as { [k: string]: JsonValue } } : {}),
          ...(rec.suspended ? { suspended: true } : {}),
        },
        decision: decisionOf(rec.note),
        outcome,
      }),
    );
  }

  /** Text as it may be recorded or shown: detector hits and masked-column literals replaced. */
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

export { CancelRegistry };
export type { SessionApproval, SessionSummary };
