/**
 * Untrusted text (a statement an agent wrote, a name from a token, a reason) made safe to
 * show a reviewer, wherever it is shown: the approvals screen, `agentgate requests`, and
 * the approval webhooks a chat tool renders. Shared by the broker and the CLI.
 */

// C0 (with \n, \t), DEL, C1, and the Unicode bidi marks, embeddings, overrides and isolates.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Terminal control characters and bidirectional controls printed as escapes (`\x1b`,
 * `\u{202e}`), so nothing can move the cursor, recolour, erase or visually reorder what is
 * approved. Newlines (CRLF as LF) and tabs stay unless `singleLine`.
 */
export function visible(text: string, singleLine = false): string {
  // A lone CR would return the cursor and let the rest of the line overwrite the start.
  return (singleLine ? text : text.replace(/\r\n/g, '\n')).replace(UNSAFE, (ch) => {
    if (!singleLine && (ch === '\n' || ch === '\t')) return ch;
    const cp = ch.codePointAt(0) ?? 0;
    return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u{${cp.toString(16)}}`;
  });
}
