/**
 * Bounds-checked reading of a message body. Every overrun is a ProtocolError naming the
 * message, never a RangeError from deep inside Buffer: a peer's bad bytes are an
 * operational fact, not a bug.
 */
import { ProtocolError } from './errors.js';

const EMPTY = Buffer.alloc(0);

export class BodyReader {
  offset: number;

  constructor(
    readonly body: Buffer,
    /** The message's name, for error text ("Bind", "RowDescription"). */
    readonly what: string,
    offset = 0,
  ) {
    this.offset = offset;
  }

  malformed(why: string): ProtocolError {
    return new ProtocolError(`malformed ${this.what} message: ${why}`);
  }

  #need(n: number): number {
    const at = this.offset;
    if (at + n > this.body.length) throw this.malformed(`needs ${at + n - this.body.length} more bytes`);
    this.offset = at + n;
    return at;
  }

  get remaining(): number {
    return this.body.length - this.offset;
  }

  uint8(): number {
    return this.body[this.#need(1)] as number;
  }

  int16(): number {
    return this.body.readInt16BE(this.#need(2));
  }

  /** Counts (parameters, columns, formats) are unsigned on the wire: PostgreSQL allows 65,535. */
  uint16(): number {
    return this.body.readUInt16BE(this.#need(2));
  }

  int32(): number {
    return this.body.readInt32BE(this.#need(4));
  }

  /** OIDs. */
  uint32(): number {
    return this.body.readUInt32BE(this.#need(4));
  }

  /** A NUL-terminated string, decoded as UTF-8. */
  cstring(): string {
    const start = this.offset;
    const nul = this.body.indexOf(0, start);
    if (nul < 0) throw this.malformed('unterminated string');
    this.offset = nul + 1;
    return this.body.toString('utf8', start, nul);
  }

  /** `n` bytes as a view. */
  bytes(n: number): Buffer {
    if (n < 0) throw this.malformed(`negative length ${n}`);
    const at = this.#need(n);
    return n === 0 ? EMPTY : this.body.subarray(at, at + n);
  }

  /** Everything left, as a view. */
  rest(): Buffer {
    const at = this.offset;
    this.offset = this.body.length;
    return this.body.subarray(at);
  }

  /** The body must be used up exactly; trailing bytes mean we misread it. */
  end(): void {
    if (this.offset !== this.body.length) throw this.malformed(`${this.body.length - this.offset} unexpected trailing bytes`);
  }
}

/**
 * Walks a list of length-prefixed values (DataRow columns, Bind parameters) without
 * allocating: after each `next()`, `offset`/`length` locate the value in `body`
 * (`length` -1 for NULL). Reuse one cursor for many rows with `reset`.
 *
 * ```ts
 * const cur = dataRowValues(msg.body, cursor);
 * while (cur.next()) if (!cur.isNull) inspect(cur.body, cur.offset, cur.length);
 * ```
 */
export class ValueCursor {
  body: Buffer = EMPTY;
  /** How many values the message declares. */
  count = 0;
  /** Index of the current value; -1 before the first `next()`. */
  index = -1;
  /** Where the current value's bytes begin in `body`. */
  offset = 0;
  /** The current value's byte length, or -1 for NULL. */
  length = -1;
  /** Where the walk ends (the byte after the last value), once `next()` has returned false. */
  end = 0;
  #pos = 0;
  #what = '';

  reset(body: Buffer, count: number, start: number, what: string): this {
    this.body = body;
    this.count = count;
    this.index = -1;
    this.offset = start;
    this.length = -1;
    this.end = start;
    this.#pos = start;
    this.#what = what;
    return this;
  }

  /** Advance to the next value; false after the last. Throws ProtocolError if a length overruns the body. */
  next(): boolean {
    if (this.index + 1 >= this.count) {
      this.end = this.#pos;
      return false;
    }
    this.index++;
    const pos = this.#pos;
    const body = this.body;
    if (pos + 4 > body.length) throw new ProtocolError(`malformed ${this.#what} message: value ${this.index} has no length`);
    const length = body.readInt32BE(pos);
    this.offset = pos + 4;
    this.length = length;
    if (length === -1) {
      this.#pos = pos + 4;
      return true;
    }
    if (length < -1 || pos + 4 + length > body.length) {
      throw new ProtocolError(`malformed ${this.#what} message: value ${this.index} claims ${length} bytes`);
    }
    this.#pos = pos + 4 + length;
    return true;
  }

  get isNull(): boolean {
    return this.length === -1;
  }

  /** The current value as a view, or null. */
  value(): Buffer | null {
    return this.length === -1 ? null : this.body.subarray(this.offset, this.offset + this.length);
  }

  /** The current value decoded as UTF-8 text, or null. */
  text(): string | null {
    return this.length === -1 ? null : this.body.toString('utf8', this.offset, this.offset + this.length);
  }

  /** Walk the remaining values (validating them) and return where they end. */
  skipRest(): number {
    while (this.next()) {
      /* lengths are validated by next() */
    }
    return this.end;
  }
}
