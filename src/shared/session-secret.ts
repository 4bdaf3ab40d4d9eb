/**
 * The session secret's SCRAM-SHA-256 verifier: what the CLI sends the broker instead of
 * the secret (RFC 5802/7677, PostgreSQL's text form). Both sides use it; Postgres' SCRAM
 * exchange (broker/postgres/scram.ts) and the Kubernetes bearer check build on it.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { saslprep } from './saslprep.js';

/** PostgreSQL's defaults (scram_iterations, SCRAM_DEFAULT_SALT_LEN, SCRAM_RAW_NONCE_LEN). */
export const SCRAM_DEFAULT_ITERATIONS = 4096;
const SALT_BYTES = 16;
export const KEY_BYTES = 32;

/** What a server stores instead of the password (RFC 5803's shape, PostgreSQL's text form). */
export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  /** H(HMAC(SaltedPassword, "Client Key")) */
  storedKey: Buffer;
  /** HMAC(SaltedPassword, "Server Key") */
  serverKey: Buffer;
}

export function hmac(key: Buffer, data: string | Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

export function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

export function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] as number) ^ (b[i] as number);
  return out;
}

export function keysFromSaltedPassword(salted: Buffer): { clientKey: Buffer; storedKey: Buffer; serverKey: Buffer } {
  const clientKey = hmac(salted, 'Client Key');
  return { clientKey, storedKey: sha256(clientKey), serverKey: hmac(salted, 'Server Key') };
}

/**
 * Derive a verifier from a password (PBKDF2-HMAC-SHA-256; synchronous, a few
 * milliseconds at the default 4096 iterations).
 */
export function makeScramVerifier(password: string, options: { iterations?: number; salt?: Buffer } = {}): ScramVerifier {
  const iterations = options.iterations ?? SCRAM_DEFAULT_ITERATIONS;
  if (!Number.isInteger(iterations) || iterations < 1) throw new RangeError('SCRAM iterations must be a positive integer');
  const salt = options.salt ?? randomBytes(SALT_BYTES);
  const salted = pbkdf2Sync(saslprep(password), salt, iterations, KEY_BYTES, 'sha256');
  const { storedKey, serverKey } = keysFromSaltedPassword(salted);
  return { iterations, salt: Buffer.from(salt), storedKey, serverKey };
}

/** PostgreSQL's text form, as in pg_authid.rolpassword: `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`. */
export function formatScramVerifier(v: ScramVerifier): string {
  return `SCRAM-SHA-256$${v.iterations}:${v.salt.toString('base64')}$${v.storedKey.toString('base64')}:${v.serverKey.toString('base64')}`;
}

/** Parse PostgreSQL's text form. Throws VerifierFormatError without echoing the input. */
export function parseSessionVerifier(text: string): ScramVerifier {
  const m = /^SCRAM-SHA-256\$([1-9][0-9]{0,9}):([^$:]+)\$([^$:]+):([^$:]+)$/.exec(text);
  const iterations = m ? Number(m[1]) : NaN;
  const salt = m ? base64(m[2] as string) : undefined;
  const storedKey = m ? base64(m[3] as string) : undefined;
  const serverKey = m ? base64(m[4] as string) : undefined;
  if (
    !Number.isSafeInteger(iterations) ||
    iterations > 0x7fff_ffff ||
    salt === undefined ||
    salt.length === 0 ||
    storedKey?.length !== KEY_BYTES ||
    serverKey?.length !== KEY_BYTES
  ) {
    throw new VerifierFormatError('invalid SCRAM-SHA-256 verifier: expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>');
  }
  return { iterations, salt, storedKey, serverKey };
}


export class VerifierFormatError extends Error {
  override readonly name = 'VerifierFormatError';
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64, or undefined. */
export function base64(text: string): Buffer | undefined {
  return BASE64.test(text) ? Buffer.from(text, 'base64') : undefined;
}
