/**
 * Per-session data the CLI sends on the tunnel upgrade. The session secret itself never
 * leaves the CLI: the broker receives only its SCRAM verifier, enough to check a client's
 * proof, not to recover the secret.
 */
export const SESSION_ID_HEADER = 'x-agentgate-session';
export const SESSION_VERIFIER_HEADER = 'x-agentgate-session-verifier';
