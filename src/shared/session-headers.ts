/**
 * Per-session data the CLI sends on the tunnel upgrade. The session secret itself never
 * leaves the CLI: the broker receives only its SCRAM verifier, enough to check a client's
 * proof, not to recover the secret. Likewise for SSH targets, only the public half of the
 * session's client key.
 */
export const SESSION_ID_HEADER = 'x-agentgate-session';
export const SESSION_VERIFIER_HEADER = 'x-agentgate-session-verifier';
/** The session's SSH client public key (`ssh-ed25519 AAAA…`), for SSH targets. */
export const SESSION_SSH_KEY_HEADER = 'x-agentgate-session-ssh-key';
