/**
 * The Kubernetes remote-command protocol over WebSocket (`v4.channel.k8s.io`,
 * `v5.channel.k8s.io`): the frame codec, and a passive reader for recording `kubectl exec` /
 * `attach` (exec-mask.ts rewrites the output). The reader sees copies of the bytes the
 * upgrade pipe relays and changes nothing: binary frames carry
 * a channel byte then data — 1 stdout and 2 stderr from the server, 4 resize
 * (`{"Width":…,"Height":…}`) and 0 stdin (recorded only when opted in) from the client. Control frames, text frames and other
 * channels are skipped; a frame split across reads is reassembled. SPDY (kubectl's older
 * transport) is not read: such streams are not recorded.
 */

export const RECORDED_WS_PROTOCOLS = new Set(['v4.channel.k8s.io', 'v5.channel.k8s.io']);

/** What a frame says besides its payload: whether it ends its message, and its reserved bits (set only by an extension). */
export interface WsFrameFlags {
  fin: boolean;
  rsv: number;
}

/** Incremental RFC 6455 frame reader: calls `onFrame` with each complete frame's unmasked payload. */
export class WsFrameReader {
  #buf: Buffer = Buffer.alloc(0);
  /** Opcode of the message a continuation frame belongs to. */
  #messageOp = 0;
  readonly #onFrame: (opcode: number, payload: Buffer, continuation: boolean, flags: WsFrameFlags) => void;
  /** Frames larger than this stop the reader (it then ignores the rest of the stream). */
  readonly #maxFrame: number;
  #broken = false;

  constructor(onFrame: (opcode: number, payload: Buffer, continuation: boolean, flags: WsFrameFlags) => void, maxFrame = 16 * 1024 * 1024) {
    this.#onFrame = onFrame;
    this.#maxFrame = maxFrame;
  }

  get broken(): boolean {
    return this.#broken;
  }

  push(chunk: Buffer): void {
    if (this.#broken) return;
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    for (;;) {
      const b = this.#buf;
      if (b.length < 2) return;
      const opcode = b[0]! & 0x0f;
      const masked = (b[1]! & 0x80) !== 0;
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        const big = b.readBigUInt64BE(2);
        if (big > BigInt(this.#maxFrame)) {
          this.#broken = true;
          this.#buf = Buffer.alloc(0);
          return;
        }
        len = Number(big);
        off = 10;
      }
      if (len > this.#maxFrame) {
        this.#broken = true;
        this.#buf = Buffer.alloc(0);
        return;
      }
      const maskAt = off;
      if (masked) off += 4;
      if (b.length < off + len) return;
      let payload = b.subarray(off, off + len);
      if (masked) {
        const key = b.subarray(maskAt, maskAt + 4);
        payload = Buffer.from(payload);
        for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ key[i & 3]!;
      }
      this.#buf = b.subarray(off + len);
      const flags = { fin: (b[0]! & 0x80) !== 0, rsv: (b[0]! >> 4) & 0x07 };
      if (opcode === 0x0) this.#onFrame(this.#messageOp, payload, true, flags);
      else {
        if (opcode < 0x8) this.#messageOp = opcode;
        this.#onFrame(opcode, payload, false, flags);
      }
    }
  }
}

/** One whole, unmasked (server-to-client) frame (RFC 6455 §5.2). */
export function wsFrame(opcode: number, payload: Buffer): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.alloc(2) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  head[0] = 0x80 | opcode;
  if (len < 126) head[1] = len;
  else if (len < 65536) {
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, payload]);
}

/** One whole binary frame of the remote-command protocol: the channel byte, then `data` (text as UTF-8). */
export function channelFrame(channel: number, data: Buffer | string): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  return wsFrame(0x2, Buffer.concat([Buffer.from([channel]), body]));
}

/**
 * Reads one direction's binary messages as (channel, data) pieces: a message split over
 * continuation frames keeps its channel byte only in the first frame.
 */
function channelReader(onData: (channel: number, data: Buffer, continuation: boolean) => void): WsFrameReader {
  let channel = -1;
  return new WsFrameReader((op, p, continuation) => {
    if (op !== 0x2) return;
    if (continuation) return onData(channel, p, true);
    if (p.length === 0) return;
    channel = p[0]!;
    onData(channel, p.subarray(1), false);
  });
}

export interface ChannelSink {
  output(data: Buffer, stream: string): void;
  resize(cols: number, rows: number): void;
  input(data: Buffer): void;
}

/**
 * Both directions of one exec/attach stream, read into a sink (a recording). The client's
 * stdin (channel 0) goes to the sink only with `input` (`recording: { input: true }`).
 */
export function k8sChannelTap(sink: ChannelSink, o: { input?: boolean } = {}): { toClient(b: Buffer): void; toServer(b: Buffer): void } {
  const server = channelReader((channel, data) => {
    if ((channel === 1 || channel === 2) && data.length > 0) sink.output(data, channel === 1 ? 'stdout' : 'stderr');
  });
  const client = channelReader((channel, data, continuation) => {
    if (channel === 0) {
      if (o.input && data.length > 0) sink.input(data);
      return;
    }
    if (continuation || channel !== 4 || data.length === 0) return;
    try {
      const size = JSON.parse(data.toString('utf8')) as { Width?: unknown; Height?: unknown };
      if (typeof size.Width === 'number' && typeof size.Height === 'number') sink.resize(size.Width, size.Height);
    } catch {
      // not a resize message
    }
  });
  return { toClient: (b) => server.push(b), toServer: (b) => client.push(b) };
}
