/** The session secret's verifier as the tunnel carried it: parsed once per channel, for any protocol. */
import { parseSessionVerifier, type ScramVerifier } from '../../shared/session-secret.js';

/** Undefined (every client refused) when absent or malformed. */
export function sessionVerifier(text: string | undefined): ScramVerifier | undefined {
  try {
    return text ? parseSessionVerifier(text) : undefined;
  } catch {
    return undefined;
  }
}
