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

/**
 * A statement as a reviewer reads it whole (details, `agentgate approve ID`, the webhook's
 * text): escaped as `visible` does, with padding that would push the rest out of sight said
 * in words — a run of three or more blank lines as one line `⋯ N blank lines ⋯`, a run of
 * 32 or more spaces as `⋯ N spaces ⋯`.
 */
export function shownStatement(text: string): string {
  return visible(text)
    .replace(/ {32,}/g, (run) => ` ⋯ ${run.length} spaces ⋯ `)
    .replace(/(?:^|\n)(?:[ \t]*\n){3,}/g, (run) => {
      const blank = run.split('\n').length - 2;
      return `\n⋯ ${blank} blank lines ⋯\n`;
    });
}

/** `3 lines, 120 characters`: how much there is to read. */
export function sizeOf(text: string): string {
  const lines = text === '' ? 0 : text.split(/\r\n|\r|\n/).length;
  return `${lines} line${lines === 1 ? '' : 's'}, ${[...text].length} characters`;
}

/**
 * JSON for a terminal (`--json` output, `replay --json`): the same document, with every
 * character `visible` would escape written as a JSON `\uXXXX` escape. JSON.stringify escapes
 * only C0 controls, so a C1 CSI (U+009B), a bidi override or a zero-width space in a value
 * would reach the terminal raw; as escapes they parse back to exactly the same value.
 */
export function terminalJson(value: unknown, space?: number): string {
  return jsonShown(JSON.stringify(value, null, space));
}

/** JSON text (one document or JSON lines) with what `visible` would escape as `\uXXXX`. */
function jsonShown(json: string): string {
  // Structural JSON is ASCII and a string holds no raw newline: every other match is inside a string.
  return json.replace(UNSAFE, (ch) => {
    if (ch === '\n') return ch;
    let out = '';
    for (let i = 0; i < ch.length; i++) out += `\\u${ch.charCodeAt(i).toString(16).padStart(4, '0')}`;
    return out;
  });
}

/**
 * A stream of text (an audit export) made safe for a terminal line by line: JSON lines as
 * terminalJson writes them (the same values), other text (CSV) as `visible` shows it. A
 * line is judged whole, so a chunk boundary cannot split a sequence or a word.
 */
export class TerminalLines {
  readonly #json: boolean;
  readonly #decoder = new TextDecoder('utf-8');
  #carry = '';

  constructor(json: boolean) {
    this.#json = json;
  }

  write(chunk: Uint8Array): string {
    const text = this.#carry + this.#decoder.decode(chunk, { stream: true });
    const nl = text.lastIndexOf('\n');
    if (nl < 0) {
      this.#carry = text;
      return '';
    }
    this.#carry = text.slice(nl + 1);
    return this.#shown(text.slice(0, nl + 1));
  }

  end(): string {
    const rest = this.#carry + this.#decoder.decode();
    this.#carry = '';
    return rest === '' ? '' : this.#shown(rest);
  }

  #shown(text: string): string {
    return this.#json ? jsonShown(text) : visible(text);
  }
}

/**
 * Text for Slack-style mrkdwn (the webhook's `text`): `&`, `<` and `>` as the entities
 * Slack asks for, so agent text cannot form a mention (`<!channel>`, `<@U…>`) or a link
 * whose label differs from its address (`<https://evil|Approve>`); escaped as `visible` does
 * first. A receiver that decodes the entities gets the escaped text back.
 */
export function mrkdwnText(text: string, singleLine = false): string {
  return visible(text, singleLine).replace(/[&<>]/g, (ch) => (ch === '&' ? '&amp;' : ch === '<' ? '&lt;' : '&gt;'));
}

/** What a removed sequence is shown as: its first characters, escaped, and how much more there was. */
function removedSequence(seq: string, more: number): string {
  const head = seq.length > 40 ? seq.slice(0, 40) : seq;
  const rest = more + (seq.length - head.length);
  return `${visible(head, true)}${rest > 0 ? `…(+${rest})` : ''}`;
}

/** CSI final bytes a replay keeps without a prefix or intermediates: cursor motion, erase, scroll, tabs, SGR, ANSI modes 4/20, save/restore. */
const CSI_FINALS = '@ABCDEFGHIJKLMPSTXZ`abdefghlmrsu';
/** DEC private modes on by default (autowrap, cursor shown); every other one is off. */
const DEFAULT_ON_MODES = new Set(['7', '25']);
/** Alternate screen modes: left last, so the other resets land on the main screen. */
const SCREEN_MODES = new Set(['47', '1047', '1049']);
/** 8-bit C1 introducers (U+0090 DCS, U+0098 SOS, U+009B CSI, U+009D OSC, U+009E PM, U+009F APC) as their 7-bit ESC form. */
const C1_INTRODUCER: Record<string, string> = { '\u0090': 'P', '\u0098': 'X', '\u009b': '[', '\u009d': ']', '\u009e': '^', '\u009f': '_' };

/**
 * Bidirectional controls (marks, embeddings, overrides, isolates): a terminal with bidi
 * support would reorder what follows them ("Trojan Source"); no session output needs them.
 */
const BIDI_CONTROL = /^[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]$/u;

type FilterState = 'ground' | 'esc' | 'csi' | 'string';

/**
 * Terminal output recorded from a target (which the agent controls), filtered before it is
 * replayed into a person's terminal (`agentgate replay`; `--raw` skips it). It follows the
 * ECMA-48 / VT parser, chunk to chunk, and keeps what draws the session (text, cursor
 * motion, erasing, colours, scroll regions, character sets, the alternate screen, cursor
 * and keypad modes). It removes, showing an escaped stub in its place:
 *   - every string sequence (OSC, DCS, APC, PM, SOS): window titles, clipboard writes
 *     (OSC 52), hyperlinks whose text differs from their target (OSC 8), palette changes,
 *     notifications, file transfers, tmux pass-through;
 *   - everything that makes the terminal answer (status and attribute reports, window
 *     reports and operations `CSI … t`, DECID, ENQ): an answer lands in the input, after the
 *     replay ends in the shell's;
 *   - any other CSI or escape sequence, C0 control or C1 control not known to be only
 *     drawing (unknown means no); a C1 introducer (U+009B …) is parsed as its ESC form;
 *   - bidirectional controls (U+202E …), which a bidi-capable terminal would obey.
 * `end()` then turns off what the replay left on (private modes, insert mode, scroll
 * region, shifted character sets, keypad mode, cursor style, colours), so the terminal
 * is the reviewer's again. Output with none of these replays byte for byte.
 */
export class ReplayFilter {
  #state: FilterState = 'ground';
  /** The sequence being read (a string sequence: its first characters). */
  #seq = '';
  /** Characters of a string sequence beyond those kept in #seq. */
  #more = 0;
  /** ESC seen inside a string sequence: `\` ends it. */
  #stringEsc = false;
  #modes = new Map<string, boolean>();
  #ansiModes = new Set<string>();
  #scrollRegion = false;
  #charsets = false;
  #keypad = false;
  #cursorStyle = false;
  #sgr = false;

  /** The part of `chunk` that may reach the terminal, with stubs for what was removed. */
  write(chunk: string): string {
    let out = '';
    for (const ch of chunk) out += this.#step(ch);
    return out;
  }

  /** A sequence cut off at the end, shown; then what turns the replay's leftover modes off. */
  end(): string {
    let out = this.#state === 'ground' ? '' : this.#drop();
    const modes = [...this.#modes].filter(([m, on]) => on !== DEFAULT_ON_MODES.has(m));
    for (const [m] of modes) if (!SCREEN_MODES.has(m)) out += `\x1b[?${m}${DEFAULT_ON_MODES.has(m) ? 'h' : 'l'}`;
    for (const m of this.#ansiModes) out += `\x1b[${m}l`;
    // DECSTBM homes the cursor: saved and restored around it.
    if (this.#scrollRegion) out += '\x1b7\x1b[r\x1b8';
    if (this.#charsets) out += '\x0f\x1b(B';
    if (this.#keypad) out += '\x1b>';
    if (this.#cursorStyle) out += '\x1b[0 q';
    for (const [m] of modes) if (SCREEN_MODES.has(m)) out += `\x1b[?${m}l`;
    if (this.#sgr) out += '\x1b[0m';
    this.reset();
    return out;
  }

  /** Forget everything (after the player reset the terminal itself). */
  reset(): void {
    this.#state = 'ground';
    this.#seq = '';
    this.#more = 0;
    this.#stringEsc = false;
    this.#modes.clear();
    this.#ansiModes.clear();
    this.#scrollRegion = this.#charsets = this.#keypad = this.#cursorStyle = this.#sgr = false;
  }

  #step(ch: string): string {
    const c = ch.codePointAt(0) ?? 0;
    switch (this.#state) {
      case 'ground':
        return this.#ground(ch, c);
      case 'esc':
        return this.#esc(ch, c);
      case 'csi':
        return this.#csi(ch, c);
      case 'string':
        return this.#string(ch, c);
    }
  }

  #ground(ch: string, c: number): string {
    if (c === 0x1b) return this.#start('esc', ch);
    const introducer = C1_INTRODUCER[ch];
    if (introducer !== undefined) return this.#start(introducer === '[' ? 'csi' : 'string', `\x1b${introducer}`);
    // BEL, BS, HT, LF, VT, FF, CR draw; SO/SI shift character sets (reset at the end).
    if (c >= 0x07 && c <= 0x0f) {
      if (c === 0x0e) this.#charsets = true;
      return ch;
    }
    if (c < 0x20 || (c >= 0x80 && c <= 0x9f) || BIDI_CONTROL.test(ch)) return visible(ch, true);
    return ch;
  }

  #start(state: FilterState, seq: string): string {
    this.#state = state;
    this.#seq = seq;
    this.#more = 0;
    this.#stringEsc = false;
    return '';
  }

  /** The sequence read so far, shown escaped instead of obeyed. */
  #drop(): string {
    const shown = removedSequence(this.#seq, this.#more);
    this.#state = 'ground';
    this.#seq = '';
    this.#more = 0;
    this.#stringEsc = false;
    return shown;
  }

  /** `ch` cut the sequence short: the sequence is shown, `ch` read afresh. */
  #interrupt(ch: string): string {
    return this.#drop() + this.#step(ch);
  }

  #esc(ch: string, c: number): string {
    if (c >= 0x20 && c <= 0x2f) {
      this.#seq += ch;
      return this.#seq.length > 8 ? this.#drop() : '';
    }
    if (c < 0x30 || c > 0x7e) return this.#interrupt(ch);
    const inter = this.#seq.slice(1);
    if (inter === '') {
      if (ch === '[') return this.#start('csi', '\x1b[');
      if (']PX^_'.includes(ch)) return this.#start('string', `\x1b${ch}`);
    }
    const seq = this.#seq + ch;
    let keep = false;
    if (inter === '') {
      keep = '6789=>cDEFHMNO'.includes(ch);
      if (ch === '=') this.#keypad = true;
    } else if (inter.length === 1 && '()*+-./'.includes(inter)) {
      keep = true;
      this.#charsets = true;
    } else if (inter === '#') keep = '34568'.includes(ch);
    else if (inter === '%') keep = ch === 'G' || ch === '@';
    if (!keep) {
      this.#seq = seq;
      return this.#drop();
    }
    this.#state = 'ground';
    this.#seq = '';
    return seq;
  }

  #csi(ch: string, c: number): string {
    // C0 controls inside a CSI are obeyed as if outside it (ESC, CAN and SUB end it).
    if (c < 0x20 && c !== 0x1b && c !== 0x18 && c !== 0x1a) return this.#ground(ch, c);
    if (c < 0x20 || c > 0x7e) return this.#interrupt(ch);
    this.#seq += ch;
    if (c < 0x40) return this.#seq.length > 64 ? this.#drop() : '';
    // The final byte: parameters (with an optional private prefix), intermediates.
    const body = this.#seq.slice(2, -1);
    const m = /^([<=>?]?)([0-9:;]*)([ -/]*)$/.exec(body);
    if (!m) return this.#drop();
    const [, prefix = '', params = '', inter = ''] = m;
    let keep = false;
    if (prefix === '' && inter === '' && CSI_FINALS.includes(ch)) {
      keep = true;
      if (ch === 'h' || ch === 'l') keep = params.split(';').every((p) => p === '4' || p === '20');
      if (keep && ch === 'h') for (const p of params.split(';')) this.#ansiModes.add(p);
      if (keep && ch === 'l') for (const p of params.split(';')) this.#ansiModes.delete(p);
      if (ch === 'r') this.#scrollRegion = true;
      if (ch === 'm') this.#sgr = true;
    } else if (prefix === '?' && inter === '' && 'hlJK'.includes(ch)) {
      keep = params !== '' || ch === 'J' || ch === 'K';
      if (keep && (ch === 'h' || ch === 'l')) for (const p of params.split(';')) if (/^\d+$/.test(p)) this.#modes.set(String(Number(p)), ch === 'h');
    } else if (prefix === '' && inter === ' ' && ch === 'q') {
      keep = true;
      this.#cursorStyle = true;
    } else if (prefix === '' && params === '' && inter === '!' && ch === 'p') keep = true;
    if (!keep) return this.#drop();
    const seq = this.#seq;
    this.#state = 'ground';
    this.#seq = '';
    return seq;
  }

  #string(ch: string, c: number): string {
    // Ended by ST (ESC \ or U+009C); an OSC also by BEL. Nothing of it is written.
    if (this.#stringEsc) {
      this.#stringEsc = false;
      if (ch === '\\') {
        this.#add('\x1b\\');
        return this.#drop();
      }
      return this.#interrupt('\x1b') + this.#step(ch);
    }
    if (c === 0x1b) {
      this.#stringEsc = true;
      return '';
    }
    if (c === 0x9c || (c === 0x07 && this.#seq.startsWith('\x1b]'))) {
      this.#add(ch);
      return this.#drop();
    }
    // CAN and SUB abort it.
    if (c === 0x18 || c === 0x1a) return this.#drop();
    this.#add(ch);
    return '';
  }

  #add(s: string): void {
    if (this.#seq.length < 48) this.#seq += s;
    else this.#more += s.length;
  }
}
