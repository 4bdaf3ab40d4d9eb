/**
 * The zod schema for agentgate.yaml (snake_case keys) whose output is the typed
 * BrokerConfig (types.ts). Built per load because it resolves relative paths against the
 * config's folder and secret references against the given environment.
 *
 * Messages: a custom message that starts with "expected" gets `, got …` appended by
 * issues.ts; any other custom message is shown as written. Every object rejects keys it
 * does not know, with a "did you mean" when one is close.
 */
import { join, resolve } from 'node:path';
import { isIP } from 'node:net';
import { z } from 'zod';
import { parseDurationMs } from '../../shared/duration.js';
import { SQL_FLAGS } from './types.js';
import { unknownSqlKinds } from '../policy/sql-kinds.js';
import { DETECTOR_NAMES, parseDetectorNames } from '../masking/detectors.js';
import type {
  RecordingConfig,
  ApprovalsConfig,
  SessionsConfig,
  WebhookConfig,
  ApproverSpec,
  AuditConfig,
  BrokerConfig,
  CiIssuerConfig,
  IdentityConfig,
  KubernetesTargetConfig,
  MaskingConfig,
  PolicyConfig,
  PostgresTargetConfig,
  RuleConfig,
  SshTargetConfig,
  SshRuleMatch,
  SubjectMatch,
  TargetConfig,
} from './types.js';
import type { Secret } from '../../shared/secret.js';
import { resolveSecretValue } from './secret-refs.js';
import type { SecretContext } from './secret-refs.js';
import { didYouMean, suggest } from './suggest.js';

export interface SchemaContext extends SecretContext {
  /** Absolute path of the config file. */
  configPath: string;
}

export const DEFAULT_LISTEN = '127.0.0.1:8443';
export const DEFAULT_STATE_DIR = './state';
export const DEFAULT_SCOPES = ['openid', 'profile', 'email', 'offline_access'] as const;
export const TARGET_TYPES = ['postgres', 'kubernetes', 'ssh'] as const;
export const POSTGRES_TLS_MODES = ['disable', 'require', 'verify-full'] as const;
export const MASKING_STYLES = ['full', 'partial', 'hash', 'null'] as const;
export const EFFECTS = ['allow', 'deny', 'review'] as const;
export const ACTOR_KINDS = ['human', 'agent', 'ci'] as const;
/** Keys whose values are credentials: their values never appear in a message. */
export const CREDENTIAL_KEYS: ReadonlySet<string> = new Set(['password', 'token', 'client_key', 'private_key']);

/** Rule keys; any other key in a rule is reported. */
const RULE_KEYS = ['name', 'sql', 'relations', 'flags', 'functions', 'grant', 'any_values', 'k8s', 'ssh', 'effect', 'approvers'] as const;

/** Functions with side effects outside the statement (files, other servers, other sessions, settings). */
export const DEFAULT_DANGEROUS_FUNCTIONS = [
  'pg_terminate_backend', 'pg_cancel_backend', 'pg_reload_conf', 'pg_rotate_logfile', 'pg_promote',
  'pg_read_file', 'pg_read_binary_file', 'pg_ls_dir', 'pg_stat_file', 'pg_file_write',
  'lo_import', 'lo_export', 'lo_unlink', 'dblink', 'dblink_exec', 'dblink_connect', 'dblink_send_query',
  'set_config', 'pg_advisory_lock', 'pg_switch_wal', 'pg_create_restore_point',
  'pg_drop_replication_slot', 'pg_create_logical_replication_slot', 'pg_create_physical_replication_slot',
  'pg_logical_emit_message',
  // Read relations by name, which relation rules cannot see; large objects; sequences.
  'query_to_xml', 'query_to_xml_and_xmlschema', 'table_to_xml', 'table_to_xml_and_xmlschema', 'cursor_to_xml',
  'schema_to_xml', 'database_to_xml', 'lo_get', 'lo_put', 'lo_from_bytea', 'lo_create', 'setval',
  'pg_ls_logdir', 'pg_ls_waldir', 'pg_ls_tmpdir', 'pg_file_unlink', 'pg_file_rename',
];


type WithoutName<T> = T extends unknown ? Omit<T, 'name'> : never;

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Runs a check even when sibling keys failed, so one pass reports every problem. */
const whenObject = { when: (payload: { value: unknown }) => isPlainObject(payload.value) };

/**
 * A mapping with exactly these keys. Unknown keys are reported one per key; when one is
 * close to a known key the issue carries it (`params.suggestion`) so issues.ts can drop the
 * then-redundant "required, missing" for that key.
 */
function strictObject<S extends z.core.$ZodLooseShape>(shape: S) {
  const known = Object.keys(shape);
  return z.looseObject(shape).check(
    z.superRefine((value: Record<string, unknown>, ctx) => {
      for (const key of Object.keys(value)) {
        if (known.includes(key)) continue;
        const suggestion = suggest(key, known);
        ctx.addIssue({ code: 'custom', path: [key], message: `unknown key${didYouMean(key, known)}`, params: { unknownKey: true, suggestion } });
      }
    }, whenObject),
  );
}

/** One recording's default cap: 64 MiB. */
export const DEFAULT_RECORDING_MAX_BYTES = 64 * 1024 * 1024;
/** The most result rows `recording: { results: N }` may sample per statement. */
export const MAX_RESULT_SAMPLE_ROWS = 100;

const text = z.string().min(1, { error: 'expected a non-empty string' });
const textList = z.array(text);
const nonEmptyTextList = z.array(text).min(1, { error: 'expected a non-empty list' });

function intRange(lo: number, hi: number) {
  const error = `expected an integer ${lo}-${hi}`;
  return z.int({ error }).min(lo, { error }).max(hi, { error });
}

/** https, or http for a loopback host when `localHttp` (a local test IdP). */
function urlAllowed(value: string, localHttp: boolean): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (url.protocol === 'https:') return url.hostname !== '';
  return localHttp && url.protocol === 'http:' && ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
}

const httpsUrl = text.refine((s) => urlAllowed(s, false), { error: 'expected an https URL' });
const issuerUrl = text.refine((s) => urlAllowed(s, true), { error: 'expected an https URL (http only for localhost or 127.0.0.1)' });

/** `host:port`, `[v6]:port`; port 0 lets the OS pick (tests). */
export function parseListen(value: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(value.trim());
  if (!m) return undefined;
  const host = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  if (m[1] !== undefined && isIP(host) !== 6) return undefined;
  return { host, port };
}

const listenSchema = z
  .string()
  .transform((s, ctx) => {
    const parsed = parseListen(s);
    if (!parsed) {
      ctx.addIssue({ code: 'custom', message: 'expected host:port with port 0-65535 (e.g. 127.0.0.1:8443)', input: s });
      return z.NEVER;
    }
    return parsed;
  });

/** `90`, `90s`, `15m`, `1h`, `2d` → seconds. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value > 0 ? value : undefined;
  const m = /^(\d+)\s*(s|m|h|d)?$/.exec(value.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  return n > 0 ? n * unit : undefined;
}

const durationMs = z.union([z.string(), z.number()]).transform((v, c) => {
  const ms = parseDurationMs(v);
  if (ms === undefined) {
    c.addIssue({ code: 'custom', message: 'expected a duration like 500ms, 15s or 5m', input: v });
    return z.NEVER;
  }
  return ms;
});

const duration = z.union([z.string(), z.number()]).transform((v, c) => {
  const s = parseDuration(v);
  if (s === undefined) {
    c.addIssue({ code: 'custom', message: 'expected a duration like 90s, 15m, 1h or 2d', input: v });
    return z.NEVER;
  }
  return s;
});

const SSH_FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}=?$/;
const SSH_PUBLIC_KEY = /^(?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com|rsa-sha2-(?:256|512)) [A-Za-z0-9+/]+={0,3}(?: .*)?$/;

export function brokerConfigSchema(ctx: SchemaContext) {
  const path = text.transform((s) => resolve(ctx.baseDir, s));

  const credential = z
    .string({ error: 'expected a string, ${env:NAME} or ${file:PATH}' })
    .min(1, { error: 'expected a non-empty string, ${env:NAME} or ${file:PATH}' })
    .transform((s, c): Secret => {
      const r = resolveSecretValue(s, ctx);
      if (!r.ok) {
        for (const problem of r.problems) c.addIssue({ code: 'custom', message: problem });
        return z.NEVER;
      }
      return r.secret;
    });

  const postgresUrl = credential.transform((secret, c): Secret => {
    if (!/^postgres(?:ql)?:\/\/./.test(secret.reveal())) {
      // The value is a credential: say what it must look like, never what it is.
      c.addIssue({ code: 'custom', message: `must be a postgres:// or postgresql:// URL (from ${secret.source})` });
      return z.NEVER;
    }
    return secret;
  });

  // ---- targets ---------------------------------------------------------------------------

  const recording = strictObject({
    enabled: z.boolean().default(true),
    max_bytes: intRange(4096, Number.MAX_SAFE_INTEGER).default(DEFAULT_RECORDING_MAX_BYTES),
    results: intRange(0, MAX_RESULT_SAMPLE_ROWS).default(0),
    input: z.boolean().default(false),
  }).transform((r): RecordingConfig => ({ enabled: r.enabled, maxBytes: r.max_bytes, results: r.results, input: r.input }));

  const postgresTarget = strictObject({
    type: z.literal('postgres'),
    host: text,
    port: intRange(1, 65535).default(5432),
    database: text,
    user: text,
    password: credential.optional(),
    tls: z.enum(POSTGRES_TLS_MODES).default('verify-full'),
    ca: path.optional(),
    idle_timeout: durationMs.optional(),
    recording: recording.optional(),
  }).transform(
    (t): Omit<PostgresTargetConfig, 'name'> => ({
      type: 'postgres',
      host: t.host,
      port: t.port,
      database: t.database,
      user: t.user,
      password: t.password,
      tls: t.tls,
      ca: t.ca,
      ...(t.idle_timeout === undefined ? {} : { idleTimeoutMs: t.idle_timeout }),
      ...(t.recording ? { recording: t.recording } : {}),
    }),
  );

  const kubernetesTarget = strictObject({
    type: z.literal('kubernetes'),
    server: httpsUrl,
    ca: path.optional(),
    token: credential.optional(),
    client_cert: path.optional(),
    client_key: credential.optional(),
    idle_timeout: durationMs.optional(),
    recording: recording.optional(),
  })
    .check(
      z.superRefine((t: Record<string, unknown>, c) => {
        const has = (k: string): boolean => t[k] !== undefined;
        if (has('client_cert') && !has('client_key')) c.addIssue({ code: 'custom', path: ['client_key'], message: 'required with client_cert, missing' });
        if (has('client_key') && !has('client_cert')) c.addIssue({ code: 'custom', path: ['client_cert'], message: 'required with client_key, missing' });
        if (!has('token') && !has('client_cert') && !has('client_key')) {
          c.addIssue({ code: 'custom', path: ['token'], message: 'required (or client_cert and client_key), missing' });
        }
      }, whenObject),
    )
    .transform(
      (t): Omit<KubernetesTargetConfig, 'name'> => ({
        type: 'kubernetes',
        server: t.server,
        ca: t.ca,
        token: t.token,
        clientCert: t.client_cert,
        clientKey: t.client_key,
        ...(t.idle_timeout === undefined ? {} : { idleTimeoutMs: t.idle_timeout }),
        ...(t.recording ? { recording: t.recording } : {}),
      }),
    );

  const sshTarget = strictObject({
    type: z.literal('ssh'),
    recording: recording.optional(),
    host: text,
    port: intRange(1, 65535).default(22),
    user: text,
    private_key: credential.optional(),
    password: credential.optional(),
    host_key: z.string().refine((v) => SSH_FINGERPRINT.test(v.trim()) || SSH_PUBLIC_KEY.test(v.trim()), {
      error: 'expected an OpenSSH host key fingerprint (SHA256:…, 43 base64 characters) or a public key line (ssh-ed25519 AAAA…)',
    }),
  })
    .check(
      z.superRefine((t: Record<string, unknown>, c) => {
        if (t['private_key'] === undefined && t['password'] === undefined) {
          c.addIssue({ code: 'custom', path: ['private_key'], message: 'required (or password), missing' });
        }
      }, whenObject),
    )
    .transform(
      (t): Omit<SshTargetConfig, 'name'> => ({
        type: 'ssh',
        host: t.host,
        port: t.port,
        user: t.user,
        privateKey: t.private_key,
        password: t.password,
        hostKey: t.host_key.trim(),
        ...(t.recording ? { recording: t.recording } : {}),
      }),
    );

  const target = z.discriminatedUnion('type', [postgresTarget, kubernetesTarget, sshTarget]);

  const targets = z.record(z.string(), target).transform((rec): Record<string, TargetConfig> => {
    const out: Record<string, TargetConfig> = {};
    for (const [name, t] of Object.entries(rec as Record<string, WithoutName<TargetConfig>>)) out[name] = { ...t, name } as TargetConfig;
    return out;
  });

  // ---- identity --------------------------------------------------------------------------

  const ciIssuer = strictObject({
    issuer: issuerUrl,
    audience: text,
    subject: text,
    groups: textList.default(() => []),
  }).transform((c): CiIssuerConfig => ({ issuer: c.issuer, audience: c.audience, subject: c.subject, groups: c.groups }));

  const identity = strictObject({
    issuer: issuerUrl,
    audience: text,
    client_id: text,
    groups_claim: text.default('groups'),
    agent_groups: textList.default(() => []),
    ci_issuers: z.array(ciIssuer).default(() => []),
    scopes: nonEmptyTextList
      .refine((s) => s.includes('openid'), { error: 'must include openid' })
      .default(() => [...DEFAULT_SCOPES]),
    clock_tolerance_sec: intRange(0, 600).default(30),
  }).transform(
    (i): IdentityConfig => ({
      issuer: i.issuer,
      audience: i.audience,
      clientId: i.client_id,
      groupsClaim: i.groups_claim,
      agentGroups: i.agent_groups,
      ciIssuers: i.ci_issuers,
      scopes: i.scopes,
      clockToleranceSec: i.clock_tolerance_sec,
    }),
  );

  // ---- policies --------------------------------------------------------------------------

  const subjects = strictObject({
    groups: textList.optional(),
    subs: textList.optional(),
    kinds: z.array(z.enum(ACTOR_KINDS)).optional(),
  })
    .check(
      z.superRefine((s: Record<string, unknown>, c) => {
        if (s['groups'] === undefined && s['subs'] === undefined && s['kinds'] === undefined) {
          c.addIssue({ code: 'custom', message: 'needs at least one of groups, subs, kinds (use subs: ["*"] to match everyone)' });
        }
      }, whenObject),
    )
    .transform((s): SubjectMatch => {
      const out: SubjectMatch = {};
      if (s.groups) out.groups = s.groups;
      if (s.subs) out.subs = s.subs;
      if (s.kinds) out.kinds = s.kinds;
      return out;
    });

  const approvers = strictObject({
    groups: nonEmptyTextList,
    count: intRange(1, 100).default(1),
    // Holds are for a human unless the rule opts other kinds of identity in.
    kinds: z.array(z.enum(ACTOR_KINDS)).min(1, { error: 'expected a non-empty list' }).default(() => ['human' as const]),
  }).transform((a): ApproverSpec => ({ groups: a.groups, count: a.count, kinds: a.kinds }));

  const k8sMatch = strictObject({
    verbs: textList.optional(),
    resources: textList.optional(),
    namespaces: textList.optional(),
  }).transform((k) => {
    const out: NonNullable<RuleConfig['k8s']> = {};
    if (k.verbs) out.verbs = k.verbs.map((v) => v.toLowerCase());
    if (k.resources) out.resources = k.resources;
    if (k.namespaces) out.namespaces = k.namespaces;
    return out;
  });

  const sshMatch = strictObject({
    commands: nonEmptyTextList.optional(),
    compound: z.boolean().optional(),
    tty: z.boolean({ error: 'expected true or false (true: an exec this rule lets run keeps the terminal the client asked for)' }).optional(),
    shell: z.boolean().optional(),
    subsystems: nonEmptyTextList.optional(),
    forwarding: z.boolean().optional(),
  }).transform((s): SshRuleMatch => {
    const out: SshRuleMatch = {};
    if (s.commands) out.commands = s.commands;
    if (s.compound !== undefined) out.compound = s.compound;
    if (s.tty !== undefined) out.tty = s.tty;
    if (s.shell !== undefined) out.shell = s.shell;
    if (s.subsystems) out.subsystems = s.subsystems;
    if (s.forwarding !== undefined) out.forwarding = s.forwarding;
    return out;
  });

  const rule = z
    .looseObject({
      name: text.optional(),
      sql: textList
        .check(
          z.superRefine((list: string[], c) => {
            // A misspelt kind in a deny rule would never match: fail at load, not open.
            const bad = unknownSqlKinds(list.map((k) => k.toLowerCase()));
            if (bad.length > 0) c.addIssue({ code: 'custom', message: `unknown statement kind${bad.length > 1 ? 's' : ''} ${bad.map((b) => `"${b}"`).join(', ')}` });
          }),
        )
        .optional(),
      relations: textList.optional(),
      flags: z.array(z.enum(SQL_FLAGS)).optional(),
      functions: textList.optional(),
      grant: duration.optional(),
      any_values: z.boolean().optional(),
      k8s: k8sMatch.optional(),
      ssh: sshMatch.optional(),
      effect: z.enum(EFFECTS),
      approvers: approvers.optional(),
    })
    .check(
      z.superRefine((r: Record<string, unknown>, c) => {
        // An ignored key in an allow rule would silently widen it: every unknown key is an error.
        for (const key of Object.keys(r)) {
          if ((RULE_KEYS as readonly string[]).includes(key)) continue;
          const suggestion = suggest(key, RULE_KEYS);
          c.addIssue({ code: 'custom', path: [key], message: `unknown key${didYouMean(key, RULE_KEYS)}`, params: { unknownKey: true, suggestion } });
        }
        if (r['effect'] === 'review' && r['approvers'] === undefined) {
          c.addIssue({ code: 'custom', path: ['approvers'], message: 'required when effect is review (e.g. { groups: [dba], count: 1 }), missing' });
        }
        if (r['functions'] !== undefined && r['k8s'] !== undefined) {
          c.addIssue({ code: 'custom', path: ['functions'], message: 'applies to SQL statements only, not together with k8s' });
        }
        if (r['ssh'] !== undefined && ['sql', 'relations', 'flags', 'functions', 'k8s'].some((k) => r[k] !== undefined)) {
          c.addIssue({ code: 'custom', path: ['ssh'], message: 'a rule is about one protocol: ssh cannot be combined with sql, relations, flags, functions or k8s' });
        }
        const ssh = r['ssh'];
        if (typeof ssh === 'object' && ssh !== null && (ssh as Record<string, unknown>)['tty'] === true) {
          // A tty on a rule that lets no exec run would read as a grant it never gives.
          if (r['effect'] === 'deny') c.addIssue({ code: 'custom', path: ['ssh', 'tty'], message: 'only allowed when effect is allow or review, not deny (a denied command gets no terminal)' });
          else if ((ssh as Record<string, unknown>)['commands'] === undefined)
            c.addIssue({ code: 'custom', path: ['ssh', 'tty'], message: 'applies to exec commands: give the commands that may keep a terminal (commands: [...]); a shell (shell: true) keeps its pty without it' });
        }
        if (r['effect'] !== 'review' && r['any_values'] !== undefined) {
          c.addIssue({ code: 'custom', path: ['any_values'], message: `only allowed when effect is review, not ${String(r['effect'])}` });
        }
        if (r['effect'] !== 'review' && r['grant'] !== undefined) {
          c.addIssue({ code: 'custom', path: ['grant'], message: `only allowed when effect is review, not ${String(r['effect'])}` });
        }
        if ((r['effect'] === 'allow' || r['effect'] === 'deny') && r['approvers'] !== undefined) {
          c.addIssue({ code: 'custom', path: ['approvers'], message: `only allowed when effect is review, not ${String(r['effect'])}` });
        }
      }, whenObject),
    )
    .transform((r): Omit<RuleConfig, 'name'> & { name: string | undefined } => {
      const extra: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(r)) if (!(RULE_KEYS as readonly string[]).includes(k)) extra[k] = v;
      const out: Omit<RuleConfig, 'name'> & { name: string | undefined } = { name: r.name, effect: r.effect, extra };
      if (r.sql) out.sql = r.sql.map((s) => s.toLowerCase());
      if (r.relations) out.relations = r.relations;
      if (r.flags) out.flags = r.flags;
      if (r.functions) out.functions = r.functions.map((f) => f.toLowerCase());
      if (r.grant !== undefined) out.grantSeconds = r.grant;
      if (r.any_values === true) out.anyValues = true;
      if (r.k8s) out.k8s = r.k8s;
      if (r.ssh) out.ssh = r.ssh;
      if (r.approvers) out.approvers = r.approvers;
      return out;
    });

  const maskingRules = strictObject({
    columns: textList.default(() => []),
    detectors: textList
      .check(
        z.superRefine((list: string[], c) => {
          for (const n of parseDetectorNames(list).unknown) {
            c.addIssue({ code: 'custom', message: `unknown detector "${n}" (known: ${[...DETECTOR_NAMES, 'ssn', 'all'].join(', ')})` });
          }
        }),
      )
      .default(() => []),
    style: z.enum(MASKING_STYLES).default('full'),
  }).transform((m): MaskingConfig => ({ columns: m.columns, detectors: m.detectors, style: m.style }));

  const policyMasking = z.union([z.literal('inherit'), z.literal('off'), maskingRules], {
    error: 'expected inherit, off, or { columns, detectors, style } to add to the target\'s masking',
  });

  const policy = strictObject({
    name: text,
    subjects,
    targets: nonEmptyTextList,
    rules: z.array(rule).min(1, { error: 'expected at least one rule' }),
    masking: policyMasking.optional(),
    require_reason: z.boolean({ error: 'expected true or false' }).optional(),
  }).transform(
    (p): PolicyConfig => ({
      name: p.name,
      subjects: p.subjects,
      targets: p.targets,
      rules: p.rules.map((r, i) => ({ ...r, name: r.name ?? `${p.name}#${i + 1}` })),
      masking:
        p.masking === undefined || p.masking === 'inherit'
          ? { mode: 'inherit' }
          : p.masking === 'off'
            ? { mode: 'off' }
            : { mode: 'extend', rules: p.masking },
      ...(p.require_reason === true ? { requireReason: true } : {}),
    }),
  );

  // ---- the rest --------------------------------------------------------------------------

  const masking = z.record(z.string(), maskingRules);

  const auditors = strictObject({ groups: textList.default(() => []) }).transform((a) => ({ groups: a.groups }));

  const audit = strictObject({
    sync: z.enum(['normal', 'full']).default('normal'),
    retention_days: intRange(1, 36500).optional(),
  }).transform((a): AuditConfig => ({ sync: a.sync, retentionDays: a.retention_days }));

  const webhook = strictObject({
    url: text.refine((u) => urlAllowed(u, true), { error: 'expected an https URL (http only for localhost or 127.0.0.1)' }),
    secret: credential.optional(),
    events: z.array(z.enum(['created', 'decided'])).min(1, { error: 'expected a non-empty list' }).optional(),
  }).transform((w): WebhookConfig => ({ url: w.url, secret: w.secret, events: w.events ?? ['created', 'decided'] }));

  const approvals = strictObject({
    timeout: duration.default(600),
    webhooks: z.array(webhook).default(() => []),
    max_pending_per_requester: intRange(1, 10_000).default(20),
  }).transform((a): ApprovalsConfig => ({ timeoutSeconds: a.timeout, webhooks: a.webhooks, maxPendingPerRequester: a.max_pending_per_requester }));

  const sessions = strictObject({
    max_duration: duration.optional(),
    expiry_leeway: z.union([z.literal(0), z.literal('0'), duration]).default(30),
    login_timeout: durationMs.default(15_000),
    tls_handshake_timeout: durationMs.default(10_000),
  }).transform((x): SessionsConfig => ({
    maxDurationSeconds: x.max_duration,
    expiryLeewaySeconds: Number(x.expiry_leeway),
    loginTimeoutMs: x.login_timeout,
    tlsHandshakeTimeoutMs: x.tls_handshake_timeout,
  }));

  const operators = strictObject({ groups: textList.default(() => []) }).transform((o) => ({ groups: o.groups }));

  const tls = strictObject({ cert: path, key: path }).transform((t) => ({ cert: t.cert, key: t.key }));

  const store = z.union([z.literal('sqlite'), strictObject({ postgres: postgresUrl }).transform((s) => ({ postgres: s.postgres }))], {
    error: 'expected sqlite or { postgres: URL }',
  });

  return strictObject({
    listen: listenSchema.prefault(DEFAULT_LISTEN),
    state_dir: path.prefault(DEFAULT_STATE_DIR),
    tls: tls.optional(),
    store: store.optional(),
    identity,
    targets: targets.prefault({}),
    policies: z.array(policy).default(() => []),
    auditors: auditors.prefault({}),
    masking: masking.default(() => ({})),
    audit: audit.prefault({}),
    approvals: approvals.prefault({}),
    sessions: sessions.prefault({}),
    operators: operators.prefault({}),
    dangerous_functions: textList.optional(),
    recording: recording.optional(),
  }).transform((c): BrokerConfig => {
    const stateDir = c.state_dir;
    return {
      configPath: ctx.configPath,
      listen: c.listen,
      stateDir,
      tls: c.tls ? { ...c.tls, generated: false } : { cert: join(stateDir, 'tls.crt'), key: join(stateDir, 'tls.key'), generated: true },
      store: c.store === undefined || c.store === 'sqlite' ? { kind: 'sqlite', path: join(stateDir, 'audit.db') } : { kind: 'postgres', url: c.store.postgres },
      identity: c.identity,
      targets: c.targets,
      policies: c.policies,
      auditors: c.auditors,
      masking: c.masking,
      audit: c.audit,
      approvals: c.approvals,
      sessions: c.sessions,
      operators: c.operators,
      dangerousFunctions: (c.dangerous_functions ?? DEFAULT_DANGEROUS_FUNCTIONS).map((f) => f.toLowerCase()),
      receiptKeyPath: join(stateDir, 'receipt-signing.key'),
      sshHostKeyPath: join(stateDir, 'ssh-host.key'),
      ...(c.recording ? { recording: c.recording } : {}),
    };
  });
}
