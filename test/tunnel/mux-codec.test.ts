import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  encodeFrame,
  FrameDecoder,
  FrameType,
  HEADER_LENGTH,
  MAX_FRAME_PAYLOAD,
  MuxProtocolError,
} from '../../src/tunnel/mux-codec.js';

type Seen = Array<{ type: number; channel: number; payload: string }>;

function decoderInto(seen: Seen, max?: number): FrameDecoder {
  return new FrameDecoder((type, channel, payload) => seen.push({ type, channel, payload: payload.toString('latin1') }), max);
}

const FRAMES = [
  { type: FrameType.HELLO, channel: 0, payload: '{"v":1}' },
  { type: FrameType.OPEN, channel: 1, payload: '{"target":"pg","address":"127.0.0.1","port":5}' },
  { type: FrameType.EOF, channel: 1, payload: '' },
  { type: FrameType.DATA, channel: 0xfffffffe, payload: 'x'.repeat(300) },
  { type: FrameType.WINDOW, channel: 7, payload: '\u0000\u0001\u0000\u0000' },
  { type: FrameType.PING, channel: 0, payload: '' },
];
const WIRE = Buffer.concat(FRAMES.map((f) => encodeFrame(f.type, f.channel, Buffer.from(f.payload, 'latin1'))));

test('the header is type, channel and length, big-endian, then the payload', () => {
  const b = encodeFrame(FrameType.DATA, 0x01020304, Buffer.from('hi'));
  assert.deepEqual([...b], [FrameType.DATA, 1, 2, 3, 4, 0, 0, 0, 2, 0x68, 0x69]);
  assert.equal(HEADER_LENGTH, 9);
});

test('frames split in two at every byte boundary decode the same, in order', () => {
  for (let cut = 0; cut <= WIRE.length; cut++) {
    const seen: Seen = [];
    const d = decoderInto(seen);
    d.push(WIRE.subarray(0, cut));
    d.push(WIRE.subarray(cut));
    assert.deepEqual(seen, FRAMES, `split at byte ${cut}`);
    assert.equal(d.buffered, 0);
  }
});

test('frames fed one byte at a time, and all in one chunk, decode the same', () => {
  const byByte: Seen = [];
  const d = decoderInto(byByte);
  for (let i = 0; i < WIRE.length; i++) d.push(WIRE.subarray(i, i + 1));
  assert.deepEqual(byByte, FRAMES);
  const whole: Seen = [];
  decoderInto(whole).push(WIRE);
  assert.deepEqual(whole, FRAMES);
});

test('a frame is not delivered before its last byte', () => {
  const seen: Seen = [];
  const d = decoderInto(seen);
  const one = encodeFrame(FrameType.DATA, 3, Buffer.from('abcdef'));
  d.push(one.subarray(0, one.length - 1));
  assert.equal(seen.length, 0);
  assert.equal(d.buffered, one.length - 1);
  d.push(one.subarray(one.length - 1));
  assert.deepEqual(seen, [{ type: FrameType.DATA, channel: 3, payload: 'abcdef' }]);
});

test('a frame longer than the limit is a protocol error as soon as its header arrives', () => {
  const d = decoderInto([], 1024);
  const header = Buffer.from([FrameType.DATA, 0, 0, 0, 1, 0, 0, 4, 1]); // 1025 bytes announced
  assert.throws(() => d.push(header), (err: unknown) => {
    assert.ok(err instanceof MuxProtocolError);
    assert.equal(err.code, 'AG_TUNNEL_PROTOCOL');
    assert.match(err.message, /DATA frame of 1025 bytes exceeds the 1024-byte limit/);
    return true;
  });
  // The default limit is 1 MiB.
  assert.throws(() => decoderInto([]).push(Buffer.from([FrameType.DATA, 0, 0, 0, 1, 0, 0x10, 0, 1])), /exceeds the 1048576-byte limit/);
  assert.equal(MAX_FRAME_PAYLOAD, 1024 * 1024);
  // Exactly at the limit is fine.
  const seen: Seen = [];
  decoderInto(seen, 1024).push(encodeFrame(FrameType.DATA, 1, Buffer.alloc(1024)));
  assert.equal(seen.length, 1);
});

test('an unknown frame type is a protocol error, and the decoder stays failed', () => {
  const seen: Seen = [];
  const d = decoderInto(seen);
  assert.throws(() => d.push(Buffer.from([0x7f, 0, 0, 0, 1, 0, 0, 0, 0])), /unknown frame type 0x7f/);
  assert.throws(() => d.push(encodeFrame(FrameType.PING, 0)), MuxProtocolError);
  assert.equal(seen.length, 0);
  assert.throws(() => decoderInto([]).push(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0])), /unknown frame type 0x0/);
});

test('a frame spread over many chunks is joined once, and a payload inside one chunk is not copied', () => {
  const payload = Buffer.alloc(200_000, 7);
  const wire = encodeFrame(FrameType.DATA, 1, payload);
  const got: Buffer[] = [];
  const d = new FrameDecoder((_t, _c, p) => got.push(p));
  for (let off = 0; off < wire.length; off += 16_384) d.push(wire.subarray(off, off + 16_384));
  assert.equal(got.length, 1);
  assert.ok(got[0]!.equals(payload));

  const chunk = Buffer.concat([encodeFrame(FrameType.DATA, 1, Buffer.from('abc')), encodeFrame(FrameType.DATA, 1, Buffer.from('def'))]);
  const views: Buffer[] = [];
  new FrameDecoder((_t, _c, p) => views.push(p)).push(chunk);
  assert.equal(views[1]!.buffer, chunk.buffer, 'the payload is a view of the chunk it came in');
});

test('encodeFrame refuses a payload over the limit', () => {
  assert.throws(() => encodeFrame(FrameType.DATA, 1, Buffer.alloc(MAX_FRAME_PAYLOAD + 1)), RangeError);
});
