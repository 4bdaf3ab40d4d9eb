export type { Identity, IdentityVerifier } from './types.js';
export { TokenRejectedError, isTokenRejectedError } from './errors.js';
export { createIdentityVerifier, ALLOWED_ALGORITHMS } from './verifier.js';
export type { IdentityVerifierOptions } from './verifier.js';
