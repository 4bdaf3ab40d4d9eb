/**
 * Micro-benchmark of `kubectl exec` output masking alone (kubernetes/exec-mask.ts): the API
 * server's WebSocket frames (channel 1, 16 KiB each, lines like a build log with a key on
 * one line in a thousand) through maskRemoteCommand, against a Transform that copies its
 * input (the floor any rewriting stage pays) and the log scanner on the same text without
 * frames (masking/text-stream.ts), in one run.
 *
 *   npx tsc -p . && node dist/bench/exec-mask-micro.js [megabytes]
 *
 * Reports MB/s of frame bytes in. Not a test: numbers depend on the machine.
 */
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { maskRemoteCommand } from '../src/broker/kubernetes/exec-mask.js';
import { wsFrame } from '../src/broker/kubernetes/remote-command.js';
import { scanTextStream } from '../src/broker/masking/text-stream.js';
import { createValueMasker } from '../src/broker/masking/value-mask.js';

const MB = Number(process.argv[2] ?? 64);
const PASSES = 5;
const FRAME = 16 * 1024;

const masker = createValueMasker({ masking: {}, policies: [] }, { sub: 'bench', groups: [], kind: 'agent', issuer: 'bench', expiresAt: 0 }, 'bench', Buffer.alloc(32));
if (!masker) throw new Error('no masker');

function makeText(bytes: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const line = i % 1000 === 999 ? `step ${i}: export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n` : `step ${i}: compiling src/module-${i % 97}/file-${i % 13}.ts (${(i * 7919) % 100000} bytes) ok\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join(''), 'utf8');
}

const text = makeText(MB * 1024 * 1024);
const frames: Buffer[] = [];
for (let at = 0; at < text.length; at += FRAME) frames.push(wsFrame(0x2, Buffer.concat([Buffer.from([1]), text.subarray(at, at + FRAME)])));
const frameBytes = frames.reduce((n, f) => n + f.length, 0);

async function measure(name: string, input: Buffer[], make: () => Transform): Promise<void> {
  const rates: number[] = [];
  for (let pass = 0; pass < PASSES; pass++) {
    let out = 0;
    const start = process.hrtime.bigint();
    await pipeline(
      Readable.from(input),
      make(),
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          out += chunk.length;
          cb();
        },
      }),
    );
    const s = Number(process.hrtime.bigint() - start) / 1e9;
    if (out === 0) throw new Error(`${name}: nothing came out`);
    rates.push(frameBytes / 1024 / 1024 / s);
  }
  rates.sort((a, b) => a - b);
  console.log(`${name.padEnd(44)} ${rates[Math.floor(rates.length / 2)]!.toFixed(1).padStart(8)} MB/s (median of ${PASSES})`);
}

console.log(`${MB} MiB of exec output in ${frames.length} frames of ${FRAME} bytes`);
await measure('copy (a Transform that passes chunks on)', frames, () => new Transform({ transform: (c: Buffer, _e, cb) => cb(null, c) }));
await measure('log scanner on the same text (no frames)', frames.map((f) => f.subarray(f.length - Math.min(FRAME, f.length - 5))), () => scanTextStream(masker, { onMasked: () => {} }));
await measure('exec output masked (maskRemoteCommand)', frames, () => maskRemoteCommand(masker, { tty: false, onMasked: () => {}, onCut: (r) => { throw new Error(r); } }));
