/**
 * What becomes of each parameter a client sends in its StartupMessage, decided once the
 * client has authenticated (PostgreSQL too applies them only after authentication):
 *
 * - `user` and `database` must be what `connect`/`run` printed (POSTGRES_CLIENT_USER and
 *   the target's database); anything else fails as PostgreSQL fails for a role or
 *   database that does not exist (28000, 3D000). Upstream the broker logs in as the
 *   target's role: `user` is recorded as rewritten.
 * - `options` (`-c name=value`, `--name=value`) is split into its settings, each judged
 *   like a parameter of its own and forwarded as one; any other switch is refused.
 * - Every other setting is judged as the statement `SET name TO 'value'` by the session's
 *   own gate, so there is one classification (policy/settings.ts, sql-classify.ts) and
 *   one policy for a setting whether it arrives at connect time or later. A harmless
 *   setting (kind `session`) is forwarded whatever the policy; any other is forwarded only
 *   if the policy allows that SET (and the read-only backstop does not forbid it), and
 *   refused with a FATAL naming it otherwise — nothing is dropped silently.
 * - `client_encoding` is rewritten to UTF8 (the server must split statement text exactly
 *   as the policy's parser did; the client learns the encoding from ParameterStatus).
 * - `search_path` is refused unless it is the server's default: a session starts where
 *   the policy's catalog lookups expect it; a later SET search_path is judged like any
 *   statement (and relation rules place unqualified names in every schema regardless).
 * - `replication` is refused (false-like values mean an ordinary connection and are
 *   dropped); `_pq_.*` protocol options are dropped, and the handshake has told the client
 *   so with NegotiateProtocolVersion.
 */
import type { PostgresTargetConfig } from '../config/types.js';
import { POSTGRES_CLIENT_USER } from '../../shared/postgres-login.js';
import type { GateVerdict } from './proxy-gate.js';
import { PgError, SqlState } from './errors.js';
import { parseStartupOptions } from './startup-options.js';
import { REASON_STARTUP_PARAM } from '../../shared/reason.js';

/** Judges `SET <name> TO <value>` (text built by setStatement) as the session's gate would. */
export type SetJudge = (sql: string) => Promise<GateVerdict>;

/** What session.start records about the startup parameters (values only where rewritten). */
export interface StartupRecord {
  forwarded: string[];
  rewritten: { name: string; from: string; to: string; reason: string }[];
  dropped: { name: string; reason: string }[];
  refused: { name: string; reason: string }[];
}

export interface StartupPlan {
  /** Parameters for the upstream StartupMessage; user and database come from the target. */
  forward: Map<string, string>;
  record: StartupRecord;
  /** Set when the connection must be refused; the first reason, in PostgreSQL's order. */
  refusal?: PgError;
  /** `agentgate.reason` (a parameter, or `-c agentgate.reason=…` in options): the connection's reason, not PostgreSQL's. */
  reason?: string;
}

/** Keys PostgreSQL itself treats specially in a StartupMessage. */
const LOGIN_KEYS = new Set(['user', 'database']);

/** `SET "name" TO 'value'`, quoted so that neither part can end the statement early. */
export function setStatement(name: string, value: string): string {
  return `SET "${name.replace(/"/g, '""')}" TO '${value.replace(/'/g, "''")}'`;
}

/** The server's default path, written either way: unqualified names then resolve as the policy assumes. */
export function isDefaultSearchPath(value: string): boolean {
  const items = value.split(',').map((s) => s.trim());
  if (items.length === 0 || items.length > 2) return false;
  const isPublic = (s: string): boolean => s.toLowerCase() === 'public' || s === '"public"';
  if (items.length === 1) return isPublic(items[0] as string);
  return (items[0] === '"$user"' || items[0] === '$user') && isPublic(items[1] as string);
}

function isUtf8(value: string): boolean {
  const n = value.toLowerCase().replace(/[-_]/g, '');
  return n === 'utf8' || n === 'unicode';
}

function isFalse(value: string): boolean {
  return ['false', 'off', 'no', '0', 'f', 'n'].includes(value.trim().toLowerCase());
}

export async function planStartup(params: ReadonlyMap<string, string>, target: PostgresTargetConfig, judge: SetJudge): Promise<StartupPlan> {
  const record: StartupRecord = { forwarded: [], rewritten: [], dropped: [], refused: [] };
  const forward = new Map<string, string>();
  const refusals: PgError[] = [];
  const refuse = (name: string, code: SqlState, message: string, hint?: string): void => {
    record.refused.push({ name, reason: message });
    refusals.push(new PgError(code, message, { severity: 'FATAL', ...(hint ? { hint } : {}) }));
  };

  // Who and where first, as PostgreSQL checks the role, then the database, then settings.
  const user = params.get('user') ?? '';
  const database = params.get('database') || user;
  if (user !== POSTGRES_CLIENT_USER) {
    refuse('user', SqlState.invalidAuthorizationSpecification, `role "${user}" does not exist`,
      `connect as "${POSTGRES_CLIENT_USER}", the user in the connection string \`agentgate connect\` printed; the broker logs in to ${target.name} as its own role`);
  } else {
    record.rewritten.push({ name: 'user', from: user, to: target.user, reason: `the broker logs in to ${target.name} as the target's role` });
  }
  if (database !== target.database) {
    refuse('database', SqlState.invalidCatalogName, `database "${database}" does not exist`,
      `target ${target.name} serves database "${target.database}", the one in the connection string \`agentgate connect\` printed`);
  }

  // Settings in PostgreSQL's order: `options` first, then the packet's own (a later one wins).
  const settings: { name: string; value: string; label: string }[] = [];
  for (const [key, value] of params) {
    if (key !== 'options') continue;
    const parsed = parseStartupOptions(value);
    for (const u of parsed.unsupported) {
      refuse('options', SqlState.featureNotSupported, `startup option "${u.written}" is not supported through agentgate: ${u.reason}`,
        'give settings as -c name=value in options (PGOPTIONS), or as SET after connecting');
    }
    for (const s of parsed.settings) settings.push({ name: s.name, value: s.value, label: `options ${s.written}` });
    if (parsed.settings.length > 0) {
      record.rewritten.push({ name: 'options', from: value, to: parsed.settings.map((s) => s.name).join(', '), reason: 'each setting judged and forwarded as a parameter of its own' });
    }
  }
  for (const [key, value] of params) {
    if (key === 'options' || LOGIN_KEYS.has(key)) continue;
    if (key.startsWith('_pq_.')) {
      record.dropped.push({ name: key, reason: 'protocol option not supported; the client was told with NegotiateProtocolVersion' });
      continue;
    }
    if (key === 'replication') {
      if (isFalse(value)) record.dropped.push({ name: key, reason: `replication=${value} asks for an ordinary connection` });
      else refuse(key, SqlState.featureNotSupported, 'replication connections are not supported through agentgate');
      continue;
    }
    settings.push({ name: key, value, label: key });
  }

  let reason: string | undefined;
  for (const s of settings) {
    const name = s.name.toLowerCase();
    if (name === REASON_STARTUP_PARAM) {
      reason = s.value;
      record.dropped.push({ name: s.name, reason: "recorded as this session's reason; not sent to PostgreSQL" });
      continue;
    }
    const what = s.label === s.name ? `startup parameter "${s.name}"` : `startup parameter "${s.name}" (${s.label})`;
    if (name === 'client_encoding') {
      if (isUtf8(s.value)) {
        forward.set(name, s.value);
      } else {
        record.rewritten.push({ name: s.name, from: s.value, to: 'UTF8', reason: 'the server must read statement text as the policy parser does; ParameterStatus tells the client' });
      }
      continue;
    }
    if (name === 'search_path') {
      if (isDefaultSearchPath(s.value)) {
        forward.set(name, s.value);
      } else {
        refuse(s.name, SqlState.featureNotSupported, `${what} refused: a session starts with the server's default search_path`,
          'run SET search_path after connecting (the policy judges it there), or qualify names with their schema (schema.table)');
      }
      continue;
    }
    const v = await judge(setStatement(name, s.value));
    const kinds = v.classification['kinds'];
    const harmless = Array.isArray(kinds) && kinds.length === 1 && kinds[0] === 'session';
    if (harmless || v.effect === 'allow') {
      forward.set(name, s.value);
      continue;
    }
    if (v.effect === 'review') {
      refuse(s.name, SqlState.insufficientPrivilege, `${what} refused: ${v.reason}, and a connection cannot wait for approval`,
        'connect without it and run the SET in the session, where it can be held for review');
    } else {
      refuse(s.name, SqlState.insufficientPrivilege, `${what} refused: ${v.reason}`,
        'connect without it; the policy decides settings given at connect time exactly as it decides SET');
    }
  }
  // Last one wins for the same name, as in the server; record each name once.
  record.forwarded = [...forward.keys()];
  forward.set('client_encoding', 'UTF8');

  const plan: StartupPlan = { forward, record, ...(reason !== undefined ? { reason } : {}) };
  const first = refusals[0];
  if (first) {
    plan.refusal = refusals.length === 1
      ? first
      : new PgError(first.sqlState, first.message, { severity: 'FATAL', detail: `also refused: ${record.refused.slice(1).map((r) => r.name).join(', ')}`, ...(first.hint ? { hint: first.hint } : {}) });
  }
  return plan;
}
