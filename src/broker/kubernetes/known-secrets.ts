/**
 * Values the API server has shown to be Secret values, kept per target so a copy of one
 * anywhere else is masked as the Secret is. The detectors know a credential by its shape;
 * a plain password has none, and the cluster echoes it in places no masker reads as a
 * Secret: an Event's message (`auth failed for password …`), a Status quoting a rejected
 * object, a custom resource an operator filled, a log line, exec output. Provenance decides
 * instead: once any response of the target has carried a Secret (masked as it went out),
 * its value is masked in every later text of every session of that target.
 *
 * Only values that could not be mistaken for ordinary text are kept (8 characters or more,
 * of two kinds of character at least: not `postgres`, `true`, `admin`): masking every
 * `postgres` in image names because a Secret holds a user name would hide more than it
 * protects. What a session is shown before any response carried the Secret is judged by
 * the detectors alone (see README, Kubernetes).
 */
import type { ValueMasker } from './value-mask.js';

const MIN_LENGTH = 8;
const MAX_LENGTH = 4096;
/**
 * The most values (and characters) kept per target. None is ever forgotten to make room:
 * whoever may create Secrets could then push a password out with junk values and have its
 * echo shown in the clear. Past these the store is full, and masked requests are refused.
 */
export const MAX_VALUES = 65_536;
const MAX_CHARS = 16 * 1024 * 1024;

/** Lower, upper, digit, other: how many of them `v` uses. */
function kinds(v: string): number {
  let lower = 0;
  let upper = 0;
  let digit = 0;
  let other = 0;
  for (const c of v) {
    if (c >= 'a' && c <= 'z') lower = 1;
    else if (c >= 'A' && c <= 'Z') upper = 1;
    else if (c >= '0' && c <= '9') digit = 1;
    else other = 1;
  }
  return lower + upper + digit + other;
}

export class KnownSecrets {
  readonly #values = new Set<string>();
  #chars = 0;
  /** A value could not be kept: what to mask is no longer known in full (never reset). */
  #full = false;
  /**
   * Values by their first MIN_LENGTH characters, longest first within a key (a value inside
   * a longer one must not split it); rebuilt on change. A text is then read once, position
   * by position, whatever the number of values: a cluster with thousands of Secrets must
   * not make every field of a large list cost thousands of searches.
   */
  #byPrefix: Map<string, string[]> | undefined = new Map();

  get size(): number {
    return this.#values.size;
  }

  /** A Secret value was seen that could not be kept: an echo of it would not be masked. */
  get full(): boolean {
    return this.#full;
  }

  /** A Secret's value (decoded) as a response carried it: kept, with the base64 its `data` holds. */
  learn(value: string): void {
    if (value.length < MIN_LENGTH || value.length > MAX_LENGTH || kinds(value) < 2) return;
    for (const form of [value, Buffer.from(value, 'utf8').toString('base64')]) {
      if (this.#values.has(form)) continue;
      if (this.#values.size >= MAX_VALUES || this.#chars + form.length > MAX_CHARS) {
        this.#full = true;
        return;
      }
      this.#values.add(form);
      this.#chars += form.length;
      this.#byPrefix = undefined;
    }
  }

  #index(): Map<string, string[]> {
    if (this.#byPrefix) return this.#byPrefix;
    const index = new Map<string, string[]>();
    for (const v of this.#values) {
      const key = v.slice(0, MIN_LENGTH);
      const list = index.get(key);
      if (list) list.push(v);
      else index.set(key, [v]);
    }
    for (const list of index.values()) list.sort((a, b) => b.length - a.length);
    this.#byPrefix = index;
    return index;
  }

  /** `text` with every known value replaced by its mask; undefined when it holds none. */
  replaceIn(text: string, mask: (value: string) => string): string | undefined {
    if (text.length < MIN_LENGTH || this.#values.size === 0) return undefined;
    const index = this.#index();
    let out: string[] | undefined;
    let copied = 0;
    for (let i = 0; i + MIN_LENGTH <= text.length; ) {
      const found = index.get(text.slice(i, i + MIN_LENGTH))?.find((v) => text.startsWith(v, i));
      if (found === undefined) {
        i++;
        continue;
      }
      (out ??= []).push(text.slice(copied, i), mask(found));
      i += found.length;
      copied = i;
    }
    if (out === undefined) return undefined;
    out.push(text.slice(copied));
    return out.join('');
  }
}

/**
 * `masker` that learns the Secret values it is handed (`learn`) and masks them in every
 * text it judges (`field`), wherever they appear.
 */
export function rememberingMasker(masker: ValueMasker, known: KnownSecrets): ValueMasker {
  return {
    secret: (value) => masker.secret(value),
    learn: (value) => known.learn(value),
    field(value, key) {
      const first = masker.field(value, key);
      if (first?.value === null) return first;
      const again = known.replaceIn(first?.value ?? value, (v) => masker.secret(v) ?? '');
      return again === undefined ? first : { value: again };
    },
  };
}
