/**
 * The one wording for "your statement waits for a reviewer", said to the requester (who
 * cannot approve it) by the Postgres proxy, the Kubernetes proxy and `agentgate run`: what
 * is happening, who decides, and the command the reviewer runs.
 */
export interface HoldNoticeInput {
  id: string;
  approvers: { count: number; groups: readonly string[] };
}

export function holdNotice(h: HoldNoticeInput): string {
  const n = h.approvers.count;
  const from = h.approvers.groups.length > 0 ? ` from ${h.approvers.groups.join(' or ')}` : '';
  return `waiting for ${n} approval${n === 1 ? '' : 's'}${from} (${h.id}); a reviewer runs: agentgate approve ${h.id}`;
}
