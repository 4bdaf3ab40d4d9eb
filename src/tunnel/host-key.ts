/**
 * The tunnel's SSH host key: parsing it once for the acceptor and computing the
 * OpenSSH-style fingerprint (`SHA256:` + unpadded base64 of the SHA-256 of the public
 * key blob, as `ssh-keygen -lf` prints it) that discovery publishes and the CLI pins.
 */
import { createHash } from 'node:crypto';
import ssh2 from 'ssh2';
import type { ParsedKey } from 'ssh2';
import { ConfigError } from '../errors.js';

/** Parse an OpenSSH or PEM key (private, or public for fingerprinting). */
/**
 * A new Ed25519 SSH key pair that ssh2 can read back. ssh2's generator writes a public
 * key whose first byte is zero one byte short (about 1 key in 400), and its own parser
 * then rejects the key: such a draw is discarded.
 */
export function generateSshKeyPair(comment?: string): { private: string; public: string } {
  for (;;) {
    const pair = ssh2.utils.generateKeyPairSync('ed25519', comment === undefined ? {} : { comment });
    const parsed = ssh2.utils.parseKey(pair.private);
    if (!(parsed instanceof Error) && !Array.isArray(parsed)) return pair;
  }
}

export function parseSshKey(key: string | Buffer): ParsedKey {
  const parsed: ParsedKey | ParsedKey[] | Error = ssh2.utils.parseKey(key);
  if (parsed instanceof Error) {
    throw new ConfigError(`The tunnel's SSH host key could not be read: ${parsed.message}`, [], {
      hint: 'Provide an OpenSSH or PEM private key (for example the one `agentgate broker init` writes).',
    });
  }
  // parseKey returns an array for multi-key input; the first key is the host key.
  const first = Array.isArray(parsed) ? parsed[0] : parsed;
  if (first === undefined) {
    throw new ConfigError("The tunnel's SSH host key file holds no key.");
  }
  return first;
}

/** OpenSSH-style fingerprint of a raw public key blob (the SSH wire encoding). */
export function fingerprintOfPublicBlob(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** `SHA256:…` fingerprint of a host key, given its private half or its public half. */
export function hostKeyFingerprint(privateKeyOrPublic: string | Buffer | ParsedKey): string {
  const parsed = typeof privateKeyOrPublic === 'string' || Buffer.isBuffer(privateKeyOrPublic)
    ? parseSshKey(privateKeyOrPublic)
    : privateKeyOrPublic;
  return fingerprintOfPublicBlob(parsed.getPublicSSH());
}

/** Compare two `SHA256:` fingerprints, tolerating trailing base64 padding. */
export function sameFingerprint(a: string, b: string): boolean {
  const norm = (s: string): string => s.trim().replace(/=+$/, '');
  return norm(a) === norm(b);
}
