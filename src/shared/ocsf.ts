/**
 * Audit events as OCSF 1.3.0 events (docs/ocsf-mapping.md has the table and reasons).
 * The mapping is a view for SIEMs; the evidence is `raw_data`, the hashed agentgate record,
 * which `agentgate audit verify` checks.
 */
import type { AuditRecord, JsonValue } from './audit-hash.js';
import { VERSION } from './version.js';

export const OCSF_VERSION = '1.3.0';

interface OcsfClass {
  class_uid: number;
  class_name: string;
  category_uid: number;
  category_name: string;
  activity_id: number;
  activity_name: string;
}

const APP = { category_uid: 6, category_name: 'Application Activity' };
const IAM = { category_uid: 3, category_name: 'Identity & Access Management' };
const SYSTEM = { category_uid: 1, category_name: 'System Activity' };

const DATASTORE_ACTIVITY: Record<string, [number, string]> = {
  select: [4, 'Query'],
  explain: [4, 'Query'],
  show: [4, 'Query'],
  values: [4, 'Query'],
  table: [4, 'Query'],
  fetch: [4, 'Query'],
  insert: [6, 'Create'],
  update: [2, 'Update'],
  merge: [2, 'Update'],
  delete: [7, 'Delete'],
  truncate: [7, 'Delete'],
};

const API_ACTIVITY: Record<string, [number, string]> = {
  create: [1, 'Create'],
  get: [2, 'Read'],
  list: [2, 'Read'],
  watch: [2, 'Read'],
  update: [3, 'Update'],
  patch: [3, 'Update'],
  delete: [4, 'Delete'],
  deletecollection: [4, 'Delete'],
};

/** The statement's kind: the classifier's when it ran, else the first SQL keyword. */
function sqlKind(detail: AuditRecord['detail']): string {
  const kinds = (detail['classification'] as { kinds?: unknown } | undefined)?.kinds;
  if (Array.isArray(kinds) && typeof kinds[0] === 'string') return kinds[0].toLowerCase();
  const sql = typeof detail['sql'] === 'string' ? detail['sql'] : '';
  return /^\s*([A-Za-z]+)/.exec(sql)?.[1]?.toLowerCase() ?? '';
}

export function ocsfClassOf(r: AuditRecord): OcsfClass {
  switch (r.type) {
    // An intent (recorded before the statement is forwarded) maps like its outcome; its status is Unknown.
    case 'query.intent':
    case 'query': {
      const kind = sqlKind(r.detail);
      const [id, name] = DATASTORE_ACTIVITY[kind] ?? [99, kind ? kind.toUpperCase() : 'Other'];
      return { class_uid: 6005, class_name: 'Datastore Activity', ...APP, activity_id: id, activity_name: name };
    }
    case 'audit.export':
      return { class_uid: 6005, class_name: 'Datastore Activity', ...APP, activity_id: 1, activity_name: 'Read' };
    case 'k8s.request.intent':
    case 'k8s.request': {
      const verb = typeof r.detail['verb'] === 'string' ? r.detail['verb'].toLowerCase() : '';
      const [id, name] = API_ACTIVITY[verb] ?? [99, verb || 'Other'];
      return { class_uid: 6003, class_name: 'API Activity', ...APP, activity_id: id, activity_name: name };
    }
    case 'ssh.command':
      return { class_uid: 1007, class_name: 'Process Activity', ...SYSTEM, activity_id: 1, activity_name: 'Launch' };
    case 'session.start':
      return { class_uid: 3002, class_name: 'Authentication', ...IAM, activity_id: 1, activity_name: 'Logon' };
    case 'session.end':
      return { class_uid: 3002, class_name: 'Authentication', ...IAM, activity_id: 2, activity_name: 'Logoff' };
    default:
      return { class_uid: 0, class_name: 'Base Event', category_uid: 0, category_name: 'Uncategorized', activity_id: 99, activity_name: r.type };
  }
}

function userOf(actor: AuditRecord['actor']): Record<string, JsonValue> | undefined {
  if (!actor) return undefined;
  const [typeId, type] = actor.kind === 'human' ? [1, 'User'] : [99, actor.kind === 'agent' ? 'AI agent' : 'CI job'];
  return {
    uid: actor.sub,
    ...(actor.name ? { name: actor.name } : {}),
    groups: actor.groups.map((g) => ({ name: g })),
    type_id: typeId,
    type,
  };
}

/** One OCSF event for one audit record; `raw` is the record's jsonl line. */
export function toOcsf(r: AuditRecord, raw: string): Record<string, unknown> {
  const c = ocsfClassOf(r);
  const user = userOf(r.actor);
  const status = r.outcome?.status;
  const [statusId, statusName] = status === 'ok' ? [1, 'Success'] : status === 'error' ? [2, 'Failure'] : [0, 'Unknown'];
  const effect = r.decision?.effect;
  const ev: Record<string, unknown> = {
    ...c,
    type_uid: c.class_uid * 100 + c.activity_id,
    type_name: `${c.class_name}: ${c.activity_name}`,
    time: Date.parse(r.time),
    severity_id: effect === 'deny' ? 3 : 1,
    severity: effect === 'deny' ? 'Medium' : 'Informational',
    status_id: statusId,
    status: statusName,
    metadata: {
      version: OCSF_VERSION,
      product: { name: 'agentgate', vendor_name: 'agentgate', version: VERSION },
      uid: String(r.seq),
      sequence: r.seq,
      log_name: 'agentgate.audit',
      original_time: r.time,
      ...(r.session ? { correlation_uid: r.session } : {}),
    },
    raw_data: raw,
  };
  if (r.outcome?.sqlstate) ev['status_code'] = r.outcome.sqlstate;
  if (r.outcome?.duration_ms !== undefined) ev['duration'] = Math.round(r.outcome.duration_ms);
  if (user) ev['actor'] = { user, ...(r.session ? { session: { uid: r.session } } : {}) };
  if (c.class_uid === 3002 && user) {
    ev['user'] = user;
    if (r.session) ev['session'] = { uid: r.session };
    if (r.target) ev['service'] = { name: r.target };
  }
  if (effect) {
    const [actionId, action, dispId, disp] =
      effect === 'allow' ? [1, 'Allowed', 1, 'Allowed'] : effect === 'deny' ? [2, 'Denied', 2, 'Blocked'] : [99, 'Held for review', 99, 'Held for review'];
    Object.assign(ev, { action_id: actionId, action, disposition_id: dispId, disposition: disp });
    if (r.decision?.rule) ev['policy'] = { name: r.decision.rule };
  }
  if (c.class_uid === 6005) {
    ev['database'] = r.type === 'audit.export' ? { name: 'agentgate.audit', type_id: 99, type: 'Audit log' } : { name: r.target ?? '', type_id: 1, type: 'Relational' };
    ev['type_id'] = 1;
    ev['type'] = 'Database';
  }
  if (c.class_uid === 6003) {
    const d = r.detail;
    ev['api'] = { operation: typeof d['verb'] === 'string' ? d['verb'] : '', service: { name: r.target ?? 'kubernetes' } };
    const resource = typeof d['resource'] === 'string' ? d['resource'] : undefined;
    if (resource) ev['resources'] = [{ type: resource, ...(typeof d['name'] === 'string' ? { name: d['name'] } : {}), ...(typeof d['namespace'] === 'string' ? { namespace: d['namespace'] } : {}) }];
  }
  const client = r.detail['client_address'];
  if (typeof client === 'string') {
    const m = /^(.*):(\d+)$/.exec(client);
    ev['src_endpoint'] = m ? { ip: m[1], port: Number(m[2]) } : { name: client };
  }
  // What OCSF has no place for, verbatim (the statement text is already masked).
  ev['unmapped'] = { agentgate_type: r.type, target: r.target, detail: r.detail, ...(r.decision ? { decision: r.decision } : {}) };
  return ev;
}
