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
 *
 * A value is seldom echoed as it is when it holds a quote, a backslash or `&<>`: the kubelet
 * and the container runtime quote it Go-style (`exec: "pa\"ss": executable file not found`),
 * a structured logger writes a JSON string (Go's encoding/json: `&` as `\u0026`), a URL
 * percent-encodes it, a dump prints hex, a larger base64 text (a docker `auth`, an
 * annotation) holds it at any alignment. Each value is kept in those forms too (echoForms),
 * so the one reading of a text finds any of them.
 */
import type { ValueMasker } from './value-mask.js';

const MIN_LENGTH = 8;
const MAX_LENGTH = 4096;
/**
 * The most values (and characters, of every form kept) per target. None is ever forgotten
 * to make room: whoever may create Secrets could then push a password out with junk values
 * and have its echo shown in the clear. Past these the store is full, and masked requests
 * are refused.
 */
export const MAX_VALUES = 32_768;
const MAX_CHARS = 96 * 1024 * 1024;

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

/** Percent-encoding of every byte but the unreserved ones (RFC 3986; Go's url.PathEscape), upper-case hex; `space` for a blank. */
function percentEncoded(bytes: Buffer, space: string): string {
  let out = '';
  for (const b of bytes) {
    if ((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e) out += String.fromCharCode(b);
    else if (b === 0x20) out += space;
    else out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * The forms a value is echoed in, the value first: as it is; base64 (padded, as a Secret's
 * `data` holds it, and the whole 3-byte groups of each of the three alignments it may have
 * inside a longer base64 text, standard and URL alphabets); a JSON string's inside (which is
 * also Go's `%q` of printable text) and the same with Go's HTML escapes (`\u0026 \u003c
 * \u003e`); percent-encoded (every reserved byte, `%20` or `+` for a blank, and as
 * encodeURIComponent leaves `!'()*`); hex, lower and upper case. Forms shorter than the
 * shortest value kept are left out (too likely in ordinary text).
 */
export function echoForms(value: string): string[] {
  const bytes = Buffer.from(value, 'utf8');
  const forms = new Set<string>([value, bytes.toString('base64')]);
  for (let skip = 0; skip < 3; skip++) {
    const groups = bytes.subarray(skip, skip + Math.floor((bytes.length - skip) / 3) * 3);
    forms.add(groups.toString('base64'));
    forms.add(groups.toString('base64url'));
  }
  const json = JSON.stringify(value).slice(1, -1);
  forms.add(json);
  forms.add(json.replace(/[&<>\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
  forms.add(percentEncoded(bytes, '%20'));
  forms.add(percentEncoded(bytes, '+'));
  forms.add(encodeURIComponent(value));
  const hex = bytes.toString('hex');
  forms.add(hex);
  forms.add(hex.toUpperCase());
  return [...forms].filter((f) => f.length >= MIN_LENGTH);
}

export class KnownSecrets {
  /** Every form of every value kept (what a text is searched for). */
  readonly #values = new Set<string>();
  /** How many values were learnt (each kept in several forms). */
  #learnt = 0;
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

  /** How many values are kept (each in all its forms). */
  get size(): number {
    return this.#learnt;
  }

  /** A Secret value was seen that could not be kept: an echo of it would not be masked. */
  get full(): boolean {
    return this.#full;
  }

  /** A Secret's value (decoded) as a response carried it: kept, in every form it is echoed in (echoForms). */
  learn(value: string): void {
    if (value.length < MIN_LENGTH || value.length > MAX_LENGTH || kinds(value) < 2 || this.#values.has(value)) return;
    const forms = echoForms(value).filter((f) => !this.#values.has(f));
    const chars = forms.reduce((n, f) => n + f.length, 0);
    if (this.#learnt >= MAX_VALUES || this.#chars + chars > MAX_CHARS) {
      this.#full = true;
      return;
    }
    for (const form of forms) this.#values.add(form);
    this.#learnt++;
    this.#chars += chars;
    this.#byPrefix = undefined;
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
