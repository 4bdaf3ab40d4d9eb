/**
 * Shapes that cross the wire between the CLI and the broker. Both sides import this file;
 * it must not import anything from src/broker or src/commands.
 */

export type ActorKind = 'human' | 'agent' | 'ci';

/** `GET /.well-known/agentgate` */
export interface BrokerDiscovery {
  broker_version: string;
  /** The IdP the CLI logs in against (its OIDC discovery lives under this URL). */
  issuer: string;
  /** The `aud` the broker requires in access tokens. */
  audience: string;
  /** Public OAuth client for the device flow. */
  client_id: string;
  /** Scopes the CLI should ask for. */
  scopes: string[];
  /** Absolute URL the CLI upgrades to for the tunnel. */
  tunnel_endpoint: string;
  jwks_uri: string;
  /** SHA-256 fingerprint (OpenSSH `SHA256:…` form) of the tunnel's SSH host key, when the tunnel is on. */
  ssh_host_key_fingerprint?: string;
}

/** `GET /v1/whoami` */
export interface WhoAmI {
  sub: string;
  name?: string;
  email?: string;
  groups: string[];
  kind: ActorKind;
  issuer: string;
  /** Unix seconds. */
  expires_at: number;
  broker: string;
}

export interface TargetSummary {
  name: string;
  type: 'postgres' | 'kubernetes' | 'ssh';
  /** Postgres targets: the database the broker logs in to (for connection strings). */
  database?: string;
  /** Names of the policies that let this identity reach the target. */
  policies: string[];
  /** Human summary of what those policies allow, e.g. `select, explain: allow; insert…: review`. */
  allows: string[];
}

/** `GET /v1/targets` */
export interface TargetsResponse {
  targets: TargetSummary[];
}

/**
 * Reason codes on 401 responses. The CLI maps each to advice; keep them stable.
 */
export type TokenRejectionReason =
  | 'missing_token'
  | 'malformed_token'
  | 'token_expired'
  | 'token_not_yet_valid'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'unsupported_alg'
  | 'bad_signature'
  | 'unknown_key'
  | 'subject_not_allowed'
  | 'issuer_unreachable';

/** Every non-2xx JSON body from the broker. */
export interface ApiErrorBody {
  error: {
    code: string;
    message: string;
    /** For 401s: why the token was refused. */
    reason?: TokenRejectionReason;
    hint?: string;
  };
}

/** Lifecycle of an approval request (`/v1/requests…`). */
export type RequestStatus = 'pending' | 'approved' | 'denied' | 'expired' | 'withdrawn';

export interface RequestDecisionView {
  approver: { sub: string; name?: string };
  decision: 'approve' | 'deny';
  reason: string | null;
  /** ISO-8601. */
  at: string;
}

/** An approval request as the broker publishes it (webhooks; the base of RequestView). */
export interface ApprovalRequestJson {
  /** `apr_` + 12 base32 characters. */
  id: string;
  status: RequestStatus;
  /** Increases with every change; a client keeps the copy with the highest. */
  revision: number;
  requester: { sub: string; name?: string | null; groups: string[]; kind: ActorKind };
  target: string;
  protocol: 'postgres' | 'kubernetes' | 'ssh';
  session: string;
  /** The client session (`agentgate connect`/`run`/`mcp`) the held call came through, when known. */
  connect_session?: string;
  /** The held statement or request line (already masked). */
  statement: string;
  /**
   * Bind parameter values of a held extended-protocol statement, as shown (masked where
   * masking applies; `NULL`; binary ones in hex). The approval covers exactly these values.
   */
  parameters?: string[];
  /**
   * A held Kubernetes write's body: its Content-Type and text (masked, cut with a marker
   * when long). The approval covers exactly this body with this Content-Type.
   */
  body?: { content_type: string; text: string };
  /** The rule approves the statement's shape with any parameter values (not only these). */
  any_values?: boolean;
  classification: Record<string, unknown>;
  policy: string;
  rule: string;
  /** Why it was held. */
  reason: string;
  /** Why the requester says they need it (`--reason`, an MCP tool call's reason), when given. */
  requester_reason?: string;
  /** `kinds`: which kinds of identity may decide (human unless the rule opts others in). */
  approvers: { groups: string[]; count: number; kinds: ActorKind[] };
  fingerprint: string;
  /** From the rule: an approval covers the same statement for this long. */
  grant_seconds?: number;
  created_at: string;
  expires_at: string;
  /** Approved with a grant: until when the same statement stays approved. */
  grant_until?: string;
  decisions: RequestDecisionView[];
}

/** A request as one caller sees it. */
export interface RequestView extends ApprovalRequestJson {
  /** The caller made this request. */
  mine: boolean;
  /** The caller may approve or deny it now. */
  can_decide: boolean;
}

/** `GET /v1/requests[?all=1][&limit=N][&after=ID]`: newest first, one page. */
export interface RequestsResponse {
  requests: RequestView[];
  /** More requests follow: ask again with `after=<next>`. */
  next?: string;
}

/** `POST /v1/requests/:id/decision` body; answered with the RequestView. */
export interface DecisionBody {
  decision: 'approve' | 'deny';
  /** Required for `deny`. */
  reason?: string;
}

/** `event:` names on `GET /v1/requests/events` (server-sent events; `data:` is a RequestView). */
export type RequestEventType = 'created' | 'decided' | 'expired' | 'withdrawn' | 'updated';

/** What an outgoing approval webhook POSTs (signed: `x-agentgate-signature: sha256=<hex HMAC of the body>`). */
export interface ApprovalWebhookPayload {
  event: 'created' | 'decided';
  /**
   * The request in Slack-style mrkdwn, ready for an incoming webhook: agent text escaped
   * (`&`, `<`, `>` as entities, so no mention or disguised link), the statement in a code
   * block. The fields of `request` are plain text: a receiver that puts them in markup
   * escapes them itself.
   */
  text: string;
  request: ApprovalRequestJson;
}

/** GET /v1/live-sessions: live proxy sessions (operators and auditors). */
export interface LiveSessionsResponse {
  sessions: {
    id: string;
    protocol: string;
    actor: { sub: string; name: string | null; groups: string[]; kind: ActorKind };
    target: string;
    tunnel: string;
    connect_session: string | null;
    started_at: string;
    credential_expires_at: string;
    expires_at: string;
  }[];
}

/** POST /v1/live-sessions/revoke → the ids of the sessions it ended. */
export interface RevokeResponse {
  ended: string[];
}
