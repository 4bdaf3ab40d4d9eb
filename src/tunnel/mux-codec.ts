/**
 * The tunnel's frame format (`agentgate-mux/1`), pure: no sockets, no timers.
 *
 *   type u8 | channel u32 (big-endian) | length u32 (big-endian) | payload (length bytes)
 *
 * A 9-byte header, then the payload. The decoder is streaming: frames may arrive split at
 * any byte, or many in one chunk; a whole frame's payload is handed on as a view of the
 * chunk it came in when it fits one chunk, so DATA is not copied on the way through.
 * A length over MAX_FRAME_PAYLOAD or an unknown type is a protocol error: the peer is
 * broken or hostile, and the only safe answer is to end the tunnel.
 */
import { BrokerError } from '../errors.js';

export const FrameType = {
  /** Broker → CLI first: its identity proof. CLI → broker: the proof was accepted. */
  HELLO: 1,
  /** CLI → broker: open a channel (JSON: target, originator address and port). */
  OPEN: 2,
  OPEN_OK: 3,
  /** JSON: code and message. */
  OPEN_FAIL: 4,
  DATA: 5,
  /** The sender will send no more DATA on the channel (half-close). */
  EOF: 6,
  /** The sender is done with the channel in both directions; ids are never reused. */
  CLOSE: 7,
  /** u32 credit increment: the receiver may be sent that many more DATA bytes. */
  WINDOW: 8,
  PING: 9,
  PONG: 10,
  /** CLI → broker: the credential-exchange request line; channel = request id. */
  CREDENTIAL: 11,
  /** Broker → CLI: the credential-exchange reply line, same request id. */
  CREDENTIAL_REPLY: 12,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export const HEADER_LENGTH = 9;
/** Largest payload either end accepts. DATA is sent in far smaller pieces (MAX_DATA_CHUNK). */
export const MAX_FRAME_PAYLOAD = 1024 * 1024;
/** DATA payloads are cut to this, so one busy channel does not hold the socket for long. */
export const MAX_DATA_CHUNK = 64 * 1024;

/**
 * Frames whose payload is fixed or tiny have their own, lower limit. PING's payload comes
 * back in the PONG, so without one a peer that never reads could make us queue a megabyte
 * of reply per frame it sends.
 */
const MAX_PAYLOAD_BY_TYPE = new Map<number, number>([
  [FrameType.OPEN_OK, 0],
  [FrameType.EOF, 0],
  [FrameType.CLOSE, 0],
  [FrameType.WINDOW, 4],
  [FrameType.PING, 64],
  [FrameType.PONG, 64],
]);

/** Largest payload a frame of `type` may carry. */
export function maxPayloadOf(type: number, ceiling = MAX_FRAME_PAYLOAD): number {
  return Math.min(MAX_PAYLOAD_BY_TYPE.get(type) ?? ceiling, ceiling);
}

const NAMES = new Map<number, string>(Object.entries(FrameType).map(([k, v]) => [v, k]));

export function frameTypeName(type: number): string {
  return NAMES.get(type) ?? `0x${type.toString(16)}`;
}

/** The peer broke the wire format or the protocol; the tunnel ends with this. */
export class MuxProtocolError extends BrokerError {
  constructor(detail: string) {
    super('AG_TUNNEL_PROTOCOL', `The tunnel peer broke the protocol: ${detail}.`, {
      hint: 'The CLI and the broker must be the same agentgate release; upgrade the older one. agentgate reconnects on its own.',
    });
  }
}

/** The 9-byte header for a frame whose payload follows separately. */
export function encodeHeader(type: FrameType, channel: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER_LENGTH);
  h[0] = type;
  h.writeUInt32BE(channel, 1);
  h.writeUInt32BE(length, 5);
  return h;
}

/** One whole frame in one buffer (header + a copy of the payload). */
export function encodeFrame(type: FrameType, channel: number, payload: Uint8Array = EMPTY): Buffer {
  if (payload.length > MAX_FRAME_PAYLOAD) throw new RangeError(`frame payload of ${payload.length} bytes exceeds ${MAX_FRAME_PAYLOAD}`);
  const out = Buffer.allocUnsafe(HEADER_LENGTH + payload.length);
  out[0] = type;
  out.writeUInt32BE(channel, 1);
  out.writeUInt32BE(payload.length, 5);
  out.set(payload, HEADER_LENGTH);
  return out;
}

export function encodeU32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}

export function decodeU32(payload: Buffer): number {
  if (payload.length !== 4) throw new MuxProtocolError(`a WINDOW frame carries ${payload.length} bytes, not 4`);
  return payload.readUInt32BE(0);
}

export type FrameHandler = (type: FrameType, channel: number, payload: Buffer) => void;

const EMPTY = Buffer.alloc(0);

/**
 * Streaming decoder: push() chunks as they arrive; each complete frame goes to the
 * handler in order. Throws MuxProtocolError (and stays failed) on a malformed frame.
 */
export class FrameDecoder {
  readonly #onFrame: FrameHandler;
  readonly #maxPayload: number;
  /** Bytes received but not yet part of a delivered frame, oldest first. */
  #chunks: Buffer[] = [];
  #buffered = 0;
  #failed: MuxProtocolError | undefined;

  constructor(onFrame: FrameHandler, maxPayload = MAX_FRAME_PAYLOAD) {
    this.#onFrame = onFrame;
    this.#maxPayload = maxPayload;
  }

  /** Bytes held waiting for the rest of a frame (at most one frame's worth plus a header). */
  get buffered(): number {
    return this.#buffered;
  }

  push(chunk: Buffer): void {
    if (this.#failed) throw this.#failed;
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    while (this.#buffered >= HEADER_LENGTH) {
      const head = this.#contiguous(HEADER_LENGTH);
      const type = head[0] as number;
      const channel = head.readUInt32BE(1);
      const length = head.readUInt32BE(5);
      if (!NAMES.has(type)) throw this.#fail(`unknown frame type ${frameTypeName(type)}`);
      const max = maxPayloadOf(type, this.#maxPayload);
      if (length > max) throw this.#fail(`a ${frameTypeName(type)} frame of ${length} bytes exceeds the ${max}-byte limit for its type`);
      if (this.#buffered < HEADER_LENGTH + length) return;
      const frame = this.#take(HEADER_LENGTH + length);
      this.#onFrame(type as FrameType, channel, frame.subarray(HEADER_LENGTH));
      if (this.#failed) return;
    }
  }

  #fail(detail: string): MuxProtocolError {
    this.#failed = new MuxProtocolError(detail);
    this.#chunks = [];
    this.#buffered = 0;
    return this.#failed;
  }

  /** The first `n` buffered bytes as one buffer, merging chunks only when they straddle. */
  #contiguous(n: number): Buffer {
    const first = this.#chunks[0] as Buffer;
    if (first.length >= n) return first;
    const merged = Buffer.concat(this.#chunks, this.#buffered);
    this.#chunks = [merged];
    return merged;
  }

  /** Remove and return the first `n` buffered bytes. */
  #take(n: number): Buffer {
    const out = this.#contiguous(n);
    const first = this.#chunks[0] as Buffer;
    if (first.length === n) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    this.#buffered -= n;
    return out.length === n ? out : out.subarray(0, n);
  }
}
