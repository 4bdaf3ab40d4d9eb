/**
 * The passive remote-command reader: frames split at every byte, masked client frames,
 * 16-bit lengths, continuation frames keep their message's channel, other channels and
 * control frames are skipped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { k8sChannelTap } from '../../src/broker/kubernetes/remote-command.js';

function frame(opcode: number, payload: Buffer, o: { fin?: boolean; mask?: Buffer } = {}): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0, len]) : Buffer.from([0, 126, len >> 8, len & 0xff]);
  head[0] = (o.fin === false ? 0 : 0x80) | opcode;
  if (!o.mask) return Buffer.concat([head, payload]);
  head[1] = head[1]! | 0x80;
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] = body[i]! ^ o.mask[i & 3]!;
  return Buffer.concat([head, o.mask, body]);
}
const ch = (n: number, data: string | Buffer): Buffer => Buffer.concat([Buffer.from([n]), Buffer.isBuffer(data) ? data : Buffer.from(data)]);

test('server output by channel, client resizes, byte by byte, continuations and control frames', () => {
  const got: string[] = [];
  const tap = k8sChannelTap({ output: (d, s) => got.push(`${s}:${d.toString()}`), resize: (c, r) => got.push(`resize:${c}x${r}`), input: (d) => got.push(`input:${d.toString()}`) });
  const long = 'x'.repeat(300);
  const fromServer = Buffer.concat([
    frame(0x2, ch(1, 'hello ')),
    frame(0x9, Buffer.from('ping')),
    frame(0x2, ch(2, 'oops')),
    frame(0x2, ch(1, long)),
    frame(0x2, ch(1, 'part1-'), { fin: false }),
    frame(0x0, Buffer.from('part2'), { fin: true }),
    frame(0x2, ch(3, '{"status":"Success"}')),
    frame(0x1, Buffer.from('text frame')),
  ]);
  for (const b of fromServer) tap.toClient(Buffer.from([b]));
  const mask = Buffer.from([1, 2, 3, 4]);
  const fromClient = Buffer.concat([frame(0x2, ch(0, 'typed'), { mask }), frame(0x2, ch(4, '{"Width":132,"Height":43}'), { mask })]);
  tap.toServer(fromClient.subarray(0, 5));
  tap.toServer(fromClient.subarray(5));
  assert.deepEqual(got, ['stdout:hello ', 'stderr:oops', `stdout:${long}`, 'stdout:part1-', 'stdout:part2', 'resize:132x43']);
});

test('client stdin (channel 0) reaches the sink only when input is opted in, continuations included', () => {
  const mask = Buffer.from([9, 8, 7, 6]);
  const fromClient = Buffer.concat([
    frame(0x2, ch(0, 'ls '), { mask, fin: false }),
    frame(0x0, Buffer.from('-l\r'), { mask }),
    frame(0x2, ch(4, '{"Width":80,"Height":24}'), { mask }),
  ]);
  for (const input of [false, true]) {
    const got: string[] = [];
    const tap = k8sChannelTap({ output: () => {}, resize: (c, r) => got.push(`resize:${c}x${r}`), input: (d) => got.push(`input:${d.toString()}`) }, { input });
    for (const b of fromClient) tap.toServer(Buffer.from([b]));
    assert.deepEqual(got, input ? ['input:ls ', 'input:-l\r', 'resize:80x24'] : ['resize:80x24']);
  }
});
