/**
 * Untrusted text (a statement an agent wrote, a name from a token, a reason) made safe to
 * show a reviewer, wherever it is shown: the approvals screen, `agentgate requests`, and
 * the approval webhooks a chat tool renders. Shared by the broker and the CLI.
 *
 * What is shown must read as what runs: every character a terminal would obey, hide, or
 * draw as something it is not is printed as an escape instead.
 */
import { lookalikeOf } from './confusables.js';

/**
 * Printed as escapes wherever they occur: controls (C0 with \n and \t, DEL, C1), format
 * characters (bidi marks, embeddings, overrides and isolates; zero-width spaces and joiners,
 * the BOM, soft hyphen, invisible operators, tags), lone surrogates, private-use and
 * unassigned code points, line and paragraph separators, every space other than U+0020, and
 * whatever else Unicode says a renderer may ignore (Hangul fillers, variation selectors).
 */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]|(?! )\p{Zs}/gu;

/** A word: letters, marks, digits and the identifier characters `_` and `$`. */
const WORD = /[\p{L}\p{M}\p{N}_$]+/gu;

/** Scripts that may share a word without one letter passing for another (Japanese, Chinese, Korean, and Latin with them). */
const CJK = /[\p{Script_Extensions=Han}\p{Script_Extensions=Hiragana}\p{Script_Extensions=Katakana}\p{Script_Extensions=Hangul}\p{Script_Extensions=Bopomofo}]/u;
const SCRIPTS: [string, RegExp][] = [
  ['latin', /\p{Script=Latin}/u],
  ['cyrillic', /\p{Script=Cyrillic}/u],
  ['greek', /\p{Script=Greek}/u],
  ['armenian', /\p{Script=Armenian}/u],
  ['cherokee', /\p{Script=Cherokee}/u],
  ['coptic', /\p{Script=Coptic}/u],
  ['georgian', /\p{Script=Georgian}/u],
  ['hebrew', /\p{Script=Hebrew}/u],
  ['arabic', /\p{Script=Arabic}/u],
];

function scriptOf(ch: string): string | undefined {
  // Digits, marks, `_`, and letters shared by several scripts go with any.
  if (!/\p{L}/u.test(ch) || /[\p{Script=Common}\p{Script=Inherited}]/u.test(ch)) return undefined;
  if (CJK.test(ch)) return 'cjk';
  for (const [name, re] of SCRIPTS) if (re.test(ch)) return name;
  return 'other';
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

function escape(ch: string): string {
  const cp = ch.codePointAt(0) ?? 0;
  return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u{${cp.toString(16)}}`;
}

/**
 * A word a reader could take for another: letters of two scripts (`usеrs` with a Cyrillic
 * `е`), or only letters that pass for ASCII ones without being ASCII (`сору` in Cyrillic).
 * Latin with Chinese, Japanese or Korean letters is ordinary text.
 */
function deceptive(word: string): boolean {
  const scripts = new Set<string>();
  let letters = 0;
  let lookalikes = 0;
  for (const ch of word) {
    const s = scriptOf(ch);
    if (s === undefined) continue;
    letters++;
    if (s !== 'latin' || ch > '\u007f') {
      if (lookalikeOf(ch) !== undefined) lookalikes++;
    }
    scripts.add(s);
  }
  if (letters > 0 && lookalikes === letters) return true;
  scripts.delete('cjk');
  if (scripts.size <= 1) return false;
  return true;
}

/**
 * Characters a reader would take for others: in a deceptive word, every non-ASCII one; and
 * anywhere, a compatibility form of an ASCII character (full-width `ｅ`, mathematical `𝐞`,
 * the ligature `ﬁ`, superscript `²`) and a combining mark on an ASCII character (`1\u0338`
 * drawn as a struck-through 1) or stacked on more than one other mark.
 */
function markLookalikes(text: string): string {
  let out = text.replace(WORD, (word) => {
    if (isAscii(word)) return word;
    if (deceptive(word)) return [...word].map((ch) => (ch > '\u007f' ? escape(ch) : ch)).join('');
    return word;
  });
  out = out.replace(/[^\0-\x7f]/gu, (ch) => {
    const folded = ch.normalize('NFKC');
    return folded !== ch && isAscii(folded) ? escape(ch) : ch;
  });
  // A mark on an ASCII base, or the third of a stack.
  return out.replace(/([\0-\x7f]|\p{M}{2})(\p{M}+)/gu, (_m, base: string, marks: string) => base + [...marks].map(escape).join(''));
}

/**
 * Terminal control characters, invisible and format characters printed as escapes (`\x1b`,
 * `\u{202e}`, `\u{200b}`), so nothing can move the cursor, recolour, erase, hide, or
 * visually reorder what is approved; look-alike letters (see markLookalikes) printed as
 * escapes too, so `usеrs` with a Cyrillic `е` does not read as `users`. Newlines (CRLF as
 * LF) and tabs stay unless `singleLine`.
 */
export function visible(text: string, singleLine = false): string {
  // A lone CR would return the cursor and let the rest of the line overwrite the start.
  const escaped = (singleLine ? text : text.replace(/\r\n/g, '\n')).replace(UNSAFE, (ch) => {
    if (!singleLine && (ch === '\n' || ch === '\t')) return ch;
    return escape(ch);
  });
  return markLookalikes(escaped);
}

/**
 * A copy of JSON data with every string passed through `visible(…, true)`: for printing a
 * whole record whose strings came from elsewhere (a receipt's actor name is the IdP's
 * `name` claim, which users often edit), so no field can start a new line, move the cursor
 * or pass for another.
 */
export function visibleDeep<T>(value: T): T {
  if (typeof value === 'string') return visible(value, true) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => visibleDeep(v)) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = visibleDeep(v);
    return out as T;
  }
  return value;
}
