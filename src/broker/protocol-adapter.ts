/**
 * The broker side of a protocol: what channels.ts hands each adapter for one tunnel
 * channel, and what an adapter offers back. A new protocol is one folder with an
 * `adapter.ts` plus one line in protocols.ts.
 */
import type { BrokerConfig, TargetConfig } from './config/types.js';
import type { AuditStore } from './audit/store.js';
import type { Identity } from './identity/types.js';
import type { Logger } from './log.js';
import type { TunnelChannel } from '../tunnel/acceptor.js';
import type { AuditActor } from '../shared/audit-hash.js';
import type { ApprovalService } from './approvals/types.js';
import type { SessionLease } from './live-sessions.js';
import type { SessionSummary } from './session-summary.js';
import type { WrittenRelations } from './masking/written-relations.js';
import type { SchemaChanges } from './postgres/schema-changes.js';

export interface ChannelRouterDeps {
  config: BrokerConfig;
  audit: AuditStore;
  logger: Logger;
  /** Where `review` statements wait; without it they are refused. */
  approvals?: ApprovalService;
  /** The broker's key for the `hash` masking style (stable across restarts). */
  maskingKey: Buffer;
  onSessionEnd?: (summary: SessionSummary) => void;
  /** Owns live sessions' deadlines (credential expiry, max_duration, revocation); without it sessions have none. */
  live?: import('./live-sessions.js').LiveSessions;
  /**
   * Where the Postgres targets' write taint is kept when several brokers share it (the
   * PostgreSQL store); without it, in the broker's state dir. `local`: what the state dir held.
   */
  writtenRelations?: { open(target: string, local?: readonly string[]): WrittenRelations };
  /** Where Postgres targets' schema changes are told to the other brokers on the store; without it, this broker's sessions only. */
  schemaChanges?: { open(target: string): SchemaChanges };
  /** The broker's SSH host key (private): local ssh clients of SSH targets pin it. Without it SSH targets are refused. */
  sshHostKey?: string;
}

/** One tunnel channel for a target of type T, with what every adapter needs. */
export interface AdapterChannel<T extends TargetConfig = TargetConfig> {
  channel: TunnelChannel<Identity>;
  target: T;
  actor: AuditActor;
  log: Logger;
  /** A request header of the tunnel (per-session data: verifier, session id, ssh key). */
  header(name: string): string | undefined;
  /** The session's live-session lease (absent when the broker has no registry). */
  lease: SessionLease | undefined;
  /** tunnel id and client address, for session.start. */
  origin: Record<string, string | number>;
  /** The session's reason (`--reason`) the tunnel carried, as given (each adapter masks it for the log). */
  reason: string | undefined;
  onEnd(summary: SessionSummary): void;
}

export interface ProtocolAdapter<T extends TargetConfig = TargetConfig> {
  serve(ch: AdapterChannel<T>): void;
  /** Live proxy sessions. */
  readonly active: number;
  close(): Promise<void>;
}

export type AdapterFactory<T extends TargetConfig> = (deps: ChannelRouterDeps) => ProtocolAdapter<T>;

/** One factory per target type: the compiler checks none is missing. */
export type AdapterRegistry = { [K in TargetConfig['type']]: AdapterFactory<Extract<TargetConfig, { type: K }>> };

export function actorOf(identity: Identity): AuditActor {
  return { sub: identity.sub, name: identity.name ?? null, groups: identity.groups, kind: identity.kind };
}
