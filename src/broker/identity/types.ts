import type { ActorKind } from '../../shared/api-types.js';

/** Who is calling, after their token has been verified. */
export interface Identity {
  sub: string;
  name?: string;
  email?: string;
  groups: string[];
  kind: ActorKind;
  /** The `iss` of the verified token. */
  issuer: string;
  /** Token expiry, unix seconds. */
  expiresAt: number;
  /** The verified claim set, for callers that need more than the fields above. */
  claims?: Record<string, unknown>;
}

export interface IdentityVerifier {
  /** Verifies a bearer access token; throws TokenRejectedError with a reason code. */
  verify(token: string): Promise<Identity>;
}
