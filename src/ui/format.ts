/** Plain-text pieces shared by the approvals screen and the `requests`/`approve` tables. */
import type { RequestView } from '../shared/api-types.js';

export { shownStatement, sizeOf, visible } from '../shared/display-text.js';
import { shownStatement, sizeOf, visible } from '../shared/display-text.js';

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

/** Columns a character takes on a terminal: two for East Asian wide ones, else one. */
function columns(ch: string): number {
  return /[\p{Script_Extensions=Han}\p{Script_Extensions=Hiragana}\p{Script_Extensions=Katakana}\p{Script_Extensions=Hangul}\u1100-\u115f\u2e80-\u303e\u3040-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\u{1f300}-\u{1faff}\u{20000}-\u{3fffd}]/u.test(ch) ? 2 : 1;
}

/** `text` cut into the terminal lines it takes at `width` columns (each logical line at least one). */
export function wrapLines(text: string, width: number): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    let cur = '';
    let used = 0;
    for (const ch of line.replace(/\t/g, '    ')) {
      const w = columns(ch);
      if (used + w > width && cur !== '') {
        out.push(cur);
        cur = '';
        used = 0;
      }
      cur += ch;
      used += w;
    }
    out.push(cur);
  }
  return out;
}

/**
 * `text` cut to `width` characters (code points, so no pair is split) with how much was cut
 * said: `…(+1234)`. A listing must not pass for all of a statement a reviewer approves.
 */
export function truncate(text: string, width: number): string {
  const chars = [...text];
  if (chars.length <= width) return text;
  return `${chars.slice(0, Math.max(0, width - 1)).join('')}…(+${chars.length - Math.max(0, width - 1)})`;
}

/** Whether requestsTable cut this request's statement, values or body. */
export function cutInTable(r: RequestView): boolean {
  return [...tableStatement(r)].length > 80 || (bodyLine(r) !== undefined && [...(bodyLine(r) ?? '')].length > 80);
}

function tableStatement(r: RequestView): string {
  return oneLine(r.statement) + (parameterList(r) ? ` -- ${parameterList(r) ?? ''}` : '') + (r.any_values ? ' [any values]' : '');
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
  // What the session set before (search_path, role, …): the approval covers the statement in that state only.
  if (list(c['session_state']).length > 0) parts.push(`runs after this session's ${list(c['session_state']).join(' ⏎ ')}`);
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

/** `$1 = 'paid', $2 = '11'`: the values a held statement runs with (already masked by the broker). */
export function parameterList(r: RequestView): string | undefined {
  if (!r.parameters || r.parameters.length === 0) return undefined;
  return visible(r.parameters.map((v, i) => `$${i + 1} = ${v}`).join(', '), true);
}

/** A held Kubernetes write's body on one line (`agentgate requests`, the screen's list). */
export function bodyLine(r: RequestView): string | undefined {
  if (!r.body) return undefined;
  return visible(`${r.body.content_type || '(no content type)'} ${oneLine(r.body.text) || '(empty)'}`, true);
}

/** A held Kubernetes write's body as the details show it: Content-Type, then the text. */
export function bodyRows(r: RequestView): [string, string][] {
  if (!r.body) return [];
  return [
    ['Content-Type', visible(r.body.content_type || '(none)', true)],
    ['Body', r.body.text === '' ? '(empty)' : visible(r.body.text)],
  ];
}

/** What an approval covers, as the reviewer must read it before deciding. */
export function coverage(r: RequestView): string {
  const span = r.grant_seconds ? `for ${formatAge(r.grant_seconds * 1000)}` : 'once';
  if (r.body) return `this request with exactly this body and Content-Type, ${span}`;
  if (r.any_values) return `this statement with ANY parameter values, ${span} (rule ${r.rule} approves the shape, not these values)`;
  return r.parameters && r.parameters.length > 0 ? `this statement with exactly these values, ${span}` : `this statement, ${span}`;
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
  const rows = [['ID', 'STATUS', 'AGE', 'ROLE', 'REQUESTER', 'TARGET', 'RULE', 'APPROVALS', 'REASON', 'STATEMENT']];
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
      r.requester_reason !== undefined ? truncate(visible(oneLine(r.requester_reason), true), 40) : '-',
      // A body gets its own 80 characters: a long path must not push it out of sight.
      truncate(tableStatement(r), 80) + (bodyLine(r) ? ` -- ${truncate(bodyLine(r) ?? '', 80)}` : ''),
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
    ['Reason given', r.requester_reason !== undefined ? visible(r.requester_reason, true) : '(none)'],
    ['Approvals', approvalProgress(r)],
    ['Grant', r.grant_seconds ? `${r.grant_seconds} s for the same statement` : 'one execution'],
    ['Approves', coverage(r)],
    ...(parameterList(r) ? [['Values', parameterList(r) ?? '']] : []),
    ...bodyRows(r),
    ['Created', `${r.created_at} (${formatAge(now - Date.parse(r.created_at))} ago)`],
    ['Expires', r.expires_at],
  ];
  if (r.grant_until) lines.push(['Grant until', r.grant_until]);
  for (const d of r.decisions) lines.push(['Decision', visible(`${d.approver.name ?? d.approver.sub}: ${d.decision}${d.reason ? ` — ${d.reason}` : ''} (${d.at})`, true)]);
  lines.push(['Classification', visible(describeClassification(r.classification), true)]);
  lines.push(['Statement', sizeOf(r.statement)]);
  return `${table(lines)}\n\n${shownStatement(r.statement)}`;
}
