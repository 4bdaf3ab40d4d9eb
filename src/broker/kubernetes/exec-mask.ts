/**
 * `kubectl exec` / `attach` output masked as it streams. The API server's side of the
 * remote-command protocol (WebSocket, `v4`/`v5.channel.k8s.io`) is read frame by frame and
 * written again: stdout and stderr (channels 1 and 2) each go through their own line
 * scanner (masking/text-stream.ts), so a value split across frames is seen whole; any other
 * message (the exec status on channel 3, a text frame) is masked whole; pings, pongs and the
 * close pass as they are, after the output held before them. What cannot be read — a frame
 * over the cap, a compressed or unknown frame, a line longer than the scanner holds, output
 * that is not UTF-8 (binary: it would arrive corrupted, or unscanned) — cuts
 * the stream with a Failure status on channel 3 and a close: nothing passes unscanned.
 *
 * Frame boundaries change (held text goes out with what completes it), the bytes a client
 * shows do not, except where masked.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import type { ValueMasker } from './value-mask.js';
import { LineScanner, TextStreamError } from '../masking/text-stream.js';
import { channelFrame, WsFrameReader, wsFrame } from './remote-command.js';
import { offeredProtocols } from './headers.js';
import type { K8sRequestInfo } from './request-info.js';

/** The subprotocols whose output agentgate can read, and so mask. */
export const MASKABLE_EXEC_PROTOCOLS: readonly string[] = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];

/**
 * Why a masked session may not open this upgrade (undefined: it may): exec and attach only
 * over WebSocket offering a protocol exec-mask reads; port-forward and proxy carry raw
 * bytes no detector can read as text.
 */
export function unmaskableUpgrade(info: K8sRequestInfo, headers: IncomingHttpHeaders): string | undefined {
  if (info.kind !== 'resource') return undefined;
  if (info.verb === 'exec' || info.verb === 'attach') {
    const websocket = String(headers.upgrade ?? '').toLowerCase() === 'websocket';
    const offered = offeredProtocols(headers['sec-websocket-protocol']);
    if (websocket && offered.some((p) => MASKABLE_EXEC_PROTOCOLS.includes(p))) return undefined;
    const asked = websocket ? `WebSocket with ${offered.length > 0 ? offered.join(', ').slice(0, 120) : 'no subprotocol'}` : String(headers.upgrade ?? 'an upgrade').slice(0, 40);
    return `this session's output is masked, and agentgate reads ${info.verb} output only over WebSocket with ${MASKABLE_EXEC_PROTOCOLS.join(' or ')} (kubectl 1.30 or later); this request asked for ${asked}`;
  }
  if (info.verb === 'portforward' || info.verb === 'proxy') return `this session's output is masked, and a ${info.verb === 'proxy' ? 'proxied' : 'port-forward'} stream carries raw bytes that agentgate cannot read to mask`;
  return undefined;
}

/** A terminal's prompt or echo (`tty=true`) waits this long for the rest of its line, as in SSH. */
export const EXEC_PROMPT_FLUSH_MS = 150;

/** Where a tar header says `ustar`. */
const TAR_MAGIC_AT = 257;
const TAR_MAGIC_END = 262;

/** A whole non-output message (the exec status) larger than this cuts the stream. */
const MAX_MESSAGE = 1024 * 1024;

const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

export interface ExecMaskOptions {
  /** The exec has a terminal: unfinished lines are released after a quiet pause. */
  tty: boolean;
  onMasked: (n: number) => void;
  maxHeld?: number;
  /** Called once when the stream is cut: the upgrade pipe ends both sides. */
  onCut: (reason: string) => void;
}

/** A Transform from the API server's raw WebSocket bytes to the masked bytes the client gets. */
export function maskRemoteCommand(masker: ValueMasker, o: ExecMaskOptions): Transform {
  const scanners = new Map<number, LineScanner>([1, 2].map((ch) => [ch, new LineScanner(masker, o.onMasked, { ...(o.maxHeld !== undefined ? { maxHeld: o.maxHeld } : {}), what: 'exec output without a line break', binary: 'refuse' })]));
  const timers = new Map<number, NodeJS.Timeout>();
  let out: Buffer[] = [];
  let cut = false;
  let ended = false;
  /** The message being read: its opcode, channel (binary) and, for a whole-masked one, its parts. */
  let message: { op: number; channel: number; parts: Buffer[]; size: number } | undefined;

  const data = (channel: number, text: string): void => {
    if (text) out.push(channelFrame(channel, text));
  };
  const maskWhole = (b: Buffer): Buffer => {
    const text = b.toString('utf8');
    const m = masker.field(text, undefined);
    if (!m) return b;
    o.onMasked(1);
    return Buffer.from(m.value ?? '', 'utf8');
  };
  // stdout's first bytes tell whether it is a tar archive (kubectl cp): masking values inside
  // one would corrupt it, so it is refused instead. Nothing waits for the check: a tar
  // header has no line break before its magic, so the scanner still holds all of it then.
  let head: Buffer | undefined = Buffer.alloc(0);
  const checkTar = (payload: Buffer): void => {
    if (!head) return;
    head = Buffer.concat([head, payload.subarray(0, TAR_MAGIC_END - head.length)]);
    if (head.length < TAR_MAGIC_END) return;
    const magic = head.toString('latin1', TAR_MAGIC_AT, TAR_MAGIC_END);
    head = undefined;
    if (magic === 'ustar') throw new TextStreamError('a tar archive (kubectl cp) cannot be masked in place (masks would corrupt it); the stream was cut');
  };
  const releaseAll = (): void => {
    for (const [ch, s] of scanners) {
      clearTimeout(timers.get(ch));
      data(ch, s.release());
    }
  };
  const fail = (reason: string): void => {
    if (cut) return;
    cut = true;
    for (const t of timers.values()) clearTimeout(t);
    const status = { metadata: {}, status: 'Failure', reason: 'InternalError', message: `agentgate: ${reason}` };
    out.push(channelFrame(3, JSON.stringify(status)));
    // 1008: policy violation. kubectl shows a close's reason, which holds at most 123 bytes.
    out.push(wsFrame(OP_CLOSE, Buffer.concat([Buffer.from([0x03, 0xf0]), Buffer.from(`agentgate: ${reason}`.slice(0, 123), 'utf8')])));
    o.onCut(reason);
  };

  const reader = new WsFrameReader((op, payload, continuation, flags) => {
    if (cut) return;
    if (flags.rsv !== 0) return fail('the API server sent a WebSocket frame with an extension agentgate cannot read; the stream was cut');
    if (op === OP_CLOSE || op === OP_PING || op === OP_PONG) {
      // A close's reason (kubectl prints it) and a ping's payload are text too.
      if (op === OP_CLOSE) {
        releaseAll();
        out.push(wsFrame(op, payload.length > 2 ? Buffer.concat([payload.subarray(0, 2), maskWhole(payload.subarray(2))]).subarray(0, 125) : payload));
      } else out.push(wsFrame(op, maskWhole(payload).subarray(0, 125)));
      return;
    }
    if (continuation && message === undefined) return fail('the API server sent a WebSocket continuation with no message before it; the stream was cut');
    if (op !== OP_BINARY && op !== OP_TEXT) return fail(`the API server sent a WebSocket frame agentgate cannot read (opcode ${op}); the stream was cut`);
    if (!continuation) {
      if (op === OP_BINARY && payload.length === 0) return;
      message = { op, channel: op === OP_BINARY ? payload[0]! : -1, parts: [], size: 0 };
      payload = op === OP_BINARY ? payload.subarray(1) : payload;
    }
    const m = message;
    if (!m) return;
    const scanner = scanners.get(m.channel);
    if (scanner) {
      clearTimeout(timers.get(m.channel));
      if (m.channel === 1) checkTar(payload);
      data(m.channel, scanner.push(payload));
      if (o.tty && scanner.releasable) {
        const ch = m.channel;
        timers.set(
          ch,
          setTimeout(() => {
            if (cut) return;
            const rest = scanner.release();
            if (rest) t.push(channelFrame(ch, rest));
          }, EXEC_PROMPT_FLUSH_MS),
        );
      }
    } else {
      m.parts.push(payload);
      m.size += payload.length;
      if (m.size > MAX_MESSAGE) return fail(`a message on channel ${m.channel} is larger than ${MAX_MESSAGE} bytes; the stream was cut so nothing passes unscanned`);
      if (!flags.fin) return;
      releaseAll();
      const body = maskWhole(Buffer.concat(m.parts));
      out.push(m.op === OP_BINARY ? channelFrame(m.channel, body) : wsFrame(m.op, body));
    }
    if (flags.fin) message = undefined;
  }, 16 * 1024 * 1024);

  const drain = (): Buffer | undefined => {
    const b = out.length === 0 ? undefined : out.length === 1 ? out[0] : Buffer.concat(out);
    out = [];
    return b;
  };
  const t: Transform = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      if (cut) return cb();
      try {
        reader.push(chunk);
        if (reader.broken) fail('the API server sent a WebSocket frame larger than agentgate reads; the stream was cut');
      } catch (err) {
        fail((err as Error).message);
      }
      cb(null, drain());
      // Cut: the client's side ends after the frames that say so.
      if (cut && !ended) {
        ended = true;
        t.push(null);
      }
    },
    flush(cb: TransformCallback) {
      if (ended) return cb();
      if (!cut) {
        try {
          for (const [ch, s] of scanners) {
            clearTimeout(timers.get(ch));
            data(ch, s.release(true));
          }
        } catch (err) {
          fail((err as Error).message);
        }
      }
      cb(null, drain());
    },
    destroy(err, cb) {
      for (const timer of timers.values()) clearTimeout(timer);
      cb(err);
    },
  });
  return t;
}
