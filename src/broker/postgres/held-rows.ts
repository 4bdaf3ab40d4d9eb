/**
 * Rows held until their result completes (Shape.holdRows): for a result or a COPY that
 * computes over a masked column, an error part-way would show where the value stopped it,
 * so nothing goes out before the end and everything held is dropped with an error. The
 * result masker (proxy-masking.ts) and the COPY masker (mask-copy.ts) each hold one.
 *
 * Bounded: past HOLD_LIMIT the rows held are dropped and the rest of the result is withheld
 * too (`over`); the owner is told once, to send its notice.
 */

/** The most bytes of rows held for one result or COPY; beyond, its rows are withheld. */
export const HOLD_LIMIT = 16 << 20;

export interface HeldOut {
  rows: Buffer[];
  /** The hold outgrew HOLD_LIMIT: its rows are withheld, and with them the result's count. */
  over: boolean;
}

export class HeldRows {
  readonly #onOver: () => void;
  #rows: Buffer[] = [];
  #bytes = 0;
  #over = false;

  /** `onOver`: called when the hold first outgrows HOLD_LIMIT (the owner's notice). */
  constructor(onOver: () => void) {
    this.#onOver = onOver;
  }

  /** Whether the hold outgrew the limit (nothing more is kept until it is taken or dropped). */
  get over(): boolean {
    return this.#over;
  }

  /** Keep a copy of `chunk` (callers pass views of buffers that are not theirs to keep). */
  keep(chunk: Buffer): void {
    if (chunk.length === 0 || this.#over) return;
    if (this.#bytes + chunk.length > HOLD_LIMIT) {
      this.drop();
      this.#over = true;
      this.#onOver();
      return;
    }
    this.#rows.push(Buffer.from(chunk));
    this.#bytes += chunk.length;
  }

  /** What is held (undefined: nothing, and not over), and a fresh hold for the next result. */
  take(): HeldOut | undefined {
    if (this.#rows.length === 0 && !this.#over) return undefined;
    const out = { rows: this.#rows, over: this.#over };
    this.drop();
    return out;
  }

  /** Forget what is held (the result failed, or ended unseen): it is withheld. */
  drop(): void {
    this.#rows = [];
    this.#bytes = 0;
    this.#over = false;
  }
}
