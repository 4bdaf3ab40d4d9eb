/**
 * One trusted issuer's signing keys: discovery document → jwks_uri → a cached remote JWKS.
 * jose's remote set refetches when a token names an unknown `kid`, but at most once per
 * cooldown, so a flood of tokens with made-up kids cannot hammer the IdP.
 */
import { createRemoteJWKSet, errors } from 'jose';
import type { JWTVerifyGetKey } from 'jose';
import type { Logger } from '../log.js';
import { fetchOidcMetadata } from './discovery.js';
import { TokenRejectedError } from './errors.js';

export interface IssuerKeysOptions {
  /** Floor between JWKS refetches triggered by unknown kids. */
  jwksCooldownMs: number;
  /** Per-request timeout for discovery and JWKS fetches. */
  fetchTimeoutMs: number;
  /** How long a discovery document is trusted before it is fetched again. */
  discoveryTtlMs: number;
  logger: Logger;
}

export interface ResolvedIssuer {
  /** The issuer exactly as the IdP's discovery document spells it; tokens must match it. */
  issuer: string;
  getKey: JWTVerifyGetKey;
}

const UNREACHABLE_HINT = "the broker cannot fetch its identity provider's signing keys; retry shortly, and if it persists the broker's operator should check the IdP and the broker's network";

export class IssuerKeys {
  readonly #configuredIssuer: string;
  readonly #options: IssuerKeysOptions;
  #resolved: { value: ResolvedIssuer; jwksUri: string; at: number } | undefined;
  #pending: Promise<ResolvedIssuer> | undefined;
  #lastFailure: { error: TokenRejectedError; at: number } | undefined;

  constructor(configuredIssuer: string, options: IssuerKeysOptions) {
    this.#configuredIssuer = configuredIssuer;
    this.#options = options;
  }

  async resolve(): Promise<ResolvedIssuer> {
    const now = Date.now();
    const current = this.#resolved;
    if (current && now - current.at < this.#options.discoveryTtlMs) return current.value;
    // After a failed discovery, answer from the failure for a short while instead of
    // sending every incoming request on to a struggling IdP.
    const failure = this.#lastFailure;
    if (!current && failure && now - failure.at < Math.min(this.#options.jwksCooldownMs, 5_000)) throw failure.error;
    this.#pending ??= this.#load().finally(() => {
      this.#pending = undefined;
    });
    try {
      return await this.#pending;
    } catch (err) {
      // A stale but working key set beats an outage when only the refresh failed.
      if (current) return current.value;
      throw err;
    }
  }

  async #load(): Promise<ResolvedIssuer> {
    try {
      const meta = await fetchOidcMetadata(this.#configuredIssuer, { timeoutMs: this.#options.fetchTimeoutMs });
      const previous = this.#resolved;
      const value =
        previous && previous.jwksUri === meta.jwks_uri && previous.value.issuer === meta.issuer
          ? previous.value // keep the warm JWKS cache
          : { issuer: meta.issuer, getKey: this.#keyGetter(meta.jwks_uri) };
      this.#resolved = { value, jwksUri: meta.jwks_uri, at: Date.now() };
      this.#lastFailure = undefined;
      return value;
    } catch (err) {
      const error =
        err instanceof TokenRejectedError
          ? err
          : new TokenRejectedError('issuer_unreachable', `cannot load the discovery document of ${this.#configuredIssuer}`, { hint: UNREACHABLE_HINT, cause: err });
      this.#lastFailure = { error, at: Date.now() };
      this.#options.logger.warn('identity provider discovery failed', { issuer: this.#configuredIssuer, error: error.message });
      throw error;
    }
  }

  #keyGetter(jwksUri: string): JWTVerifyGetKey {
    const remote = createRemoteJWKSet(new URL(jwksUri), {
      cooldownDuration: this.#options.jwksCooldownMs,
      timeoutDuration: this.#options.fetchTimeoutMs,
    });
    const logger = this.#options.logger;
    return async (header, token) => {
      try {
        return await remote(header, token);
      } catch (err) {
        if (isKeySelectionError(err) || !isFetchError(err)) throw err;
        logger.warn('JWKS fetch failed', { jwks_uri: jwksUri, error: err });
        throw new TokenRejectedError('issuer_unreachable', `cannot fetch the signing keys of ${this.#configuredIssuer} from ${jwksUri}: ${(err as Error).message}`, {
          hint: UNREACHABLE_HINT,
          cause: err,
        });
      }
    };
  }
}

function isKeySelectionError(err: unknown): boolean {
  return err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys;
}

/** Errors jose's remote set raises while fetching or parsing the key set document. */
function isFetchError(err: unknown): boolean {
  if (!(err instanceof errors.JOSEError)) return true; // fetch() itself: DNS, refused, TLS …
  return err.code === 'ERR_JWKS_TIMEOUT' || err.code === 'ERR_JWKS_INVALID' || err.code === 'ERR_JOSE_GENERIC';
}
