/**
 * The target's pinned host key: an OpenSSH fingerprint (`SHA256:…`) or a public key line
 * (`ssh-ed25519 AAAA…`). The broker connects to nothing else: no trust on first use.
 */
import { fingerprintOfPublicBlob, sameFingerprint } from '../../tunnel/host-key.js';

export function hostKeyMatches(pin: string, offered: Buffer): boolean {
  const p = pin.trim();
  if (p.startsWith('SHA256:')) return sameFingerprint(p, fingerprintOfPublicBlob(offered));
  const blob = p.split(/\s+/)[1];
  if (!blob) return false;
  return Buffer.from(blob, 'base64').equals(offered);
}

export { fingerprintOfPublicBlob };
