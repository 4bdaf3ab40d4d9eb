/** JSON in and out, with a cap on what we are willing to read. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError } from './errors.js';

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = Buffer.from(JSON.stringify(body), 'utf8');
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(payload.length),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(payload);
}

/**
 * Reads and parses a JSON request body. 415 unless the content type is JSON; 413 past
 * `limitBytes` (checked against Content-Length first, then while streaming).
 */
export async function readJsonBody(req: IncomingMessage, limitBytes = DEFAULT_BODY_LIMIT): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') {
    throw new HttpError(415, 'AG_UNSUPPORTED_MEDIA_TYPE', `expected a JSON body (content-type: application/json), got ${JSON.stringify(type || 'none')}`);
  }
  const tooLarge = (): HttpError => new HttpError(413, 'AG_BODY_TOO_LARGE', `request body is larger than ${limitBytes} bytes`);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limitBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limitBytes) throw tooLarge();
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new HttpError(400, 'AG_BAD_JSON', `request body is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}
