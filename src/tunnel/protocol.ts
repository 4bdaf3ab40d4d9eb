/**
 * Wire constants shared by both ends of the tunnel. The broker answers
 * `GET /v1/tunnel` carrying `Upgrade: agentgate-mux/1` with `101 Switching Protocols`,
 * after which the TLS connection carries length-prefixed frames (mux-codec.ts): the
 * broker's identity proof, then one channel per local connection, its OPEN naming the
 * target.
 */

/** The token in the HTTP `Upgrade` header, both directions. */
export const TUNNEL_UPGRADE_PROTOCOL = 'agentgate-mux/1';

/** Path of the tunnel endpoint under the broker's origin. */
export const TUNNEL_PATH = '/v1/tunnel';

/** A target name is a DNS-like label list; a DNS name fits in 253 bytes. */
export const MAX_TARGET_NAME_LENGTH = 253;

/** True for a plausible target name: printable ASCII without spaces, bounded. */
export function isValidTargetName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_TARGET_NAME_LENGTH && /^[\x21-\x7e]+$/.test(name);
}
