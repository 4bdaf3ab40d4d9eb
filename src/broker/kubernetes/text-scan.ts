/**
 * A text response (container logs, `pods/log`) scanned by the masking detectors as it
 * streams, without buffering it whole: complete lines go out at once, each masked; the
 * unfinished last line waits for the next chunk, so a value split across chunks is seen
 * whole. A PEM block spans lines: from its `-----BEGIN` the lines wait until its
 * `-----END` arrives (or the cap is reached, and the stream fails). A line longer than
 * the cap fails the stream too: text we cannot inspect is never passed through.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { ValueMasker } from './value-mask.js';

export class TextScanError extends Error {
  override readonly name = 'TextScanError';
}

const BEGIN = '-----BEGIN ';
const END = '-----END ';

export function scanTextStream(masker: ValueMasker, onMasked: (n: number) => void, maxHeld = 1024 * 1024): Transform {
  let held = '';
  const decoder = new TextDecoder('utf-8');

  /** Masks `text` (whole lines), counting what was masked. */
  const mask = (text: string): string => {
    const masked = masker.field(text, undefined);
    if (!masked) return text;
    onMasked(1);
    return masked.value ?? '';
  };

  /** Where the text that may go now ends: after the last newline, before an unfinished PEM block. */
  const releasable = (text: string): number => {
    let cut = text.lastIndexOf('\n') + 1;
    const begin = text.lastIndexOf(BEGIN, cut);
    if (begin >= 0 && text.indexOf(END, begin) < 0) cut = Math.min(cut, begin);
    return cut;
  };

  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      held += decoder.decode(chunk, { stream: true });
      const cut = releasable(held);
      const out = held.slice(0, cut);
      held = held.slice(cut);
      if (held.length > maxHeld) return cb(new TextScanError(`a log line (or key block) is longer than ${maxHeld} characters; the stream was cut so nothing passes unscanned`));
      cb(null, out ? Buffer.from(mask(out), 'utf8') : undefined);
    },
    flush(cb: TransformCallback) {
      held += decoder.decode();
      const out = held;
      held = '';
      cb(null, out ? Buffer.from(mask(out), 'utf8') : undefined);
    },
  });
}
