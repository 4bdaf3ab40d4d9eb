/**
 * One client connection through the Postgres proxy, from the StartupMessage to the end.
 *
 *   startup ──► auth (SCRAM against the session secret's verifier) ──► connecting
 *   (log in upstream with the target's credentials) ──► relay ──► closed
 *
 * In the relay phase both directions are framed by the streaming readers and forwarded
 * as the original bytes (frames of one chunk go out as one write); the few messages that
 * matter are decoded to follow each statement to its outcome. What happens to each client
 * message (relayed, refused, held for approval, or made to wait) is decided by the
 * statement flow (proxy-statement-flow.ts). Every statement becomes an audit event, and
 * the ReadyForQuery that completes a statement is released to the client only once that
 * event is durable. If the audit store has failed, statements are refused (fail closed).
 */
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';

import type { PostgresTargetConfig } from '../config/types.js';
import type { AuditStore, NewAuditEvent } from '../audit/store.js';
import type { AuditActor, JsonValue } from '../../shared/audit-hash.js';
import type { Logger } from '../log.js';
import { FrontendReader, type BackendReader, type PgMessage } from './reader.js';
import { BackendType, type TransactionStatus } from './protocol.js';
import { decodeErrorResponse, decodeReadyForQuery, type BackendKeyData } from './decode-backend.js';
import { backendKeyData, errorResponse, readyForQuery } from './build-backend.js';
import { TERMINATE } from './build-frontend.js';
import { auditUnavailable, PgError, SqlState } from './errors.js';
import type { ScramVerifier } from './scram.js';
import type { SessionApproval, SessionSummary } from '../session-summary.js';
import { followBackend, PipelineTracker, type StatementNote, type StatementRecord } from './pipeline.js';
import type { StatementGate } from './proxy-gate.js';
import type { ApprovalService } from '../approvals/types.js';
import { createCatalogLookup, maskSqlText, ResultMasker } from './proxy-masking.js';
import type { MaskingPlan } from '../masking/rules.js';
import { CancelRegistry } from './proxy-cancel.js';
import { connectUpstream, sendCancel } from './upstream.js';
import { ClientOutbox, joinFrames } from './client-outbox.js';
import { ClientHandshake } from './proxy-handshake.js';
import { createProvenanceCatalog } from './provenance-catalog.js';
import { statementProvenance } from '../masking/provenance.js';
import { createColumnScanner } from './column-scan.js';
import { StatementFlow } from './proxy-statement-flow.js';

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

type Phase = 'startup' | 'connecting' | 'relay' | 'closed';

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
  readonly #flow: StatementFlow;
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
  #masker: ResultMasker | undefined;
  #provenanceCatalog: { invalidate(): void } | undefined;
  #catalog: { close(): void } | undefined;
  /** Set while the masker looks up a result's columns: server messages wait behind it. */
  #maskWait: Promise<void> | undefined;
  #backendHeld: PgMessage[] = [];
  /** Masked-value counts at the last statement's end, to record each statement's share. */
  #maskedSoFar: Record<string, number> = {};
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
    this.#flow = new StatementFlow({
      sessionId: this.id, actor: options.actor, target: options.target.name,
      tracker: this.#tracker, gate: options.gate, approvals: options.approvals,
      counts: this.#counts, decided: this.#approvals, toClient: this.#outbox, client,
      send: (...frames) => {
        for (const f of frames) this.#toServer.push(f);
      },
      flushToServer: () => this.#flushToServer(),
      auditFailed: () => this.#o.audit.failed !== undefined,
      auditText: (sql) => this.#auditText(sql),
      transactionStatus: () => this.#status,
      relaying: () => this.#phase === 'relay',
      closed: () => this.#phase === 'closed',
      schemaChanged: () => {
        options.gate.invalidate();
        this.#provenanceCatalog?.invalidate();
        this.#masker?.invalidate();
      },
      clientTerminated: () => {
        this.#endReason = 'client terminated the session';
      },
      redispatch: (m) => this.#onFrontend(m),
      fatal: (err) => this.#fatal(err),
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
        return this.#flow.frontend(m);
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
        // eslint-disable-next-line @typescript-eslint/no-floating-promises -- #connect catches every failure and ends the session through #fatal
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
        const relations = createProvenanceCatalog(catalog.rows);
        this.#provenanceCatalog = relations;
        const scanner = createColumnScanner(target.name, catalog.rows, this.#o.masking.plan);
        this.#masker = new ResultMasker(this.#o.masking.plan, this.#o.masking.key, catalog, this.#tracker, (sql) => statementProvenance(sql, relations), scanner);
      }
      this.#upstreamKey = up.key;
      this.#clientKey = this.#o.cancels.register(this.#o.actor.sub, target, up.key, () => this.#flow.cancelHold());
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

  /** Writes the frames queued for the server (by the statement flow) as one buffer. */
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
      // A lookup that failed, or a held message the masker refuses (ProtocolError), ends the
      // session as it would have had the message come synchronously.
      out.then(() => {
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
      }).catch((err: unknown) => this.#fatal(err));
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
        if (this.#flow.answerRefusal(refused, f.code)) return; // instead of the raise's error
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
        this.#flow.serverReady();
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
    this.#flow.sessionClosed();
    if (!wasRelaying) return;
    this.#tracker.abort(SqlState.connectionFailure);
    this.#finish().catch((err: unknown) => this.#o.logger.error('could not finish the session', { session: this.id, error: (err as Error)?.message }));
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

function decisionOf(note: StatementNote | undefined): NewAuditEvent['decision'] {
  if (!note) return { effect: 'allow', rule: null };
  const d: NonNullable<NewAuditEvent['decision']> = { effect: note.effect, rule: note.rule };
  if (note.approval) d.approval = note.approval;
  if (note.reason) d.reason = note.reason;
  return d;
}

/** A message detached from the chunk it arrived in (the chunk's buffer may be reused). */
function copyMessage(m: PgMessage): PgMessage {
  const frame = Buffer.from(m.frame);
  return { type: m.type, length: m.length, frame, body: frame.subarray(frame.length - m.body.length) };
}

export { CancelRegistry };
export type { SessionApproval, SessionSummary };
