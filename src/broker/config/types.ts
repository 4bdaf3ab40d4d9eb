/**
 * The validated, resolved broker configuration. `loadBrokerConfig` (load.ts) turns the
 * YAML file into this; everything else in the broker reads only this shape. Paths are
 * absolute (resolved against the config file's folder); secrets are `Secret`s.
 */
import type { Secret } from '../../shared/secret.js';
import type { ActorKind } from '../../shared/api-types.js';

export interface BrokerConfig {
  /** Absolute path of the file it was loaded from. */
  configPath: string;
  listen: { host: string; port: number };
  /** Absolute; created 0700. Holds the SQLite store and generated keys. */
  stateDir: string;
  /** Absolute cert/key paths. When the config omits `tls`, these point into stateDir (tls.crt, tls.key). */
  tls: { cert: string; key: string; generated: boolean };
  store: { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: Secret };
  identity: IdentityConfig;
  targets: Record<string, TargetConfig>;
  policies: PolicyConfig[];
  auditors: { groups: string[] };
  masking: Record<string, MaskingConfig>;
  audit: AuditConfig;
  approvals: ApprovalsConfig;
  /** Session limits (`sessions:`): credential leeway, max_duration, login and TLS handshake deadlines. */
  sessions: SessionsConfig;
  /** Who may list live sessions and revoke them (`operators:`); absent = nobody. */
  operators?: { groups: string[] };
  /** Function names (lower case, optionally schema-qualified) that flag a statement `dangerous_function`. */
  dangerousFunctions: string[];
  /** Absolute path of the Ed25519 receipt-signing key (PKCS#8 PEM). */
  receiptKeyPath: string;
  /** Absolute path of the tunnel's SSH host key. */
  sshHostKeyPath: string;
  /** Terminal recordings; absent = the defaults (on, 64 MiB per recording). */
  recording?: RecordingConfig | undefined;
}

export interface IdentityConfig {
  issuer: string;
  audience: string;
  clientId: string;
  groupsClaim: string;
  /** Members of any of these groups are `kind: agent`. */
  agentGroups: string[];
  ciIssuers: CiIssuerConfig[];
  /** Scopes the CLI asks for in the device flow. Default: openid profile email offline_access. */
  scopes: string[];
  /** Seconds of clock skew tolerated on exp/nbf/iat. Default 30. */
  clockToleranceSec: number;
}

export interface CiIssuerConfig {
  issuer: string;
  audience: string;
  /** Glob on the token's `sub` (`*` matches any run of characters), e.g. `repo:acme/*`. */
  subject: string;
  groups: string[];
}

export type TargetConfig = PostgresTargetConfig | KubernetesTargetConfig | SshTargetConfig;

export interface PostgresTargetConfig {
  type: 'postgres';
  name: string;
  host: string;
  port: number;
  database: string;
  user: string;
  password: Secret | undefined;
  tls: 'disable' | 'require' | 'verify-full';
  /** Absolute path of a CA bundle for verify-full; system CAs when absent. */
  ca: string | undefined;
  /** End a session with no traffic either way for this long (ms); undefined = never (the default). */
  idleTimeoutMs?: number;
  /** Overrides the broker's `recording:` for this target (`results`: rows sampled per statement). */
  recording?: RecordingConfig | undefined;
}

export interface KubernetesTargetConfig {
  type: 'kubernetes';
  name: string;
  server: string;
  ca: string | undefined;
  token: Secret | undefined;
  clientCert: string | undefined;
  clientKey: Secret | undefined;
  /** End a session with no request in flight for this long (ms); undefined = never (the default). */
  idleTimeoutMs?: number;
  /** Overrides the broker's `recording:` for this target. */
  recording?: RecordingConfig | undefined;
}

export interface SshTargetConfig {
  type: 'ssh';
  name: string;
  host: string;
  port: number;
  user: string;
  privateKey: Secret | undefined;
  password: Secret | undefined;
  /**
   * The target's pinned host key: an OpenSSH fingerprint (`SHA256:…`) or a public key
   * line (`ssh-ed25519 AAAA…`). Required: no trust on first use.
   */
  hostKey: string;
  /** Overrides the broker's `recording:` for this target. */
  recording?: RecordingConfig | undefined;
}

/** Terminal recordings (`recording:` at broker or target level). */
export interface RecordingConfig {
  /** Record terminal sessions (SSH shells and execs). Default true. */
  enabled: boolean;
  /** Cap on one recording file; the recording says where it was cut. Default 64 MiB. */
  maxBytes: number;
  /** Postgres: the first N rows of each statement's (masked) result go into its `query` event. Default 0. */
  results: number;
  /** Terminal recordings also hold the client's input (`i` events). Default false. */
  input: boolean;
}

export type Effect = 'allow' | 'deny' | 'review';

export interface SubjectMatch {
  groups?: string[];
  subs?: string[];
  kinds?: ActorKind[];
}

export interface ApproverSpec {
  groups: string[];
  count: number;
  /** Which kinds of identity may decide (default human only). */
  kinds?: ActorKind[];
}

/** Flags the SQL classifier sets on a statement; rules may match on them. */
export const SQL_FLAGS = ['multi_statement', 'writable_cte', 'dangerous_function', 'copy_program', 'copy_file', 'no_where', 'explain_analyze'] as const;
export type SqlFlag = (typeof SQL_FLAGS)[number];

export interface RuleConfig {
  /** Defaults to `<policy>#<index>` (1-based). */
  name: string;
  /** SQL statement kinds this rule matches; absent = any. */
  sql?: string[];
  /** Relation globs (`public.users`, `*.audit_*`, `!secrets.*`) read or written. */
  relations?: string[];
  /** Classifier flags; the rule matches a statement carrying any of them. */
  flags?: SqlFlag[];
  /**
   * Function/operator name globs (lower case). Allow rules: the effectful calls this rule
   * covers (others keep it from matching). Deny/review rules: match a statement calling
   * any listed function or operator. See sql-rules.ts.
   */
  functions?: string[];
  /** Review rules: an approval covers the same statement fingerprint for this many seconds (else one execution). */
  grantSeconds?: number;
  /**
   * Review rules: an approval (and its grant) covers the statement's shape with any Bind
   * parameter values, not only the values the reviewer saw.
   */
  anyValues?: boolean;
  /** Kubernetes request match; absent = any. */
  k8s?: { verbs?: string[]; resources?: string[]; namespaces?: string[] };
  /** SSH criteria (policy/ssh-rules.ts). */
  ssh?: SshRuleMatch;
  effect: Effect;
  approvers?: ApproverSpec;
  /** Free-form extra match keys kept for later rule kinds (relations, flags, …). */
  extra: Record<string, unknown>;
}

export interface SshRuleMatch {
  /** Globs over exec commands (see policy/ssh-rules.ts). */
  commands?: string[];
  /** Allow rules: the globs also match compound commands (operators, substitutions…), on their raw text. */
  compound?: boolean;
  /** Allow and review rules with `commands`: an exec they let run keeps the pty the client asked for. */
  tty?: boolean;
  shell?: boolean;
  subsystems?: string[];
  forwarding?: boolean;
}

export interface PolicyConfig {
  name: string;
  subjects: SubjectMatch;
  /** Target names (globs allowed). */
  targets: string[];
  rules: RuleConfig[];
  /**
   * Masking for sessions this policy decides: `inherit` (the target's rules; also when absent), `off` (raw
   * values, e.g. for a DBA policy), or extra rules added to the target's.
   */
  masking?: { mode: 'inherit' } | { mode: 'off' } | { mode: 'extend'; rules: MaskingConfig };
  /** `require_reason: true`: what this policy allows or holds is refused without a reason (`--reason`, a tool call's reason). */
  requireReason?: boolean;
}


export interface ApprovalsConfig {
  /** How long a held statement or request waits for a decision. Default 600. */
  timeoutSeconds: number;
  webhooks: WebhookConfig[];
  /** Pending requests one requester may have at once; more are refused. Default 20. */
  maxPendingPerRequester?: number;
}

export interface WebhookConfig {
  url: string;
  /** HMAC-SHA256 key for the `x-agentgate-signature` header. */
  secret: Secret | undefined;
  /** Which request events to send; default both. */
  events: ('created' | 'decided')[];
}

export interface MaskingConfig {
  columns: string[];
  detectors: string[];
  style: 'full' | 'partial' | 'hash' | 'null';
}

export interface AuditConfig {
  /** `normal`: durable across a broker crash (WAL, OS cache); `full`: also across power loss (fsync per group commit). */
  sync: 'normal' | 'full';
  retentionDays: number | undefined;
}

export interface SessionsConfig {
  /** Absolute cap on one proxy session, seconds; undefined = none. */
  maxDurationSeconds: number | undefined;
  /** How long past its credential's `exp` a session may run unrenewed, seconds. Default 30. */
  expiryLeewaySeconds: number;
  /** A local connection must finish the Postgres startup and SCRAM exchange within this (ms). Default 15 000. */
  loginTimeoutMs: number;
  /** A TCP connection to the HTTPS port must finish the TLS handshake within this (ms). Default 10 000. */
  tlsHandshakeTimeoutMs: number;
}
