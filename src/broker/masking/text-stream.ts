/**
 * Text that streams out (container logs, SSH and `kubectl exec` output) scanned by the
 * masking detectors without buffering it whole. Complete lines go out at once, each batch
 * masked; the unfinished last line waits for more, so a value split across chunks is seen
 * whole. A PEM block spans lines: from its `-----BEGIN` the text waits for its `-----END`.
 * Text held past the cap fails the stream: what cannot be inspected never passes.
 *
 * A container log may begin and end where the API server cut it, at a place the client
 * chose (`tailLines`, `sinceTime`, `limitBytes`): a value cut there no longer has the shape
 * a detector knows. With `cut`, key-body lines at the start are held until what follows
 * shows whether they were the inside of a key block whose BEGIN was cut away (then they are
 * masked whole with its END line), and an unfinished last line goes out masked whole.
 *
 * An interactive terminal prints prompts and echoes keys without a newline: with
 * `quietFlushMs` an unfinished line held that long with nothing new arriving is released
 * (masked). A value the target prints in two pieces with such a pause between is then
 * scanned in two pieces; streams without a terminal never flush early.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { TextDecoder } from 'node:util';
import type { ValueMasker } from './value-mask.js';

export class TextStreamError extends Error {
  override readonly name = 'TextStreamError';
}

const BEGIN = '-----BEGIN ';
const END = '-----END ';
export const DEFAULT_MAX_HELD = 1024 * 1024;
/** `NAME=value` (printenv, env, a .env file), `export NAME=value` at a line's start: 1 the name, 3 the value (to the line's end). */
/**
 * What a terminal consumes without showing it (ECMA-48): a control sequence (`ESC [ … m`,
 * or its one-byte C1 form), a control string up to BEL or ST (an OSC window title, DCS,
 * APC…; unterminated: to the line's end), any other escape (`ESC ( B` from `tput sgr0`,
 * `ESC 7`), a lone ESC.
 */
// eslint-disable-next-line no-control-regex
const TERMINAL_ESCAPE = /(?:\x1b\[|\u009b)[0-?]*[ -/]*[@-~]|(?:\x1b[\]PX^_]|[\u0090\u0098\u009d-\u009f])[^\x07\x1b\u009c]*(?:\x07|\x1b\\|\u009c)?|\x1b[ -/]*[0-~]?/g;
/**
 * A character a terminal shows nothing for, or that moves the cursor (backspace, carriage
 * return): all C0/C1 controls but tab and newline, DEL, and the zero-width format
 * characters (U+200B–U+200F, U+2060–U+2064, U+FEFF: a width of 0 to wcwidth, so a key with
 * one inside shows whole).
 */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2060-\u2064\ufeff]/;
/** A line holding `=` or a control: the only ones #special may change. Lines start after `\n` only (a `\r` inside one is the terminal's business). */
// eslint-disable-next-line no-control-regex
const CANDIDATE_LINE = /(?<![^\n])[^\n]*?[=\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2060-\u2064\ufeff][^\n]*\n?/g;
const ASSIGNMENT = /^\s*(?:export\s+|declare\s+-x\s+)?([A-Za-z_][A-Za-z0-9_.-]{0,127})(=)([^\r\n]*)/;
/** `kubectl logs --timestamps` puts an RFC 3339 time and a space before each line. */
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T[0-9:.]{8,40}(?:Z|[+-]\d{2}:\d{2}) /;
/** A line of a PEM key block's body (base64), and of its headers (`Proc-Type: …`, the blank line after them). */
const BASE64_LINE = /^[A-Za-z0-9+/=]+$/;
const KEY_HEADER_LINE = /^(?:(?:Proc-Type|DEK-Info|Comment): .*)?$/;
/** Body lines are 64 (or 76) characters but the last: a first line shorter than this can only be the last. */
const MIN_KEY_LINE = 16;
/** The END line of a private key block (its BEGIN is what a cut removed). */
const KEY_END_LINE = /^-----END [A-Z0-9 ]{0,48}PRIVATE KEY(?: BLOCK)?-----$/;
/** Longer than any key block's body (an 8192-bit RSA key is some 6.5 KiB): past it the held lines are no key's. */
const MAX_CUT_KEY_BODY = 64 * 1024;

/** The synchronous core: one stream's held text. */
export class LineScanner {
  #held = '';
  readonly #decoder: TextDecoder;
  readonly #masker: ValueMasker;
  readonly #onMasked: (n: number) => void;
  readonly #maxHeld: number;
  readonly #what: string;
  /** Whether the text may start inside a key block (set while key-body lines are held at the start). */
  #cutStart: boolean;
  readonly #cutEnd: boolean;

  /** `what` names the text in the error a too-long line raises ("a log line", "output"). */
  constructor(masker: ValueMasker, onMasked: (n: number) => void, o: { maxHeld?: number; what?: string; binary?: 'replace' | 'refuse'; cut?: boolean } = {}) {
    // Bytes that are not UTF-8 are either shown as U+FFFD (a terminal's odd byte) or refused:
    // binary output (a tar for kubectl cp) would arrive silently corrupted.
    this.#decoder = new TextDecoder('utf-8', { fatal: o.binary === 'refuse' });
    this.#masker = masker;
    this.#onMasked = onMasked;
    this.#maxHeld = o.maxHeld ?? DEFAULT_MAX_HELD;
    this.#what = o.what ?? 'output without a line break';
    this.#cutStart = o.cut === true;
    this.#cutEnd = o.cut === true;
  }

  /**
   * Whether an unfinished line is held that a quiet flush may release: not a key block,
   * nor what may be the start of one (`-----BEGI` then a pause: released, the rest of the
   * key would never look like a key block again).
   */
  get releasable(): boolean {
    const h = CONTROL.test(this.#held) ? shownLines(this.#held) : this.#held;
    if (h.length === 0 || h.includes('-----')) return false;
    for (let n = Math.min(h.length, BEGIN.length); n > 0; n--) if (BEGIN.startsWith(h.slice(-n))) return false;
    return true;
  }

  /** The masked text that may go now; throws TextStreamError when too much is held. */
  push(chunk: Buffer): string {
    this.#held += this.#decode(chunk, true);
    const head = this.#cutStart ? this.#cutKeyBody() : '';
    if (this.#cutStart) return head;
    let cut = this.#held.lastIndexOf('\n') + 1;
    const begin = this.#openKeyBlock();
    if (begin >= 0) cut = Math.min(cut, begin);
    const out = this.#held.slice(0, cut);
    this.#held = this.#held.slice(cut);
    if (this.#held.length > this.#maxHeld) throw new TextStreamError(`${this.#what} longer than ${this.#maxHeld} characters; the stream was cut so nothing passes unscanned`);
    return head + this.#mask(out);
  }

  /**
   * At a cut start: the complete lines held may be the inside of a key block — its headers
   * and blank line, then base64 lines of one width, the last one maybe shorter. An END line
   * after them masks them whole with it; any other line (or too long a run) ends the start,
   * and they go on as ordinary text. A short line can only be a body's last, so it waits
   * for one more line at most (a log of `ok` lines is not held). Returns what may go now.
   */
  #cutKeyBody(): string {
    let at = 0;
    let width = -1;
    let last = false;
    for (let nl = this.#held.indexOf('\n'); nl >= 0; nl = this.#held.indexOf('\n', at)) {
      const bare = this.#held.slice(at, nl).replace(TIMESTAMP, '').replace(/\r$/, '');
      if (KEY_END_LINE.test(bare)) {
        this.#cutStart = false;
        const block = this.#held.slice(0, nl + 1);
        this.#held = this.#held.slice(nl + 1);
        this.#onMasked(1);
        return (this.#masker.secret(block.slice(0, -1)) ?? '') + '\n';
      }
      const header = width < 0 && KEY_HEADER_LINE.test(bare);
      const body = !header && !last && bare.length > 0 && BASE64_LINE.test(bare) && (width < 0 || bare.length <= width);
      if ((!header && !body) || nl > MAX_CUT_KEY_BODY) {
        this.#cutStart = false;
        return '';
      }
      if (body) {
        if (width < 0) width = bare.length;
        last = bare.length < width || width < MIN_KEY_LINE;
      }
      at = nl + 1;
    }
    if (this.#held.length > MAX_CUT_KEY_BODY) this.#cutStart = false;
    return '';
  }

  /**
   * Where a key block that has not ended starts in the held text, or -1. A block is judged
   * as a terminal shows its lines when they hold escapes or controls: `grep --color` prints
   * `-----BEGIN RSA ESC[01;31mPRIVATE ESC[m KEY-----`, a UTF-16 file puts a NUL after every
   * character; the body that follows is the key's all the same.
   */
  #openKeyBlock(): number {
    const h = this.#held;
    if (!CONTROL.test(h)) {
      const begin = h.lastIndexOf(BEGIN, h.lastIndexOf('\n') + 1);
      return begin >= 0 && h.indexOf(END, begin) < 0 ? begin : -1;
    }
    for (let from = 0; ; ) {
      const block = keyBlock(h, from);
      if (block === undefined) return -1;
      if (block.end < 0) return block.start;
      from = block.end;
    }
  }

  /** Everything held, masked: at the end of the stream or on a quiet flush. */
  release(end = false): string {
    if (end) this.#held += this.#decode(undefined, false);
    const out = this.#held;
    this.#held = '';
    if (!end || !this.#cutEnd) return this.#mask(out);
    // The last line may be cut anywhere (limitBytes): what is unfinished goes out whole-masked.
    const last = out.lastIndexOf('\n') + 1;
    const tail = out.slice(last);
    if (tail === '') return this.#mask(out);
    this.#onMasked(1);
    return this.#mask(out.slice(0, last)) + (this.#masker.secret(tail) ?? '');
  }

  #decode(chunk: Buffer | undefined, stream: boolean): string {
    try {
      return this.#decoder.decode(chunk, { stream });
    } catch {
      throw new TextStreamError('output that is not UTF-8 text (binary, such as the tar kubectl cp reads) cannot be scanned for masking; the stream was cut');
    }
  }

  /**
   * Lines that assign a value to a name (`DB_PASSWORD=…` from printenv, `export K=…`) have
   * the value masked by the name's rules as well (a secret's name masks it whole, as in a
   * container's env); the rest goes through the detectors in one pass.
   */
  #mask(text: string): string {
    if (!text) return '';
    if (!CONTROL.test(text)) return this.#lines(text);
    // A key block whose lines hold escapes or controls is judged whole, as a terminal shows
    // it: line by line, the BEGIN line alone would be masked and the body passed as text.
    let out = '';
    let at = 0;
    for (let block = keyBlock(text, 0); block !== undefined; block = keyBlock(text, at)) {
      const end = block.end < 0 ? text.length : block.end;
      out += this.#lines(text.slice(at, block.start)) + this.#shownBlock(text.slice(block.start, end));
      at = end;
    }
    return out + this.#lines(text.slice(at));
  }

  /** A key block as a terminal shows it, through the detectors: masked as shown when they find the key, else line by line. */
  #shownBlock(raw: string): string {
    const view = shownLines(raw);
    const masked = view !== raw ? this.#masker.field(view, undefined) : undefined;
    if (!masked) return this.#lines(raw);
    this.#onMasked(1);
    return masked.value ?? '';
  }

  /** Text line by line: see #mask. */
  #lines(text: string): string {
    if (!text) return '';
    if (!text.includes('=') && !CONTROL.test(text)) return this.#detected(text);
    let out = '';
    let plain = 0;
    for (const m of text.matchAll(CANDIDATE_LINE)) {
      const replaced = this.#special(m[0]);
      if (replaced === undefined) continue;
      out += this.#detected(text.slice(plain, m.index)) + replaced;
      plain = m.index + m[0].length;
    }
    return out + this.#detected(text.slice(plain));
  }

  /** A line that needs more than the detectors over the text as it is (see #mask); undefined when it does not. */
  #special(line: string): string | undefined {
    // A line is judged as a terminal shows it: a key with escapes, NULs, DELs inside, or
    // its halves put together by a backspace or a carriage return, is still a key. When such
    // a line needs a mask it goes out as the terminal would show it, masked.
    // The line's end as it came (`\n`, a pty's `\r\n`) stays as it is around the view.
    let cut = line.length;
    if (line[cut - 1] === '\n') cut--;
    while (cut > 0 && line[cut - 1] === '\r') cut--;
    const body = line.slice(0, cut);
    const end = line.slice(cut);
    const view = CONTROL.test(body) ? terminalView(body) + end : line;
    const shown = view !== line ? this.#masker.field(view, undefined) : undefined;
    // A name the rules mask by masks even an empty value; one they do not leaves it to the detectors.
    const m = ASSIGNMENT.exec(view);
    const named = m !== null && m[3] !== '' && this.#masker.field('', m[1]!) !== undefined;
    if (!shown && !named) return undefined;
    this.#onMasked(1);
    if (!named) return shown?.value ?? '';
    return m[0].slice(0, m[0].length - m[3]!.length) + (this.#masker.field(m[3]!, m[1]!)?.value ?? '') + view.slice(m[0].length);
  }

  /** `text` through the detectors alone. */
  #detected(text: string): string {
    if (!text) return '';
    const masked = this.#masker.field(text, undefined);
    if (!masked) return text;
    this.#onMasked(1);
    return masked.value ?? '';
  }
}

export interface TextStreamOptions {
  onMasked: (n: number) => void;
  maxHeld?: number;
  /** Release an unfinished line after this long without new text (a terminal's prompt). */
  quietFlushMs?: number;
  what?: string;
  /** The text may start and end where a server cut it (a container log): see the top of this file. */
  cut?: boolean;
}

/** A LineScanner as a Transform (bytes in, masked UTF-8 out). */
export function scanTextStream(masker: ValueMasker, o: TextStreamOptions): Transform {
  const scanner = new LineScanner(masker, o.onMasked, o);
  let timer: NodeJS.Timeout | undefined;
  const out = (text: string): Buffer | undefined => (text ? Buffer.from(text, 'utf8') : undefined);
  const t: Transform = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      clearTimeout(timer);
      let text: string;
      try {
        text = scanner.push(chunk);
      } catch (err) {
        return cb(err as Error);
      }
      if (o.quietFlushMs !== undefined && scanner.releasable) {
        timer = setTimeout(() => {
          const rest = out(scanner.release());
          if (rest) t.push(rest);
        }, o.quietFlushMs);
      }
      cb(null, out(text));
    },
    flush(cb: TransformCallback) {
      clearTimeout(timer);
      cb(null, out(scanner.release(true)));
    },
    destroy(err, cb) {
      clearTimeout(timer);
      cb(err);
    },
  });
  return t;
}

/** Each line of `text` as a terminal shows it (terminalView), its line end (`\n`, `\r\n`) kept. */
function shownLines(text: string): string {
  return text.replace(/[^\n]+/g, (line) => {
    let cut = line.length;
    while (cut > 0 && line[cut - 1] === '\r') cut--;
    const body = line.slice(0, cut);
    return (CONTROL.test(body) ? terminalView(body) : body) + line.slice(cut);
  });
}

/**
 * The first key block in `text` from `from` (a line start), its lines judged as a terminal
 * shows them: from the start of the line showing `-----BEGIN ` to the end of the line
 * showing `-----END ` after it (-1 while none has come); undefined when no line shows a BEGIN.
 */
function keyBlock(text: string, from: number): { start: number; end: number } | undefined {
  let start = -1;
  for (let at = from; at < text.length; ) {
    const nl = text.indexOf('\n', at);
    const stop = nl < 0 ? text.length : nl + 1;
    let cut = stop;
    if (text[cut - 1] === '\n') cut--;
    while (cut > at && text[cut - 1] === '\r') cut--;
    const body = text.slice(at, cut);
    const view = CONTROL.test(body) ? terminalView(body) : body;
    const begin = start < 0 ? view.indexOf(BEGIN) : -1;
    if (begin >= 0) start = at;
    if (start >= 0 && view.indexOf(END, Math.max(begin, 0)) >= 0) return { start, end: stop };
    at = stop;
  }
  return start < 0 ? undefined : { start, end: -1 };
}

/**
 * The text a terminal shows for one line: escapes and invisible controls consumed, a
 * backspace or a carriage return moving the cursor back over what was written (so what is
 * written next replaces it). Cursor-addressing sequences are consumed, not followed.
 */
export function terminalView(line: string): string {
  const cells: string[] = [];
  let col = 0;
  for (const ch of line.replace(TERMINAL_ESCAPE, '')) {
    if (ch === '\b') col = Math.max(0, col - 1);
    else if (ch === '\r') col = 0;
    else if (CONTROL.test(ch)) continue;
    else cells[col++] = ch;
  }
  return cells.join('');
}
