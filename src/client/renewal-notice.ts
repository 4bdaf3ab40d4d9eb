/**
 * What `connect` and `run` tell the user about credential renewals: a renewal after a
 * failure, and each distinct failure once (a failing source is retried every few
 * seconds, which must not flood the terminal).
 */
import type { RenewalEvent } from '../tunnel/credential-renewal.js';

export function renewalNotices(): (event: RenewalEvent) => string | undefined {
  let lastFailure: string | undefined;
  return (event) => {
    if (event.ok) {
      if (lastFailure === undefined) return undefined;
      lastFailure = undefined;
      return `agentgate: credential renewed; the broker keeps this session until ${event.until.toISOString()} unless renewed again`;
    }
    const hint = (event.error as { hint?: unknown }).hint;
    const text = `${event.error.message}${typeof hint === 'string' ? ` (${hint})` : ''}`;
    if (text === lastFailure) return undefined;
    lastFailure = text;
    const when = event.expiresAt ? `; the broker ends this session's connections at ${event.expiresAt.toISOString()} (plus its leeway) unless a fresh credential arrives` : '';
    return `agentgate: could not renew the credential: ${text}${when}`;
  };
}
