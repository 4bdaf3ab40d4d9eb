/**
 * A recording whose file is opened at its first event, so a stream that announces its
 * terminal size first (kubectl sends a resize before any output) gets that size in the
 * header rather than a default and a resize.
 */
import { CastWriter, type CastWriterOptions, type FinishedRecording } from './cast.js';

export class LazyCast {
  readonly #make: (width: number, height: number) => CastWriter;
  #writer: CastWriter | undefined;
  #failed = false;
  #onError: (err: unknown) => void;

  constructor(o: Omit<CastWriterOptions, 'header'> & { title: string }, onError: (err: unknown) => void) {
    this.#onError = onError;
    this.#make = (width, height) => new CastWriter({ ...o, header: { width, height, timestamp: Math.floor(Date.now() / 1000), title: o.title } });
  }

  #open(width = 80, height = 24): CastWriter | undefined {
    if (this.#writer || this.#failed) return this.#writer;
    try {
      this.#writer = this.#make(width, height);
    } catch (err) {
      this.#failed = true;
      this.#onError(err);
    }
    return this.#writer;
  }

  output(data: Buffer, stream: string): void {
    this.#open()?.output(data, stream);
  }

  input(data: Buffer): void {
    this.#open()?.input(data);
  }

  resize(cols: number, rows: number): void {
    if (!this.#writer) this.#open(cols, rows);
    else this.#writer.resize(cols, rows);
  }

  /** The finished file, or undefined when nothing was recorded. */
  async close(): Promise<FinishedRecording | undefined> {
    return this.#writer?.close();
  }
}
