/**
 * The SSH proxy's own lines on a command's stderr: the hold notice (the broker's hold message,
 * broker/session/protocol-session.ts, written by broker/ssh/proxy.ts with " (waiting…)") and
 * the grant line. The command's own stderr is tested against them too, so they are parsed
 * by hand in one pass: the earlier pattern had three open-ended parts and took seconds on a
 * crafted 27 kB line (cubic backtracking).
 */
const PREFIX = 'agentgate: ';
const HELD_BY = '; held for approval by ';
const ID_AFTER = ': apr_';
const ID_END = ' — ';
const WAITING = '(waiting…)';
const GRANTED = /^approval (apr_[a-z0-9]+) granted; running$/;

function isIdChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39);
}

/** The request id of a hold line (`agentgate: …; held for approval by WHO: apr_… — … (waiting…)`), else undefined. */
export function sshHoldRequestId(line: string): string | undefined {
  if (!line.startsWith(PREFIX) || !line.endsWith(WAITING)) return undefined;
  const held = line.indexOf(HELD_BY, PREFIX.length);
  if (held < 0) return undefined;
  const limit = line.length - WAITING.length;
  // WHO is at least one character; the first `: apr_<id> — ` after it is the request id.
  let at = line.indexOf(ID_AFTER, held + HELD_BY.length + 1);
  while (at >= 0) {
    const start = at + ID_AFTER.length;
    let end = start;
    while (end < line.length && isIdChar(line.charCodeAt(end))) end++;
    if (end > start && line.startsWith(ID_END, end) && end + ID_END.length <= limit) return `apr_${line.slice(start, end)}`;
    at = line.indexOf(ID_AFTER, Math.max(end, at + 1));
  }
  return undefined;
}

/** The request id of the grant line (`agentgate: approval apr_… granted; running`), else undefined. */
export function sshGrantedRequestId(line: string): string | undefined {
  if (!line.startsWith(PREFIX)) return undefined;
  return GRANTED.exec(line.slice(PREFIX.length))?.[1];
}
