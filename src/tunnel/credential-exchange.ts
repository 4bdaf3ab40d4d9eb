/**
 * The credential renewal exchange on a live tunnel: one JSON line in a CREDENTIAL frame,
 * answered by one in a CREDENTIAL_REPLY frame with the same request id.
 *
 *   CLI    → {"token":"<access token>"}
 *   broker → {"ok":true,"expires_at":"<ISO time the tunnel now ends unless renewed>"}
 *          | {"ok":false,"error":{"code":"AG_…","message":"…","hint":"…"}}
 *
 * The broker reads at most MAX_CREDENTIAL_LINE bytes of it; the CLI waits a bounded time.
 */

/** A JWT from a real IdP stays far below this. */
export const MAX_CREDENTIAL_LINE = 16 * 1024;

export interface CredentialRequest {
  token: string;
}

export type CredentialReply = { ok: true; expires_at: string } | { ok: false; error: { code: string; message: string; hint?: string } };

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
