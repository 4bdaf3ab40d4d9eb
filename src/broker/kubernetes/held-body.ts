/**
 * The body of a held Kubernetes write as a reviewer reads it: the approval releases exactly
 * these bytes, so the reviewer must see them. Masked like a response (a JSON body through
 * the object maskers of its kind, so Secret data and env values stay hidden; any other
 * text through the detectors), then cut to a readable length, saying so. Control and bidi
 * characters are escaped where it is shown (display-text.ts), as for SQL statements.
 */
import { ObjectMasker } from './mask.js';
import type { ValueMasker } from './value-mask.js';

/** Characters of a body shown to a reviewer; the rest is cut with a marker (and the hold refused: `cut`). */
export const SHOWN_BODY_CHARS = 65_536;

export interface ShownBody {
  contentType: string;
  text: string;
  /** The text was cut: a reviewer cannot see all the approval would release. */
  cut?: true;
}

/** `kind`: maskedKind() of the request, '' when none. `masker` undefined: this session is not masked. */
export function shownBody(body: Buffer, contentType: string, masker: ValueMasker | undefined, kind: string): ShownBody {
  let text = body.toString('utf8');
  if (masker) text = maskedText(text, masker, kind);
  if (text.length > SHOWN_BODY_CHARS) return { contentType: contentType.slice(0, 200), text: `${text.slice(0, SHOWN_BODY_CHARS)}… (cut: ${body.length} bytes in all)`, cut: true };
  return { contentType: contentType.slice(0, 200), text };
}

function maskedText(text: string, masker: ValueMasker, kind: string): string {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    // Not JSON (YAML for server-side apply, or malformed): the detectors over the text.
    const m = masker.field(text, undefined);
    return m === undefined ? text : (m.value ?? '');
  }
  try {
    new ObjectMasker(masker, kind).document(doc);
  } catch {
    // Nested past what the maskers follow: nothing of it is shown rather than it unmasked.
    return '(agentgate: this body is nested too deeply to be shown masked; deny it unless you know what it is)';
  }
  return JSON.stringify(doc, null, 2);
}
