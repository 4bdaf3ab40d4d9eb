/**
 * The Kubernetes proxy: each tunnel channel carries one local kubectl connection, parsed
 * by node:http as a server (the channel stream is handed to the server as a connection),
 * and every request on it goes through the same steps:
 *
 *   authenticate (Bearer = the session secret, checked against the tunnel's verifier)
 *   → derive what the API server would (request-info.ts) → decide (the session core,
 *     session/protocol-session.ts, asking k8s-rules.ts)
 *   → deny: 403 Status │ review (the core): an approval grant, else a held request and 403 Status
 *   → allow: forward upstream with the target's credentials, streaming the response,
 *     masking Secret/ConfigMap/Pod values on the way (watch: event by event)
 *   → one `k8s.request` audit event, durable before the response completes.
 *
 * Upgrades (exec, attach, port-forward over SPDY or WebSocket) are decided the same way
 * and, when allowed, piped as raw bytes to the API server. Their `k8s.request` event is
 * written before the upstream sees the request (the command runs as soon as it does); a
 * `k8s.stream.end` event records the stream's end, bytes and duration.
 *
 * The session's record, counts, approvals, session.start/session.end, summary and lease
 * are the core's; this file renders its verdicts as Kubernetes Status responses.
 *
 * The audit store failing closes the door: requests are answered 503 and nothing is
 * forwarded.
 */
import { createHash } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { pipeline, Transform, type Duplex, type Readable, type TransformCallback } from 'node:stream';

import type { BrokerConfig, KubernetesTargetConfig } from '../config/types.js';
import type { AuditStore, NewAuditEvent } from '../audit/store.js';
import type { AuditActor, AuditDecision, JsonValue } from '../../shared/audit-hash.js';
import type { Identity } from '../identity/types.js';
import type { Logger } from '../log.js';
import type { ApprovalService } from '../approvals/types.js';
import type { ScramVerifier } from '../../shared/session-secret.js';
import type { SessionSummary } from '../session-summary.js';
import { REASON_HEADER, decodeReasonHeader } from '../../shared/reason.js';
import { parseRequestInfo, describeRequest, qualifiedResource, hasApiVerb, isDiscoveryRead, RequestPathError, CONNECT_VERBS, type K8sRequestInfo } from './request-info.js';
import { failureStatus, rawStatusResponse, sendStatus, type K8sStatus, type StatusDetails } from './status.js';
import { BearerCheck, bearerToken } from './session-auth.js';
import { clientCutAnswer, clientHeaders, impersonationHeaders, readableCharset, textualBody, unreadableCoding, upstreamHeaders, type HeaderMask } from './headers.js';
import { pipeUpgrade, type UpgradeAnswerMask, type UpgradeOutput, type UpgradeTap } from './upgrade-pipe.js';
import { maskRemoteCommand, MASKABLE_EXEC_PROTOCOLS, unmaskableUpgrade } from './exec-mask.js';
import { LazyCast } from '../recording/lazy-cast.js';
import { k8sChannelTap, RECORDED_WS_PROTOCOLS } from './remote-command.js';
import { recordingName, recordingSettings, recordingsDir } from '../recording/store.js';
import type { SessionRecording } from '../session-summary.js';
import { readStream } from './read-stream.js';
import { maskedKind, ObjectMasker } from './mask.js';
import { scanTextStream } from '../masking/text-stream.js';
import { createValueMasker, type ValueMasker } from './value-mask.js';
import { KnownSecrets, MAX_VALUES, rememberingMasker } from './known-secrets.js';
import { SecretPrimer } from './secret-primer.js';
import { rewriteJsonLines } from './watch-stream.js';
import { JSON_PATCH, jsonPatchRefusal, mediaType } from './json-patch.js';
import { shownBody } from './held-body.js';
import { writeBackRefusal } from './write-back.js';
import { BOOTSTRAP_TOKEN_TYPE, SERVICE_ACCOUNT_TOKEN_TYPE, secretWrite, type SecretWrite } from './credential-secret.js';
import { K8sUpstreams, type K8sUpstream } from './upstream.js';
import type { SessionLease } from '../live-sessions.js';
import { IDLE_TIMEOUT_REASON, IdleTimer } from '../../shared/connection-timers.js';
import { ProtocolSession } from '../session/protocol-session.js';

/** What the proxy reports when a connection ends: always with its deciding policy. */
export type K8sSessionSummary = SessionSummary & { protocol: 'kubernetes'; policy: string | null };

export interface K8sProxyOptions {
  config: BrokerConfig;
  /** The broker's key for the `hash` masking style (loadOrCreateMaskingKey, once per broker). */
  maskingKey: Buffer;
  audit: AuditStore;
  /** Where `review` requests are held; without it they are refused. */
  approvals?: ApprovalService | undefined;
  logger: Logger;
  /** Largest response body buffered to be masked (lists are paged by kubectl). Default 64 MiB. */
  maxMaskedBody?: number;
  /** Largest request body held for review (the API server's own limit is 3 MiB). Default 3 MiB. */
  maxReviewBody?: number;
}

export interface K8sChannel {
  stream: Duplex;
  target: KubernetesTargetConfig;
  identity: Identity;
  actor: AuditActor;
  /** The session secret's verifier from the tunnel; undefined when the tunnel sent none. */
  verifier: ScramVerifier | undefined;
  connectSession: string | undefined;
  /** Extra detail for session.start (tunnel id, client address). */
  origin: Record<string, string | number>;
  onEnd?: (summary: K8sSessionSummary) => void;
  /** The connection's hold on its tunnel's credential (live-sessions.ts): refused, or ended with a reason. */
  lease?: SessionLease;
  /** The reason the `connect`/`run`/`mcp` session gave; a request's `x-agentgate-reason` header replaces it for that request. */
  reason?: string;
}

const DEFAULT_MAX_MASKED_BODY = 64 * 1024 * 1024;
const DEFAULT_MAX_REVIEW_BODY = 3 * 1024 * 1024;

export class K8sProxy {
  readonly #o: K8sProxyOptions;
  readonly #server: http.Server;
  readonly #conns = new WeakMap<object, K8sConnection>();
  readonly #live = new Set<K8sConnection>();
  readonly upstreams = new K8sUpstreams();
  /** Per target: the Secret values its responses carried (known-secrets.ts). */
  readonly #known = new Map<string, KnownSecrets>();
  /** Per target: lists Secrets before a masked request is forwarded (secret-primer.ts). */
  readonly #primers = new Map<string, SecretPrimer>();

  constructor(options: K8sProxyOptions) {
    this.#o = options;
    // One parser per connection, sharing this server's handlers; it never listens itself.
    this.#server = http.createServer({ keepAliveTimeout: 30_000 });
    this.#server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const conn = this.#conns.get(req.socket);
      if (!conn) {
        res.destroy();
        return;
      }
      conn.handle(req, res);
    });
    this.#server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const conn = this.#conns.get(req.socket) ?? this.#conns.get(socket);
      if (!conn) {
        socket.destroy();
        return;
      }
      conn.handleUpgrade(req, socket, head);
    });
    this.#server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (!socket.writable || err.code === 'ECONNRESET') {
        socket.destroy();
        return;
      }
      socket.end(rawStatusResponse(failureStatus(400, 'BadRequest', 'agentgate: malformed HTTP request')));
    });
  }

  #knownOf(target: string): KnownSecrets {
    let known = this.#known.get(target);
    if (!known) this.#known.set(target, (known = new KnownSecrets()));
    return known;
  }

  #primerOf(target: string): SecretPrimer {
    let p = this.#primers.get(target);
    if (!p) this.#primers.set(target, (p = new SecretPrimer(this.#knownOf(target), this.#o.logger.child({ component: 'kubernetes', target }))));
    return p;
  }

  /** Live connections. */
  get active(): number {
    return this.#live.size;
  }

  serve(channel: K8sChannel): void {
    let masker: ValueMasker | undefined;
    try {
      masker = createValueMasker(this.#o.config, channel.identity, channel.target.name, this.#o.maskingKey);
      // Every session of a target masks the Secret values any response of it carried.
      if (masker) masker = rememberingMasker(masker, this.#knownOf(channel.target.name));
    } catch (err) {
      // Without its masking rules a connection could show what they hide: refuse it.
      this.#o.logger.error('kubernetes masking is not usable; connection refused', { target: channel.target.name, error: err });
      channel.stream.destroy();
      return;
    }
    const primer = masker ? this.#primerOf(channel.target.name) : undefined;
    const conn = new K8sConnection(channel, this.#o, this.upstreams, masker, () => this.#live.delete(conn), primer);
    this.#live.add(conn);
    this.#conns.set(channel.stream, conn);
    this.#server.emit('connection', channel.stream);
  }

  async close(): Promise<void> {
    for (const c of this.#live) c.destroy();
    for (const p of this.#primers.values()) p.close();
    await this.upstreams.close();
  }
}

/** How a streamed response is rewritten: JSON documents (a watch) or scanned text (logs). */
type StreamRewrite = { objects: ObjectMasker } | { text: Transform; masked: () => number };

type Counts = { statements: number; allowed: number; denied: number; held: number; errors: number; bytes: number; masked: number };

/** What one request's audit event says, filled in as the request proceeds. */
interface RequestRecord {
  /** The connection's request number: the intent and the outcome events both carry it. */
  id: number;
  method: string;
  url: string;
  info: K8sRequestInfo | undefined;
  decision: AuditDecision | null;
  startedAt: number;
  extra: Record<string, JsonValue>;
  /** The reason on record for this request (masked): its own header's, else the session's. */
  reason?: string;
}

class K8sConnection {
  /** The session core: record, counts, approvals, session.start/session.end, summary, lease. */
  readonly #session: ProtocolSession;
  #nextRequest = 1;
  readonly #ch: K8sChannel;
  readonly #o: K8sProxyOptions;
  readonly #upstreams: K8sUpstreams;
  readonly #bearer: BearerCheck;
  readonly #masker: ValueMasker | undefined;
  readonly #primer: SecretPrimer | undefined;
  readonly #onGone: () => void;
  readonly #pending = new Set<Promise<unknown>>();
  readonly #upgraded = new Set<Duplex>();
  /** Finished recordings, for the receipt's subjects. */
  readonly #recordings: SessionRecording[] = [];
  #ended = false;
  /** Set when the target's idle_timeout ended the connection. */
  #idleEnded = false;
  /** The target's idle_timeout: no request in flight and none arriving (watches and exec streams are in flight). */
  readonly #idle: IdleTimer | undefined;

  constructor(ch: K8sChannel, o: K8sProxyOptions, upstreams: K8sUpstreams, masker: ValueMasker | undefined, onGone: () => void, primer?: SecretPrimer) {
    this.#primer = primer;
    this.#ch = ch;
    this.#o = o;
    this.#upstreams = upstreams;
    this.#onGone = onGone;
    this.#bearer = new BearerCheck(ch.verifier);
    this.#masker = masker;
    this.#session = new ProtocolSession({
      protocol: 'kubernetes',
      idPrefix: 'k8s',
      identity: ch.identity,
      actor: ch.actor,
      target: ch.target.name,
      config: o.config,
      audit: o.audit,
      approvals: o.approvals,
      logger: o.logger,
      connectSession: ch.connectSession,
      origin: { upstream: { server: ch.target.server }, ...ch.origin },
      ...(ch.reason !== undefined ? { reason: masker?.field(ch.reason, 'reason')?.value ?? ch.reason } : {}),
      lease: ch.lease,
      onEnd: ch.onEnd ? (summary) => ch.onEnd?.({ ...summary, protocol: 'kubernetes', policy: summary.policy ?? null, recordings: [...this.#recordings] }) : undefined,
    });
    const idleMs = ch.target.idleTimeoutMs;
    if (idleMs !== undefined) {
      this.#idle = new IdleTimer(idleMs, () => {
        this.#idleEnded = true;
        this.destroy();
      }, () => this.#pending.size > 0 || this.#upgraded.size > 0);
    }
    ch.stream.once('close', () => {
      this.#end().catch((err: unknown) => this.#log.error('could not end the kubernetes session', { session: this.id, error: err }));
    });
    // node:http attaches its own error handling; this only keeps a reset from being unhandled.
    ch.stream.on('error', () => {});
    this.#session.takeLease(() => {
      // In-flight responses are cut; kubectl's next connection is answered 401 by the lease.
      this.destroy();
    });
  }

  get id(): string {
    return this.#session.id;
  }

  /** The session's counts (the core's record). */
  get #counts(): Counts {
    return this.#session.counts;
  }

  destroy(): void {
    this.#ch.stream.destroy();
    for (const s of this.#upgraded) s.destroy();
  }

  get #log(): Logger {
    return this.#o.logger;
  }

  // ─────────────────────────────── requests ───────────────────────────────

  handle(req: IncomingMessage, res: ServerResponse): void {
    this.#idle?.touch();
    const rec: RequestRecord = { id: this.#nextRequest++, method: req.method ?? 'GET', url: req.url ?? '/', info: undefined, decision: null, startedAt: performance.now(), extra: {} };
    this.#track(
      this.#handle(req, res, rec).catch((err: unknown) => {
        this.#log.error('kubernetes request failed', { session: this.id, error: err });
        if (!res.headersSent) this.#refuseNow(res, failureStatus(500, 'InternalError', 'agentgate: the broker failed to handle this request'));
        else res.destroy();
      }),
    );
  }

  async #handle(req: IncomingMessage, res: ServerResponse, rec: RequestRecord): Promise<void> {
    const gate = await this.#gate(req, rec);
    if (gate.kind === 'refuse') {
      await this.#refuse(res, rec, gate.status);
      return;
    }
    this.#counts.allowed++;
    await this.#forward(req, res, rec, gate.info, gate.body);
  }

  /**
   * Everything before the request may go upstream: authentication, request info, policy,
   * approvals. Shared by plain and upgrade requests.
   */
  async #gate(req: IncomingMessage, rec: RequestRecord, upgrade = false): Promise<{ kind: 'refuse'; status: K8sStatus } | { kind: 'forward'; info: K8sRequestInfo; body: Buffer | undefined }> {
    const refuse = (status: K8sStatus): { kind: 'refuse'; status: K8sStatus } => ({ kind: 'refuse', status });
    const auth = await this.#bearer.check(bearerToken(req.headers.authorization) ?? '');
    if (auth !== 'ok') {
      rec.extra['auth'] = auth;
      const message =
        auth === 'no-verifier'
          ? 'agentgate: this tunnel carries no session secret; connect through `agentgate connect` or `agentgate run`'
          : auth === 'unusable-verifier'
            ? 'agentgate: the session secret verifier uses more iterations than the broker accepts'
            : 'agentgate: the bearer token is not this session\'s secret; use the kubeconfig that agentgate connect wrote';
      return refuse(failureStatus(401, 'Unauthorized', message));
    }
    const ended = this.#ch.lease?.refusal;
    if (ended) {
      rec.extra['session_ended'] = ended.reason;
      return refuse(failureStatus(401, 'Unauthorized', `${ended.message}; ${ended.hint}`));
    }
    const reason = decodeReasonHeader(req.headers[REASON_HEADER]) ?? this.#ch.reason;
    if (reason !== undefined) rec.reason = this.#shownText(reason);
    let info: K8sRequestInfo;
    try {
      info = parseRequestInfo(rec.method, rec.url);
    } catch (err) {
      if (err instanceof RequestPathError) return refuse(failureStatus(400, 'BadRequest', `agentgate: ${err.message}`));
      throw err;
    }
    rec.info = info;
    if (this.#o.audit.failed) return refuse(auditUnavailable());

    // Unknown means no: a method the API server maps to no verb is not classified, so no
    // rule may let it through (one without `verbs` would match the empty verb).
    if (!hasApiVerb(rec.method)) {
      const reason = `the method ${rec.method.slice(0, 20)} is not one the Kubernetes API maps to a verb (GET, HEAD, POST, PUT, PATCH, DELETE)`;
      rec.decision = { effect: 'deny', rule: null, reason };
      this.#counts.denied++;
      return refuse(failureStatus(405, 'MethodNotAllowed', `agentgate: ${reason}; nothing was sent to the cluster`));
    }

    // An upgraded connection is a raw byte pipe nothing masks: only the connect
    // subresources (exec, attach, portforward, proxy) may have one. Anything else — a watch
    // over WebSocket, a plain get with an Upgrade header — is refused, never relayed raw.
    if (upgrade && !(info.kind === 'resource' && CONNECT_VERBS.has(info.verb))) {
      const reason = `only exec, attach, portforward and proxy may upgrade the connection; ${describeRequest(info)} over ${String(req.headers.upgrade ?? 'an upgrade').slice(0, 40)} is not relayed (send it as a plain HTTP request, as kubectl does)`;
      rec.decision = { effect: 'deny', rule: null, reason };
      this.#counts.denied++;
      return refuse(failureStatus(400, 'BadRequest', `agentgate: ${reason}`));
    }

    const impersonating = impersonationHeaders(req.headers);
    if (impersonating.length > 0) {
      const reason = `impersonation (${impersonating.join(', ')}) is not allowed through agentgate`;
      rec.decision = { effect: 'deny', rule: null, reason };
      this.#counts.denied++;
      return refuse(forbidden(info, reason));
    }

    // This session reads Secrets masked: an update built from what it read (kubectl edit,
    // apply of a fetched manifest) would store the masks in the cluster.
    if (this.#masker && info.kind === 'resource' && info.group === '' && info.resource === 'secrets' && info.subresource === '' && (info.verb === 'update' || info.verb === 'patch')) {
      const reason = 'this session sees Secret values masked, so it may not update or patch Secrets (the masks would be written back)';
      rec.decision = { effect: 'deny', rule: null, reason };
      this.#counts.denied++;
      return refuse(forbidden(info, `${reason}; use an identity whose policy has masking: off`));
    }

    // The reason names the request (its path, its name): through the detectors like them.
    const decided = this.#session.decide({ protocol: 'k8s', info }, rec.reason);
    const decision = { ...decided, reason: this.#shown(decided.reason) };
    rec.decision = { effect: decision.effect, rule: decision.rule };
    if (decision.effect === 'deny') {
      rec.decision.reason = decision.reason;
      this.#counts.denied++;
      return refuse(forbidden(info, decision.reason));
    }

    // A masked session's streams must be readable to be masked: exec and attach over the
    // WebSocket remote-command protocol are (exec-mask.ts); SPDY, port-forward and proxy are not.
    // What the request asked for is named in the reason: through the detectors like its path.
    const unreadable = upgrade && this.#masker ? this.#shown(unmaskableUpgrade(info, req.headers) ?? '') || undefined : undefined;
    if (unreadable !== undefined) {
      rec.decision = { effect: 'deny', rule: null, reason: unreadable };
      this.#counts.denied++;
      return refuse(forbidden(info, `${unreadable}; use an identity whose policy has masking: off for this target`));
    }

    // Masks cannot follow a value the API server itself moves (json-patch.ts): a JSON Patch
    // is read whole and judged before it goes anywhere, allowed or held.
    let body: Buffer | undefined;
    const contentType = String(req.headers['content-type'] ?? '');
    if (this.#masker && rec.method.toUpperCase() === 'PATCH' && mediaType(contentType) === JSON_PATCH) {
      const max = this.#o.maxReviewBody ?? DEFAULT_MAX_REVIEW_BODY;
      let why: string | undefined;
      let tooLarge = false;
      if (upgrade) {
        // An upgrade's body belongs to its stream and is never read here: refused whole.
        why = 'a JSON Patch cannot ride a connection upgrade';
      } else {
        body = await readBody(req, max);
        tooLarge = body === undefined;
        why = body === undefined ? `this JSON Patch body is larger than the ${max} bytes agentgate reads to check it` : jsonPatchRefusal(body);
      }
      if (why !== undefined) {
        rec.decision = { effect: 'deny', rule: null, reason: why };
        this.#counts.denied++;
        if (tooLarge) return refuse(failureStatus(413, 'RequestEntityTooLarge', `agentgate: ${why}; split it into smaller patches`));
        return refuse(forbidden(info, `${why}; send the values themselves (add/replace), or a merge patch`));
      }
    }
    // What this session read is masked: a write carrying that text (an applied or replaced
    // manifest it fetched) would store the masks in place of the values (write-back.ts).
    const writes = rec.method.toUpperCase();
    if (this.#masker && !upgrade && (writes === 'POST' || writes === 'PUT' || writes === 'PATCH') && requestHasBody(req)) {
      const max = this.#o.maxReviewBody ?? DEFAULT_MAX_REVIEW_BODY;
      body ??= await readBody(req, max);
      const why = body === undefined ? `this request body is larger than the ${max} bytes agentgate reads to check it for masked values` : writeBackRefusal(body, contentType, firstHeader(req.headers['content-encoding']));
      if (why !== undefined) {
        rec.decision = { effect: 'deny', rule: null, reason: why };
        this.#counts.denied++;
        if (body === undefined) return refuse(failureStatus(413, 'RequestEntityTooLarge', `agentgate: ${why}`));
        return refuse(forbidden(info, why));
      }
    }
    // A Secret of type service-account-token is a token the controller mints: such a write
    // goes only where the policy would allow the TokenRequest itself (credential-secret.ts).
    if (!upgrade && info.kind === 'resource' && info.group === '' && info.resource === 'secrets' && info.subresource === '' && (writes === 'POST' || writes === 'PUT' || writes === 'PATCH') && requestHasBody(req)) {
      const max = this.#o.maxReviewBody ?? DEFAULT_MAX_REVIEW_BODY;
      body ??= await readBody(req, max);
      const write: SecretWrite = body === undefined ? { kind: 'unreadable', why: `this Secret write's body is larger than the ${max} bytes agentgate reads to check whether it makes a service-account token` } : secretWrite(body, contentType, firstHeader(req.headers['content-encoding']));
      let why: string | undefined;
      if (write.kind === 'unreadable') why = write.why;
      else if (write.kind === 'token') {
        const token: K8sRequestInfo = { ...info, verb: 'create', apiVerb: 'create', resource: 'serviceaccounts', subresource: 'token', name: write.serviceAccount };
        const minted = this.#session.decide({ protocol: 'k8s', info: token }, rec.reason);
        if (minted.effect !== 'allow') why = `a Secret of type ${SERVICE_ACCOUNT_TOKEN_TYPE} is a token for the service account it names, and ${this.#shown(minted.reason)}; only a rule that allows create serviceaccounts/token by name may mint one`;
      } else if (write.kind === 'bootstrap') {
        const token: K8sRequestInfo = { ...info, verb: 'create', apiVerb: 'create', resource: 'secrets', subresource: 'bootstrap-token', name: write.name };
        const minted = this.#session.decide({ protocol: 'k8s', info: token }, rec.reason);
        if (minted.effect !== 'allow') why = `a Secret of type ${BOOTSTRAP_TOKEN_TYPE} is a bootstrap token the API server accepts as a credential, and ${this.#shown(minted.reason)}; only a rule that allows create secrets/bootstrap-token by name may make one`;
      }
      if (why !== undefined) {
        rec.decision = { effect: 'deny', rule: null, reason: why };
        this.#counts.denied++;
        if (body === undefined) return refuse(failureStatus(413, 'RequestEntityTooLarge', `agentgate: ${why}`));
        return refuse(forbidden(info, why));
      }
    }
    if (decision.effect === 'allow') return { kind: 'forward', info, body };

    // review (the session core): the same request approved before goes through; else it is
    // held, and kubectl — which does not wait — is told to come back: the re-run finds the approval.
    const method = rec.method.toUpperCase();
    const verdict = await this.#session.review(
      decision,
      {
        statement: `${rec.method} ${this.#shown(info.path)}${this.#shownQuery(rec.url)}`,
        classification: classification(info, (t) => this.#shown(t)),
        ...(rec.reason !== undefined ? { requesterReason: rec.reason } : {}),
        fingerprint: async () => {
          body ??= await readBody(req, this.#o.maxReviewBody ?? DEFAULT_MAX_REVIEW_BODY);
          return body === undefined ? undefined : fingerprint(rec.method, info.path, rec.url, body, contentType);
        },
        // What the approval releases, as the reviewer must see it (a DELETE only when it has options).
        body: () => (body !== undefined && (body.length > 0 || method === 'POST' || method === 'PUT' || method === 'PATCH') ? shownBody(body, contentType, this.#masker, maskedKind(info) ?? '') : undefined),
      },
      { waiting: false },
    );
    rec.decision = verdict.decision;
    if (verdict.kind === 'allow') return { kind: 'forward', info, body };
    if (verdict.kind === 'hold') return refuse(forbidden(info, `approval required: ${verdict.approval} — run: agentgate approve ${verdict.approval}`));
    switch (verdict.code) {
      case 'too_large':
        return refuse(failureStatus(413, 'RequestEntityTooLarge', 'agentgate: the request body is too large to hold for review'));
      case 'too_many_pending':
        return refuse(failureStatus(429, 'TooManyRequests', `agentgate: ${verdict.message}`));
      case 'approvals_unavailable':
        return refuse(failureStatus(503, 'ServiceUnavailable', 'agentgate: this request needs approval, but the approval service is unavailable'));
      default:
        return refuse(forbidden(info, verdict.message));
    }
  }

  /** Record the refusal, then send it (a refusal that cannot be recorded becomes a 503). */
  async #refuse(res: ServerResponse, rec: RequestRecord, status: K8sStatus): Promise<void> {
    this.#refuseNow(res, await this.#recordRefusal(rec, status), rec.info?.kind !== 'resource');
  }

  async #recordRefusal(rec: RequestRecord, status: K8sStatus): Promise<K8sStatus> {
    if (this.#o.audit.failed) return auditUnavailable();
    try {
      await this.#record(rec, status.code, Buffer.byteLength(JSON.stringify(status)), 0);
      return status;
    } catch {
      return auditUnavailable();
    }
  }

  /** `plain` for non-resource requests (discovery): see sendStatus. */
  #refuseNow(res: ServerResponse, status: K8sStatus, plain = false): void {
    this.#count(status.code, sendStatus(res, status, plain), 0);
  }

  #count(status: number, bytes: number, masked: number): void {
    const c = this.#counts;
    c.statements++;
    c.bytes += bytes;
    c.masked += masked;
    if (status >= 400 || status === 0) c.errors++;
  }

  /**
   * Masked sessions: the Secrets of the namespace `info` reads (every namespace for a
   * request that is not in one) are listed first (secret-primer.ts); discovery reads echo none.
   */
  #primeFor(up: K8sUpstream, info: K8sRequestInfo): Promise<void> {
    if (!this.#primer || isDiscoveryRead(info)) return Promise.resolve();
    return this.#primer.prime(up, info.kind === 'resource' ? info.namespace : '');
  }

  async #forward(req: IncomingMessage, res: ServerResponse, rec: RequestRecord, info: K8sRequestInfo, body: Buffer | undefined): Promise<void> {
    let up: K8sUpstream;
    try {
      up = this.#upstreams.get(this.#ch.target);
    } catch (err) {
      this.#log.error('kubernetes upstream is misconfigured', { target: this.#ch.target.name, error: err });
      return this.#refuse(res, rec, failureStatus(503, 'ServiceUnavailable', `agentgate: ${(err as Error).message}`));
    }
    // The Secret values this request's answer may echo are known before it is forwarded.
    await this.#primeFor(up, info);
    if (this.#primer?.full) return this.#refuse(res, rec, knownSecretsFull());
    // With masking on, every response is rewritten: asked for as uncompressed JSON (a log is
    // text whatever it is asked for; its errors are JSON), whatever the resource, since
    // copies of values live in any kind.
    const masking = this.#masker !== undefined;
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const hasBody = body !== undefined ? body.length > 0 : requestHasBody(req);
    // On record before the API server sees it; the outcome follows as k8s.request.
    try {
      await this.#append({
        type: 'k8s.request.intent',
        detail: { id: rec.id, ...requestDetail(rec.method, rec.url, rec.info, this.#shownQuery(rec.url), (t) => this.#shown(t)), ...(rec.reason !== undefined ? { reason: rec.reason } : {}) },
        decision: rec.decision,
        outcome: null,
      });
    } catch {
      this.#refuseNow(res, auditUnavailable());
      return;
    }
    let upRes: Awaited<ReturnType<K8sUpstream['pool']['request']>>;
    try {
      upRes = await up.pool.request({
        method: rec.method as 'GET',
        path: up.basePath + rec.url,
        headers: upstreamHeaders(req.headers, { authorization: up.authorization, forMasking: masking, ...(body !== undefined ? { bodyLength: body.length } : {}) }),
        body: body !== undefined ? (body.length > 0 ? body : null) : hasBody ? req : null,
        signal: abort.signal,
      });
    } catch (err) {
      if (abort.signal.aborted) {
        rec.extra['client_gone'] = true;
        this.#count(499, 0, 0);
        await this.#recordQuietly(rec, 499, 0);
        return;
      }
      this.#log.warn('kubernetes API server unreachable', { target: this.#ch.target.name, error: err });
      return this.#refuse(res, rec, failureStatus(503, 'ServiceUnavailable', `agentgate: cannot reach the Kubernetes API server of ${this.#ch.target.name}: ${(err as Error).message}`));
    }

    const status = upRes.statusCode;
    const contentType = String(upRes.headers['content-type'] ?? '');
    const coding = unreadableCoding(upRes.headers);
    const readable = coding === undefined && readableCharset(contentType);
    const isJson = /^application\/json\b/i.test(contentType) && readable;
    const isText = /^text\/plain\b/i.test(contentType) && readable;
    if (this.#masker) {
      if (isJson) {
        const objects = new ObjectMasker(this.#masker, maskedKind(info) ?? '');
        if (info.kind === 'resource' && info.apiVerb === 'watch') return this.#stream(res, rec, status, upRes.headers, upRes.body, { objects });
        return this.#buffered(res, rec, status, upRes.headers, upRes.body, objects);
      }
      if (isText || (status >= 300 && readable && textualBody(contentType))) {
        // Logs (and plain-text errors): scanned by the detectors in-stream.
        let masked = 0;
        // A log may start and end where the API server cut it for the client (tailLines,
        // sinceTime, limitBytes), and so may any text the client asked cut — the kubelet's
        // own log endpoints through nodes/proxy, a byte range: a value cut there is masked
        // whole (text-stream.ts).
        const log = status < 300 && clientCutAnswer(rec.url, status, upRes.headers, info.kind === 'resource' && info.group === '' && info.resource === 'pods' && info.subresource === 'log');
        const scan = scanTextStream(this.#masker, { onMasked: (n) => (masked += n), what: 'a log line (or key block)', cut: log });
        return this.#stream(res, rec, status, upRes.headers, upRes.body, { text: scan, masked: () => masked });
      }
      if (upRes.headers['content-length'] === '0') return this.#stream(res, rec, status, upRes.headers, upRes.body, undefined);
      // Never relayed unmasked because of its form (protobuf, CBOR, YAML…) or its coding
      // (gzip, a transfer coding): agentgate asked for uncompressed JSON, so this answer is
      // not what it asked for. Dropped unread: undici reports that as an AbortError, which
      // nothing else would catch.
      upRes.body.on('error', () => {});
      upRes.body.destroy();
      rec.extra['unreadable_answer'] = `${contentType || 'no content type'}${coding !== undefined ? `; ${coding}` : ''}`.slice(0, 200);
      return this.#refuse(res, rec, unmaskableAnswer(contentType, coding));
    }
    return this.#stream(res, rec, status, upRes.headers, upRes.body, undefined);
  }

  /**
   * Stream the response through (a watch: rewritten event by event; text: scanned line by
   * line); the end waits for the audit event.
   */
  #stream(res: ServerResponse, rec: RequestRecord, status: number, headers: Record<string, string | string[] | undefined>, body: Readable, rewrite: StreamRewrite | undefined): Promise<void> {
    const objects = rewrite && 'objects' in rewrite ? rewrite.objects : undefined;
    const maskedSoFar = (): number => (rewrite === undefined ? 0 : 'objects' in rewrite ? rewrite.objects.count : rewrite.masked());
    return new Promise<void>((resolve) => {
      res.writeHead(status, clientHeaders(headers, rewrite !== undefined, this.#headerMask()));
      // An answer its head alone completes (204, 304, a HEAD request, Content-Length: 0) is
      // complete for the client once the head arrives: the head waits for the record too.
      if (!completeWithHead(rec.method, status, headers)) res.flushHeaders();
      let bytes = 0;
      let recorded: Promise<void> | undefined;
      const record = (): Promise<void> => {
        recorded ??= this.#record(rec, status, bytes, maskedSoFar());
        return recorded;
      };
      // The response completes only once the request is on record. A chunked body is not
      // complete before its last chunk, which flush() sends; a body with a Content-Length
      // is, so its last chunk is held back until then.
      const holdLast = rewrite === undefined && headers['content-length'] !== undefined;
      let held: Buffer | undefined;
      const tally = new Transform({
        transform(chunk: Buffer, _enc, cb: TransformCallback) {
          bytes += chunk.length;
          if (!holdLast) return cb(null, chunk);
          const previous = held;
          held = chunk;
          cb(null, previous);
        },
        flush: (cb: TransformCallback) => {
          record().then(
            () => cb(null, held),
            (err: unknown) => cb(err as Error),
          );
        },
      });
      const stages: (Readable | Transform)[] = [body];
      if (objects) stages.push(rewriteJsonLines((doc) => objects.document(doc)));
      else if (rewrite && 'text' in rewrite) stages.push(rewrite.text);
      stages.push(tally);
      pipeline([...stages, res] as unknown as [Readable, ...Transform[], ServerResponse], (err) => {
        this.#count(status, bytes, maskedSoFar());
        if (err) {
          rec.extra['interrupted'] = err.message.slice(0, 200);
          record().catch(() => {});
          res.destroy();
        }
        resolve();
      });
    }).then(() => undefined);
  }

  async #buffered(res: ServerResponse, rec: RequestRecord, status: number, headers: Record<string, string | string[] | undefined>, body: Readable, objects: ObjectMasker): Promise<void> {
    const raw = await readStream(body, this.#o.maxMaskedBody ?? DEFAULT_MAX_MASKED_BODY);
    if (raw === undefined) {
      return this.#refuse(res, rec, failureStatus(502, 'InternalError', 'agentgate: the response is too large to mask; page it (kubectl --chunk-size) and retry'));
    }
    let out: Buffer;
    try {
      const doc: unknown = raw.length > 0 ? JSON.parse(raw.toString('utf8')) : undefined;
      objects.document(doc);
      out = doc === undefined ? raw : Buffer.from(JSON.stringify(doc), 'utf8');
    } catch {
      if (status < 300) return this.#refuse(res, rec, failureStatus(502, 'InternalError', 'agentgate: the API server sent JSON that agentgate cannot parse; refused'));
      // An error body that is not JSON after all is still scanned, as text.
      const text = raw.toString('utf8');
      const masked = this.#masker?.field(text, undefined);
      if (masked) objects.count++;
      out = masked ? Buffer.from(masked.value ?? '', 'utf8') : raw;
    }
    try {
      await this.#record(rec, status, out.length, objects.count);
    } catch {
      this.#refuseNow(res, auditUnavailable());
      return;
    }
    this.#count(status, out.length, objects.count);
    res.writeHead(status, { ...clientHeaders(headers, true, this.#headerMask()), 'content-length': out.length });
    res.end(out);
  }

  // ─────────────────────────────── upgrades ───────────────────────────────

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const rec: RequestRecord = { id: this.#nextRequest++, method: req.method ?? 'GET', url: req.url ?? '/', info: undefined, decision: null, startedAt: performance.now(), extra: {} };
    rec.extra['upgrade'] = this.#shown(String(req.headers.upgrade ?? '').slice(0, 100));
    this.#upgraded.add(socket);
    socket.once('close', () => this.#upgraded.delete(socket));
    socket.on('error', () => {});
    this.#track(
      this.#upgrade(req, socket, head, rec).catch((err: unknown) => {
        this.#log.error('kubernetes upgrade failed', { session: this.id, error: err });
        socket.end(rawStatusResponse(failureStatus(500, 'InternalError', 'agentgate: the broker failed to handle this request')));
      }),
    );
  }

  async #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, rec: RequestRecord): Promise<void> {
    const gate = await this.#gate(req, rec, true);
    const send = (status: K8sStatus): void => {
      const bytes = rawStatusResponse(status);
      this.#count(status.code, bytes.length, 0);
      socket.end(bytes);
    };
    const refuse = async (status: K8sStatus): Promise<void> => send(await this.#recordRefusal(rec, status));
    if (gate.kind === 'refuse') return refuse(gate.status);
    let up: K8sUpstream;
    try {
      up = this.#upstreams.get(this.#ch.target);
    } catch (err) {
      return refuse(failureStatus(503, 'ServiceUnavailable', `agentgate: ${(err as Error).message}`));
    }
    await this.#primeFor(up, gate.info);
    if (this.#primer?.full) return refuse(knownSecretsFull());
    // On record before the API server sees it: the command starts as soon as it does.
    try {
      await this.#record(rec, null, 0, 0);
    } catch {
      return send(auditUnavailable());
    }
    this.#counts.allowed++;
    const recording = this.#recordingFor(rec);
    let streamMasked = 0;
    const output = this.#execOutput(gate.info, rec.url, (n) => (streamMasked += n));
    const outcome = await pipeUpgrade(req, socket, head, up, this.#upgraded, { tap: recording?.tap, mask: this.#maskAnswer(gate.info), output, headers: this.#headerMask() });
    const masked = (outcome.masked ?? 0) + streamMasked;
    if (masked > 0) rec.extra['masked'] = masked;
    this.#count(outcome.status, outcome.toClient, masked);
    if (recording) await this.#finishRecording(rec, recording.cast);
    await this.#appendStreamEnd(rec, outcome.status, outcome.toClient, outcome.toServer, outcome.error);
  }

  /** How response header values are masked in this session (by name and detectors); undefined when unmasked. */
  #headerMask(): HeaderMask | undefined {
    const masker = this.#masker;
    if (!masker) return undefined;
    return (value, name) => {
      const m = masker.field(value, name);
      if (!m) return value;
      this.#counts.masked++;
      return m.value ?? '';
    };
  }

  /** A masked session's exec or attach: its output rewritten masked (exec-mask.ts). */
  #execOutput(info: K8sRequestInfo, url: string, onMasked: (n: number) => void): UpgradeOutput | undefined {
    const masker = this.#masker;
    if (!masker || info.kind !== 'resource' || (info.verb !== 'exec' && info.verb !== 'attach')) return undefined;
    const tty = ['true', '1'].includes(new URL(url, 'http://x').searchParams.get('tty') ?? '');
    return {
      protocols: MASKABLE_EXEC_PROTOCOLS,
      switched: (protocol, extensions, cut) => {
        if (protocol === undefined || !MASKABLE_EXEC_PROTOCOLS.includes(protocol)) return `the API server chose ${protocol ?? 'no subprotocol'} for this ${info.verb}, which agentgate cannot read to mask; not relayed`;
        if (extensions !== undefined) return `the API server chose WebSocket extensions agentgate did not offer (${extensions.slice(0, 80)}); not relayed`;
        return maskRemoteCommand(masker, { tty, onMasked, onCut: cut });
      },
    };
  }

  /**
   * How an upgrade answered with anything but 101 is masked: as #forward masks a plain
   * response (JSON through the object maskers, text and error bodies through the
   * detectors, anything else refused). Undefined: this session is not masked.
   */
  #maskAnswer(info: K8sRequestInfo): UpgradeAnswerMask | undefined {
    const masker = this.#masker;
    if (!masker) return undefined;
    return ({ status, contentType, encoding, body }) => {
      if (body.length === 0) return { body, masked: 0 };
      if (encoding !== undefined) return undefined;
      const text = (): { body: Buffer; masked: number } => {
        const m = masker.field(body.toString('utf8'), undefined);
        return m === undefined ? { body, masked: 0 } : { body: Buffer.from(m.value ?? '', 'utf8'), masked: 1 };
      };
      if (/^application\/json\b/i.test(contentType)) {
        const objects = new ObjectMasker(masker, maskedKind(info) ?? '');
        try {
          const doc: unknown = JSON.parse(body.toString('utf8'));
          objects.document(doc);
          return { body: Buffer.from(JSON.stringify(doc), 'utf8'), masked: objects.count };
        } catch {
          // Not JSON after all (or nested past the maskers): an error body is still scanned as text.
          return status >= 300 ? text() : undefined;
        }
      }
      if (/^text\/plain\b/i.test(contentType) || (status >= 300 && textualBody(contentType))) return text();
      return undefined;
    };
  }

  // ─────────────────────────────── recording ───────────────────────────────

  /** `exec` / `attach` over WebSocket are recorded (asciicast v2, opened at the first frame); SPDY streams are not. */
  #recordingFor(rec: RequestRecord): { cast: LazyCast; tap: UpgradeTap } | undefined {
    const sub = rec.info && rec.info.kind !== 'nonResource' ? rec.info.subresource : undefined;
    if (sub !== 'exec' && sub !== 'attach') return undefined;
    const settings = recordingSettings(this.#o.config, this.#ch.target);
    if (!settings.enabled) return undefined;
    const path = rec.info && rec.info.kind !== 'nonResource' ? this.#shown(`${rec.info.namespace ?? ''}/${rec.info.name ?? ''}`) : '';
    const cast = new LazyCast(
      {
        dir: recordingsDir(this.#o.config),
        name: recordingName(this.id, rec.id),
        maxBytes: settings.maxBytes,
        title: `agentgate kubernetes ${this.#ch.actor.sub} @ ${this.#ch.target.name} session ${this.id} #${rec.id}: ${sub} ${path}`.slice(0, 400),
      },
      (err) => this.#log.error('kubernetes recording could not be started; the stream runs unrecorded', { session: this.id, error: err }),
    );
    const channels = k8sChannelTap(cast, { input: settings.input });
    return {
      cast,
      tap: {
        switched: (protocol) => protocol !== undefined && RECORDED_WS_PROTOCOLS.has(protocol),
        toClient: channels.toClient,
        toServer: channels.toServer,
      },
    };
  }

  async #finishRecording(rec: RequestRecord, cast: LazyCast): Promise<void> {
    try {
      const f = await cast.close();
      if (!f) return;
      await this.#append({
        type: 'recording.end',
        detail: { id: rec.id, format: 'asciicast-v2', name: f.name, sha256: f.sha256, bytes: f.bytes, events: f.events, ...(f.cutAt !== null ? { cut_at: f.cutAt } : {}) },
        decision: null,
        outcome: { status: 'ok', bytes: f.bytes },
      });
      this.#recordings.push({ name: f.name, sha256: f.sha256 });
    } catch (err) {
      this.#log.error('kubernetes recording could not be finished', { session: this.id, error: err });
    }
  }

  async #appendStreamEnd(rec: RequestRecord, statusCode: number, bytesOut: number, bytesIn: number, error?: string): Promise<void> {
    try {
      await this.#append({
        type: 'k8s.stream.end',
        detail: {
          id: rec.id,
          ...requestDetail(rec.method, rec.url, rec.info, this.#shownQuery(rec.url), (t) => this.#shown(t)),
          status_code: statusCode,
          bytes_to_client: bytesOut,
          bytes_to_server: bytesIn,
          ...(error ? { error } : {}),
        },
        decision: rec.decision,
        outcome: { status: statusCode === 101 ? 'ok' : 'error', bytes: bytesOut + bytesIn, duration_ms: ms(rec.startedAt) },
      });
    } catch (err) {
      this.#log.error('could not record the end of a kubernetes stream', { session: this.id, error: err });
    }
  }

  // ─────────────────────────────── audit ───────────────────────────────

  /** The request's `k8s.request` event; `status` null for an upgrade not yet sent upstream. */
  #record(rec: RequestRecord, status: number | null, bytes: number, masked: number): Promise<void> {
    if (masked > 0) rec.extra['masked'] = masked;
    return this.#append({
      type: 'k8s.request',
      detail: {
        id: rec.id,
        ...requestDetail(rec.method, rec.url, rec.info, this.#shownQuery(rec.url), (t) => this.#shown(t)),
        ...(status !== null ? { status_code: status } : {}),
        ...(rec.reason !== undefined ? { reason: rec.reason } : {}),
        ...rec.extra,
      },
      decision: rec.decision,
      outcome: status === null ? null : { status: status < 400 ? 'ok' : 'error', bytes, duration_ms: ms(rec.startedAt) },
    });
  }

  async #recordQuietly(rec: RequestRecord, status: number, bytes: number): Promise<void> {
    try {
      await this.#record(rec, status, bytes, 0);
    } catch (err) {
      this.#log.error('could not record a kubernetes request', { session: this.id, error: err });
    }
  }

  #append(e: Omit<NewAuditEvent, 'session' | 'actor' | 'target'>): Promise<void> {
    // session.start (decided by the core: access, deciding policy) is on record before it.
    return this.#session.record(e);
  }

  /** Free text as the log may hold it: the detectors' masking when this session masks. */
  #shownText(text: string, key: string | undefined = 'reason'): string {
    const m = this.#masker?.field(text, key);
    return m === undefined ? text : (m.value ?? '(masked)');
  }

  /** Request-derived text (path, name, namespace…) as recorded and shown to reviewers: through the detectors. */
  #shown(text: string): string {
    return this.#shownText(text, undefined);
  }

  /** The query string as recorded and shown to reviewers: values a detector flags are masked. */
  #shownQuery(url: string): string {
    const q = url.indexOf('?');
    if (q < 0) return '';
    const params = new URLSearchParams(url.slice(q + 1));
    if (this.#masker) {
      const masked = new URLSearchParams();
      for (const [k, v] of params) masked.append(k, this.#masker.field(v, k)?.value ?? v);
      return masked.size > 0 ? `?${masked.toString()}` : '';
    }
    const s = params.toString();
    return s ? `?${s}` : '';
  }

  #track(p: Promise<unknown>): void {
    this.#pending.add(p);
    // Callers pass promises that end in .catch; should one still reject, #end waits for it with allSettled.
    p.finally(() => {
      this.#pending.delete(p);
      this.#idle?.touch();
    }).catch(() => {});
  }

  async #end(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    this.#idle?.stop();
    for (const s of this.#upgraded) s.destroy();
    await Promise.allSettled([...this.#pending]);
    this.#onGone();
    await this.#session.end(this.#idleEnded ? IDLE_TIMEOUT_REASON : undefined);
  }
}

// ─────────────────────────────── helpers ───────────────────────────────

/** Whether an answer has no body to follow its head (RFC 9110 §6.4.1), so its head completes it. */
function completeWithHead(method: string, status: number, headers: Record<string, string | string[] | undefined>): boolean {
  return method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200) || headers['content-length'] === '0';
}

function forbidden(info: K8sRequestInfo, reason: string): K8sStatus {
  const details: StatusDetails = {};
  if (info.kind === 'resource') {
    if (info.name) details.name = info.name;
    if (info.group) details.group = info.group;
    details.kind = info.subresource ? `${info.resource}/${info.subresource}` : info.resource;
  }
  return failureStatus(403, 'Forbidden', `agentgate: ${reason}`, details);
}

/**
 * The refusal of an answer agentgate cannot read to mask. It asked the API server for
 * uncompressed JSON, so the answer is not what was asked: the message names what came and
 * what works.
 */
function unmaskableAnswer(contentType: string, coding: string | undefined): K8sStatus {
  const form = `${contentType.slice(0, 100) || 'no content type'}${coding !== undefined ? `, ${coding}` : ''}`;
  return failureStatus(
    502,
    'InternalError',
    `agentgate: the API server answered in a form agentgate cannot mask (${form}); refused. agentgate asks for uncompressed JSON (Accept: application/json, Accept-Encoding: identity) — request JSON; a server or proxy that answers otherwise must be fixed, or the request made by an identity whose policy has masking: off`,
  );
}

function auditUnavailable(): K8sStatus {
  return failureStatus(503, 'ServiceUnavailable', 'agentgate: the audit log is unavailable, so requests are refused; nothing was sent to the cluster');
}

/**
 * A request's audit detail. Everything taken from the request (path, names) goes through
 * `shown` (the detectors), like the query: the log holds nothing raw that masking hides.
 */
function requestDetail(method: string, url: string, info: K8sRequestInfo | undefined, query: string, shown: (text: string) => string): Record<string, JsonValue> {
  const q = url.indexOf('?');
  const path = shown(info?.path ?? (q < 0 ? url : url.slice(0, q)).slice(0, 2048));
  const d: Record<string, JsonValue> = { method, path };
  if (query) d['query'] = query.slice(1, 4097);
  if (!info) return d;
  if (info.kind === 'nonResource') return { ...d, verb: info.verb, non_resource: true };
  return {
    ...d,
    verb: info.verb,
    api_verb: info.apiVerb,
    group: shown(info.group),
    version: shown(info.version),
    resource: shown(info.resource),
    subresource: shown(info.subresource),
    namespace: shown(info.namespace),
    name: shown(info.name),
  };
}

/** What a reviewer is shown about the request; request-derived text through `shown`. */
function classification(info: K8sRequestInfo, shown: (text: string) => string): Record<string, unknown> {
  if (info.kind === 'nonResource') return { verb: info.verb, path: shown(info.path), description: shown(describeRequest(info)) };
  return {
    verb: info.verb,
    resource: shown(qualifiedResource(info)),
    namespace: info.namespace ? shown(info.namespace) : null,
    name: info.name ? shown(info.name) : null,
    description: shown(describeRequest(info)),
  };
}

/**
 * "The same request" for approvals: method, path, sorted query, Content-Type and the
 * body's digest. The Content-Type is part of it: the same bytes mean another change as a
 * merge, strategic-merge or JSON patch, or an apply.
 */
export function fingerprint(method: string, path: string, url: string, body: Buffer, contentType: string): string {
  const q = url.indexOf('?');
  const params = [...new URLSearchParams(q < 0 ? '' : url.slice(q + 1))].sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0));
  const query = new URLSearchParams(params).toString();
  const bodyHash = createHash('sha256').update(body).digest('hex');
  return createHash('sha256').update(`${method.toUpperCase()}\n${path}\n${query}\n${contentType.trim().toLowerCase()}\n${bodyHash}`).digest('hex');
}

function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}

function requestHasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return len !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

/** The whole body, or undefined past `max` bytes. */
async function readBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  if (!requestHasBody(req)) return Buffer.alloc(0);
  return readStream(req, max, true);
}


function ms(start: number): number {
  return Math.round((performance.now() - start) * 1000) / 1000;
}

/** Masked requests once the target's known Secret values could not all be kept (known-secrets.ts). */
function knownSecretsFull(): K8sStatus {
  return failureStatus(
    503,
    'ServiceUnavailable',
    `agentgate: this target holds more Secret values than agentgate keeps (${MAX_VALUES}) to mask their echoes, so it cannot tell what a masked answer must hide; remove the Secrets that flood it (many keys, often in a namespace an agent may write), then restart the broker`,
  );
}
