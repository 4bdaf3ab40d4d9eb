/**
 * Secret values learnt before a session is shown anything (known-secrets.ts): the broker
 * lists the Secrets of the namespace a masked request reads (all namespaces for a request
 * that spans them) with its own credential, before that request is forwarded, and keeps
 * their values for every session of the target. An app's plain password echoed in its log,
 * an Event or a ConfigMap is then masked even when no session ever read its Secret —
 * provenance from the cluster itself, not from what happened to pass through.
 *
 * - After a listing the broker watches that namespace's Secrets from the listing's
 *   resourceVersion, so a Secret created or changed later is learnt as the API server
 *   announces it (milliseconds), not at the next listing. While the watch is open no
 *   listing is needed; when it ends it is resumed from the last version it saw, and when
 *   that version is gone (410) or the watch cannot be opened, the next masked request lists
 *   again. A listing with no watch is not reused: the agent's own requests could otherwise
 *   open MAX_WATCHES watches in namespaces of its choosing and leave the rest listed once a
 *   period, blind to a Secret rotated in between. Only a listing that failed waits
 *   PRIME_TTL_MS before it is tried again.
 * - A watch nobody's masked request used for WATCH_IDLE_MS is not resumed; at most
 *   MAX_WATCHES run per target (the rest are listed at each masked request).
 * - Concurrent requests share one listing.
 * - Helm's release Secrets (type helm.sh/release.v1: compressed manifests, no credentials of
 *   their own, often megabytes) are left out by a field selector.
 * - Best effort, said loudly: when the broker's credential may not list Secrets, or the list
 *   is larger than MAX_LIST_BYTES, the detectors (and what responses carry) are all there is;
 *   the broker logs it once per namespace per period, and the request goes on.
 */
import { pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { Logger } from '../log.js';
import type { K8sUpstream } from './upstream.js';
import type { KnownSecrets } from './known-secrets.js';

export const PRIME_TTL_MS = 30_000;
export const WATCH_IDLE_MS = 10 * 60_000;
const MAX_WATCHES = 64;
/** Server-side end of one watch request; it is then resumed (when still used). */
const WATCH_SECONDS = 60;
/** A watch that ends sooner than this after it opened is not resumed at once (no busy loop). */
const MIN_WATCH_LIFE_MS = 1_000;
const MAX_LIST_BYTES = 32 * 1024 * 1024;
/** One watch event (a Secret is at most 1 MiB, as JSON with base64 a little more). */
const MAX_EVENT_BYTES = 4 * 1024 * 1024;
const FIELD_SELECTOR = 'type!=helm.sh/release.v1';
/** Why a watch stopped when its resourceVersion has expired (410 Gone). */
const EXPIRED = 'the resourceVersion expired (410)';
/** Key of the listing across all namespaces. */
const ALL = '';

interface Watch {
  /** Ends the watch (no resumption). */
  abort: AbortController;
  /** Last resourceVersion seen (listing or event). */
  version: string;
}

interface Listing {
  /** When it was started: a failed listing is tried again PRIME_TTL_MS later. */
  at: number;
  pending: Promise<void> | undefined;
  /** Open while the watch runs: the listing then stays current. */
  watch: Watch | undefined;
  /** Last time a masked request relied on this listing. */
  usedAt: number;
  /**
   * The listing failed (forbidden, too large, unreachable): tried again after the period. A
   * listing that worked but has no watch (past the cap, or the watch ended) is current only
   * at its moment: a Secret created a second later is unknown, so the next request lists.
   */
  failed: boolean;
}

export class SecretPrimer {
  readonly #known: KnownSecrets;
  readonly #log: Logger;
  readonly #listings = new Map<string, Listing>();
  readonly #now: () => number;
  #closed = false;

  constructor(known: KnownSecrets, log: Logger, now: () => number = Date.now) {
    this.#known = known;
    this.#log = log;
    this.#now = now;
  }

  /**
   * The target holds more Secret values than the broker keeps (known-secrets.ts): a masked
   * answer may echo one it does not know, so masked requests are refused.
   */
  get full(): boolean {
    return this.#known.full;
  }

  /** Open watches (tests, status). */
  get watching(): number {
    let n = 0;
    for (const l of this.#listings.values()) if (l.watch) n++;
    return n;
  }

  /**
   * Resolves once the Secrets of `namespace` ('' = every namespace) are current: a watch of
   * them is open, or they were listed within the period (never rejects). A listing or watch
   * of every namespace covers each of them.
   */
  prime(up: K8sUpstream, namespace: string): Promise<void> {
    const now = this.#now();
    const current = (key: string): Listing | undefined => {
      const l = this.#listings.get(key);
      return l && (l.pending || l.watch || (l.failed && now - l.at < PRIME_TTL_MS)) ? l : undefined;
    };
    const done = current(namespace) ?? (namespace !== ALL ? current(ALL) : undefined);
    if (done) {
      done.usedAt = now;
      return done.pending ?? Promise.resolve();
    }
    const listing: Listing = { at: now, pending: undefined, watch: undefined, usedAt: now, failed: true };
    listing.pending = this.#list(up, namespace, listing).finally(() => {
      listing.pending = undefined;
    });
    this.#listings.set(namespace, listing);
    return listing.pending;
  }

  /** Ends every watch (the broker is stopping). */
  close(): void {
    this.#closed = true;
    for (const l of this.#listings.values()) {
      l.watch?.abort.abort();
      l.watch = undefined;
    }
  }

  #path(up: K8sUpstream, namespace: string, query: string): string {
    return `${up.basePath}/api/v1/${namespace === ALL ? '' : `namespaces/${encodeURIComponent(namespace)}/`}secrets?fieldSelector=${encodeURIComponent(FIELD_SELECTOR)}${query}`;
  }

  async #list(up: K8sUpstream, namespace: string, listing: Listing): Promise<void> {
    const where = namespace === ALL ? 'every namespace' : `namespace ${namespace}`;
    try {
      const res = await up.pool.request({
        method: 'GET',
        path: this.#path(up, namespace, ''),
        headers: headers(up),
        headersTimeout: 15_000,
        bodyTimeout: 30_000,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of decoded(res.headers, res.body)) {
        size += chunk.length;
        if (size > MAX_LIST_BYTES) {
          res.body.destroy();
          this.#log.warn('the Secrets of a namespace are more than the broker reads to learn their values; echoes of them are left to the detectors', { target: up.target.name, where, limit_bytes: MAX_LIST_BYTES });
          return;
        }
        chunks.push(chunk);
      }
      if (res.statusCode !== 200) {
        this.#log.warn('the broker may not list Secrets, so their values echoed elsewhere are left to the detectors until a response carries them', { target: up.target.name, where, status: res.statusCode, hint: 'grant the target credential list and watch on secrets to have them masked from the start' });
        return;
      }
      const list = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { items?: unknown; metadata?: { resourceVersion?: unknown } };
      let learnt = 0;
      for (const item of Array.isArray(list.items) ? list.items : []) learnt += this.#learn(item);
      this.#log.debug('learnt Secret values before forwarding', { target: up.target.name, where, values: learnt });
      listing.failed = false;
      const version = list.metadata?.resourceVersion;
      if (typeof version === 'string' && version !== '') this.#startWatch(up, namespace, listing, version);
    } catch (err) {
      this.#log.warn('could not list Secrets to learn their values; echoes of them are left to the detectors', { target: up.target.name, where, error: (err as Error).message });
    }
  }

  /** Values of one Secret object's `data` learnt; how many. */
  #learn(item: unknown): number {
    const data = isRecord(item) && isRecord(item['data']) ? item['data'] : undefined;
    let learnt = 0;
    for (const v of Object.values(data ?? {})) {
      if (typeof v !== 'string') continue;
      const text = Buffer.from(v, 'base64').toString('utf8');
      // Bytes that are not text (a keystore) are echoed as no text either.
      if (text.includes('\uFFFD')) continue;
      this.#known.learn(text);
      learnt++;
    }
    return learnt;
  }

  #startWatch(up: K8sUpstream, namespace: string, listing: Listing, version: string): void {
    if (this.#closed || listing.watch) return;
    // A watch of every namespace makes the others redundant; past the cap, periods only.
    if (namespace !== ALL && this.#listings.get(ALL)?.watch) return;
    if (this.watching >= MAX_WATCHES) return;
    const watch: Watch = { abort: new AbortController(), version };
    listing.watch = watch;
    this.#runWatch(up, namespace, listing, watch).catch((err: unknown) => this.#log.warn('the watch of Secrets failed', { target: up.target.name, error: (err as Error).message }));
  }

  /**
   * Streams the watch, resuming it while it is used. Whenever it stops for good the listing
   * falls back to its period: the next masked request after PRIME_TTL_MS lists again.
   */
  async #runWatch(up: K8sUpstream, namespace: string, listing: Listing, watch: Watch): Promise<void> {
    const where = namespace === ALL ? 'every namespace' : `namespace ${namespace}`;
    for (;;) {
      const opened = this.#now();
      let stop: string | undefined;
      try {
        stop = await this.#streamOnce(up, namespace, watch);
      } catch (err) {
        stop = watch.abort.signal.aborted ? 'closed' : `failed: ${(err as Error).message}`;
      }
      const now = this.#now();
      const resume = stop === undefined && !this.#closed && !watch.abort.signal.aborted && now - listing.usedAt < WATCH_IDLE_MS && now - opened >= MIN_WATCH_LIFE_MS;
      if (resume) continue;
      // 410 Gone: the version it would resume from is older than the server keeps (a quiet
      // namespace, a long pause). Normal: the next masked request lists again, no warning.
      const expired = stop === EXPIRED;
      // Current until it ended, not after: the next masked request lists again.
      if (listing.watch === watch) listing.watch = undefined;
      if (stop !== undefined && stop !== 'closed' && !expired) this.#log.warn('the watch of Secrets ended; they are listed again at the next masked request', { target: up.target.name, where, reason: stop });
      return;
    }
  }

  /** One watch request; undefined when the server ended it normally, else why it stopped. */
  async #streamOnce(up: K8sUpstream, namespace: string, watch: Watch): Promise<string | undefined> {
    const res = await up.pool.request({
      method: 'GET',
      path: this.#path(up, namespace, `&watch=1&allowWatchBookmarks=true&timeoutSeconds=${WATCH_SECONDS}&resourceVersion=${encodeURIComponent(watch.version)}`),
      headers: headers(up),
      headersTimeout: 15_000,
      // Quiet for longer than the server's own end: the connection is dead, not idle.
      bodyTimeout: (WATCH_SECONDS + 30) * 1000,
      signal: watch.abort.signal,
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      return res.statusCode === 410 ? EXPIRED : `HTTP ${res.statusCode}`;
    }
    let pending: Buffer = Buffer.alloc(0);
    for await (const chunk of decoded(res.headers, res.body)) {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let nl: number;
      while ((nl = pending.indexOf(0x0a)) >= 0) {
        const line = pending.subarray(0, nl);
        pending = pending.subarray(nl + 1);
        const why = this.#event(line, watch);
        if (why !== undefined) {
          res.body.destroy();
          return why;
        }
      }
      if (pending.length > MAX_EVENT_BYTES) {
        res.body.destroy();
        return `an event over ${MAX_EVENT_BYTES} bytes`;
      }
    }
    return pending.length > 0 ? this.#event(pending, watch) : undefined;
  }

  /** One JSON watch event; why the watch must stop, else undefined. */
  #event(line: Buffer, watch: Watch): string | undefined {
    if (line.length === 0 || (line.length === 1 && line[0] === 0x0d)) return undefined;
    let event: unknown;
    try {
      event = JSON.parse(line.toString('utf8'));
    } catch {
      return 'an event that is not JSON';
    }
    const type = isRecord(event) ? event['type'] : undefined;
    const object = isRecord(event) ? event['object'] : undefined;
    if (type === 'ERROR') {
      // 410 Gone: the version is older than the server keeps; a new listing starts over.
      const code = isRecord(object) ? object['code'] : undefined;
      return code === 410 ? EXPIRED : `the server ended it (${typeof code === 'number' ? code : 'error'})`;
    }
    if (type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED' && type !== 'BOOKMARK') return `an event of type ${String(type)}`;
    if (type === 'ADDED' || type === 'MODIFIED') this.#learn(object);
    const meta = isRecord(object) && isRecord(object['metadata']) ? object['metadata'] : undefined;
    const version = meta?.['resourceVersion'];
    if (typeof version === 'string' && version !== '') watch.version = version;
    return undefined;
  }
}

function headers(up: K8sUpstream): Record<string, string> {
  // Named, so the API server's audit log tells the broker's own reads from a client's.
  return { accept: 'application/json', 'accept-encoding': 'identity', 'user-agent': 'agentgate-broker/secret-primer', ...(up.authorization ? { authorization: up.authorization } : {}) };
}

/** The body as sent, gunzipped when the server compressed it anyway. */
function decoded(h: Record<string, string | string[] | undefined>, body: AsyncIterable<Buffer> & NodeJS.ReadableStream): AsyncIterable<Buffer> {
  const coding = String(h['content-encoding'] ?? '').toLowerCase();
  if (coding !== 'gzip') return body;
  const gz = createGunzip();
  // An error on either side ends the other, so a reader never waits on a dead stream.
  pipeline(body, gz, () => {});
  return gz;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
