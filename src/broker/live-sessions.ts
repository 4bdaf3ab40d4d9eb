/**
 * The one place that owns live sessions' deadlines. Every tunnel rides on the credential
 * it was opened with (exp + leeway), which the CLI may renew over the tunnel; every proxy
 * session (one per tunnel channel) holds a lease on its tunnel and, with
 * `sessions.max_duration`, its own absolute deadline. When a deadline passes, or an
 * operator revokes, the registry calls the session's end hook with a neutral notice; each
 * proxy only turns that notice into its protocol's words (Postgres FATAL, Kubernetes 401).
 *
 * A tunnel whose credential lapsed refuses new sessions (their lease carries the refusal)
 * until a fresh credential of the same subject is presented; a revoked tunnel never
 * comes back. A renewal must also carry the same grants (groups and kind): the tunnel's
 * sessions were authorized with the identity it was opened with, so a credential whose
 * groups changed at the IdP (removed from the group that grants access) cannot keep them
 * alive; the tunnel then ends at the old credential's expiry and a reconnect is judged
 * on the new groups.
 */
import { AgentgateError, ExitCode } from '../errors.js';
import type { AuditActor } from '../shared/audit-hash.js';
import type { Logger } from './log.js';
import type { LiveSessionsResponse } from '../shared/api-types.js';

export type EndReason = 'credential_expired' | 'max_duration' | 'revoked';

/** Why a session was (or would be) ended: protocol-neutral, shown to the user by each proxy. */
export interface EndNotice {
  reason: EndReason;
  /** What happened, for the client. */
  message: string;
  /** The next step, for the client. */
  hint: string;
  /** The operator who revoked (their `sub`), for `revoked`. */
  by?: string;
}

/** The part of a verified identity the registry needs. */
export interface CredentialIdentity {
  sub: string;
  issuer: string;
  /** What policies match on besides `sub`: a renewal must carry the same. */
  groups: readonly string[];
  kind: string;
  /** Token expiry, unix seconds. */
  expiresAt: number;
}

export interface LiveSessionsOptions {
  /** Time after a credential's `exp` before its sessions end. */
  leewayMs: number;
  /** Absolute cap on one proxy session; undefined = none. */
  maxDurationMs?: number | undefined;
  logger: Logger;
  now?: () => number;
}

/** One row of `agentgate broker sessions` (`credential_expires_at`: exp + leeway; `expires_at`: that or the max_duration cap, whichever is first). */
export type LiveSessionView = LiveSessionsResponse['sessions'][number];

/** A proxy's hold on its tunnel: ask `refusal` before serving, call `start` once, `release` at the end. */
export interface SessionLease {
  /** Why this session may not run (the tunnel's credential lapsed or was revoked, or it was ended); undefined while it may. */
  readonly refusal: EndNotice | undefined;
  /** Makes the session visible (listing, revocation) and arms its deadlines; `end` is called at most once. */
  start(id: string, end: (notice: EndNotice) => void): void;
  /** The session is gone; idempotent. */
  release(): void;
}

export class LiveSessionError extends AgentgateError {
  override readonly name = 'LiveSessionError';
  constructor(code: 'AG_TUNNEL_UNKNOWN' | 'AG_CREDENTIAL_SUBJECT_CHANGED' | 'AG_CREDENTIAL_GRANTS_CHANGED' | 'AG_SESSION_REVOKED', message: string, hint: string) {
    super(code, message, ExitCode.auth, { hint });
  }
}

interface TunnelEntry {
  id: string;
  sub: string;
  issuer: string;
  /** The grants the tunnel was opened with (grantsOf), which every renewal must match. */
  grants: string;
  groups: readonly string[];
  kind: string;
  connectSession: string | null;
  /** Epoch ms after which the credential no longer carries the tunnel. */
  deadline: number;
  timer: NodeJS.Timeout | undefined;
  /** Set while the tunnel refuses new sessions. */
  refusal: EndNotice | undefined;
  sessions: Set<SessionEntry>;
}

interface SessionEntry {
  id: string;
  tunnel: TunnelEntry;
  actor: AuditActor;
  target: string;
  protocol: string;
  startedAt: number;
  capAt: number | undefined;
  timer: NodeJS.Timeout | undefined;
  end: (notice: EndNotice) => void;
  ended: EndNotice | undefined;
}

/** setTimeout's ceiling; later deadlines re-arm when it fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class LiveSessions {
  readonly #o: LiveSessionsOptions;
  readonly #now: () => number;
  readonly #tunnels = new Map<string, TunnelEntry>();
  readonly #sessions = new Map<string, SessionEntry>();

  constructor(options: LiveSessionsOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  /** A tunnel came up carrying `identity` (verified on the upgrade). */
  openTunnel(id: string, identity: CredentialIdentity, connectSession?: string): void {
    const t: TunnelEntry = {
      id,
      sub: identity.sub,
      issuer: identity.issuer,
      grants: grantsOf(identity),
      groups: [...identity.groups],
      kind: identity.kind,
      connectSession: connectSession ?? null,
      deadline: this.#deadlineOf(identity),
      timer: undefined,
      refusal: undefined,
      sessions: new Set(),
    };
    this.#tunnels.set(id, t);
    this.#armTunnel(t);
  }

  /** The tunnel's connection is gone (its sessions end with their streams). */
  closeTunnel(id: string): void {
    const t = this.#tunnels.get(id);
    if (!t) return;
    clearTimeout(t.timer);
    this.#tunnels.delete(id);
  }

  /**
   * A fresh credential for a live tunnel, already verified: the same subject of the same
   * issuer moves the deadline (and lifts an expiry refusal); anything else is refused.
   * Returns the new deadline (epoch ms).
   */
  renew(tunnelId: string, identity: CredentialIdentity): number {
    const t = this.#tunnels.get(tunnelId);
    if (!t) throw new LiveSessionError('AG_TUNNEL_UNKNOWN', 'this tunnel is not live at the broker', 'reconnect; agentgate does so on its own');
    if (t.refusal?.reason === 'revoked') {
      throw new LiveSessionError('AG_SESSION_REVOKED', `an operator revoked this session${t.refusal.by ? ` (${t.refusal.by})` : ''}`, 'start a new `agentgate connect` if you still have access; ask the broker\'s operators why');
    }
    if (identity.sub !== t.sub || identity.issuer !== t.issuer) {
      throw new LiveSessionError(
        'AG_CREDENTIAL_SUBJECT_CHANGED',
        `the renewed credential is for ${identity.sub} (${identity.issuer}), but this tunnel belongs to ${t.sub} (${t.issuer})`,
        'a tunnel keeps the identity it was opened with; start a new `agentgate connect` to act as someone else',
      );
    }
    if (grantsOf(identity) !== t.grants) {
      // Sessions on this tunnel were authorized with the groups it was opened with; a
      // credential carrying other groups must not extend them. Refused, the tunnel ends at
      // the old credential's expiry, and a new connect is judged on the new groups.
      throw new LiveSessionError(
        'AG_CREDENTIAL_GRANTS_CHANGED',
        `the renewed credential of ${identity.sub} carries ${describeGrants(identity.groups, identity.kind)}, but this tunnel was opened with ${describeGrants(t.groups, t.kind)}`,
        'your group membership changed at the identity provider; this tunnel ends when its current credential expires; start a new `agentgate connect` to use the access the new groups give',
      );
    }
    t.deadline = this.#deadlineOf(identity);
    if (t.refusal?.reason === 'credential_expired') t.refusal = undefined;
    this.#armTunnel(t);
    this.#o.logger.info('tunnel credential renewed', { tunnel: t.id, sub: t.sub, until: new Date(t.deadline).toISOString() });
    return t.deadline;
  }

  /** A proxy session is about to be served on `tunnelId`. An unknown tunnel yields a refused lease. */
  lease(tunnelId: string, info: { actor: AuditActor; target: string; protocol: string }): SessionLease {
    const t = this.#tunnels.get(tunnelId);
    let entry: SessionEntry | undefined;
    let released = false;
    const registry = this;
    return {
      get refusal() {
        if (entry?.ended) return entry.ended;
        if (!t) return expiredNotice(info.actor.sub, 0);
        return t.refusal;
      },
      start(id, end) {
        if (entry || released || !t) return;
        const now = registry.#now();
        const cap = registry.#o.maxDurationMs;
        entry = { id, tunnel: t, ...info, startedAt: now, capAt: cap === undefined ? undefined : now + cap, timer: undefined, end, ended: undefined };
        t.sessions.add(entry);
        registry.#sessions.set(id, entry);
        registry.#armSession(entry);
      },
      release() {
        if (released) return;
        released = true;
        if (!entry) return;
        clearTimeout(entry.timer);
        entry.tunnel.sessions.delete(entry);
        registry.#sessions.delete(entry.id);
      },
    };
  }

  list(): LiveSessionView[] {
    return [...this.#sessions.values()]
      .filter((s) => !s.ended)
      .map((s) => ({
        id: s.id,
        protocol: s.protocol,
        actor: { sub: s.actor.sub, name: s.actor.name ?? null, groups: s.actor.groups, kind: s.actor.kind },
        target: s.target,
        tunnel: s.tunnel.id,
        connect_session: s.tunnel.connectSession,
        started_at: new Date(s.startedAt).toISOString(),
        credential_expires_at: new Date(s.tunnel.deadline).toISOString(),
        expires_at: new Date(Math.min(s.tunnel.deadline, s.capAt ?? Infinity)).toISOString(),
      }));
  }

  /**
   * Ends one session (by id) or every session and tunnel of a subject (by sub) at once;
   * a subject's tunnels then refuse new sessions for good. Returns the ended session ids.
   */
  revoke(which: { session: string } | { sub: string }, by: string): string[] {
    const notice: EndNotice = {
      reason: 'revoked',
      message: `agentgate: this session was revoked by an operator (${by})`,
      hint: 'ask the broker\'s operators why; start a new `agentgate connect` if you still have access',
      by,
    };
    const ended: string[] = [];
    if ('session' in which) {
      const s = this.#sessions.get(which.session);
      if (s && this.#end(s, notice)) ended.push(s.id);
      return ended;
    }
    for (const t of this.#tunnels.values()) {
      if (t.sub !== which.sub) continue;
      t.refusal = notice;
      clearTimeout(t.timer);
      for (const s of [...t.sessions]) if (this.#end(s, notice)) ended.push(s.id);
    }
    return ended;
  }

  /** Stops every timer (broker shutdown). */
  close(): void {
    for (const t of this.#tunnels.values()) clearTimeout(t.timer);
    for (const s of this.#sessions.values()) clearTimeout(s.timer);
    this.#tunnels.clear();
    this.#sessions.clear();
  }

  #deadlineOf(identity: CredentialIdentity): number {
    return identity.expiresAt * 1000 + this.#o.leewayMs;
  }

  #armTunnel(t: TunnelEntry): void {
    clearTimeout(t.timer);
    const wait = t.deadline - this.#now();
    if (wait <= 0) {
      t.timer = undefined;
      this.#expire(t);
      return;
    }
    t.timer = setTimeout(() => this.#armTunnel(t), Math.min(wait, MAX_TIMER_MS));
    t.timer.unref();
  }

  #expire(t: TunnelEntry): void {
    if (t.refusal) return;
    const notice = expiredNotice(t.sub, t.deadline - this.#o.leewayMs);
    t.refusal = notice;
    this.#o.logger.info('tunnel credential expired: ending its sessions', { tunnel: t.id, sub: t.sub, sessions: t.sessions.size });
    for (const s of [...t.sessions]) this.#end(s, notice);
  }

  #armSession(s: SessionEntry): void {
    if (s.capAt === undefined) return;
    const wait = s.capAt - this.#now();
    if (wait <= 0) {
      this.#end(s, {
        reason: 'max_duration',
        message: `agentgate: this session reached the broker's maximum session duration (${formatDuration(this.#o.maxDurationMs ?? 0)})`,
        hint: 'connect again to start a new session',
      });
      return;
    }
    s.timer = setTimeout(() => this.#armSession(s), Math.min(wait, MAX_TIMER_MS));
    s.timer.unref();
  }

  /** Calls the session's end hook once; false when it had ended already. */
  #end(s: SessionEntry, notice: EndNotice): boolean {
    if (s.ended) return false;
    s.ended = notice;
    clearTimeout(s.timer);
    this.#o.logger.info('ending a live session', { session: s.id, sub: s.actor.sub, reason: notice.reason, ...(notice.by ? { by: notice.by } : {}) });
    try {
      s.end(notice);
    } catch (err) {
      this.#o.logger.error('a session end hook failed', { session: s.id, error: (err as Error)?.message });
    }
    return true;
  }
}

/** A comparable form of what policies match on (besides the subject): the set of groups and the kind. */
function grantsOf(identity: Pick<CredentialIdentity, 'groups' | 'kind'>): string {
  return JSON.stringify([identity.kind, [...new Set(identity.groups)].sort()]);
}

function describeGrants(groups: readonly string[], kind: string): string {
  return `groups [${[...new Set(groups)].sort().join(', ')}] (${kind})`;
}

function expiredNotice(sub: string, expiredAtMs: number): EndNotice {
  const at = expiredAtMs > 0 ? ` at ${new Date(expiredAtMs).toISOString()}` : '';
  return {
    reason: 'credential_expired',
    message: `agentgate: the credential of ${sub} expired${at} and was not renewed, so this session ended`,
    hint: 'run `agentgate login` (or give agentgate a fresh token); a running `agentgate connect` picks it up, then reconnect',
  };
}

function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s % 3600 === 0) return `${s / 3600}h`;
  if (s % 60 === 0) return `${s / 60}m`;
  return `${s}s`;
}
