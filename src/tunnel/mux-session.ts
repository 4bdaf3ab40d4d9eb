/**
 * One multiplexed tunnel connection (`agentgate-mux/1`), the same code at both ends: the
 * channels riding it, their flow control, keepalives, and the socket writes.
 *
 * - Channels are numbered by the CLI from 1 upwards and never reused, so a frame for a
 *   channel that has closed is late and ignored, while one for a number never opened is a
 *   protocol error.
 * - Flow control is per channel credit (mux-channel.ts): a reader that stops holds at most
 *   one window at the receiver and stalls only its own channel's writer, never the others.
 * - Every frame made in one turn of the event loop leaves in one socket write, in that
 *   turn's check phase (setImmediate): with several channels busy, one TLS pass and one
 *   system call carry them all. Write callbacks run once their bytes are handed to the
 *   socket and it is not backpressured, so the socket's backlog stays bounded too.
 * - The broker reads nothing more from a peer while its own writes to that peer are
 *   backpressured: PING, OPEN and CREDENTIAL are answered, so a peer that sends them and
 *   never reads would otherwise have the answers pile up here without bound. (Only the
 *   broker: if both ends did it, two ends each busy writing could wait on each other. The
 *   CLI always reads, so the broker's backlog drains and it reads again.)
 * - Keepalive: a PING every interval; `keepaliveCountMax` unanswered in a row end the
 *   session, as a peer that stopped reading may never see our FIN.
 * - The first frame each way must be HELLO (the identity proof and its acceptance, which
 *   dialer.ts and acceptor.ts make and check); HELLO and the credential frames go to
 *   `onControl`.
 */
import type { Duplex } from 'node:stream';
import { MuxChannel, type ChannelLink } from './mux-channel.js';
import { decodeU32, encodeHeader, FrameDecoder, FrameType, frameTypeName, HEADER_LENGTH, MuxProtocolError } from './mux-codec.js';

export interface OpenRequest {
  target: string;
  address: string;
  port: number;
}

export interface MuxSessionOptions {
  role: 'cli' | 'broker';
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  /** HELLO, CREDENTIAL and CREDENTIAL_REPLY frames. Throwing ends the session. */
  onControl: (type: FrameType, id: number, payload: Buffer) => void;
  /** Broker side: a channel was asked for. Answer with session.accept() or session.refuse(). */
  onOpen?: (id: number, request: OpenRequest) => void;
  /**
   * Broker side: channels live at once on this tunnel; an OPEN beyond it is refused
   * (AG_TUNNEL_TOO_MANY_CHANNELS) and the tunnel carries on. Each channel may hold a window
   * of the peer's data, so this bounds what one tunnel holds. Default: no limit.
   */
  maxChannels?: number;
}

export class MuxSession implements ChannelLink {
  readonly #socket: Duplex;
  readonly #o: MuxSessionOptions;
  readonly #decoder: FrameDecoder;
  readonly #channels = new Map<number, MuxChannel>();
  readonly #opening = new Map<number, { resolve(ch: MuxChannel): void; reject(err: Error): void }>();
  /** CLI: the next channel number. Broker: one past the highest number the CLI opened. */
  #nextId = 1;
  #out: Buffer[] = [];
  #outBytes = 0;
  #flushScheduled = false;
  /** Write callbacks waiting for their bytes to reach the socket (and it to drain). */
  #afterFlush: Array<() => void> = [];
  #blocked = false;
  #helloSent = false;
  #helloReceived = false;
  #missedPings = 0;
  readonly #keepalive: NodeJS.Timeout | undefined;
  #ended: Error | undefined | null = null;
  readonly closed: Promise<Error | undefined>;
  #resolveClosed!: (err: Error | undefined) => void;

  constructor(socket: Duplex, options: MuxSessionOptions) {
    this.#socket = socket;
    this.#o = options;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#decoder = new FrameDecoder((type, id, payload) => this.#onFrame(type, id, payload));
    socket.on('data', (chunk: Buffer) => {
      try {
        this.#decoder.push(chunk);
      } catch (err) {
        this.destroy(err instanceof Error ? err : new Error(String(err)));
      }
    });
    socket.on('drain', () => this.#drained());
    socket.once('end', () => this.destroy(new Error('the peer closed the connection')));
    socket.once('close', () => this.destroy(new Error('the connection closed')));
    socket.on('error', (err: Error) => this.destroy(err));
    if (options.keepaliveIntervalMs > 0) {
      this.#keepalive = setInterval(() => this.#ping(), options.keepaliveIntervalMs);
      this.#keepalive.unref();
    }
  }

  get isOpen(): boolean {
    return this.#ended === null;
  }

  /** Send our HELLO (first frame this end sends). */
  sendHello(payload: Buffer): void {
    this.#helloSent = true;
    this.#send(FrameType.HELLO, 0, payload);
  }

  sendControl(type: typeof FrameType.CREDENTIAL | typeof FrameType.CREDENTIAL_REPLY, id: number, payload: Buffer): void {
    this.#send(type, id, payload);
  }

  /** CLI side: ask the broker for a channel. Rejects with a plain Error if the session ends first. */
  open(request: OpenRequest): Promise<MuxChannel> {
    if (this.#ended !== null) return Promise.reject(this.#ended ?? new Error('the tunnel is closed'));
    const id = this.#nextId++;
    return new Promise<MuxChannel>((resolve, reject) => {
      this.#opening.set(id, { resolve, reject });
      this.#send(FrameType.OPEN, id, Buffer.from(JSON.stringify(request)));
    });
  }

  /** Broker side: accept channel `id` (from onOpen). */
  accept(id: number): MuxChannel {
    const ch = new MuxChannel(this, id);
    this.#channels.set(id, ch);
    this.#send(FrameType.OPEN_OK, id);
    return ch;
  }

  /** Broker side: refuse channel `id` (from onOpen). */
  refuse(id: number, code: string, message: string): void {
    this.#send(FrameType.OPEN_FAIL, id, Buffer.from(JSON.stringify({ code, message })));
  }

  /** Flush what is queued, then end the socket (a graceful close). */
  end(): void {
    if (this.#ended !== null) return;
    this.#flush();
    this.#socket.end();
  }

  /** End the session now: every channel and the socket, with `err` as the reason. */
  destroy(err?: Error): void {
    if (this.#ended !== null) return;
    this.#ended = err;
    clearInterval(this.#keepalive);
    const gone = err ?? new Error('the tunnel closed');
    for (const p of this.#opening.values()) p.reject(gone);
    this.#opening.clear();
    // Without an error, as a closed SSH channel was: a consumer without an 'error' listener
    // must not crash the process because the tunnel went away; pipes see a premature close.
    for (const ch of this.#channels.values()) ch.destroy();
    this.#channels.clear();
    for (const cb of this.#afterFlush) cb();
    this.#afterFlush = [];
    this.#out = [];
    this.#socket.destroy();
    this.#resolveClosed(err);
  }

  /** Queue one frame; it leaves with the rest of this turn's frames (for channels). */
  send(type: FrameType, id: number, payload?: Buffer, afterFlush?: () => void): void {
    this.#send(type, id, payload, afterFlush);
  }

  /** A channel is gone at this end (for channels). */
  forget(id: number): void {
    this.#channels.delete(id);
  }

  #send(type: FrameType, id: number, payload?: Buffer, afterFlush?: () => void): void {
    if (this.#ended !== null) {
      afterFlush?.();
      return;
    }
    const length = payload?.length ?? 0;
    this.#out.push(encodeHeader(type, id, length));
    if (payload !== undefined && length > 0) this.#out.push(payload);
    this.#outBytes += HEADER_LENGTH + length;
    if (afterFlush) this.#afterFlush.push(afterFlush);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#ended !== null || this.#out.length === 0) return;
    const bytes = Buffer.concat(this.#out, this.#outBytes);
    this.#out = [];
    this.#outBytes = 0;
    if (!this.#socket.write(bytes)) {
      this.#blocked = true;
      // Broker: the peer is not taking what we send; read nothing more until it does.
      if (this.#o.role === 'broker') this.#socket.pause();
    }
    if (!this.#blocked) this.#runAfterFlush();
  }

  #drained(): void {
    this.#blocked = false;
    if (this.#o.role === 'broker' && this.#ended === null) this.#socket.resume();
    this.#runAfterFlush();
  }

  #runAfterFlush(): void {
    const cbs = this.#afterFlush;
    this.#afterFlush = [];
    for (const cb of cbs) cb();
  }

  #ping(): void {
    if (this.#ended !== null || !this.#helloSent) return;
    if (this.#missedPings >= this.#o.keepaliveCountMax) {
      this.destroy(new Error(`no answer to ${this.#o.keepaliveCountMax} keepalives`));
      return;
    }
    this.#missedPings++;
    this.#send(FrameType.PING, 0);
  }

  #onFrame(type: FrameType, id: number, payload: Buffer): void {
    if (this.#ended !== null) return;
    if (!this.#helloReceived) {
      if (type !== FrameType.HELLO) throw new MuxProtocolError(`${frameTypeName(type)} arrived before HELLO`);
      this.#helloReceived = true;
      this.#o.onControl(type, id, payload);
      return;
    }
    switch (type) {
      case FrameType.PING:
        this.#send(FrameType.PONG, 0, payload.length > 0 ? Buffer.from(payload) : undefined);
        return;
      case FrameType.PONG:
        this.#missedPings = 0;
        return;
      case FrameType.HELLO:
        throw new MuxProtocolError('a second HELLO');
      case FrameType.CREDENTIAL:
        if (this.#o.role !== 'broker') throw new MuxProtocolError('CREDENTIAL sent to the CLI');
        this.#o.onControl(type, id, payload);
        return;
      case FrameType.CREDENTIAL_REPLY:
        if (this.#o.role !== 'cli') throw new MuxProtocolError('CREDENTIAL_REPLY sent to the broker');
        this.#o.onControl(type, id, payload);
        return;
      case FrameType.OPEN:
        this.#onOpen(id, payload);
        return;
      case FrameType.OPEN_OK:
      case FrameType.OPEN_FAIL:
        this.#onOpenAnswer(type, id, payload);
        return;
      default:
        this.#onChannelFrame(type, id, payload);
    }
  }

  #onOpen(id: number, payload: Buffer): void {
    if (this.#o.role !== 'broker' || !this.#o.onOpen) throw new MuxProtocolError('OPEN sent to the CLI');
    // Numbers only go up: a reused or skipped-back number would confuse late frames with live ones.
    if (id < this.#nextId) throw new MuxProtocolError(`OPEN reuses channel number ${id}`);
    this.#nextId = id + 1;
    const request = parseOpenRequest(payload);
    if (!request) throw new MuxProtocolError('an OPEN frame without a target, address and port');
    const max = this.#o.maxChannels;
    if (max !== undefined && this.#channels.size >= max) {
      this.refuse(id, 'AG_TUNNEL_TOO_MANY_CHANNELS', `this tunnel already carries ${max} open connections; close some (or use a connection pool of at most ${max}) and try again`);
      return;
    }
    this.#o.onOpen(id, request);
  }

  #onOpenAnswer(type: FrameType, id: number, payload: Buffer): void {
    const waiting = this.#opening.get(id);
    if (!waiting) {
      if (this.#o.role === 'cli' && id < this.#nextId) return; // the open already timed out here
      throw new MuxProtocolError(`${frameTypeName(type)} for channel ${id}, which was not being opened`);
    }
    this.#opening.delete(id);
    if (type === FrameType.OPEN_OK) {
      const ch = new MuxChannel(this, id);
      this.#channels.set(id, ch);
      waiting.resolve(ch);
      return;
    }
    waiting.reject(new ChannelRefusedError(parseRefusal(payload)));
  }

  #onChannelFrame(type: FrameType, id: number, payload: Buffer): void {
    const ch = this.#channels.get(id);
    if (!ch) {
      // Never opened (or 0): a broken peer. Opened and since closed: a late frame, dropped.
      if (id === 0 || id >= this.#nextId) throw new MuxProtocolError(`${frameTypeName(type)} for channel ${id}, which was never opened`);
      return;
    }
    switch (type) {
      case FrameType.DATA:
        ch.received(payload);
        return;
      case FrameType.EOF:
        ch.receivedEof();
        return;
      case FrameType.CLOSE:
        ch.receivedClose();
        return;
      case FrameType.WINDOW:
        ch.credit(decodeU32(payload));
        return;
      default:
        throw new MuxProtocolError(`unexpected ${frameTypeName(type)} frame`);
    }
  }
}

/** The broker's refusal of a channel: code and message from its OPEN_FAIL. */
export class ChannelRefusedError extends Error {
  readonly code: string;
  constructor(refusal: { code: string; message: string }) {
    super(refusal.message);
    this.code = refusal.code;
  }
}

function parseOpenRequest(payload: Buffer): OpenRequest | undefined {
  try {
    const v = JSON.parse(payload.toString('utf8')) as Partial<OpenRequest>;
    if (typeof v.target === 'string' && typeof v.address === 'string' && Number.isInteger(v.port)) {
      return { target: v.target, address: v.address.slice(0, 64), port: v.port as number };
    }
  } catch {
    // undefined below
  }
  return undefined;
}

function parseRefusal(payload: Buffer): { code: string; message: string } {
  try {
    const v = JSON.parse(payload.toString('utf8')) as { code?: unknown; message?: unknown };
    return {
      code: typeof v.code === 'string' ? v.code.slice(0, 64) : 'AG_TUNNEL_CHANNEL_REFUSED',
      message: typeof v.message === 'string' ? v.message.slice(0, 500) : 'refused',
    };
  } catch {
    return { code: 'AG_TUNNEL_CHANNEL_REFUSED', message: 'refused' };
  }
}
