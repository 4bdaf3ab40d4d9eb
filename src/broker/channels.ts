/**
 * Routes each tunnel channel to the proxy for its target's protocol, after deciding
 * whether the caller may reach that target at all (policy subjects and targets).
 */
import type { BrokerConfig } from './config/types.js';
import type { AuditStore } from './audit/store.js';
import type { Identity } from './identity/types.js';
import type { Logger } from './log.js';
import type { TunnelChannel } from '../tunnel/acceptor.js';
import type { AuditActor } from '../shared/audit-hash.js';
import { SESSION_ID_HEADER, SESSION_VERIFIER_HEADER } from '../shared/session-headers.js';
import { REASON_HEADER, decodeReasonHeader } from '../shared/reason.js';
import { policyRequiresReason } from './policy/reason.js';
import { decidingPolicy } from './access.js';
import { CancelRegistry, PgProxySession, type TargetAccess } from './postgres/proxy-session.js';
import type { SessionSummary } from './session-summary.js';
import { parseScramVerifier, type ScramVerifier } from './postgres/scram.js';
import { createSqlGate } from './policy/sql-gate.js';
import { policyGrantsWrite } from './policy/sql-rules.js';
import { createFunctionCatalog, type FunctionCatalog } from './postgres/function-catalog.js';
import { createCatalogLookup } from './postgres/masking-catalog.js';
import type { PostgresTargetConfig } from './config/types.js';
import { compileMaskingPlan, type MaskingPlan } from './masking/rules.js';
import type { ApprovalService } from './approvals/types.js';
import { K8sProxy } from './kubernetes/proxy.js';
import type { LiveSessions, SessionLease } from './live-sessions.js';

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
  live?: LiveSessions;
}

export interface ChannelRouter {
  route(channel: TunnelChannel<Identity>): void;
  /** Live proxy sessions (for shutdown and tests). */
  readonly active: number;
  /** Drops live Kubernetes connections and their upstream pools. */
  close(): Promise<void>;
}

export function actorOf(identity: Identity): AuditActor {
  return { sub: identity.sub, name: identity.name ?? null, groups: identity.groups, kind: identity.kind };
}

export function accessFor(identity: Identity, target: string, config: BrokerConfig): TargetAccess {
  const policy = decidingPolicy(identity, target, config.policies);
  // Same rule as the targets listing: a policy that can only deny grants no access.
  if (policy && policy.rules.some((r) => r.effect !== 'deny')) return { allowed: true, policy: policy.name };
  return {
    allowed: false,
    message: `agentgate: ${identity.sub} may not use target "${target}": no policy matches this identity and target`,
  };
}

function header(channel: TunnelChannel<Identity>, name: string): string | undefined {
  const v = channel.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The session's reason (`--reason`) the tunnel carried. */
function reasonOf(channel: TunnelChannel<Identity>): { reason?: string } {
  const reason = decodeReasonHeader(channel.headers[REASON_HEADER]);
  return reason === undefined ? {} : { reason };
}

/** The SCRAM verifier of the session secret the tunnel carried; undefined (clients refused) when absent or malformed. */
function sessionVerifier(channel: TunnelChannel<Identity>): ScramVerifier | undefined {
  const text = header(channel, SESSION_VERIFIER_HEADER);
  try {
    return text ? parseScramVerifier(text) : undefined;
  } catch {
    return undefined;
  }
}

/** The session's masking: the target's rules as the deciding policy inherits, extends or turns off. */
function maskingFor(identity: Identity, target: string, config: BrokerConfig, key: Buffer): { masking?: { plan: MaskingPlan; key: Buffer } } {
  const plan = compileMaskingPlan(target, config.masking, decidingPolicy(identity, target, config.policies)?.masking);
  return plan ? { masking: { plan, key } } : {};
}

export function createChannelRouter(deps: ChannelRouterDeps): ChannelRouter {
  const cancels = new CancelRegistry();
  let active = 0;
  let k8s: K8sProxy | undefined;
  /**
   * Per Postgres target, one catalog connection (read-only, as the target's user) that
   * resolves the functions statements call, shared by every session of the target.
   */
  const functionCatalogs = new Map<string, { catalog: FunctionCatalog; close(): void }>();
  const functionsOf = (target: PostgresTargetConfig): FunctionCatalog => {
    let entry = functionCatalogs.get(target.name);
    if (!entry) {
      const lookup = createCatalogLookup(target, { params: new Map([['default_transaction_read_only', 'on']]) });
      entry = { catalog: createFunctionCatalog(lookup.rows), close: () => lookup.close() };
      functionCatalogs.set(target.name, entry);
    }
    return entry.catalog;
  };
  return {
    get active() {
      return active + (k8s?.active ?? 0);
    },
    async close() {
      for (const e of functionCatalogs.values()) e.close();
      functionCatalogs.clear();
      await k8s?.close();
    },
    route(channel) {
      const { config, logger } = deps;
      const target = config.targets[channel.target];
      const log = logger.child({ tunnel: channel.tunnelId, target: channel.target, sub: channel.identity.sub });
      if (!target) {
        log.warn('channel for an unknown target refused');
        channel.stream.destroy();
        return;
      }
      const lease = (protocol: string): { lease?: SessionLease } =>
        deps.live ? { lease: deps.live.lease(channel.tunnelId, { actor: actorOf(channel.identity), target: target.name, protocol }) } : {};
      switch (target.type) {
        case 'postgres': {
          const session = header(channel, SESSION_ID_HEADER);
          // A policy that grants no write makes the upstream session read-only (defence in depth).
          const readOnly = !policyGrantsWrite(channel.identity, target.name, config.policies);
          active++;
          new PgProxySession(channel.stream, {
            readOnly,
            target,
            loginTimeoutMs: config.sessions.loginTimeoutMs,
            actor: actorOf(channel.identity),
            access: accessFor(channel.identity, target.name, config),
            verifier: sessionVerifier(channel),
            ...reasonOf(channel),
            ...(policyRequiresReason(channel.identity, target.name, config.policies) ? { requireReason: true } : {}),
            gate: createSqlGate(channel.identity, target.name, config, { functions: functionsOf(target), readOnly }),
            ...maskingFor(channel.identity, target.name, config, deps.maskingKey),
            ...(deps.approvals ? { approvals: deps.approvals } : {}),
            audit: deps.audit,
            cancels,
            logger: log,
            origin: {
              ...(session ? { connect_session: session } : {}),
              tunnel: channel.tunnelId,
              client_address: `${channel.originator.address}:${channel.originator.port}`,
            },
            ...lease('postgres'),
            onEnd: (summary) => {
              active--;
              deps.onSessionEnd?.(summary);
            },
          });
          return;
        }
        case 'kubernetes': {
          k8s ??= new K8sProxy({ config, maskingKey: deps.maskingKey, audit: deps.audit, approvals: deps.approvals, logger: logger.child({ protocol: 'kubernetes' }) });
          k8s.serve({
            stream: channel.stream,
            target,
            identity: channel.identity,
            actor: actorOf(channel.identity),
            verifier: sessionVerifier(channel),
            connectSession: header(channel, SESSION_ID_HEADER),
            ...reasonOf(channel),
            origin: { tunnel: channel.tunnelId, client_address: `${channel.originator.address}:${channel.originator.port}` },
            onEnd: (summary) => deps.onSessionEnd?.(summary),
            ...lease('kubernetes'),
          });
          return;
        }
        default:
          log.warn(`${target.type} targets are not served by this broker version yet`);
          channel.stream.destroy();
      }
    },
  };
}
