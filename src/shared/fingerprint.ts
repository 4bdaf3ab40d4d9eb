/**
 * SHA-256 certificate fingerprints, as the broker prints them and as users paste them
 * back (AGENTGATE_FINGERPRINT, --fingerprint). Shared by broker and CLI.
 */
import { X509Certificate, timingSafeEqual } from 'node:crypto';
import { UsageError } from '../errors.js';

/** SHA-256 of the certificate's DER, as uppercase colon-separated hex (`AB:CD:…`, 95 chars). */
export function certFingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

/**
 * Accepts `AB:CD:…`, plain hex (any case), either with a `sha256:`/`SHA256:` prefix, or
 * `SHA256:` + base64 of the 32 digest bytes; returns the canonical `AB:CD:…` form.
 * Throws a UsageError on anything else.
 */
export function normalizeFingerprint(input: string): string {
  const bytes = fingerprintBytes(input);
  if (!bytes) {
    throw new UsageError('not a SHA-256 certificate fingerprint: expected 64 hex digits, e.g. AB:CD:…', {
      hint: 'copy the fingerprint the broker printed at start (agentgate broker start), or its /.well-known/agentgate page',
    });
  }
  return toColonHex(bytes);
}

/** True when both name the same digest. Timing-safe; false when either is malformed. */
export function fingerprintsEqual(a: string, b: string): boolean {
  const x = fingerprintBytes(a);
  const y = fingerprintBytes(b);
  if (!x || !y) return false;
  return timingSafeEqual(x, y);
}

function fingerprintBytes(input: string): Buffer | undefined {
  let s = input.trim();
  const hadPrefix = /^sha-?256:/i.test(s);
  if (hadPrefix) s = s.slice(s.indexOf(':') + 1).trim();
  const hex = s.replace(/[:\s]/g, '');
  if (/^[0-9a-fA-F]{64}$/.test(hex)) return Buffer.from(hex, 'hex');
  // OpenSSH-style `SHA256:<base64>`; only with the prefix, so hex typos are not misread.
  if (hadPrefix && /^[A-Za-z0-9+/_-]{43}=?$/.test(s)) {
    const buf = Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (buf.length === 32) return buf;
  }
  return undefined;
}

function toColonHex(bytes: Buffer): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0').toUpperCase()).join(':');
}
