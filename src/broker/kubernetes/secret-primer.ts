/**
 * Secret values learnt before a session is shown anything (known-secrets.ts): the broker
 * lists the Secrets of the namespace a masked request reads (all namespaces for a request
 * that spans them) with its own credential, before that request is forwarded, and keeps
 * their values for every session of the target. An app's plain password echoed in its log,
 * an Event or a ConfigMap is then masked even when no session ever read its Secret —
 * provenance from the cluster itself, not from what happened to pass through.
 *
 * - Each namespace (and "all") is listed at most once per PRIME_TTL_MS; concurrent requests
 *   share one listing, and a request waits for a listing that started after the period ran
 *   out. A Secret created since is learnt at the next listing, or when a response carries it.
 * - Helm's release Secrets (type helm.sh/release.v1: compressed manifests, no credentials of
 *   their own, often megabytes) are left out by a field selector.
 * - Best effort, said loudly: when the broker's credential may not list Secrets, or the list
 *   is larger than MAX_LIST_BYTES, the detectors (and what responses carry) are all there is;
 *   the broker logs it once per namespace per period, and the request goes on.
 */
import type { Logger } from '../log.js';
import type { K8sUpstream } from './upstream.js';
import type { KnownSecrets } from './known-secrets.js';

export const PRIME_TTL_MS = 30_000;
const MAX_LIST_BYTES = 32 * 1024 * 1024;
const FIELD_SELECTOR = 'type!=helm.sh/release.v1';
/** Key of the listing across all namespaces. */
const ALL = '';

interface Listing {
  at: number;
  pending: Promise<void> | undefined;
}

export class SecretPrimer {
  readonly #known: KnownSecrets;
  readonly #log: Logger;
  readonly #listings = new Map<string, Listing>();
  readonly #now: () => number;

  constructor(known: KnownSecrets, log: Logger, now: () => number = Date.now) {
    this.#known = known;
    this.#log = log;
    this.#now = now;
  }

  /**
   * Resolves once the Secrets of `namespace` ('' = every namespace) were listed within the
   * period (never rejects). A listing of every namespace covers each of them.
   */
  prime(up: K8sUpstream, namespace: string): Promise<void> {
    const now = this.#now();
    const fresh = (key: string): Listing | undefined => {
      const l = this.#listings.get(key);
      return l && (l.pending || now - l.at < PRIME_TTL_MS) ? l : undefined;
    };
    const done = fresh(namespace) ?? (namespace !== ALL ? fresh(ALL) : undefined);
    if (done) return done.pending ?? Promise.resolve();
    const listing: Listing = { at: now, pending: undefined };
    listing.pending = this.#list(up, namespace).finally(() => {
      listing.pending = undefined;
    });
    this.#listings.set(namespace, listing);
    return listing.pending;
  }

  async #list(up: K8sUpstream, namespace: string): Promise<void> {
    const where = namespace === ALL ? 'every namespace' : `namespace ${namespace}`;
    const path = `${up.basePath}/api/v1/${namespace === ALL ? '' : `namespaces/${encodeURIComponent(namespace)}/`}secrets?fieldSelector=${encodeURIComponent(FIELD_SELECTOR)}`;
    try {
      const res = await up.pool.request({
        method: 'GET',
        path,
        headers: { accept: 'application/json', 'accept-encoding': 'identity', ...(up.authorization ? { authorization: up.authorization } : {}) },
        headersTimeout: 15_000,
        bodyTimeout: 30_000,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > MAX_LIST_BYTES) {
          res.body.destroy();
          this.#log.warn('the Secrets of a namespace are more than the broker reads to learn their values; echoes of them are left to the detectors', { target: up.target.name, where, limit_bytes: MAX_LIST_BYTES });
          return;
        }
        chunks.push(chunk);
      }
      if (res.statusCode !== 200) {
        this.#log.warn('the broker may not list Secrets, so their values echoed elsewhere are left to the detectors until a response carries them', { target: up.target.name, where, status: res.statusCode, hint: 'grant the target credential list on secrets to have them masked from the start' });
        return;
      }
      const list = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { items?: unknown };
      let learnt = 0;
      for (const item of Array.isArray(list.items) ? list.items : []) {
        const data = isRecord(item) && isRecord(item['data']) ? item['data'] : undefined;
        for (const v of Object.values(data ?? {})) {
          if (typeof v !== 'string') continue;
          const text = Buffer.from(v, 'base64').toString('utf8');
          // Bytes that are not text (a keystore) are echoed as no text either.
          if (text.includes('\uFFFD')) continue;
          this.#known.learn(text);
          learnt++;
        }
      }
      this.#log.debug('learnt Secret values before forwarding', { target: up.target.name, where, values: learnt });
    } catch (err) {
      this.#log.warn('could not list Secrets to learn their values; echoes of them are left to the detectors', { target: up.target.name, where, error: (err as Error).message });
    }
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
