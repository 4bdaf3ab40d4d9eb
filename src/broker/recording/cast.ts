/**
 * Terminal recordings as asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/),
 * written while the session runs: a header line, then one JSON array per event —
 * `[seconds, "o", text]` output exactly as the client was shown it (after masking),
 * `[seconds, "r", "COLSxROWS"]` resizes, `[seconds, "i", text]` the client's input (only
 * when the target opts in: `recording: { input: true }`), and `[seconds, "m", text]`
 * markers (the cut).
 *
 * The file is created 0600 in a 0700 directory and never rewritten: its SHA-256 is kept
 * while it is written, so `close()` returns the digest of exactly the bytes on disk. The
 * size is bounded by `maxBytes`: the event that would cross the cap is dropped and a
 * marker says where the recording was cut; nothing after it is written.
 */
import { createHash, type Hash } from 'node:crypto';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';

/** Room kept under the cap for the closing marker. */
const MARKER_ROOM = 256;

export interface CastHeader {
  width: number;
  height: number;
  /** Unix seconds. */
  timestamp: number;
  title: string;
}

export interface FinishedRecording {
  /** File name under the recordings directory. */
  name: string;
  path: string;
  sha256: string;
  bytes: number;
  events: number;
  /** Set when the cap cut the recording: output seconds at the cut. */
  cutAt: number | null;
}

export interface CastWriterOptions {
  dir: string;
  name: string;
  header: CastHeader;
  maxBytes: number;
  now?: () => number;
}

export class CastWriter {
  readonly #file: WriteStream;
  readonly #hash: Hash = createHash('sha256');
  readonly #o: CastWriterOptions;
  readonly #start: number;
  readonly #now: () => number;
  readonly #decoders = new Map<string, StringDecoder>();
  #inputDecoder: StringDecoder | undefined;
  #bytes = 0;
  #events = 0;
  #cutAt: number | null = null;
  #closed: Promise<FinishedRecording> | undefined;

  constructor(o: CastWriterOptions) {
    this.#o = o;
    this.#now = o.now ?? (() => performance.now());
    this.#start = this.#now();
    mkdirSync(o.dir, { recursive: true, mode: 0o700 });
    this.#file = createWriteStream(join(o.dir, o.name), { flags: 'wx', mode: 0o600 });
    this.#file.on('error', () => {});
    const h = o.header;
    this.#put(`${JSON.stringify({ version: 2, width: h.width, height: h.height, timestamp: h.timestamp, title: h.title })}\n`);
  }

  get cut(): boolean {
    return this.#cutAt !== null;
  }

  /** Output as the client received it; `stream` keeps a multi-byte character split across chunks whole. */
  output(data: Buffer | string, stream = 'stdout'): void {
    let text: string;
    if (typeof data === 'string') text = data;
    else {
      let d = this.#decoders.get(stream);
      if (!d) this.#decoders.set(stream, (d = new StringDecoder('utf8')));
      text = d.write(data);
    }
    if (text) this.#event('o', text);
  }

  resize(cols: number, rows: number): void {
    this.#event('r', `${cols}x${rows}`);
  }

  /** What the client typed or sent, as it arrived (the caller records it only when opted in). */
  input(data: Buffer): void {
    const text = (this.#inputDecoder ??= new StringDecoder('utf8')).write(data);
    if (text) this.#event('i', text);
  }

  #t(): number {
    return Math.round(this.#now() - this.#start) / 1000;
  }

  #event(kind: 'o' | 'r' | 'i', data: string): void {
    if (this.#cutAt !== null || this.#closed) return;
    const t = this.#t();
    const line = `${JSON.stringify([t, kind, data])}\n`;
    const size = Buffer.byteLength(line);
    if (this.#bytes + size > this.#o.maxBytes - MARKER_ROOM) {
      this.#cutAt = t;
      this.#put(`${JSON.stringify([t, 'm', `agentgate: recording cut at ${t}s after ${this.#bytes} bytes (max_bytes ${this.#o.maxBytes}); output went on unrecorded`])}\n`);
      return;
    }
    this.#put(line);
  }

  #put(line: string): void {
    const b = Buffer.from(line, 'utf8');
    this.#hash.update(b);
    this.#bytes += b.length;
    this.#events++;
    this.#file.write(b);
  }

  /** Flushes and closes the file; the digest covers every byte written. Idempotent. */
  close(): Promise<FinishedRecording> {
    if (!this.#closed) {
      for (const [stream, d] of this.#decoders) {
        const rest = d.end();
        this.#decoders.delete(stream);
        if (rest) this.#event('o', rest);
      }
      const typed = this.#inputDecoder?.end();
      if (typed) this.#event('i', typed);
      const path = join(this.#o.dir, this.#o.name);
      this.#closed = new Promise<FinishedRecording>((resolve, reject) => {
        this.#file.once('error', reject);
        this.#file.end(() =>
          resolve({ name: this.#o.name, path, sha256: this.#hash.digest('hex'), bytes: this.#bytes, events: this.#events - 1, cutAt: this.#cutAt }),
        );
      });
    }
    return this.#closed;
  }
}
