/** Reconnect pacing for the tunnel dialer. */

export interface BackoffPolicy {
  /** Delay before the first retry (before jitter). */
  initialMs: number;
  /** Cap on the delay before jitter. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 30_000 };

/**
 * Delay before retry number `attempt` (0-based): exponential growth capped at maxMs,
 * with "equal jitter" (half fixed, half random) so that many CLIs cut off by one broker
 * restart do not all come back in the same instant, yet none retries in a tight loop.
 */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const initial = Math.max(1, policy.initialMs);
  const cap = Math.max(initial, policy.maxMs);
  const base = Math.min(cap, initial * 2 ** Math.min(attempt, 30));
  return Math.round(base / 2 + random() * (base / 2));
}
