/**
 * Builds protocol messages into one growing buffer. Each message starts with a reserved
 * 5-byte header (type byte + Int32 length) that `flush()` fills in once the body's size
 * is known, so nothing is measured twice.
 *
 * A flushed Buffer belongs to the caller: the writer never writes into bytes it has
 * handed out (it moves on past them, or to a fresh buffer), so a flushed message can be
 * passed to `socket.write()` and the writer reused at once.
 *
 * Message layout: https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS
 */
export class MessageWriter {
  #buf: Buffer;
  /** Where the current message's header begins. */
  #start = 0;
  /** Next byte to write. */
  #offset = 5;
  readonly #chunkSize: number;

  constructor(chunkSize = 4096) {
    this.#chunkSize = Math.max(chunkSize, 64);
    this.#buf = Buffer.allocUnsafe(this.#chunkSize);
  }

  /** Make room for `n` more bytes, moving the message in progress to a new buffer if needed. */
  #ensure(n: number): void {
    if (this.#offset + n <= this.#buf.length) return;
    const used = this.#offset - this.#start;
    let size = this.#chunkSize;
    while (size < used + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.#buf.copy(next, 0, this.#start, this.#offset);
    this.#buf = next;
    this.#start = 0;
    this.#offset = used;
  }

  /**
   * A caller bug (a value that does not fit its field): drop the half-built message so the
   * writer stays usable, then fail loudly.
   */
  #invalid(what: string): never {
    this.discard();
    throw new RangeError(`MessageWriter: ${what}`);
  }

  #checkInt(value: number, min: number, max: number): void {
    if (!Number.isInteger(value) || value < min || value > max) this.#invalid(`${value} is not an integer in [${min}, ${max}]`);
  }

  /** Abandon the message in progress. */
  discard(): void {
    this.#offset = this.#start + 5;
  }

  int8(value: number): this {
    this.#checkInt(value, -0x80, 0x7f);
    this.#ensure(1);
    this.#offset = this.#buf.writeInt8(value, this.#offset);
    return this;
  }

  uint8(value: number): this {
    this.#checkInt(value, 0, 0xff);
    this.#ensure(1);
    this.#buf[this.#offset++] = value;
    return this;
  }

  int16(value: number): this {
    this.#checkInt(value, -0x8000, 0x7fff);
    this.#ensure(2);
    this.#offset = this.#buf.writeInt16BE(value, this.#offset);
    return this;
  }

  uint16(value: number): this {
    this.#checkInt(value, 0, 0xffff);
    this.#ensure(2);
    this.#offset = this.#buf.writeUInt16BE(value, this.#offset);
    return this;
  }

  int32(value: number): this {
    this.#checkInt(value, -0x8000_0000, 0x7fff_ffff);
    this.#ensure(4);
    this.#offset = this.#buf.writeInt32BE(value, this.#offset);
    return this;
  }

  /** OIDs are unsigned 32-bit. */
  uint32(value: number): this {
    this.#checkInt(value, 0, 0xffff_ffff);
    this.#ensure(4);
    this.#offset = this.#buf.writeUInt32BE(value, this.#offset);
    return this;
  }

  /** A NUL-terminated UTF-8 string (the protocol's `String`). */
  cstring(value: string): this {
    // A NUL inside would end the string early and desynchronize the peer's parser.
    if (value.includes('\0')) this.#invalid('protocol strings cannot contain NUL');
    this.#ensure(value.length * 3 + 1);
    this.#offset += this.#buf.write(value, this.#offset, 'utf8');
    this.#buf[this.#offset++] = 0;
    return this;
  }

  /** Raw bytes, or a string's UTF-8 bytes, with no terminator. */
  bytes(value: Buffer | Uint8Array | string): this {
    if (typeof value === 'string') {
      this.#ensure(value.length * 3);
      this.#offset += this.#buf.write(value, this.#offset, 'utf8');
      return this;
    }
    this.#ensure(value.length);
    this.#buf.set(value, this.#offset);
    this.#offset += value.length;
    return this;
  }

  /**
   * Finish the message and return it: with `type`, a typed message (type byte + length +
   * body); without, an untyped startup-phase packet (length + body).
   */
  flush(type?: number): Buffer {
    const start = this.#start;
    const end = this.#offset;
    // The length counts itself but not the type byte.
    this.#buf.writeInt32BE(end - start - 1, start + 1);
    let out: Buffer;
    if (type === undefined) {
      out = this.#buf.subarray(start + 1, end);
    } else {
      this.#buf[start] = type;
      out = this.#buf.subarray(start, end);
    }
    // Move on past what we handed out; never rewrite it.
    if (end + 5 <= this.#buf.length) {
      this.#start = end;
      this.#offset = end + 5;
    } else {
      this.#buf = Buffer.allocUnsafe(this.#chunkSize);
      this.#start = 0;
      this.#offset = 5;
    }
    return out;
  }
}
