/**
 * Streaming message framing for both directions of a PostgreSQL connection.
 *
 * The broker forwards most messages untouched, so the readers cut the byte stream into
 * frames without copying: a chunk is read in place, and each message is handed out as
 * `subarray` views into it. Only a message that straddles two chunks is copied, into a
 * buffer sized for that one message (its length is known, and checked against the cap,
 * before anything is allocated). The rest of the chunk that completed it is again read
 * in place.
 *
 * The reader never writes into bytes it has handed out (no in-place compaction), so a
 * frame can go straight to `socket.write()` while the next chunk is being read.
 *
 * Framing: https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS
 */
import assert from 'node:assert';

import { ProtocolError, SqlState, StartupFramingError } from './errors.js';
import {
  DEFAULT_MAX_BACKEND_MESSAGE,
  DEFAULT_MAX_FRONTEND_MESSAGE,
  FrontendType,
  MAX_AUTH_MESSAGE_LENGTH,
  MAX_STARTUP_PACKET_LENGTH,
  StartupCode,
  typeName,
} from './protocol.js';

/**
 * One message, as views into the reader's input.
 *
 * The object itself is reused for every message: read what you need inside the callback.
 * `frame` and `body` are views that stay intact (the reader never overwrites them), but
 * they keep the whole input chunk alive; copy (`Buffer.from(view)`) anything you keep.
 */
export interface PgMessage {
  /** The type byte ('Q' is 0x51 …); 0 for an untyped startup-phase packet; 'S'/'N' for an SSL reply. */
  type: number;
  /**
   * The Int32 length field: counts itself and the body, not the type byte. 0 for the
   * one-byte SSL reply, which has no length field.
   */
  length: number;
  /** The whole message, header included: what to forward. */
  frame: Buffer;
  /** The payload after the header: what decoders read. For untyped packets it begins with the request code. */
  body: Buffer;
}

export type MessageHandler = (message: PgMessage) => void;

const EMPTY = Buffer.alloc(0);
/** A message up to this size is given its whole buffer at once when it straddles chunks. */
const EAGER_ALLOCATION = 1024 * 1024;

/** Framing shared by both readers; the subclasses say where headers are and what is allowed. */
abstract class FrameReader {
  #buf: Buffer = EMPTY;
  #start = 0;
  #end = 0;
  /** True when #buf is ours (we may write past #end); false when it is the caller's chunk. */
  #owned = false;
  /** Total size of the partial message at #start once its header has been read, else 0. */
  #want = 0;
  #failed: unknown = undefined;
  readonly #view: PgMessage = { type: 0, length: 0, frame: EMPTY, body: EMPTY };

  /** Bytes received but not yet delivered (a partial message). */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /**
   * Feed bytes; `onMessage` runs once per complete message, synchronously, in order. A
   * partial message waits for the next push. Throws a ProtocolError on a malformed or
   * oversize message. Any error (including one thrown by `onMessage`) leaves the reader
   * failed: later calls rethrow it, since the stream can no longer be trusted.
   */
  push(chunk: Buffer, onMessage: MessageHandler): void {
    if (this.#failed !== undefined) throw this.#failed;
    try {
      let pos = 0;
      if (this.#end > this.#start) {
        pos = this.#complete(chunk);
        this.#drain(onMessage, chunk.length - pos);
        if (this.#end > this.#start) return; // still incomplete: the chunk is used up
      }
      if (pos < chunk.length) {
        this.#buf = chunk;
        this.#start = pos;
        this.#end = chunk.length;
        this.#owned = false;
        this.#want = 0;
        this.#drain(onMessage, 0);
      }
    } catch (error) {
      this.#failed = error;
      this.#release();
      throw error;
    }
  }

  /**
   * The peer closed its side. Throws a ProtocolError if it stopped in the middle of a
   * message; does nothing after an earlier failure (already reported).
   */
  end(): void {
    if (this.#failed !== undefined) return;
    const have = this.#end - this.#start;
    if (have === 0) return;
    const want = this.#want;
    this.#release();
    this.#failed = new ProtocolError(
      want > 0
        ? `connection closed in the middle of a message (${have} of ${want} bytes received)`
        : `connection closed in the middle of a message header (${have} bytes received)`,
    );
    throw this.#failed;
  }

  /** Header size of the message starting with `first`: 4 untyped, 5 typed, 1 for an SSL reply byte. */
  protected abstract headerSize(first: number): 1 | 4 | 5;
  /** Validate a header before anything is allocated for its message. Throws ProtocolError. */
  protected abstract check(type: number, length: number): void;
  /** A message is complete (before the callback sees it): phase changes and checks that need the body. */
  protected abstract accept(message: PgMessage, bytesAfter: number): void;

  /** Frame size of the message whose header sits at `start`, validated. */
  #measure(buf: Buffer, start: number, headerSize: number): number {
    if (headerSize === 1) return 1;
    const length = buf.readInt32BE(start + headerSize - 4);
    const type = headerSize === 5 ? (buf[start] as number) : 0;
    this.check(type, length);
    return headerSize === 5 ? length + 1 : length;
  }

  /**
   * A partial message is pending: copy from `chunk` just enough to finish it (first its
   * header, then its body). Returns how much of `chunk` was used.
   */
  #complete(chunk: Buffer): number {
    const len = chunk.length;
    let pos = 0;
    while (pos < len) {
      const have = this.#end - this.#start;
      const target = this.#want > 0 ? this.#want : this.headerSize(this.#buf[this.#start] as number);
      const take = Math.min(target - have, len - pos);
      this.#reserve(have + take);
      chunk.copy(this.#buf, this.#end, pos, pos + take);
      this.#end += take;
      pos += take;
      if (have + take < target || this.#want > 0) break;
      // The header is complete: now we know (and have checked) the message's size.
      this.#want = this.#measure(this.#buf, this.#start, target);
      if (this.#want <= target) break;
    }
    return pos;
  }

  /** Make #buf an owned buffer with room for `size` bytes from #start. */
  #reserve(size: number): void {
    if (this.#owned && this.#start + size <= this.#buf.length) return;
    const have = this.#end - this.#start;
    const want = this.#want;
    let capacity: number;
    if (want === 0) capacity = Math.max(size, 16);
    else if (want <= EAGER_ALLOCATION) capacity = want;
    // A big message arriving in many chunks: double, so copying stays linear overall.
    else capacity = Math.min(want, Math.max(size, 2 * have, EAGER_ALLOCATION));
    const next = Buffer.allocUnsafe(capacity);
    this.#buf.copy(next, 0, this.#start, this.#end);
    this.#buf = next;
    this.#start = 0;
    this.#end = have;
    this.#owned = true;
  }

  /** Deliver every complete message in #buf. `extra` = bytes of the current push not yet in #buf. */
  #drain(onMessage: MessageHandler, extra: number): void {
    const view = this.#view;
    while (this.#end > this.#start) {
      const buf = this.#buf;
      const start = this.#start;
      const avail = this.#end - start;
      const headerSize = this.headerSize(buf[start] as number);
      if (avail < headerSize) {
        this.#want = 0;
        break;
      }
      const total = this.#measure(buf, start, headerSize);
      if (avail < total) {
        this.#want = total;
        break;
      }
      this.#want = 0;
      this.#start = start + total;
      view.type = headerSize === 4 ? 0 : (buf[start] as number);
      view.length = headerSize === 1 ? 0 : headerSize === 5 ? total - 1 : total;
      view.frame = buf.subarray(start, start + total);
      view.body = buf.subarray(start + headerSize, start + total);
      this.accept(view, this.#end - this.#start + extra);
      onMessage(view);
    }
    if (this.#start === this.#end) this.#release();
  }

  #release(): void {
    this.#buf = EMPTY;
    this.#start = 0;
    this.#end = 0;
    this.#owned = false;
    this.#want = 0;
  }
}

/**
 * Where a client connection is:
 * - `startup`: untyped packets only (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest), ≤ 10,000 bytes;
 * - `auth`: after the StartupMessage, until `authenticated()`: only 'p' responses (and 'X'), ≤ 65,535 bytes;
 * - `ready`: any frontend message type, up to `maxMessageLength`;
 * - `closed`: after a CancelRequest; nothing more may follow.
 */
export type FrontendPhase = 'startup' | 'auth' | 'ready' | 'closed';

export interface FrontendReaderOptions {
  /** Cap on a typed message once authenticated, in bytes (the length field's value). */
  maxMessageLength?: number;
}

const KNOWN_FRONTEND_TYPES = new Uint8Array(256);
for (const t of Object.values(FrontendType)) KNOWN_FRONTEND_TYPES[t] = 1;

const UNENCRYPTED_DETAIL = 'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.';

/**
 * Reads what a client (psql, an ORM, pgbench) sends. It starts in the startup phase and
 * moves to `auth` by itself after a StartupMessage; the proxy calls `authenticated()`
 * once it has accepted the client. Phase changes take effect from the next message, even
 * within one chunk, so a callback may call `authenticated()` for what follows.
 *
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
 */
export class FrontendReader extends FrameReader {
  #phase: FrontendPhase = 'startup';
  #sslRequested = false;
  #gssRequested = false;
  readonly maxMessageLength: number;

  constructor(options: FrontendReaderOptions = {}) {
    super();
    this.maxMessageLength = options.maxMessageLength ?? DEFAULT_MAX_FRONTEND_MESSAGE;
    assert(this.maxMessageLength >= 4 && this.maxMessageLength <= 0x7fff_ffff, 'maxMessageLength must be 4 … 2^31-1');
  }

  get phase(): FrontendPhase {
    return this.#phase;
  }

  /** The client is authenticated: read ordinary messages, with the larger cap, from the next one on. */
  authenticated(): void {
    assert(this.#phase === 'auth', `authenticated() in phase ${this.#phase}`);
    this.#phase = 'ready';
  }

  protected headerSize(): 4 | 5 {
    return this.#phase === 'startup' ? 4 : 5;
  }

  protected check(type: number, length: number): void {
    switch (this.#phase) {
      case 'startup':
        if (length < 8 || length > MAX_STARTUP_PACKET_LENGTH) {
          throw new StartupFramingError(`invalid length of startup packet (${length} bytes; 8 to ${MAX_STARTUP_PACKET_LENGTH} allowed)`);
        }
        return;
      case 'auth':
        if (type !== FrontendType.password && type !== FrontendType.terminate) {
          throw new ProtocolError(`expected password response, got message type ${typeName(type)}`);
        }
        checkTypedLength(type, length, MAX_AUTH_MESSAGE_LENGTH);
        return;
      case 'ready':
        if (KNOWN_FRONTEND_TYPES[type] !== 1) throw new ProtocolError(`invalid frontend message type ${typeName(type)}`);
        checkTypedLength(type, length, this.maxMessageLength);
        return;
      case 'closed':
        throw new ProtocolError('unexpected data after CancelRequest');
    }
  }

  protected accept(message: PgMessage, bytesAfter: number): void {
    if (this.#phase !== 'startup') return;
    const body = message.body;
    const code = body.readInt32BE(0);
    switch (code) {
      case StartupCode.sslRequest:
      case StartupCode.gssEncRequest: {
        const ssl = code === StartupCode.sslRequest;
        const name = ssl ? 'SSLRequest' : 'GSSENCRequest';
        if (message.length !== 8) throw new ProtocolError(`invalid length of ${name} (${message.length} bytes)`);
        if (ssl ? this.#sslRequested : this.#gssRequested) throw new ProtocolError(`duplicate ${name}`);
        // The client must wait for our one-byte answer; bytes already queued behind the
        // request would be read as if they had come over the negotiated channel.
        if (bytesAfter > 0) {
          throw new ProtocolError(`received unencrypted data after ${ssl ? 'SSL request' : 'GSSAPI encryption request'}`, {
            detail: UNENCRYPTED_DETAIL,
          });
        }
        if (ssl) this.#sslRequested = true;
        else this.#gssRequested = true;
        return;
      }
      case StartupCode.cancelRequest:
        // 3.0 keys are 4 bytes; protocol 3.2 allows up to 256.
        if (message.length < 16 || message.length > 12 + 256) {
          throw new ProtocolError(`invalid length of CancelRequest (${message.length} bytes)`);
        }
        this.#phase = 'closed';
        return;
      default: {
        const major = code >>> 16;
        const minor = code & 0xffff;
        if (major === 3) {
          // Minor versions above 0 are for the proxy to answer with NegotiateProtocolVersion.
          this.#phase = 'auth';
          return;
        }
        // Protocols 1 and 2 existed: say so as PostgreSQL does. Anything else is noise.
        if (major === 1 || major === 2) {
          throw new ProtocolError(`unsupported frontend protocol ${major}.${minor}: server supports 3.0`, {
            sqlState: SqlState.featureNotSupported,
          });
        }
        throw new ProtocolError(`invalid startup packet: unknown request code ${code}`);
      }
    }
  }
}

function checkTypedLength(type: number, length: number, max: number): void {
  if (length < 4) throw new ProtocolError(`invalid message length ${length} for message type ${typeName(type)}`);
  if (length > max) {
    throw new ProtocolError(`message of type ${typeName(type)} claims ${length} bytes, over the ${max}-byte limit`);
  }
}

export interface BackendReaderOptions {
  /** Cap on one server message, in bytes (the length field's value). */
  maxMessageLength?: number;
}

/**
 * Reads what the upstream server sends. Message types are not checked (the server is
 * the authority on them); lengths are.
 */
export class BackendReader extends FrameReader {
  #sslReply = false;
  readonly maxMessageLength: number;

  constructor(options: BackendReaderOptions = {}) {
    super();
    this.maxMessageLength = options.maxMessageLength ?? DEFAULT_MAX_BACKEND_MESSAGE;
    assert(this.maxMessageLength >= 4 && this.maxMessageLength <= 0x7fff_ffff, 'maxMessageLength must be 4 … 2^31-1');
  }

  /**
   * We just sent an SSLRequest: the next byte is 'S' or 'N' on its own (delivered as a
   * message with that type, length 0 and an empty body), or an ErrorResponse from a
   * server that refuses.
   * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-SSL
   */
  expectSslReply(): void {
    this.#sslReply = true;
  }

  protected headerSize(first: number): 1 | 5 {
    return this.#sslReply && (first === 0x53 || first === 0x4e) ? 1 : 5;
  }

  protected check(type: number, length: number): void {
    if (this.#sslReply && type !== 0x45) throw new ProtocolError(`unexpected reply to SSLRequest: ${typeName(type)}`);
    checkTypedLength(type, length, this.maxMessageLength);
  }

  protected accept(message: PgMessage, bytesAfter: number): void {
    if (!this.#sslReply) return;
    this.#sslReply = false;
    // CVE-2021-23222: bytes queued behind the reply did not come through TLS.
    if (message.length === 0 && bytesAfter > 0) {
      throw new ProtocolError('received unencrypted data after SSL response', { detail: UNENCRYPTED_DETAIL });
    }
  }
}
