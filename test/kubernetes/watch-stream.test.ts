/**
 * The watch rewriter: one JSON document per line, rewritten and sent on as soon as its
 * line is complete, whatever the chunking; anything it cannot parse fails the stream.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { rewriteJsonLines, WatchLineError } from '../../src/broker/kubernetes/watch-stream.js';

const EVENTS = [
  { type: 'ADDED', object: { kind: 'Secret', metadata: { name: 'a' }, data: { k: 'djE=' } } },
  { type: 'MODIFIED', object: { kind: 'Secret', metadata: { name: 'ü-b' }, data: { k: 'djI=' } } },
  { type: 'DELETED', object: { kind: 'Secret', metadata: { name: 'c' } } },
];
const WIRE = Buffer.from(EVENTS.map((e) => JSON.stringify(e) + '\n').join(''), 'utf8');

function run(chunks: Buffer[], maxLine?: number): Promise<{ out: string; err: Error | undefined }> {
  return new Promise((resolve) => {
    const t = rewriteJsonLines((doc) => {
      const o = (doc as { object?: { data?: Record<string, string> } }).object;
      if (o?.data) for (const k of Object.keys(o.data)) o.data[k] = 'MASKED';
    }, maxLine);
    let out = '';
    t.on('data', (c: Buffer) => (out += c.toString('utf8')));
    t.on('end', () => resolve({ out, err: undefined }));
    t.on('error', (err) => resolve({ out, err }));
    for (const c of chunks) t.write(c);
    t.end();
  });
}

describe('watch stream rewriting', () => {
  test('the same output for every split point of the stream', async () => {
    const expected = EVENTS.map((e) => JSON.stringify({ ...e, object: { ...e.object, ...(e.object.data ? { data: { k: 'MASKED' } } : {}) } }) + '\n').join('');
    for (let i = 0; i <= WIRE.length; i++) {
      const { out, err } = await run([WIRE.subarray(0, i), WIRE.subarray(i)]);
      assert.equal(err, undefined);
      assert.equal(out, expected, `split at ${i}`);
    }
    const bytes: Buffer[] = [];
    for (let i = 0; i < WIRE.length; i++) bytes.push(WIRE.subarray(i, i + 1));
    assert.equal((await run(bytes)).out, expected);
  });

  test('an event is released as soon as its line is complete, not at the end of the stream', async () => {
    const t = rewriteJsonLines(() => {});
    const sink = new PassThrough();
    t.pipe(sink);
    const first = new Promise<string>((resolve) => sink.once('data', (c: Buffer) => resolve(c.toString('utf8'))));
    t.write(Buffer.from(JSON.stringify(EVENTS[0]) + '\n' + '{"type":"ADD'));
    assert.equal(await first, JSON.stringify(EVENTS[0]) + '\n');
    t.destroy();
  });

  test('a line that is not JSON, or too long, fails the stream', async () => {
    const bad = await run([Buffer.from('{"type":"ADDED"}\nnot json\n')]);
    assert.ok(bad.err instanceof WatchLineError);
    const long = await run([Buffer.from('{"type":"ADDED","pad":"' + 'x'.repeat(100))], 50);
    assert.ok(long.err instanceof WatchLineError);
    const trailing = await run([Buffer.from(JSON.stringify(EVENTS[2]))]);
    assert.equal(trailing.out, JSON.stringify(EVENTS[2]) + '\n', 'a last line without a newline is still rewritten');
  });
});
