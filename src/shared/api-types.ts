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
