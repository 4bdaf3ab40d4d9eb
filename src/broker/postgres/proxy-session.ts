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
 * statement flow (proxy-statement-flow.ts). Every statement is on record twice: its intent
 * (text, decision) is durable before its first byte reaches the server, and its outcome
 * (tag, rows, SQLSTATE) is durable before the ReadyForQuery that completes it reaches the
 * client; both carry the statement's number. A crash in between leaves an intent without
 * an outcome, which the next start records as `unknown` (audit/interrupted.ts). If the
 * audit store has failed, statements are refused (fail closed).
 *
 * The session's record, counts, session.start/session.end, summary, live-session lease and
 * approvals (grants, holds, withdrawal) are the session core's (session/protocol-session.ts);
 * the SQL gate, the pipeline, the intent barrier and the wire stay here.
 */
import type { Duplex } from 'node:stream';

import type { BrokerConfig, PostgresTargetConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';
import type { FunctionCatalog } from '../policy/sql-gate-types.js';
import type { AuditStore, NewAuditEvent } from '../audit/store.js';
import type { AuditActor, JsonValue } from '../../shared/audit-hash.js';
import type { Logger } from '../log.js';
import { FrontendReader, type BackendReader, type PgMessage } from './reader.js';
import { BackendType, FrontendType, type TransactionStatus } from './protocol.js';
import { decodeErrorResponse, decodeParameterStatus, decodeReadyForQuery, type BackendKeyData } from './decode-backend.js';
import { contradictedSetting } from './reported-settings.js';
import { backendKeyData, errorResponse, readyForQuery } from './build-backend.js';
import { TERMINATE } from './build-frontend.js';
import { auditUnavailable, PgError, sessionSettingContradicted, SqlState, StartupFramingError } from './errors.js';
import type { ScramVerifier } from './scram.js';
import type { SessionApproval, SessionSummary } from '../session-summary.js';
import { ProtocolSession } from '../session/protocol-session.js';
import { followBackend, PipelineTracker, type StatementNote, type StatementRecord } from './pipeline.js';
import type { StatementGate } from './proxy-gate.js';
import type { ApprovalService } from '../approvals/types.js';
import { bindValueMasker, createCatalogLookup, maskSqlText, ResultMasker, vouchedCall } from './proxy-masking.js';
import { sessionReads, sessionWriteRows } from './error-reads.js';
import type { MaskingPlan } from '../masking/rules.js';
import { CancelRegistry } from './proxy-cancel.js';
import { connectUpstream, sendCancel } from './upstream.js';
import { endBackend, type BackendEnd } from './backend-end.js';
import { ClientOutbox, joinFrames } from './client-outbox.js';
import { ClientHandshake } from './proxy-handshake.js';
import { planStartup, type StartupRecord } from './startup-params.js';
import { createProvenanceCatalog } from './provenance-catalog.js';
import type { SchemaChanges } from './schema-changes.js';
import { writeRecorder, type WrittenRelations } from '../masking/written-relations.js';
import { statementProvenance } from '../masking/provenance.js';
import { createColumnScanner } from './column-scan.js';
import { StatementFlow } from './proxy-statement-flow.js';
import type { SessionLease } from '../live-sessions.js';
import { endedSessionError } from './session-end.js';
import { IDLE_TIMEOUT_REASON, IdleTimer, startDeadline } from '../../shared/connection-timers.js';
import { DEFAULT_LOGIN_TIMEOUT_MS, idleSessionTimedOut, loginTimedOut } from './session-limits.js';
import { withReasonRequirement } from '../policy/reason.js';
import { normalizeReason } from '../../shared/reason.js';
import { ResultSampler } from '../recording/result-sample.js';

export interface PgProxySessionOptions {
  target: PostgresTargetConfig;
  actor: AuditActor;
  /** Who asked: whether they may use the target at all, and its deciding policy, is the session core's question. */
  identity: Identity;
  config: Pick<BrokerConfig, 'policies'>;
  /** The verifier of this `connect`/`run` session's secret; undefined when the tunnel sent none. */
  verifier: ScramVerifier | undefined;
  /** Judges every statement before it runs (policy). */
  gate: StatementGate;
  /** Where `review` statements wait for a human; without it they are refused. */
  approvals?: ApprovalService;
  /**
   * What to mask in results and in recorded statement text; absent = nothing. `relations`
   * is the target's function catalog, which the column scan asks about a table's stored code.
   * `written`: the target's relations that writes filled from masked columns, shared by
   * every session of the target (written-relations.ts); absent = not followed.
   */
  masking?: { plan: MaskingPlan; key: Buffer; relations: Pick<FunctionCatalog, 'relationFacts' | 'knownByName' | 'knownByOperator'>; written?: WrittenRelations };
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
  /** The client must finish startup and SCRAM within this (ms); default 15 000 (`sessions.login_timeout`). */
  loginTimeoutMs?: number;
  /** Called once when the session has ended and its session.end event is durable (or failed). */
  onEnd?: (summary: SessionSummary) => void;
  /** The session's hold on its tunnel's credential (live-sessions.ts): refused, or ended with a reason. */
  lease?: SessionLease;
  /** The reason the `connect`/`run`/`mcp` session gave (tunnel header); a connection's `agentgate.reason` startup parameter replaces it. */
  reason?: string;
  /** `recording: { results: N }`: the first N rows of each statement's result, as the client got them, go into its `query` event. */
  resultSample?: number;
  /** The target's schema changes, shared by its sessions (schema-changes.ts); absent = this session's own only. */
  schema?: SchemaChanges;
}

type Phase = 'startup' | 'connecting' | 'relay' | 'closed';

/** How long a session's cache of relations and view definitions is kept (as the target's function catalog's). */
const CATALOG_TTL_MS = 30_000;

/** Startup parameters that do not change what a statement does: not part of the session state approvals are bound to. */
const STATELESS_STARTUP = new Set(['client_encoding', 'application_name']);

export class PgProxySession {
  readonly id: string;
  readonly #o: PgProxySessionOptions;
  /** The protocol-neutral session: record, counts, session.start/end, summary, lease (session/protocol-session.ts). */
  readonly #core: ProtocolSession;
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
  /** How the backend went, once the session closed (backend-end.ts). */
  #backendEnd: Promise<BackendEnd> | undefined;
  #clientKey: BackendKeyData | undefined;
  readonly #tracker: PipelineTracker;
  readonly #flow: StatementFlow;
  readonly #unsubscribeSchema: (() => void) | undefined;
  /** Since when this session's relation and view cache has been kept (performance.now()). */
  #catalogSince = performance.now();
  #status: TransactionStatus = 'I';

  readonly #outbox: ClientOutbox;
  /** Frames bound for the server during one client chunk. */
  #toServer: Buffer[] = [];
  /** Intent events appended for statements in #toServer: the frames go once they are durable. */
  #intents: Promise<unknown>[] = [];
  /** Frames written to the server only after an intent (theirs or an earlier one) is durable. */
  #serverHeld: Buffer[] = [];
  /** The latest intent barrier; frames queue behind it while it is pending. */
  #serverBarrier: Promise<unknown> | undefined;
  /** Audit appends since the last ReadyForQuery. */
  #batch: Promise<unknown>[] = [];
  #masker: ResultMasker | undefined;
  #provenanceCatalog: { invalidate(): void } | undefined;
  /** Taints the relations a write fills from masked columns, before it is forwarded (written-relations.ts). */
  #recordWrites: ((sql: string) => Promise<void> | 'unsaved' | 'decided' | undefined) | undefined;
  #catalog: { close(): void } | undefined;
  /** Set while the masker looks up a result's columns: server messages wait behind it. */
  #maskWait: Promise<Buffer | void> | undefined;
  #backendHeld: PgMessage[] = [];
  /** Masked-value counts at the last statement's end, to record each statement's share. */
  #maskedSoFar: Record<string, number> = {};
  #endReason = 'client closed the connection';
  /** Samples results for the audit (`recording: { results: N }`); absent when N is 0. */
  readonly #sampler: ResultSampler | undefined;
  readonly #stopLoginTimer: () => void;
  #idle: IdleTimer | undefined;

  constructor(client: Duplex, options: PgProxySessionOptions) {
    this.#o = options;
    const origin = options.origin ?? {};
    this.#core = new ProtocolSession({
      protocol: 'postgres',
      idPrefix: 'pgs',
      identity: options.identity,
      actor: options.actor,
      target: options.target.name,
      config: options.config,
      audit: options.audit,
      approvals: options.approvals,
      logger: options.logger,
      connectSession: typeof origin['connect_session'] === 'string' ? origin['connect_session'] : undefined,
      origin,
      lease: options.lease,
      ...(options.onEnd ? { onEnd: options.onEnd } : {}),
    });
    this.#core.counts.rows = 0;
    this.#sampler = options.resultSample ? new ResultSampler(options.resultSample) : undefined;
    this.id = this.#core.id;
    this.#client = client;
    this.#reader = new FrontendReader(options.maxMessageLength === undefined ? {} : { maxMessageLength: options.maxMessageLength });
    this.#handshake = new ClientHandshake(client, options.verifier);
    this.#tracker = new PipelineTracker(
      (rec) => this.#onStatement(rec),
      (rec) => this.#onForward(rec),
    );
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
    const base = options.gate;
    // require_reason applies to every statement, FunctionCalls included: the gate the flow asks refuses without one.
    const gate: StatementGate = {
      executes: (sql) => base.executes(sql),
      fetches: (sql) => base.fetches(sql),
      prepare: (sql, prepared, portals, paramTypes) => base.prepare(sql, prepared, portals, paramTypes),
      judge: (sql, prepared, portals, paramTypes) => withReasonRequirement(base.judge(sql, prepared, portals, paramTypes), this.#core.requireReason, this.#core.reason),
      prepareFunctionCall: (oid) => base.prepareFunctionCall(oid),
      judgeFunctionCall: (oid, args) => withReasonRequirement(base.judgeFunctionCall(oid, args), this.#core.requireReason, this.#core.reason),
      invalidate: () => base.invalidate(),
    };
    this.#flow = new StatementFlow({
      tracker: this.#tracker, gate, session: this.#core,
      counts: this.#core.counts, toClient: this.#outbox, client,
      send: (...frames) => {
        for (const f of frames) this.#toServer.push(f);
      },
      flushToServer: () => this.#flushToServer(),
      auditFailed: () => this.#o.audit.failed !== undefined,
      auditText: (sql) => this.#auditText(sql),
      auditValues: (sql) => this.#auditValues(sql),
      transactionStatus: () => this.#status,
      relaying: () => this.#phase === 'relay',
      closed: () => this.#phase === 'closed',
      schemaChanged: () => this.#dropCatalogCache(),
      schemaChangeRelayed: () => options.schema?.begin(this),
      schemaChangeEnded: () => (options.schema ? options.schema.end(this) : this.#dropCatalogCache()),
      schemaChangesElsewhere: (maxMs) => options.schema?.elsewhere(this, maxMs),
      schemaEpoch: () => options.schema?.epoch ?? 0,
      clientTerminated: () => {
        this.#endReason = 'client terminated the session';
      },
      redispatch: (m) => this.#onFrontend(m),
      fatal: (err) => this.#fatal(err),
      recordWrites: (sql) => this.#recordWrites?.(sql),
    });
    // Another session's confirmed schema change makes what this one cached stale too.
    this.#unsubscribeSchema = options.schema?.subscribe(() => this.#dropCatalogCache());
    const loginMs = options.loginTimeoutMs ?? DEFAULT_LOGIN_TIMEOUT_MS;
    this.#stopLoginTimer = startDeadline(loginMs, () => this.#fatal(loginTimedOut(loginMs)));
    client.on('data', this.#onClientData);
    client.on('end', () => this.#close('client closed the connection'));
    client.on('close', () => this.#close('client closed the connection'));
    client.on('error', (err: Error) => this.#close(`client connection error: ${err.message}`));
    // The broker ends this session (live-sessions.ts); before authentication the lease's refusal answers instead.
    this.#core.takeLease((notice) => {
      if (this.#phase === 'startup' || this.#phase === 'closed') return;
      this.#fatal(endedSessionError(notice));
    });
  }

  // ───────────────────────────── client → broker ─────────────────────────────

  readonly #onClientData = (chunk: Buffer): void => {
    if (this.#phase === 'closed') return;
    this.#idle?.touch();
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
        if (m.type === FrontendType.query || m.type === FrontendType.parse) this.#expireCatalogCache();
        return this.#flow.frontend(m);
      case 'closed':
        return;
    }
  };

  /**
   * What this session cached of relations and view definitions is read again after
   * CATALOG_TTL_MS, like the target's function catalog: a change made outside agentgate, or
   * through another broker, is seen then (one made through this broker is seen at once).
   */
  #expireCatalogCache(): void {
    const now = performance.now();
    if (now - this.#catalogSince < CATALOG_TTL_MS) return;
    this.#catalogSince = now;
    this.#provenanceCatalog?.invalidate();
    this.#masker?.expire();
  }

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
        const refused = this.#core.ended;
        if (refused) throw endedSessionError(refused);
        this.#stopLoginTimer();
        if (!this.#core.access) {
          throw new PgError(SqlState.insufficientPrivilege, this.#core.refusal?.message ?? 'agentgate: no access', { severity: 'FATAL' });
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
      const gate = this.#o.gate;
      const plan = await planStartup(this.#clientParams, target, async (sql) => {
        await gate.prepare(sql);
        return gate.judge(sql);
      });
      // The connection's own reason (MCP: the tool call's) replaces the tunnel's.
      const reason = normalizeReason(plan.reason) ?? this.#o.reason;
      this.#core.setReason(reason === undefined ? undefined : this.#auditText(reason));
      if (plan.refusal) {
        // On record before the refusal goes out, like any other refused request.
        const refusal = plan.refusal;
        await this.#core.refuseStart(
          this.#startDetail(plan.record),
          { effect: 'deny', rule: null, reason: this.#auditText(refusal.message) },
          { status: 'error', sqlstate: refusal.sqlState },
        ).catch((err: Error) => {
          // Nothing reaches the target either way: the client still gets the refusal's own words.
          logger.error('could not record a refused session start', { session: this.id, error: err.message });
        });
        throw refusal;
      }
      const params = plan.forward;
      // What the session starts with binds its approvals like a SET would (the encoding is always UTF8; a name for the client changes nothing).
      this.#flow.startupState([...params].filter(([name]) => !STATELESS_STARTUP.has(name)));
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
        const scanner = createColumnScanner(target.name, catalog.rows, this.#o.masking.plan, this.#o.masking.relations);
        const { plan, key, written } = this.#o.masking;
        this.#masker = new ResultMasker(plan, key, catalog, this.#tracker, (sql) => statementProvenance(sql, relations), scanner, sessionReads(plan, relations, scanner, written), written);
        if (written && plan.columns.length > 0) this.#recordWrites = writeRecorder(written, sessionReads(plan, relations, scanner, written, { writes: true }), sessionWriteRows(plan, relations, scanner, written));
      }
      this.#upstreamKey = up.key;
      this.#clientKey = this.#o.cancels.register(this.#o.actor.sub, target, up.key, () => this.#flow.cancelHold());
      up.socket.on('data', this.#onUpstreamData);
      up.socket.on('end', () => this.#close('the server closed the connection'));
      up.socket.on('close', () => this.#close('the server closed the connection'));
      up.socket.on('error', (err: Error) => this.#close(`server connection error: ${err.message}`));

      // ParameterStatus etc. go through (detectors only: no statement chose them); our key replaces the server's.
      const masker = this.#masker;
      for (const f of up.relayFrames) {
        if (masker === undefined) this.#outbox.push(f);
        else if (f[0] === BackendType.parameterStatus) this.#outbox.push(masker.parameterStatus(f, true));
        else if (f[0] === BackendType.noticeResponse) this.#outbox.push(masker.startupNotice(f));
        else this.#outbox.push(f);
      }
      this.#outbox.push(backendKeyData(this.#clientKey.processId, this.#clientKey.secretKey));
      this.#outbox.barrier(this.#core.start(this.#startDetail(plan.record)));
      this.#outbox.push(readyForQuery('I'));
      this.#phase = 'relay';
      this.#outbox.flush();
      const idleMs = target.idleTimeoutMs;
      if (idleMs !== undefined) {
        this.#idle = new IdleTimer(idleMs, () => this.#fatal(idleSessionTimedOut(target.name, idleMs), IDLE_TIMEOUT_REASON), () => this.#tracker.executing || this.#flow.holding);
      }

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

  /** session.start's detail: who asked for what, where it goes, and what became of each startup parameter. */
  #startDetail(startup: StartupRecord): Record<string, JsonValue> {
    const { target } = this.#o;
    const text = (s: string): string => this.#auditText(s);
    return {
      protocol: 'postgres',
      client_user: this.#clientUser,
      application_name: text(this.#clientParams.get('application_name') ?? '') || null,
      upstream: { host: target.host, port: target.port, database: target.database, user: target.user, tls: target.tls },
      read_only: this.#o.readOnly === true,
      reason: this.#core.reason ?? null,
      startup: {
        forwarded: startup.forwarded,
        rewritten: startup.rewritten.map((r) => ({ name: r.name, from: text(r.from), to: text(r.to), reason: r.reason })),
        dropped: startup.dropped.map((d) => ({ name: d.name, reason: d.reason })),
        refused: startup.refused.map((r) => ({ name: r.name, reason: text(r.reason) })),
      },
      ...(this.#o.origin ?? {}),
    };
  }

  /**
   * Writes the frames queued for the server (by the statement flow) as one buffer — once
   * the intent events of the statements among them (and of any statement queued before)
   * are durable. The intents of one loop turn share the store's group commit.
   */
  #flushToServer(): void {
    const frames = this.#toServer;
    if (frames.length === 0 || !this.#upstream) return;
    this.#toServer = [];
    const intents = this.#intents;
    if (intents.length === 0 && this.#serverBarrier === undefined) {
      this.#upstream.write(joinFrames(frames));
      return;
    }
    // Held across turns: copies, since a chunk's buffer is not ours to keep.
    this.#serverHeld.push(frames.length === 1 ? Buffer.from(frames[0] as Buffer) : joinFrames(frames));
    if (intents.length === 0) return; // behind an earlier barrier, released with it
    this.#intents = [];
    // The store resolves appends in seq order: this barrier settles after every earlier one.
    const barrier = intents.length === 1 ? (intents[0] as Promise<unknown>) : Promise.all(intents);
    this.#serverBarrier = barrier;
    barrier.then(
      () => {
        if (this.#serverBarrier !== barrier || this.#phase === 'closed') return; // a later barrier releases
        this.#serverBarrier = undefined;
        const held = this.#serverHeld;
        this.#serverHeld = [];
        this.#upstream?.write(held.length === 1 ? (held[0] as Buffer) : Buffer.concat(held));
      },
      (err: unknown) => {
        this.#o.logger.error('audit write failed: closing the session', { session: this.id, error: (err as Error).message });
        this.#fatal(auditUnavailable());
      },
    );
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
    this.#idle?.touch();
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
      // An error or notice resolves to its masked frame; a RowDescription passes unchanged.
      out.then((masked) => {
        this.#maskWait = undefined;
        if (this.#phase === 'closed') return;
        this.#process(held, masked ?? held.frame);
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
    if (this.#sampler) this.#sample(this.#sampler, m, frame);
    switch (m.type) {
      case BackendType.errorResponse: {
        const f = decodeErrorResponse(m.body);
        const refused = t.refusalHead;
        t.error(f.code);
        if (f.severity === 'FATAL' || f.severity === 'PANIC') this.#endReason = `the server ended the session: ${f.message}`;
        if (this.#flow.answerRefusal(refused, f.code, t.takeSkippedRefusals())) return; // instead of the raise's error
        break;
      }
      case BackendType.readyForQuery: {
        this.#status = decodeReadyForQuery(m.body);
        t.ready(this.#status);
        this.#flow.dropRefusals(t.takeSkippedRefusals());
        // Every statement's completion already waits for its outcome (#onStatement); this one too.
        this.#batch = [];
        this.#outbox.push(frame);
        this.#flow.serverReady();
        return;
      }
      case BackendType.backendKeyData:
        return; // never reveal a server key
      case BackendType.parameterStatus: {
        // A setting changed by what ran: ends the session when the gate depends on its old value.
        const p = decodeParameterStatus(m.body);
        const why = contradictedSetting(p.name, p.value, this.#o.readOnly === true);
        if (why !== undefined) {
          this.#fatal(sessionSettingContradicted(p.name, p.value, why));
          return;
        }
        break;
      }
      default:
        if (followBackend(t, m)) return;
        break;
    }
    if (frame.length > 0) this.#outbox.push(frame);
  }

  /** `frame` is what the client gets (masked): the sample holds exactly that. */
  #sample(s: ResultSampler, m: PgMessage, frame: Buffer): void {
    if (m.type === BackendType.rowDescription) s.description(m.body);
    else if (m.type === BackendType.dataRow && frame.length > 5) {
      const head = this.#tracker.head;
      s.row(frame, head?.kind === 'execute' ? head.portal.resultFormats : undefined);
    } else if ((m.type === BackendType.commandComplete || m.type === BackendType.portalSuspended) && frame[0] === BackendType.dataRow) {
      // Rows the masker held until their result completed arrive with its completion.
      const head = this.#tracker.head;
      const formats = head?.kind === 'execute' ? head.portal.resultFormats : undefined;
      for (let at = 0; at + 5 <= frame.length && frame[at] === BackendType.dataRow; ) {
        const end = at + 1 + frame.readInt32BE(at + 1);
        s.row(frame.subarray(at, end), formats);
        at = end;
      }
    }
  }

  /** An allowed statement is about to be sent: its intent goes on record first (see #flushToServer). */
  #onForward(rec: StatementRecord): void {
    rec.shown ??= this.#auditText(rec.sql);
    this.#intents.push(
      this.#append({
        type: 'query.intent',
        detail: {
          id: rec.id,
          sql: rec.shown,
          protocol: rec.protocol,
          params: rec.params,
          ...(rec.statement !== undefined && rec.statement !== '' ? { statement: this.#auditText(rec.statement) } : {}),
          ...(rec.note?.classification ? { classification: rec.note.classification as { [k: string]: JsonValue } } : {}),
          ...(this.#core.reason !== undefined ? { reason: this.#core.reason } : {}),
        },
        decision: decisionOf(rec.note),
        outcome: null,
      }),
    );
  }

  #onStatement(rec: StatementRecord): void {
    const c = this.#core.counts;
    // A skipped statement did not run: only its intent needs closing.
    if (rec.status !== 'skipped') c.statements++;
    if (rec.status === 'error') c.errors++;
    c.rows = (c.rows ?? 0) + rec.rows;
    c.bytes += rec.bytes;
    const outcome: NewAuditEvent['outcome'] = {
      status: rec.status,
      rows: rec.rows,
      bytes: rec.bytes,
      duration_ms: Math.round(rec.durationMs * 1000) / 1000,
    };
    if (rec.sqlstate) outcome.sqlstate = rec.sqlstate;
    const masked = this.#maskedDelta();
    const sample = this.#sampler?.take();
    const recorded = this.#append({
      type: 'query',
      detail: {
        id: rec.id,
        sql: rec.shown ?? this.#auditText(rec.sql),
        ...(masked ? { masked } : {}),
        protocol: rec.protocol,
        params: rec.params,
        ...(rec.statement !== undefined && rec.statement !== '' ? { statement: this.#auditText(rec.statement) } : {}),
        tag: rec.tags.join('; '),
        ...(this.#core.reason !== undefined ? { reason: this.#core.reason } : {}),
        ...(rec.note?.classification ? { classification: rec.note.classification as { [k: string]: JsonValue } } : {}),
        ...(rec.suspended ? { suspended: true } : {}),
        ...(sample ? { result_sample: { ...sample } } : {}),
      },
      decision: decisionOf(rec.note),
      outcome,
    });
    this.#batch.push(recorded);
    // The statement's completion (its CommandComplete, PortalSuspended or error, which the
    // caller queues next, and everything after it) goes out only once its outcome is
    // durable: in a pipeline each Execute completes before the Sync's ReadyForQuery.
    this.#outbox.barrier(recorded);
  }

  /** Text as it may be recorded or shown: detector hits and masked-column literals replaced. */
  #auditText(sql: string): string {
    const m = this.#o.masking;
    return m ? maskSqlText(sql, m.plan, m.key, this.#vouched).text : sql;
  }

  /** Bind values of `sql` as they may be shown: masked as the same literals in its text would be. */
  #auditValues(sql: string): (literal: string, index: number) => string {
    const m = this.#o.masking;
    return m ? bindValueMasker(sql, m.plan, m.key, this.#vouched) : (x) => x;
  }

  /** Calls whose literal arguments the audit text may show (proxy-masking.ts vouchedCall). */
  readonly #vouched = (name: string, operator?: boolean): boolean => {
    const r = this.#o.masking?.relations;
    return vouchedCall(operator ? r?.knownByOperator?.(name) : r?.knownByName?.(name), name, operator);
  };

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
    // Not the core's record(): session.start is a barrier already, and intents must not wait a turn for it.
    return this.#core.append(e);
  }

  /** Send an error the client will understand, then close; `reason` (default: the error's message) goes in session.end. */
  #fatal(err: unknown, reason?: string): void {
    if (this.#phase === 'closed') return;
    if (err instanceof StartupFramingError) {
      // Nothing says the peer speaks the protocol: log and close without a reply, as PostgreSQL does.
      this.#o.logger.info('closing a connection whose first bytes are not a startup packet', { session: this.id, error: err.message });
      this.#close(err.message);
      return;
    }
    const pgErr =
      err instanceof PgError
        ? err
        : new PgError(SqlState.internalError, `agentgate: ${(err as Error)?.message ?? String(err)}`, { severity: 'FATAL' });
    this.#endReason = reason ?? pgErr.message;
    if (!(err instanceof PgError)) this.#o.logger.error('postgres session failed', { session: this.id, error: (err as Error)?.message });
    const frame = pgErr.fatal ? pgErr.toErrorResponse() : errorResponse({ ...pgErr.toFields(), severity: 'FATAL' });
    // Frames already released go first; held ones are dropped (their statement is not durable).
    this.#client.end(frame);
    this.#close(this.#endReason);
  }

  /** What this session and its target resolved in the catalog (functions, relations, view definitions) is dropped. */
  #dropCatalogCache(): void {
    this.#o.gate.invalidate();
    this.#provenanceCatalog?.invalidate();
    this.#masker?.invalidate();
  }

  #close(reason: string): void {
    if (this.#phase === 'closed') {
      return;
    }
    this.#unsubscribeSchema?.();
    // A schema change this session left in flight ends when its server connection does
    // (PostgreSQL commits or rolls it back before it reads the Terminate).
    const schema = this.#o.schema;
    if (schema) {
      const up = this.#upstream;
      if (up && !up.destroyed) up.once('close', () => schema.gone(this));
      else schema.gone(this);
    }
    const wasRelaying = this.#phase === 'relay';
    this.#phase = 'closed';
    this.#stopLoginTimer();
    this.#idle?.stop();
    if (this.#endReason === 'client closed the connection') this.#endReason = reason;
    if (!this.#client.destroyed) this.#client.end();
    // Frames whose intent never became durable are never sent.
    this.#serverHeld = [];
    this.#intents = [];
    const up = this.#upstream;
    if (up && this.#upstreamKey) {
      // A client gone mid-statement, or a session the broker ended, must not leave its statement running: over once the server confirms it.
      this.#backendEnd = endBackend({ target: this.#o.target, socket: up, key: this.#upstreamKey, executing: this.#tracker.executing, logger: this.#o.logger, session: this.id });
    }
    if (this.#clientKey) this.#o.cancels.unregister(this.#clientKey.processId);
    this.#catalog?.close();
    this.#flow.sessionClosed();
    if (!wasRelaying) {
      // Never started: the lease is released, no session.end, no summary.
      this.#core.end().catch(() => {});
      return;
    }
    this.#tracker.abort(SqlState.connectionFailure);
    this.#finish().catch((err: unknown) => this.#o.logger.error('could not finish the session', { session: this.id, error: (err as Error)?.message }));
  }

  async #finish(): Promise<void> {
    const c = this.#core.counts;
    if (this.#masker) c.masked = this.#masker.counts().values;
    // Every statement's outcome is on record before session.end.
    // session.end follows the backend's end: a backend the broker had to terminate is on record.
    const backend = await this.#backendEnd;
    await this.#core.end(this.#endReason, {
      ...(this.#masker || (backend && backend !== 'closed')
        ? { detail: { ...(this.#masker ? { masked_by_rule: this.#masker.counts().byRule } : {}), ...(backend && backend !== 'closed' ? { server_end: backend } : {}) } }
        : {}),
      after: Promise.allSettled(this.#batch),
    });
    this.#o.logger.info('postgres session ended', { session: this.id, ...c });
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
