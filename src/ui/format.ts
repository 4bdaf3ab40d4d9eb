/** Plain-text pieces shared by the approvals screen and the `requests`/`approve` tables. */
import type { RequestView } from '../shared/api-types.js';

// C0 (with \n, \t), DEL, C1, and the Unicode bidi embedding/override/isolate controls.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Untrusted text (a statement an agent wrote, a name from a token) made safe to show a
 * reviewer: terminal control characters and bidirectional overrides are printed as escapes,
 * so nothing can move the cursor, recolour, erase or visually reorder what is approved.
 * Newlines (CRLF as LF) and tabs stay unless `singleLine`.
 */
export function visible(text: string, singleLine = false): string {
  // A lone CR would return the cursor and let the rest of the line overwrite the start.
  return (singleLine ? text : text.replace(/\r\n/g, '\n')).replace(UNSAFE, (ch) => {
    if (!singleLine && (ch === '\n' || ch === '\t')) return ch;
    const cp = ch.codePointAt(0) ?? 0;
    return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u{${cp.toString(16)}}`;
  });
}

/** `42s`, `5m`, `3h`, `2d`: coarse on purpose, it is read at a glance. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

/** Whitespace collapsed to single spaces, for one-line display of a statement. */
export function oneLine(text: string): string {
  return visible(text.replace(/[ \t\r\n]+/g, ' ').trim(), true);
}

export function truncate(text: string, width: number): string {
  if (width <= 0) return '';
  return text.length <= width ? text : text.slice(0, Math.max(0, width - 1)) + '…';
}

export function requesterLabel(r: RequestView): string {
  return visible(r.requester.name ? `${r.requester.name} (${r.requester.sub})` : r.requester.sub, true);
}

export function approvalsGiven(r: RequestView): number {
  return r.decisions.filter((d) => d.decision === 'approve').length;
}

/** `0 of 1 approvals from dba`, `1 of 2 approvals from dba or sre`. */
export function approvalProgress(r: RequestView): string {
  return `${approvalsGiven(r)} of ${r.approvers.count} approvals from ${r.approvers.groups.join(' or ') || '(no group)'}`;
}

/** The broker's classification in words: `update; writes public.users; flags: no_where` (a Kubernetes request: its description). */
export function describeClassification(c: Record<string, unknown>): string {
  const list = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);
  if (typeof c['parse_error'] === 'string') return `does not parse: ${c['parse_error']}`;
  if (typeof c['description'] === 'string') return c['description'];
  const parts = [list(c['kinds']).join(' + ') || 'unknown kind'];
  if (list(c['writes']).length > 0) parts.push(`writes ${list(c['writes']).join(', ')}`);
  if (list(c['reads']).length > 0) parts.push(`reads ${list(c['reads']).join(', ')}`);
  if (list(c['flags']).length > 0) parts.push(`flags: ${list(c['flags']).join(', ')}`);
  if (typeof c['statements'] === 'number' && c['statements'] > 1) parts.push(`${c['statements']} statements`);
  return parts.join('; ');
}

/** What one decision means for the person who made it, in one sentence. */
export function decisionSummary(r: RequestView): string {
  switch (r.status) {
    case 'approved':
      return r.grant_until ? `Approved ${r.id}: the same statement is approved until ${r.grant_until}.` : `Approved ${r.id}: the held statement runs now.`;
    case 'denied': {
      const d = r.decisions.find((x) => x.decision === 'deny');
      return `Denied ${r.id}${d?.reason ? `: ${visible(d.reason, true)}` : ''}.`;
    }
    case 'pending':
      return `Approved ${r.id}: ${approvalsGiven(r)} of ${r.approvers.count} approvals, waiting for another approver.`;
    default:
      return `${r.id} is ${r.status}.`;
  }
}

/** Fixed-width columns; the last column is not padded. */
export function table(rows: string[][]): string {
  const cols = Math.max(0, ...rows.map((r) => r.length));
  const widths = Array.from({ length: cols }, (_, i) => Math.max(0, ...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** The `agentgate requests` / `agentgate approve` (no TTY) listing. */
export function requestsTable(requests: RequestView[], now: number = Date.now()): string {
  const rows = [['ID', 'STATUS', 'AGE', 'ROLE', 'REQUESTER', 'TARGET', 'RULE', 'APPROVALS', 'STATEMENT']];
  for (const r of requests) {
    rows.push([
      r.id,
      r.status,
      formatAge(now - Date.parse(r.created_at)),
      r.mine ? 'mine' : r.can_decide ? 'review' : 'reviewer',
      visible(r.requester.sub, true),
      r.target,
      r.rule,
      `${approvalsGiven(r)}/${r.approvers.count}`,
      truncate(oneLine(r.statement), 60),
    ]);
  }
  return table(rows);
}

/** Every field of one request, for `agentgate approve ID` without a TTY. */
export function requestDetails(r: RequestView, now: number = Date.now()): string {
  const lines: string[][] = [
    ['Request', `${r.id} (${r.status})`],
    ['Requester', `${requesterLabel(r)}, ${r.requester.kind}`],
    ['Target', `${r.target} (${r.protocol})`],
    ['Rule', `${r.rule} (policy ${r.policy})`],
    ['Why held', visible(r.reason, true)],
    ['Approvals', approvalProgress(r)],
    ['Grant', r.grant_seconds ? `${r.grant_seconds} s for the same statement` : 'one execution'],
    ['Created', `${r.created_at} (${formatAge(now - Date.parse(r.created_at))} ago)`],
    ['Expires', r.expires_at],
  ];
  if (r.grant_until) lines.push(['Grant until', r.grant_until]);
  for (const d of r.decisions) lines.push(['Decision', visible(`${d.approver.name ?? d.approver.sub}: ${d.decision}${d.reason ? ` — ${d.reason}` : ''} (${d.at})`, true)]);
  lines.push(['Classification', visible(describeClassification(r.classification), true)]);
  return `${table(lines)}\n\n${visible(r.statement)}`;
}
