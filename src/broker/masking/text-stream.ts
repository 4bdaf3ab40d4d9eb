/**
 * Text that streams out (container logs, SSH and `kubectl exec` output) scanned by the
 * masking detectors without buffering it whole. Complete lines go out at once, each batch
 * masked; the unfinished last line waits for more, so a value split across chunks is seen
 * whole. A PEM block spans lines: from its `-----BEGIN` the text waits for its `-----END`.
 * Text held past the cap fails the stream: what cannot be inspected never passes.
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

/** The synchronous core: one stream's held text. */
export class LineScanner {
  #held = '';
  readonly #decoder: TextDecoder;
  readonly #masker: ValueMasker;
  readonly #onMasked: (n: number) => void;
  readonly #maxHeld: number;
  readonly #what: string;

  /** `what` names the text in the error a too-long line raises ("a log line", "output"). */
  constructor(masker: ValueMasker, onMasked: (n: number) => void, o: { maxHeld?: number; what?: string; binary?: 'replace' | 'refuse' } = {}) {
    // Bytes that are not UTF-8 are either shown as U+FFFD (a terminal's odd byte) or refused:
    // binary output (a tar for kubectl cp) would arrive silently corrupted.
    this.#decoder = new TextDecoder('utf-8', { fatal: o.binary === 'refuse' });
    this.#masker = masker;
    this.#onMasked = onMasked;
    this.#maxHeld = o.maxHeld ?? DEFAULT_MAX_HELD;
    this.#what = o.what ?? 'output without a line break';
  }

  /** Whether an unfinished line is held that a quiet flush may release (not a key block). */
  get releasable(): boolean {
    return this.#held.length > 0 && !this.#held.includes(BEGIN);
  }

  /** The masked text that may go now; throws TextStreamError when too much is held. */
  push(chunk: Buffer): string {
    this.#held += this.#decode(chunk, true);
    let cut = this.#held.lastIndexOf('\n') + 1;
    const begin = this.#held.lastIndexOf(BEGIN, cut);
    if (begin >= 0 && this.#held.indexOf(END, begin) < 0) cut = Math.min(cut, begin);
    const out = this.#held.slice(0, cut);
    this.#held = this.#held.slice(cut);
    if (this.#held.length > this.#maxHeld) throw new TextStreamError(`${this.#what} longer than ${this.#maxHeld} characters; the stream was cut so nothing passes unscanned`);
    return this.#mask(out);
  }

  /** Everything held, masked: at the end of the stream or on a quiet flush. */
  release(end = false): string {
    if (end) this.#held += this.#decode(undefined, false);
    const out = this.#held;
    this.#held = '';
    return this.#mask(out);
  }

  #decode(chunk: Buffer | undefined, stream: boolean): string {
    try {
      return this.#decoder.decode(chunk, { stream });
    } catch {
      throw new TextStreamError('output that is not UTF-8 text (binary, such as the tar kubectl cp reads) cannot be scanned for masking; the stream was cut');
    }
  }

  #mask(text: string): string {
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
