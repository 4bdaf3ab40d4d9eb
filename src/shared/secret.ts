import { inspect } from 'node:util';

/**
 * A credential read from config (`${env:…}`, `${file:…}` or inline). It refuses to turn
 * into text by accident: logging, JSON.stringify, util.inspect and template strings all
 * print `[redacted]`. Only `reveal()` hands out the value, so every use is greppable.
 */
export class Secret {
  readonly #value: string;
  /** Where it came from, e.g. `${env:PG_PROD_PASSWORD}`; safe to show. */
  readonly source: string;

  constructor(value: string, source = 'inline') {
    this.#value = value;
    this.source = source;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return '[redacted]';
  }

  toJSON(): string {
    return '[redacted]';
  }

  [inspect.custom](): string {
    return `Secret(${this.source})`;
  }
}
