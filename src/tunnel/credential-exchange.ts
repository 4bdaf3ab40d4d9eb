/**
 * The credential renewal exchange on the `credential@agentgate` subsystem: one JSON line
 * each way, then the broker closes the channel.
 *
 *   CLI    → {"token":"<access token>"}
 *   broker → {"ok":true,"expires_at":"<ISO time the tunnel now ends unless renewed>"}
 *          | {"ok":false,"error":{"code":"AG_…","message":"…","hint":"…"}}
 *
 * Both ends read with a byte cap and a time limit, so a peer cannot hold a channel open
 * or make the other buffer without bound.
 */
import type { Duplex } from 'node:stream';

/** A JWT from a real IdP stays far below this. */
export const MAX_CREDENTIAL_LINE = 16 * 1024;

export interface CredentialRequest {
  token: string;
}

export type CredentialReply = { ok: true; expires_at: string } | { ok: false; error: { code: string; message: string; hint?: string } };

/** Reads one newline-terminated line of at most `max` bytes; rejects on overflow, early end or timeout. */
export function readLine(stream: Duplex, max: number, timeoutMs: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (err: Error | undefined, line?: string): void => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.off('error', onError);
      if (err) reject(err);
      else resolve(line as string);
    };
    const onData = (chunk: Buffer): void => {
      const nl = chunk.indexOf(0x0a);
      const part = nl < 0 ? chunk : chunk.subarray(0, nl);
      size += part.length;
      if (size > max) return finish(new Error(`line longer than ${max} bytes`));
      chunks.push(part);
      if (nl >= 0) finish(undefined, Buffer.concat(chunks).toString('utf8'));
    };
    const onEnd = (): void => finish(new Error('the channel closed before a whole line arrived'));
    const onError = (err: Error): void => finish(err);
    const timer = setTimeout(() => finish(new Error(`no answer within ${Math.round(timeoutMs / 1000)}s`)), timeoutMs);
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
    stream.once('error', onError);
  });
}

export function parseCredentialRequest(line: string): CredentialRequest | undefined {
  try {
    const v = JSON.parse(line) as unknown;
    if (v && typeof v === 'object' && typeof (v as { token?: unknown }).token === 'string' && (v as { token: string }).token !== '') {
      return { token: (v as { token: string }).token };
    }
  } catch {
    // malformed: undefined below
  }
  return undefined;
}

export function parseCredentialReply(line: string): CredentialReply | undefined {
  try {
    const v = JSON.parse(line) as Partial<{ ok: unknown; expires_at: unknown; error: { code?: unknown; message?: unknown; hint?: unknown } }>;
    if (v.ok === true && typeof v.expires_at === 'string') return { ok: true, expires_at: v.expires_at };
    if (v.ok === false && typeof v.error?.code === 'string' && typeof v.error.message === 'string') {
      return { ok: false, error: { code: v.error.code, message: v.error.message, ...(typeof v.error.hint === 'string' ? { hint: v.error.hint } : {}) } };
    }
  } catch {
    // malformed: undefined below
  }
  return undefined;
}

export function encodeLine(value: CredentialRequest | CredentialReply): string {
  return `${JSON.stringify(value)}\n`;
}
