/**
 * "Why": the reason a person or an agent gives for a session (`--reason`,
 * `AGENTGATE_REASON`) or for one call (an MCP tool's `reason`). It is recorded in the audit
 * log (session.start and each statement's events), shown to reviewers, and carried in the
 * receipt. It travels:
 *   - for the session: on the tunnel upgrade, header `x-agentgate-reason`;
 *   - for one Postgres connection: the startup parameter `agentgate.reason` (taken by the
 *     broker, never forwarded to PostgreSQL);
 *   - for one Kubernetes request: the request header `x-agentgate-reason` (stripped before
 *     the API server).
 * Header values are percent-encoded (UTF-8), so any text survives HTTP.
 */
export const REASON_HEADER = 'x-agentgate-reason';
export const REASON_STARTUP_PARAM = 'agentgate.reason';
/** Characters kept; a longer reason is cut (and says so). */
export const MAX_REASON_CHARS = 500;

/** Trimmed, control characters as spaces (runs of spaces as one), capped; undefined when nothing is left. */
export function normalizeReason(raw: string | undefined | null): string | undefined {
  if (raw === undefined || raw === null) return undefined;
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is replaced
  const text = raw.replace(/[\u0000-\u001f\u007f]+/g, ' ').replace(/ {2,}/g, ' ').trim();
  if (text === '') return undefined;
  return text.length > MAX_REASON_CHARS ? `${text.slice(0, MAX_REASON_CHARS - 1)}…` : text;
}

export function encodeReasonHeader(reason: string): string {
  return encodeURIComponent(reason);
}

/** A header's reason, or undefined when absent or not decodable. */
export function decodeReasonHeader(value: string | string[] | undefined): string | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  try {
    return normalizeReason(decodeURIComponent(v));
  } catch {
    return undefined;
  }
}
