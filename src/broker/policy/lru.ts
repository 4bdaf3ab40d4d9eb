/**
 * A small least-recently-used map bounded both by entry count and by an estimate of the
 * bytes it holds, so a burst of huge statements cannot grow it past its budget. A Map keeps
 * insertion order: re-inserting on every hit moves an entry to the young end, and eviction
 * takes from the old end.
 */

export interface LruOptions<K, V> {
  maxEntries: number;
  maxBytes: number;
  /** Estimated bytes held by one entry (key and value). */
  sizeOf: (key: K, value: V) => number;
}

export interface LruStats {
  hits: number;
  misses: number;
  evictions: number;
  entries: number;
  bytes: number;
}

export class Lru<K, V> {
  readonly #map = new Map<K, { value: V; size: number }>();
  readonly #opts: LruOptions<K, V>;
  #bytes = 0;
  #hits = 0;
  #misses = 0;
  #evictions = 0;

  constructor(opts: LruOptions<K, V>) {
    if (!(opts.maxEntries > 0) || !(opts.maxBytes > 0)) throw new RangeError('Lru needs positive maxEntries and maxBytes');
    this.#opts = opts;
  }

  get(key: K): V | undefined {
    const entry = this.#map.get(key);
    if (!entry) {
      this.#misses++;
      return undefined;
    }
    this.#hits++;
    this.#map.delete(key);
    this.#map.set(key, entry);
    return entry.value;
  }

  /** Stores the entry unless it alone is larger than the byte budget (then it is not kept at all). */
  set(key: K, value: V): void {
    this.delete(key);
    const size = this.#opts.sizeOf(key, value);
    if (size > this.#opts.maxBytes) return;
    this.#map.set(key, { value, size });
    this.#bytes += size;
    while (this.#map.size > this.#opts.maxEntries || this.#bytes > this.#opts.maxBytes) {
      const oldest = this.#map.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
      this.#evictions++;
    }
  }

  delete(key: K): boolean {
    const entry = this.#map.get(key);
    if (!entry) return false;
    this.#map.delete(key);
    this.#bytes -= entry.size;
    return true;
  }

  clear(): void {
    this.#map.clear();
    this.#bytes = 0;
  }

  get size(): number {
    return this.#map.size;
  }

  stats(): LruStats {
    return { hits: this.#hits, misses: this.#misses, evictions: this.#evictions, entries: this.#map.size, bytes: this.#bytes };
  }
}
