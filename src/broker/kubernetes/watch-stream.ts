/**
 * A watch response, rewritten event by event without buffering the stream: the API
 * server's JSON watch encoding is one JSON document per line (`{"type":…,"object":…}\n`),
 * so each complete line is parsed, handed to `rewrite`, and sent on at once. A line that
 * is not JSON, or longer than `maxLine`, fails the stream: a value we cannot inspect is
 * never passed through.
 */
import { Transform, type TransformCallback } from 'node:stream';

export class WatchLineError extends Error {
  override readonly name = 'WatchLineError';
}

export function rewriteJsonLines(rewrite: (doc: unknown) => void, maxLine = 16 * 1024 * 1024): Transform {
  let pending: Buffer[] = [];
  let pendingLength = 0;

  const line = (buf: Buffer): Buffer | undefined => {
    const text = buf.toString('utf8').trim();
    if (text === '') return undefined;
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      throw new WatchLineError('the watch stream carried a line that is not JSON');
    }
    rewrite(doc);
    return Buffer.from(JSON.stringify(doc) + '\n', 'utf8');
  };

  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      try {
        let start = 0;
        for (;;) {
          const nl = chunk.indexOf(0x0a, start);
          if (nl < 0) break;
          const piece = chunk.subarray(start, nl);
          const whole = pending.length > 0 ? Buffer.concat([...pending, piece]) : piece;
          pending = [];
          pendingLength = 0;
          const out = line(whole);
          if (out) this.push(out);
          start = nl + 1;
        }
        if (start < chunk.length) {
          const rest = chunk.subarray(start);
          pendingLength += rest.length;
          if (pendingLength > maxLine) throw new WatchLineError(`a watch event is longer than ${maxLine} bytes`);
          pending.push(Buffer.from(rest));
        }
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb: TransformCallback) {
      try {
        if (pending.length > 0) {
          const out = line(Buffer.concat(pending));
          pending = [];
          if (out) this.push(out);
        }
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
  });
}
