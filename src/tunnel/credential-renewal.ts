/**
 * The CLI keeps a live tunnel's credential fresh: shortly before the token it presented
 * expires, it asks its token source again (a stored login refreshes, a token file is
 * re-read, client credentials are fetched anew) and re-presents the new token in a
 * CREDENTIAL frame on the live tunnel. The broker ends the tunnel's sessions at expiry
 * otherwise, so a failure is reported and retried until the tunnel goes away: a later
 * `agentgate login` or a rewritten token file still revives it.
 */
import { decodeJwt } from 'jose';
import { BrokerError } from '../errors.js';
import { encodeLine, parseCredentialReply } from './credential-exchange.js';

/**
 * Sends one request line on the live tunnel and resolves with the broker's reply line;
 * rejects if no reply comes within `timeoutMs` or the tunnel goes away first.
 */
export type CredentialExchange = (line: string, timeoutMs: number) => Promise<string>;

export type RenewalEvent =
  | { ok: true; /** When the broker now ends the tunnel's sessions unless renewed again. */ until: Date }
  | { ok: false; error: Error; /** When the current credential stops carrying the tunnel, if known. */ expiresAt: Date | undefined };

export interface RenewalOptions {
  getToken: () => Promise<string>;
  /**
   * How long before the token's `exp` to renew; default a third of its remaining life, at
   * most 45 s — inside the stored login's 60 s refresh margin, so the source refreshes.
   */
  renewBeforeMs?: number;
  /** Pause between failed attempts, doubling from this (default 1 s) to 15 s. */
  retryMs?: number;
  onRenewal?: (event: RenewalEvent) => void;
}

const MAX_RETRY_MS = 15_000;
const MAX_RENEW_BEFORE_MS = 45_000;
const EXCHANGE_TIMEOUT_MS = 15_000;

/** Seconds-since-epoch `exp` of a JWT, read without verifying (only to schedule); undefined when absent. */
export function tokenExpiry(token: string): number | undefined {
  try {
    const exp = decodeJwt(token).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp : undefined;
  } catch {
    return undefined;
  }
}

/** Renews one tunnel connection's credential until stop(). */
export class CredentialRenewer {
  readonly #o: RenewalOptions;
  readonly #exchange: CredentialExchange;
  #presented: string;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #failures = 0;

  constructor(exchange: CredentialExchange, presented: string, options: RenewalOptions) {
    this.#o = options;
    this.#exchange = exchange;
    this.#presented = presented;
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #schedule(): void {
    const exp = tokenExpiry(this.#presented);
    // A token without exp (opaque) gives nothing to schedule by; the broker has no deadline from it either.
    if (exp === undefined) return;
    const left = exp * 1000 - Date.now();
    const before = this.#o.renewBeforeMs ?? Math.min(MAX_RENEW_BEFORE_MS, Math.max(0, left / 3));
    this.#arm(Math.max(0, left - before));
  }

  #arm(ms: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    // #attempt reports its own failures through onRenewal; nothing is left to reject.
    this.#timer = setTimeout(() => {
      this.#attempt().catch(() => {});
    }, ms);
  }

  async #attempt(): Promise<void> {
    if (this.#stopped) return;
    try {
      const token = await this.#o.getToken();
      if (this.#stopped) return;
      if (token === this.#presented) {
        throw new BrokerError('AG_CREDENTIAL_NOT_RENEWED', 'the token source returned the same token, which expires soon; agentgate cannot renew it', {
          hint: 'run `agentgate login`, or put a fresh token where agentgate reads it (AGENTGATE_TOKEN is fixed for the process; --token-file is re-read)',
        });
      }
      const until = await presentCredential(this.#exchange, token);
      if (this.#stopped) return;
      this.#presented = token;
      this.#failures = 0;
      this.#emit({ ok: true, until });
      this.#schedule();
    } catch (err) {
      if (this.#stopped) return;
      const exp = tokenExpiry(this.#presented);
      this.#emit({ ok: false, error: err instanceof Error ? err : new Error(String(err)), expiresAt: exp === undefined ? undefined : new Date(exp * 1000) });
      const retry = Math.min(MAX_RETRY_MS, (this.#o.retryMs ?? 1_000) * 2 ** this.#failures++);
      this.#arm(retry);
    }
  }

  #emit(event: RenewalEvent): void {
    try {
      this.#o.onRenewal?.(event);
    } catch {
      // A failing observer must not stop renewals.
    }
  }
}

/** One credential exchange; resolves with the broker's new deadline. */
export async function presentCredential(exchange: CredentialExchange, token: string): Promise<Date> {
  let line: string;
  try {
    line = await exchange(encodeLine({ token }), EXCHANGE_TIMEOUT_MS);
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    throw new BrokerError('AG_CREDENTIAL_CHANNEL', `renewing the credential failed: ${e.message}`, { cause: e });
  }
  const reply = parseCredentialReply(line);
  if (!reply) throw new BrokerError('AG_CREDENTIAL_CHANNEL', 'the broker answered a renewed credential with something agentgate does not understand');
  if (!reply.ok) throw new BrokerError(reply.error.code, `the broker refused the renewed credential: ${reply.error.message}`, reply.error.hint ? { hint: reply.error.hint } : {});
  return new Date(reply.expires_at);
}
