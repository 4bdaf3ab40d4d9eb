/**
 * Where rewritten messages are built: a slab that outputs are carved from one after
 * another, so rewriting a row costs a copy and no allocation (a new slab every 64 KiB or
 * so). Like the protocol writer, it never writes into bytes it has handed out: `finish()`
 * returns a view and moves past it, so the view can sit in a send queue while the next
 * row is built.
 */
export class OutBuffer {
  #buf: Buffer;
  /** Where the output in progress begins. */
  #start = 0;
  /** Next byte to write. */
  #pos = 0;
  readonly #slab: number;

  constructor(slab = 64 * 1024) {
    this.#slab = slab;
    this.#buf = Buffer.allocUnsafe(slab);
  }

  /** Bytes written to the output in progress. */
  get length(): number {
    return this.#pos - this.#start;
  }

  /** Start a new output (drops anything unfinished). */
  begin(): void {
    this.#pos = this.#start;
  }

  /** Room for `n` more bytes; the output in progress moves to a new slab when it must. */
  ensure(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    const used = this.#pos - this.#start;
    const next = Buffer.allocUnsafe(Math.max(this.#slab, (used + n) * 2));
    this.#buf.copy(next, 0, this.#start, this.#pos);
    this.#buf = next;
    this.#start = 0;
    this.#pos = used;
  }

  bytes(src: Buffer, start: number, end: number): void {
    const n = end - start;
    if (n <= 0) return;
    this.ensure(n);
    const buf = this.#buf;
    let pos = this.#pos;
    // Small copies (most values in a row) are cheaper in JS than across the native boundary.
    if (n <= 48) for (let i = start; i < end; i++) buf[pos++] = src[i]!;
    else pos += src.copy(buf, pos, start, end);
    this.#pos = pos;
  }

  byte(b: number): void {
    this.ensure(1);
    this.#buf[this.#pos++] = b;
  }

  fill(b: number, n: number): void {
    this.ensure(n);
    const buf = this.#buf;
    const end = this.#pos + n;
    for (let i = this.#pos; i < end; i++) buf[i] = b;
    this.#pos = end;
  }

  /** ASCII text (one byte per character). */
  ascii(text: string): void {
    this.ensure(text.length);
    this.#pos += this.#buf.write(text, this.#pos, 'latin1');
  }

  int16(v: number): void {
    this.ensure(2);
    this.#pos = this.#buf.writeInt16BE(v, this.#pos);
  }

  int32(v: number): void {
    this.ensure(4);
    const buf = this.#buf;
    const p = this.#pos;
    buf[p] = v >>> 24;
    buf[p + 1] = v >>> 16;
    buf[p + 2] = v >>> 8;
    buf[p + 3] = v;
    this.#pos = p + 4;
  }

  /** Overwrite an Int32 at `offset` bytes into the output in progress (a length known only at the end). */
  setInt32(offset: number, v: number): void {
    const buf = this.#buf;
    const p = this.#start + offset;
    buf[p] = v >>> 24;
    buf[p + 1] = v >>> 16;
    buf[p + 2] = v >>> 8;
    buf[p + 3] = v;
  }

  /** The output in progress, as a view; the next output starts after it. */
  finish(): Buffer {
    const out = this.#buf.subarray(this.#start, this.#pos);
    this.#start = this.#pos;
    return out;
  }
}
