import type { Readable } from 'node:stream';

/**
 * A whole stream in memory, or undefined past `max` bytes: the stream is then destroyed,
 * unless `keepOpen` (a request body: the refusal still has to reach the client, and
 * node:http discards the rest of the body once the response is sent).
 */
export async function readStream(stream: Readable, max: number, keepOpen = false): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of stream.iterator({ destroyOnReturn: !keepOpen }) as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > max) {
      if (!keepOpen) stream.destroy();
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
