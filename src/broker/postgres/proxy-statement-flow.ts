/**
 * The statement gate flow of one proxied Postgres session: what happens to each client
 * message in the relay phase. A Query, Execute or FunctionCall is judged by the gate
 * before it runs; a Bind, Describe or Execute must name something that exists. A message
 * is then relayed; refused (a raise statement goes to the server in its place, and the
 * server's error for it is swapped for the proxy's refusal; in the extended protocol the
 * messages up to the client's Sync are dropped, as the server would); held for approval
 * (it and everything behind it wait for a decision); or made to wait until the server has
 * confirmed what an earlier batch did, or the catalog has answered a lookup.
 *
 * The session owns the connections, the backend path and the audit records; it gives the
 * flow a narrow host and calls back in for the server's errors and ReadyForQuery, a
 * cancel, and its end.
 */
import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { PgMessage } from './reader.js';
import { FrontendType, type TransactionStatus } from './protocol.js';
import { decodeBind, decodeClose, decodeDescribe, decodeExecute, decodeFunctionCall, decodeParse, decodeQuery } from './decode-frontend.js';
import { errorResponse, noticeResponse, readyForQuery } from './build-backend.js';
import { bind as bindFrame, execute as executeFrame, parse as parseFrame, query as queryFrame } from './build-frontend.js';
import { auditUnavailable, SqlState } from './errors.js';
import type { PipelineTracker, Portal, PreparedStatement, StatementNote } from './pipeline.js';
import { raiseStatement, type GateVerdict, type StatementGate } from './proxy-gate.js';
import type { ProtocolSession } from '../session/protocol-session.js';
import type { Verdict } from '../session/types.js';
import { setStatement } from './startup-params.js';
import { bindValueCut, fingerprintWithValues, SHOWN_CHARS, shownBindValues } from './bind-values.js';
import type { ClientOutbox } from './client-outbox.js';
import { holdNotice } from '../../shared/hold-notice.js';

/** What the flow needs from its session; everything else stays the session's. */
export interface StatementFlowHost {
  readonly tracker: PipelineTracker;
  readonly gate: StatementGate;
  /**
   * The session core: a `review` statement's grant, or its hold for a human (the pending cap,
   * the withdrawal, the approvals the receipt lists), through reviewNow().
   */
  readonly session: Pick<ProtocolSession, 'reviewNow'>;
  /** The session summary's counters, updated in place. */
  readonly counts: { allowed: number; denied: number; held: number };
  /** Output to the client (ordered with the session's own). */
  readonly toClient: Pick<ClientOutbox, 'push' | 'flush'>;
  /** The client connection, paused while too much waits behind a hold. */
  readonly client: Pick<Duplex, 'pause' | 'resume'>;
  /** Queues frames for the server / writes what is queued. */
  send(...frames: Buffer[]): void;
  flushToServer(): void;
  /** The audit store has failed: statements are refused. */
  auditFailed(): boolean;
  /** Text as it may be recorded or shown (masked). */
  auditText(sql: string): string;
  /** How the Bind values of statement `sql` may be shown (masked), by 0-based index. */
  auditValues(sql: string): (literal: string, index: number) => string;
  /** The transaction status of the last ReadyForQuery. */
  transactionStatus(): TransactionStatus;
  relaying(): boolean;
  closed(): boolean;
  /** A statement may change the schema: what was resolved in the catalog may be stale. */
  schemaChanged(): void;
  /** A statement that changes the schema was relayed (schema-changes.ts: others wait for its end). */
  schemaChangeRelayed(): void;
  /** The server confirmed the transaction of this session's schema change ended: every session's cache goes. */
  schemaChangeEnded(): void;
  /** Undefined when no other session of the target has a schema change in flight; else resolves when one ends or after `maxMs`. */
  schemaChangesElsewhere(maxMs: number): Promise<void> | undefined;
  /** Moves on at each schema change that ended on the target. */
  schemaEpoch(): number;
  /** The client sent Terminate. */
  clientTerminated(): void;
  /** Handles a replayed client message as if it had just arrived. */
  redispatch(m: PgMessage): void;
  /** Ends the session with an error the client understands. */
  fatal(err: unknown): void;
  /**
   * Masking: taints the relations `sql` writes when it may store a masked value
   * (written-relations.ts). A promise when that must be analysed first: the statement
   * waits for it, so no read of the copy can come before the taint.
   */
  recordWrites?(sql: string): Promise<void> | 'unsaved' | 'decided' | undefined;
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
  /** Withdraws the approval request (the core's hold). */
  withdraw(why: string, counted: 'now' | 'never'): void;
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
  /** The raise went to the server already (at a Flush): the Sync only ends the batch. */
  sent?: true;
}

/**
 * How long a statement waits for another session's schema change to end (its transaction
 * to commit or roll back) before it is refused: longer than a migration statement takes,
 * short enough that a session idle in such a transaction does not stall the others unseen.
 */
const SCHEMA_WAIT_MS = 30_000;

/** SQLSTATE of any statement sent inside an aborted transaction. */
const IN_FAILED_TRANSACTION = '25P02';

/** What a client may pipeline behind a held statement before we stop reading it. */
const MAX_PENDING_BYTES = 8 * 1024 * 1024;

/** The latest session-state statements a reviewer is shown by text (all of them are in the digest and the audit log). */
const SHOWN_STATE = 32;

export class StatementFlow {
  readonly #h: StatementFlowHost;
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
  /** A schema change was relayed and the server has not confirmed its transaction ended (see afterUnconfirmedSchemaChange). */
  #schemaUnconfirmed = false;
  /** An opaque statement (GateVerdict.opaque) was relayed and the server has not answered it yet (see afterOpaqueCode). */
  #stateUnconfirmed = false;
  /** Since when the message being judged has waited for another session's schema change (performance.now()). */
  #schemaWaitSince: number | undefined;
  /** The target's schema epoch each Parse was judged at: a Bind after a change judges its statement again. */
  readonly #parsedAt = new WeakMap<PreparedStatement, number>();
  /** Refusals in flight, oldest first: the server's raised error is swapped for this frame. */
  #refusals: { code: string; frame: Buffer }[] = [];
  /**
   * The session state a statement runs in, as far as it depends on what this session sent:
   * every statement that may change it (SET, RESET, SET ROLE, DISCARD, set_config) that was
   * relayed, in order. `digest` chains their exact texts; `shown` keeps the latest (masked)
   * for reviewers; `count` is how many there were. An approval and its grant are bound to
   * the digest: the same text after a different SET search_path or SET ROLE is another request.
   */
  #state: { digest: string; shown: string[]; count: number } = { digest: '', shown: [], count: 0 };

  constructor(host: StatementFlowHost) {
    this.#h = host;
  }

  // ───────────────────────────── client messages ─────────────────────────────

  /** One client message in the relay phase. */
  frontend(m: PgMessage): void {
    if (this.#hold || this.#waiting) {
      this.#defer(m.frame);
      return;
    }
    const h = this.#h;
    const t = h.tracker;
    if (this.#skipUntilSync !== undefined) {
      // The server would skip these after an error; it never saw the error, so we skip them.
      // The server answers an error at once, Flush or not: the raise goes at the first Flush
      // (so a client waiting on Flush gets the refusal) or with the Sync.
      const r = this.#skipUntilSync;
      if ((m.type === FrontendType.sync || m.type === FrontendType.flush) && r.sent === undefined) {
        t.refusal(r.sql, r.params, r.statement, r.note);
        h.send(parseFrame('', r.raise), bindFrame('', '', []), executeFrame(''));
        r.sent = true;
      }
      if (m.type === FrontendType.sync) {
        this.#skipUntilSync = undefined;
        t.sync();
        h.send(m.frame);
      } else if (m.type === FrontendType.flush) {
        h.send(m.frame);
      } else if (m.type === FrontendType.terminate) {
        h.clientTerminated();
        h.send(m.frame);
      }
      return;
    }
    if (t.discarding && m.type !== FrontendType.sync && m.type !== FrontendType.flush && m.type !== FrontendType.terminate) {
      // The server is skipping to the client's Sync after an error and ignores this message
      // (a Query or FunctionCall too, answering nothing): so does the proxy, without judging
      // it, so the tracker never waits for an answer that will not come.
      return;
    }
    switch (m.type) {
      case FrontendType.query:
        return this.#onQuery(m);
      case FrontendType.parse:
        return this.#onParse(m);
      case FrontendType.bind: {
        const b = decodeBind(m.body);
        const st = t.statement(b.statement);
        if (st === 'wait') return this.#waitForServer(m.frame);
        if (st === 'unknown') return this.#refuseUnknown('Bind', 'prepared statement', b.statement, b.paramCount);
        // Bind plans the statement (and folds IMMUTABLE calls): after a schema change since its
        // Parse was judged, it may run other code (a replaced function, view) than was judged.
        if (this.#parsedAt.get(st) !== h.schemaEpoch()) {
          const verdict = this.#judge(m.frame, st.sql, st.declaredTypes);
          if (!verdict) return;
          if (verdict.runsCode) return this.#refuseParse(verdict, st.sql, st.name);
          this.#parsedAt.set(st, h.schemaEpoch());
        }
        // Its values are kept (a copy) only when there are any: an approval is bound to them.
        t.bind(b.portal, st, b.paramCount, b.resultFormats, b.paramCount > 0 ? Buffer.from(m.body) : undefined);
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
        h.clientTerminated();
        break;
      default:
        break;
    }
    h.send(m.frame);
  }

  /**
   * The gate's verdict on `sql`, or undefined when the message must wait first (for the
   * server to confirm a name it EXECUTEs, or for the catalog): it is then deferred and
   * judged again later.
   */
  #judge(frame: Buffer, sql: string, paramTypes?: readonly number[]): GateVerdict | undefined {
    const h = this.#h;
    const prepared = this.#executed(sql);
    const portals = this.#fetched(sql);
    if (prepared === 'wait' || portals === 'wait') {
      this.#waitForServer(frame);
      return undefined;
    }
    const lookup = h.gate.prepare(sql, prepared, portals, paramTypes);
    if (lookup) {
      this.#waitForLookup(frame, lookup);
      return undefined;
    }
    const verdict = h.gate.judge(sql, prepared, portals, paramTypes);
    if (verdict.ddl) h.schemaChanged();
    const judged = this.#afterSchemaChangesElsewhere(frame, this.#unconfirmed(verdict));
    if (!judged) return undefined;
    if (judged.effect !== 'deny') {
      const recording = h.recordWrites?.(sql);
      if (recording === 'unsaved') {
        const reason =
          'the relations this statement writes may hold copies of masked values, and the broker could not save that where it survives (its state dir, or the store several brokers share): refused, so no copy is ever read unmasked; try again, or ask the operator to check the broker\'s log';
        return { ...judged, effect: 'deny', rule: null, reason };
      }
      if (recording === 'decided') {
        const reason =
          'a masked column decides how many rows this statement writes (a FROM function sized by it, a condition linking it to another column, LIMIT over it), and that count would stay readable in the table: refused; write rows chosen by clean columns or constants, or read the value masked with SELECT';
        return { ...judged, effect: 'deny', rule: null, reason };
      }
      if (recording) {
        this.#waitForLookup(frame, recording);
        return undefined;
      }
    }
    return judged;
  }

  /**
   * The verdict, or undefined when the message must wait (deferred, judged again) for
   * another session's schema change in flight to end (schema-changes.ts); refused after
   * SCHEMA_WAIT_MS. Transaction control never waits: this session may hold the lock the
   * change is waiting for.
   */
  #afterSchemaChangesElsewhere<V extends GateVerdict>(frame: Buffer, v: V): V | undefined {
    if (v.effect !== 'deny' && !onlyTransactionControl(v)) {
      const elsewhere = this.#h.schemaChangesElsewhere(SCHEMA_WAIT_MS);
      if (elsewhere) {
        const since = (this.#schemaWaitSince ??= performance.now());
        if (performance.now() - since < SCHEMA_WAIT_MS) {
          this.#waitForLookup(frame, elsewhere);
          return undefined;
        }
        this.#schemaWaitSince = undefined;
        return { ...v, effect: 'deny', rule: null, reason: afterSchemaWait(), runsCode: true };
      }
    }
    this.#schemaWaitSince = undefined;
    return v;
  }

  /** The verdict, refused while an earlier statement's effects on the schema or the session are not confirmed. */
  #unconfirmed<V extends GateVerdict>(v: V): V {
    if (this.#schemaUnconfirmed) return { ...v, ...afterUnconfirmedSchemaChange(v) };
    if (this.#stateUnconfirmed) return { ...v, ...afterOpaqueCode(v) };
    return v;
  }

  #onQuery(m: PgMessage): void {
    const h = this.#h;
    const t = h.tracker;
    if (h.auditFailed()) {
      this.#refuseSimple();
      return;
    }
    const sql = decodeQuery(m.body);
    const verdict = this.#judge(m.frame, sql);
    if (!verdict) return;
    if (verdict.effect === 'allow') {
      h.counts.allowed++;
      t.query(sql, noteOf(verdict), verdict.changes);
      this.#stateChange(verdict, sql);
      h.send(m.frame);
      return;
    }
    if (verdict.effect === 'review') return this.#review('simple', m.frame, sql, undefined, verdict);
    h.counts.denied++;
    t.query(sql, noteOf(verdict));
    h.send(this.#refusal(SqlState.insufficientPrivilege, `agentgate: ${verdict.reason}`, denyHint(verdict)));
  }

  /**
   * A Parse is judged before the server sees it: parse analysis runs code (the input of a
   * composite or array literal checks its domain members), Bind plans the statement (and
   * folds calls of IMMUTABLE functions) and runs the declared parameter types' input, all
   * before Execute. A statement whose verdict is not allow and that runs code the policy
   * does not allow (or that does not parse) is refused here, with its batch; any other is
   * forwarded and judged at Execute, where it is refused or held (a DELETE a policy denies
   * may still be prepared: preparing it runs nothing).
   */
  #onParse(m: PgMessage): void {
    const h = this.#h;
    const p = decodeParse(m.body);
    const verdict = this.#judge(m.frame, p.sql, p.paramTypes);
    if (!verdict) return;
    if (verdict.runsCode) return this.#refuseParse(verdict, p.sql, p.statement);
    this.#parsedAt.set(h.tracker.parse(p.statement, p.sql, p.paramTypes.length, p.paramTypes), h.schemaEpoch());
    h.send(m.frame);
  }

  /** A Parse (or a Bind judged again) whose statement runs code it may not: refused with its batch. */
  #refuseParse(verdict: GateVerdict, sql: string, statement: string): void {
    this.#h.counts.denied++;
    const reason =
      verdict.effect === 'deny'
        ? verdict.reason
        : `${verdict.reason}: it runs code with side effects, which parsing and planning may run before an approval (send it as a simple Query to have it held)`;
    const note = verdict.effect === 'deny' ? noteOf(verdict) : { ...noteOf(verdict), effect: 'deny' as const, reason };
    this.#skipUntilSync = {
      sql,
      params: 0,
      statement,
      note,
      raise: this.#refusalSql(SqlState.insufficientPrivilege, `agentgate: ${reason}`, denyHint(verdict)),
    };
  }

  #onExecute(m: PgMessage): void {
    const h = this.#h;
    const t = h.tracker;
    if (h.auditFailed()) throw auditUnavailable();
    const name = decodeExecute(m.body).portal;
    const portal = t.portal(name);
    if (portal === 'wait') return this.#waitForServer(m.frame);
    if (portal === 'unknown') return this.#refuseUnknown('Execute', 'portal', name, 0);
    const sql = portal.statement.sql;
    const verdict = this.#judge(m.frame, sql);
    if (!verdict) return;
    if (verdict.effect === 'allow') {
      h.counts.allowed++;
      t.execute(portal, noteOf(verdict));
      this.#stateChange(verdict, sql);
      h.send(m.frame);
      return;
    }
    if (verdict.effect === 'review') return this.#review('execute', m.frame, sql, portal, verdict);
    h.counts.denied++;
    this.#skipUntilSync = {
      sql,
      params: portal.params,
      statement: portal.statement.name,
      note: noteOf(verdict),
      raise: this.#refusalSql(SqlState.insufficientPrivilege, `agentgate: ${verdict.reason}`, denyHint(verdict)),
    };
  }

  /** The prepared statements `sql` EXECUTEs (see #textsOf). */
  #executed(sql: string): ReadonlyMap<string, string | undefined> | undefined | 'wait' {
    return this.#textsOf(this.#h.gate.executes(sql), (name) => this.#h.tracker.statement(name));
  }

  /** The portals `sql` FETCHes from or MOVEs in (see #textsOf). */
  #fetched(sql: string): ReadonlyMap<string, string | undefined> | undefined | 'wait' {
    return this.#textsOf(this.#h.gate.fetches(sql), (name) => {
      const p = this.#h.tracker.portal(name);
      return typeof p === 'string' ? p : p.statement;
    });
  }

  /**
   * Each name with the text it runs, as the tracker has it (undefined when the name does not
   * exist); `wait` when an unconfirmed earlier batch may change one.
   */
  #textsOf(names: readonly string[], find: (name: string) => 'wait' | 'unknown' | { sql: string }): ReadonlyMap<string, string | undefined> | undefined | 'wait' {
    if (names.length === 0) return undefined;
    const out = new Map<string, string | undefined>();
    for (const name of names) {
      const found = find(name);
      if (found === 'wait') return 'wait';
      out.set(name, found === 'unknown' ? undefined : found.sql);
    }
    return out;
  }

  /** A FunctionCall is judged like the statement `SELECT f(…)`, with the function resolved by OID. */
  #onFunctionCall(m: PgMessage): void {
    const h = this.#h;
    if (h.auditFailed()) throw auditUnavailable();
    const call = decodeFunctionCall(m.body);
    const lookup = h.gate.prepareFunctionCall(call.oid);
    if (lookup) return this.#waitForLookup(m.frame, lookup);
    const verdict = this.#afterSchemaChangesElsewhere(m.frame, this.#unconfirmed(h.gate.judgeFunctionCall(call.oid, call.argCount)));
    if (!verdict) return;
    const t = h.tracker;
    if (verdict.effect === 'allow') {
      h.counts.allowed++;
      t.functionCall(verdict.label, call.argCount, noteOf(verdict), verdict.builtin);
      this.#stateChange(verdict, verdict.label);
      h.send(m.frame);
      return;
    }
    // No approvals for the fast path: a call that needs review is refused with the reason.
    h.counts.denied++;
    const reason = verdict.effect === 'review' ? `${verdict.reason} (function calls cannot be held for review; run it as a statement)` : verdict.reason;
    t.functionCall(verdict.label, call.argCount, { ...noteOf(verdict), effect: 'deny', reason });
    // A FunctionCall is answered like a simple Query (a result or an error, then ReadyForQuery).
    h.send(this.#refusal(SqlState.insufficientPrivilege, `agentgate: ${reason}`, denyHint(verdict)));
  }

  /**
   * A Bind, Describe or Execute naming a statement or portal that does not exist as far as
   * the server has confirmed: refused (the batch fails at its Sync), never forwarded.
   */
  #refuseUnknown(message: string, what: string, name: string, params: number): void {
    this.#h.counts.denied++;
    const reason = `${message} names ${what} "${name}", which does not exist (as far as the server has confirmed)`;
    this.#skipUntilSync = {
      sql: '',
      params,
      statement: name,
      note: { effect: 'deny', rule: null, reason },
      raise: this.#refusalSql(SqlState.protocolViolation, `agentgate: ${reason}`, 'Parse (or Bind) it again; nothing ran'),
    };
  }

  // ───────────────────────────── refusals ─────────────────────────────

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
    const h = this.#h;
    if (h.tracker.busy) throw auditUnavailable();
    h.toClient.push(auditUnavailable(false).toErrorResponse(), readyForQuery(h.transactionStatus()));
    h.toClient.flush();
  }

  /**
   * The server raised an error (`code`) while the pipeline's head was `refused` (from the
   * tracker, read before it took the error): true when the proxy's refusal frame went to
   * the client in place of the server's error, false when the server's error stands.
   * `skipped`: refused statements the server skipped with the error (an earlier message of
   * their batch failed), whose raise never ran: their refusals are dropped, in order, so the
   * next refusal answers with its own message.
   */
  answerRefusal(refused: 'statement' | 'batch' | undefined, code: string, skipped = 0): boolean {
    let answered = false;
    const refusal = this.#refusals[0];
    if (refusal && refused) {
      // Our raise statement failed as intended, or the transaction was already aborted
      // (25P02): either way the refused statement's answer is the refusal. When the
      // refusal's own Parse/Bind failed first, that error stands (and the refused
      // statement itself counts among the skipped).
      this.#refusals.shift();
      if (refused === 'batch') skipped--;
      if (refused === 'statement' && (code === refusal.code || code === IN_FAILED_TRANSACTION)) {
        this.#h.toClient.push(refusal.frame);
        answered = true;
      }
    }
    this.dropRefusals(skipped);
    return answered;
  }

  /** `skipped` refused statements the server skipped: their raises never ran, so their refusals go, oldest first. */
  dropRefusals(skipped: number): void {
    if (skipped > 0) this.#refusals.splice(0, skipped);
  }

  /** The server sent ReadyForQuery (already queued for the client). */
  serverReady(): void {
    // The schema change is committed (or rolled back) and nothing else is outstanding: the
    // catalog connection sees what this session sees again, once what was cached is dropped.
    if (this.#schemaUnconfirmed && this.#h.transactionStatus() === 'I' && !this.#h.tracker.busy) {
      this.#schemaUnconfirmed = false;
      this.#h.schemaChangeEnded();
    }
    // The opaque statement has been answered: whatever it changed the server has reported.
    if (this.#stateUnconfirmed && !this.#h.tracker.busy) this.#stateUnconfirmed = false;
    // A message that waited for this answer can be judged now.
    if (this.#waiting === 'confirm') {
      this.#waiting = undefined;
      this.#releasePending();
    }
  }

  // ───────────────────────────── waits ─────────────────────────────

  /** Queue a client message (a copy) behind a hold or a wait. */
  #defer(frame: Buffer): void {
    this.#pending.push(Buffer.from(frame));
    this.#pendingBytes += frame.length;
    if (this.#pendingBytes > MAX_PENDING_BYTES) this.#h.client.pause();
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
    this.#h.flushToServer();
    // The lookup never rejects, but releasing what waited on it may throw (a malformed message).
    lookup.then(() => {
      if (this.#waiting !== 'lookup' || !this.#h.relaying()) return;
      this.#waiting = undefined;
      this.#releasePending();
    }).catch((err: unknown) => this.#h.fatal(err));
  }

  /** Replays what waited behind a hold or a wait, then lets the client speak again. */
  #releasePending(): void {
    const h = this.#h;
    const frames = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    for (let i = 0; i < frames.length; i++) {
      if (this.#hold || this.#waiting || !h.relaying()) {
        for (const f of frames.slice(i)) {
          this.#pending.push(f);
          this.#pendingBytes += f.length;
        }
        break;
      }
      const frame = frames[i] as Buffer;
      try {
        h.redispatch({ type: frame[0] as number, length: frame.readInt32BE(1), frame, body: frame.subarray(5) });
      } catch (err) {
        h.fatal(err);
        return;
      }
    }
    h.flushToServer();
    h.toClient.flush();
    if (!this.#hold && !this.#waiting && h.relaying()) h.client.resume();
  }

  // ───────────────────────────── holds (review) ─────────────────────────────

  /**
   * A `review` statement, through the session core: a grant that covers it lets it run; else
   * it is held (it and everything behind it wait for the decision), or refused when it cannot
   * be (no approval service, too many pending). An Execute's approval covers the values the
   * reviewer saw, unless the rule approves the shape for any (`any_values`).
   */
  #review(kind: Hold['kind'], frame: Buffer, sql: string, portal: Portal | undefined, verdict: GateVerdict): void {
    const h = this.#h;
    const bindBody = portal?.bindBody;
    // What a reviewer cannot be shown whole cannot be approved: refused, not held.
    const cut = bindBody && verdict.anyValues !== true ? bindValueCut(bindBody) : undefined;
    const unshowable =
      verdict.unshowable ?? (cut !== undefined ? `parameter $${cut} is longer than the ${SHOWN_CHARS} characters a reviewer is shown, so an approval could not cover exactly what runs` : undefined);
    if (unshowable !== undefined) {
      h.counts.denied++;
      const reason = `${verdict.reason}, but ${unshowable}`;
      this.#refuseHeld(kind, sql, portal, { ...verdict, reason }, SqlState.insufficientPrivilege, `agentgate: ${reason}; it was not held and nothing ran`, undefined, 'run it in a form a reviewer can read whole (the rows as INSERT … VALUES, shorter values), or ask the operator');
      return;
    }
    // The approval covers the text, its values, and the session state it runs in.
    const state = this.#state;
    const fingerprint = state.count > 0 ? createHash('sha256').update(`${verdict.fingerprint}\nsession-state:${state.digest}`).digest('hex') : verdict.fingerprint;
    const classification =
      state.count > 0
        ? { ...verdict.classification, session_state: state.count > state.shown.length ? [`(${state.count - state.shown.length} earlier, in the audit log)`, ...state.shown] : [...state.shown] }
        : verdict.classification;
    const v = h.session.reviewNow(
      verdict,
      {
        statement: h.auditText(sql),
        classification,
        fingerprint,
        ...(bindBody ? { values: { fingerprint: fingerprintWithValues(fingerprint, bindBody, portal?.statement.declaredTypes), shown: () => shownBindValues(bindBody, h.auditValues(sql), portal?.statement.declaredTypes) } } : {}),
      },
      { waiting: true },
    );
    if (v.kind === 'allow') {
      // An approval that already covers it (a live grant, or an approved one-shot).
      h.counts.allowed++;
      const note: StatementNote = { ...noteOf(verdict), effect: 'allow', ...(v.decision.approval ? { approval: v.decision.approval } : {}) };
      if (kind === 'simple') h.tracker.query(sql, note, verdict.changes);
      else h.tracker.execute(portal as Portal, note);
      this.#stateChange(verdict, sql);
      h.send(frame);
      return;
    }
    if (v.kind === 'deny') {
      // Could not be held: counted as held (and, by the core, denied), refused saying why.
      h.counts.held++;
      if (v.code === 'approvals_unavailable') throw v.cause;
      if (v.code === 'too_many_pending') {
        this.#refuseHeld(kind, sql, portal, { ...verdict, reason: v.message }, SqlState.insufficientPrivilege, `agentgate: ${v.message}`, undefined, v.hint);
        return;
      }
      // Nobody can approve here: refuse rather than run.
      const r: GateVerdict = { ...verdict, reason: `${verdict.reason}, and this broker has no approval service` };
      this.#refuseHeld(kind, sql, portal, r, SqlState.insufficientPrivilege, `agentgate: ${r.reason}`);
      return;
    }
    const id = v.approval;
    this.#hold = { kind, frame: Buffer.from(frame), sql, portal, verdict, requestId: id, withdraw: v.withdraw };
    // What was relayed before the held statement goes now; nothing after it does. The
    // client is still read (so a disconnect is seen and withdraws the request); what it
    // pipelines meanwhile waits in #pending, up to a cap before reading stops.
    h.flushToServer();
    h.toClient.push(
      noticeResponse({
        severity: 'NOTICE',
        code: '01000',
        message: holdNotice({ id, approvers: v.approvers }),
        detail: `${verdict.reason}; the request expires at ${v.expiresAt}`,
      }),
    );
    h.toClient.flush();
    v.outcome.then(
      (o) => this.#onDecision(id, o),
      (err: unknown) => h.fatal(err),
    );
  }

  /** The held statement's outcome, from the core (which counted it): run it, or refuse it saying why. */
  #onDecision(id: string, o: Verdict): void {
    const h = this.#h;
    if (o.kind === 'deny' && o.code === 'approval_failed') {
      h.fatal(o.cause);
      return;
    }
    const hold = this.#hold;
    if (!hold || hold.requestId !== id || h.closed()) return;
    this.#hold = undefined;
    const t = h.tracker;
    const base = { ...noteOf(hold.verdict), approval: id };
    if (o.kind === 'allow') {
      if (hold.kind === 'simple') t.query(hold.sql, { ...base, effect: 'allow' }, hold.verdict.changes);
      else t.execute(hold.portal as Portal, { ...base, effect: 'allow' });
      this.#stateChange(hold.verdict, hold.sql);
      h.send(hold.frame);
    } else if (o.kind === 'deny' && o.settled?.status === 'denied') {
      const who = o.settled.by ?? 'a reviewer';
      const why = o.settled.reason ?? '';
      this.#refuseHeld(hold.kind, hold.sql, hold.portal, { ...hold.verdict, reason: `denied by ${who}: ${why}` }, SqlState.insufficientPrivilege, `agentgate: ${id} denied by ${who}: ${why}`, id);
    } else {
      // expired (withdrawn only happens once the client is gone)
      const status = o.kind === 'deny' && o.settled ? o.settled.status : 'expired';
      this.#refuseHeld(hold.kind, hold.sql, hold.portal, { ...hold.verdict, reason: `approval ${id} ${status}` }, SqlState.queryCanceled, `agentgate: approval request ${id} ${status === 'expired' ? 'timed out' : status}: nothing ran`, id);
    }
    this.#releasePending();
  }

  /**
   * A relayed statement: one that changes the schema leaves the catalog the gate reads
   * behind until the server confirms its transaction ended (see serverReady); one that may
   * change the session state binds later approvals to it.
   */
  #stateChange(verdict: GateVerdict, sql: string): void {
    if (verdict.ddl) {
      this.#schemaUnconfirmed = true;
      this.#h.schemaChangeRelayed();
    }
    if (verdict.opaque) this.#stateUnconfirmed = true;
    if (verdict.sessionState !== true && verdict.opaque !== true) return;
    this.#recordState(sql, this.#h.auditText(sql));
  }

  /**
   * The settings the session started with (startup parameters, `options=-c …`), each as the
   * `SET` it amounts to: part of the session state from the start, so an approval given in a
   * session without `-c role=…` does not cover the same text in one started with it.
   */
  startupState(settings: readonly (readonly [name: string, value: string])[]): void {
    for (const [name, value] of settings) {
      const sql = setStatement(name, value);
      this.#recordState(`startup:${sql}`, `${this.#h.auditText(sql)} (at connect)`);
    }
  }

  #recordState(text: string, shown: string): void {
    const s = this.#state;
    s.digest = createHash('sha256').update(`${s.digest}\n${text.length}:${text}`).digest('hex');
    s.count++;
    s.shown.push(shown);
    if (s.shown.length > SHOWN_STATE) s.shown.shift();
  }

  /** Refuses a statement that was held: in place of the Query, or of the Sync that ends the Execute's batch. */
  #refuseHeld(kind: Hold['kind'], sql: string, portal: Portal | undefined, verdict: GateVerdict, code: SqlState, message: string, approval?: string, hint?: string): void {
    const note: StatementNote = { ...noteOf(verdict), effect: 'deny', ...(approval ? { approval } : {}) };
    if (kind === 'simple') {
      this.#h.tracker.query(sql, note);
      this.#h.send(this.#refusal(code, message, hint));
    } else {
      this.#skipUntilSync = { sql, params: portal?.params ?? 0, statement: portal?.statement.name, note, raise: this.#refusalSql(code, message, hint) };
    }
  }

  /** A statement waits for approval or for the server's answer to an earlier one (the session is not idle). */
  get holding(): boolean {
    return this.#hold !== undefined || this.#waiting !== undefined;
  }

  /** A held statement is withdrawn when its client cancels it (CancelRequest). */
  cancelHold(): boolean {
    const h = this.#h;
    const hold = this.#hold;
    if (!hold) return false;
    // Answered now: the core counts it denied at once.
    hold.withdraw('the client cancelled the statement', 'now');
    this.#hold = undefined;
    this.#refuseHeld(hold.kind, hold.sql, hold.portal, { ...hold.verdict, reason: 'cancelled while held' }, SqlState.queryCanceled, 'canceling statement due to user request (it was held for approval and did not run)', hold.requestId);
    this.#releasePending();
    return true;
  }

  /** The session is closing: a held statement's request is withdrawn. */
  sessionClosed(): void {
    const hold = this.#hold;
    if (!hold) return;
    // Nobody is answered: not counted.
    hold.withdraw('the client disconnected while the statement was held', 'never');
    this.#hold = undefined;
  }
}

/**
 * A verdict given while a schema change this session ran is not confirmed committed: the
 * catalog connection the gate resolves names in sees only committed schema (and the change
 * may not even have run yet, earlier in the pipeline), so only transaction control, which
 * runs no user code, may go ahead. Refused with runsCode: even a Parse may run changed code.
 */
function afterUnconfirmedSchemaChange(v: GateVerdict): GateVerdict {
  if (v.effect === 'deny' || onlyTransactionControl(v)) return v;
  const reason =
    'this session changed the schema in a transaction that has not ended (or whose end the server has not confirmed yet), and the gate resolves names in the committed catalog: COMMIT or ROLLBACK first, then run this';
  return { ...v, effect: 'deny', rule: null, reason, runsCode: true };
}

/**
 * A verdict given while an opaque statement is unanswered: that code may change settings the
 * gate depends on (standard_conforming_strings, read-only), which the server reports only with
 * its answer, so nothing but transaction control goes ahead of it.
 */
function afterOpaqueCode(v: GateVerdict): GateVerdict {
  // Not even transaction control: its text too would be read under settings not known yet.
  if (v.effect === 'deny') return v;
  const reason = 'an earlier statement runs code that may change the session\'s settings, and its answer (which reports them) has not arrived: wait for it, then run this';
  return { ...v, effect: 'deny', rule: null, reason, runsCode: true };
}

function afterSchemaWait(): string {
  return `another session changed the schema of this target in a transaction that has not ended for ${SCHEMA_WAIT_MS / 1000} s, and this statement would run against what it changes (judged on the schema as it was): try again once that transaction is committed or rolled back`;
}

function onlyTransactionControl(v: GateVerdict): boolean {
  const kinds = v.classification['kinds'];
  return Array.isArray(kinds) && kinds.length > 0 && kinds.every((k) => k === 'transaction');
}

function noteOf(v: GateVerdict): StatementNote {
  return { effect: v.effect, rule: v.rule, ...(v.effect !== 'allow' ? { reason: v.reason } : {}), classification: v.classification };
}

function denyHint(v: GateVerdict): string {
  return v.rule ? `policy ${v.policy ?? ''} rule ${v.rule}; ask the broker's operator if you need it` : 'no rule allows this; ask the broker\'s operator if you need it';
}
