/**
 * Checks the bearer token a local kubectl presents against the SCRAM verifier of the
 * session secret that the tunnel carries (the kubeconfig holds the secret as its token;
 * the broker only ever sees the verifier). Recomputing the StoredKey costs the verifier's
 * PBKDF2 iterations, so one connection remembers a token it has accepted (as a digest)
 * and later requests compare against that.
 */
import { createHash, createHmac, pbkdf2, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import type { ScramVerifier } from '../../shared/session-secret.js';
import { saslprep } from '../../shared/saslprep.js';

const pbkdf2Async = promisify(pbkdf2);

/**
 * The CLI chooses the verifier's iteration count, and here (unlike in SCRAM proper) the
 * broker pays for it: a cap keeps one session from buying minutes of broker CPU.
 */
export const MAX_BEARER_ITERATIONS = 100_000;
/** Session secrets are 32 characters; anything far longer is not one. */
const MAX_TOKEN_LENGTH = 1024;

export type BearerResult = 'ok' | 'mismatch' | 'no-verifier' | 'unusable-verifier';

export class BearerCheck {
  readonly #verifier: ScramVerifier | undefined;
  #accepted: Buffer | undefined;

  constructor(verifier: ScramVerifier | undefined) {
    this.#verifier = verifier;
  }

  async check(token: string): Promise<BearerResult> {
    const v = this.#verifier;
    if (!v) return 'no-verifier';
    if (v.iterations > MAX_BEARER_ITERATIONS) return 'unusable-verifier';
    if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) return 'mismatch';
    const digest = createHash('sha256').update(token).digest();
    if (this.#accepted && timingSafeEqual(digest, this.#accepted)) return 'ok';
    const salted = await pbkdf2Async(saslprep(token), v.salt, v.iterations, 32, 'sha256');
    const clientKey = createHmac('sha256', salted).update('Client Key').digest();
    const storedKey = createHash('sha256').update(clientKey).digest();
    if (storedKey.length !== v.storedKey.length || !timingSafeEqual(storedKey, v.storedKey)) return 'mismatch';
    this.#accepted = digest;
    return 'ok';
  }
}

/** The token of an `Authorization: Bearer …` header, else undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return m ? m[1] : undefined;
}
