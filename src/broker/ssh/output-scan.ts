/**
 * Exec and shell output scanned by the masking detectors as it streams. Complete lines
 * go out at once, each masked; the unfinished last line waits for the next chunk, so a
 * value split across chunks is seen whole. A PEM block waits for its `-----END`. Text
 * longer than the cap without a line break fails the stream: nothing passes unscanned.
 *
 * An interactive shell prints prompts without a newline: with `quietFlushMs`, an
 * unfinished line held that long with nothing new arriving is released (masked). A value
 * the target prints in two pieces with a pause of that length between is then scanned in
 * two pieces; exec output (no pty) never flushes early.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { ValueMasker } from '../masking/value-mask.js';

export class OutputScanError extends Error {
  override readonly name = 'OutputScanError';
}

const BEGIN = '-----BEGIN ';
const END = '-----END ';

export interface OutputScanOptions {
  onMasked: (n: number) => void;
  maxHeld?: number;
  quietFlushMs?: number;
}

export function scanOutput(masker: ValueMasker, o: OutputScanOptions): Transform {
  const maxHeld = o.maxHeld ?? 1024 * 1024;
  let held = '';
  let timer: NodeJS.Timeout | undefined;
  const decoder = new TextDecoder('utf-8');
  const mask = (text: string): string => {
    const masked = masker.field(text, undefined);
    if (!masked) return text;
    o.onMasked(1);
    return masked.value ?? '';
  };
  const releasable = (text: string): number => {
    let cut = text.lastIndexOf('\n') + 1;
    const begin = text.lastIndexOf(BEGIN, cut);
    if (begin >= 0 && text.indexOf(END, begin) < 0) cut = Math.min(cut, begin);
    return cut;
  };
  const t: Transform = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      clearTimeout(timer);
      held += decoder.decode(chunk, { stream: true });
      const cut = releasable(held);
      const out = held.slice(0, cut);
      held = held.slice(cut);
      if (held.length > maxHeld) return cb(new OutputScanError(`output without a line break longer than ${maxHeld} characters; the stream was cut so nothing passes unscanned`));
      if (held && o.quietFlushMs !== undefined && !held.includes(BEGIN)) {
        timer = setTimeout(() => {
          const rest = held;
          held = '';
          if (rest) t.push(Buffer.from(mask(rest), 'utf8'));
        }, o.quietFlushMs);
      }
      cb(null, out ? Buffer.from(mask(out), 'utf8') : undefined);
    },
    flush(cb: TransformCallback) {
      clearTimeout(timer);
      held += decoder.decode();
      const out = held;
      held = '';
      cb(null, out ? Buffer.from(mask(out), 'utf8') : undefined);
    },
    destroy(err, cb) {
      clearTimeout(timer);
      cb(err);
    },
  });
  return t;
}
