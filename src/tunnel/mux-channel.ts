/**
 * One channel of a mux session as a Duplex, with its half of the flow control: it may
 * send INITIAL_WINDOW bytes of DATA, and more only as WINDOW frames grant; it grants the
 * peer more as its own consumer reads (from _read, i.e. when the consumer wants more),
 * so a consumer that stops reading holds at most one window here. A write's callback runs
 * once its bytes left (credit allowing) and the socket is not backpressured.
 */
import { Duplex as DuplexStream } from 'node:stream';
import { encodeU32, FrameType, MAX_DATA_CHUNK, MuxProtocolError } from './mux-codec.js';

/** Credit each end starts with, per channel and direction. */
export const INITIAL_WINDOW = 512 * 1024;
/** A WINDOW frame goes out once the consumer has freed at least this much. */
const WINDOW_UPDATE_THRESHOLD = INITIAL_WINDOW / 4;
/** Readable and writable high-water marks of a channel stream. */
const CHANNEL_HIGH_WATER_MARK = 64 * 1024;

/** What a channel needs of its session. */
export interface ChannelLink {
  /** Queue a frame; `afterFlush` runs once it is handed to an undrained socket (or the session ended). */
  send(type: FrameType, id: number, payload?: Buffer, afterFlush?: () => void): void;
  forget(id: number): void;
}

export class MuxChannel extends DuplexStream {
  readonly id: number;
  readonly #session: ChannelLink;
  /** DATA bytes we may still send. */
  #sendCredit = INITIAL_WINDOW;
  /** DATA bytes the peer may send in total so far, and has sent. */
  #recvGranted = INITIAL_WINDOW;
  #recvTotal = 0;
  #pending: Buffer | undefined;
  #pendingCb: ((err?: Error | null) => void) | undefined;
  #eofReceived = false;
  #closeReceived = false;

  constructor(session: ChannelLink, id: number) {
    super({ readableHighWaterMark: CHANNEL_HIGH_WATER_MARK, writableHighWaterMark: CHANNEL_HIGH_WATER_MARK, allowHalfOpen: true });
    this.#session = session;
    this.id = id;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#pending = chunk;
    this.#pendingCb = cb;
    this.#sendPending();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.#session.send(FrameType.EOF, this.id, undefined, () => cb());
  }

  override _read(): void {
    // The consumer wants more: grant back what it has taken out of our buffer.
    const consumed = this.#recvTotal - this.readableLength;
    const increment = consumed + INITIAL_WINDOW - this.#recvGranted;
    if (increment >= WINDOW_UPDATE_THRESHOLD && !this.#eofReceived) {
      this.#recvGranted += increment;
      this.#session.send(FrameType.WINDOW, this.id, encodeU32(increment));
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.#closeReceived) this.#session.send(FrameType.CLOSE, this.id);
    this.#session.forget(this.id);
    const pendingCb = this.#pendingCb;
    this.#pending = undefined;
    this.#pendingCb = undefined;
    pendingCb?.(err ?? new Error('the channel closed'));
    cb(err);
  }

  /** @internal */
  received(payload: Buffer): void {
    if (this.#eofReceived) throw new MuxProtocolError(`DATA after EOF on channel ${this.id}`);
    this.#recvTotal += payload.length;
    if (this.#recvTotal > this.#recvGranted) throw new MuxProtocolError(`the peer overran channel ${this.id}'s window`);
    if (!this.destroyed) this.push(payload);
  }

  /** @internal */
  receivedEof(): void {
    if (this.#eofReceived) return;
    this.#eofReceived = true;
    if (!this.destroyed) this.push(null);
  }

  /**
   * @internal The peer is done with the channel and reads nothing more. What it sent is
   * still delivered: the readable side ends (as on EOF), and the channel goes once its
   * consumer has read to the end, so a reply that arrived with the CLOSE is not lost.
   */
  receivedClose(): void {
    this.#closeReceived = true;
    this.receivedEof();
    if (this.readableEnded || this.destroyed) this.destroy();
    else this.once('end', () => this.destroy());
  }

  /** @internal */
  credit(increment: number): void {
    this.#sendCredit += increment;
    if (this.#sendCredit > 2 ** 31) throw new MuxProtocolError(`channel ${this.id}'s window grew past 2 GiB`);
    this.#sendPending();
  }

  #sendPending(): void {
    while (this.#pending !== undefined && this.#sendCredit > 0) {
      const chunk: Buffer = this.#pending;
      const n = Math.min(chunk.length, this.#sendCredit, MAX_DATA_CHUNK);
      this.#sendCredit -= n;
      if (n === chunk.length) {
        this.#pending = undefined;
        const cb = this.#pendingCb;
        this.#pendingCb = undefined;
        this.#session.send(FrameType.DATA, this.id, chunk, () => cb?.());
      } else {
        this.#session.send(FrameType.DATA, this.id, chunk.subarray(0, n));
        this.#pending = chunk.subarray(n);
      }
    }
  }
}
