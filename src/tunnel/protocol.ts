/**
 * Wire constants shared by both ends of the tunnel. The broker answers
 * `GET /v1/tunnel` carrying `Upgrade: agentgate-ssh` with `101 Switching Protocols`,
 * after which the TLS connection carries SSH: one `direct-tcpip` channel per local
 * connection, its destination host being the target name.
 */

/** The token in the HTTP `Upgrade` header, both directions. */
export const TUNNEL_UPGRADE_PROTOCOL = 'agentgate-ssh';

/** Path of the tunnel endpoint under the broker's origin. */
export const TUNNEL_PATH = '/v1/tunnel';

/**
 * The SSH user name the CLI presents with `none` authentication. Identity already
 * came from the bearer token on the upgrade, so this carries no meaning.
 */
export const TUNNEL_SSH_USER = 'agentgate';

/** Target names travel as the `direct-tcpip` host; a DNS name fits in 253 bytes. */
export const MAX_TARGET_NAME_LENGTH = 253;

/** True for a plausible target name: printable ASCII without spaces, bounded. */
export function isValidTargetName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_TARGET_NAME_LENGTH && /^[\x21-\x7e]+$/.test(name);
}

/**
 * The SSH subsystem (on a `session` channel) over which the CLI re-presents a fresh
 * access token for a live tunnel. A private name in the `name@domain` form RFC 4250
 * reserves for extensions, so it can never be a target name or a standard subsystem.
 */
export const CREDENTIAL_SUBSYSTEM = 'credential@agentgate';
