import { AuthError } from '../../errors.js';
import type { TokenRejectionReason } from '../../shared/api-types.js';

/**
 * A bearer token the broker will not accept. `reason` is the stable code the CLI maps to
 * advice; `message` says what was wrong with this token (never the token itself).
 * `issuer_unreachable` is the broker's problem rather than the caller's: HTTP 503.
 */
export class TokenRejectedError extends AuthError {
  override readonly reason: TokenRejectionReason;
  readonly status: 401 | 503;

  constructor(reason: TokenRejectionReason, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(reason === 'issuer_unreachable' ? 'AG_ISSUER_UNREACHABLE' : 'AG_TOKEN_REJECTED', message, { ...options, reason });
    this.reason = reason;
    this.status = reason === 'issuer_unreachable' ? 503 : 401;
  }
}

export function isTokenRejectedError(e: unknown): e is TokenRejectedError {
  return e instanceof TokenRejectedError;
}
