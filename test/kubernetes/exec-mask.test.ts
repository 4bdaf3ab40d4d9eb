/**
 * `kubectl exec` / `attach` output masked: the real kubectl (WebSocket, v5.channel.k8s.io)
 * through the broker to the stand-in API server, which runs the command as a kubelet would
 * (stdout, stderr, the exec status on channel 3). A value in the output, split across
 * frames, on stderr or in the status is masked; output the broker cannot read (a line past
 * its cap) cuts the stream with a Failure it names; streams masking cannot read (SPDY,
 * port-forward, a protocol or extension it does not know) are refused before the API server
 * sees them, unless the session's policy has masking off. And the Transform itself, frame by
 * frame: splits at every byte, continuations, control frames, reserved bits.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { Readable } from 'node:stream';
import { startK8sStack, eventually, TARGET, type K8sStack } from './stack.js';
import { maskRemoteCommand } from '../../src/broker/kubernetes/exec-mask.js';
import { WsFrameReader, wsFrame } from '../../src/broker/kubernetes/remote-command.js';
import { createValueMasker } from '../../src/broker/masking/value-mask.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';

const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';
const WS_HEADERS = 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';

const policies: PolicyConfig[] = [
  { name: 'agents', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: [{ name: 'all', effect: 'allow', extra: {} }] },
  { name: 'unmasked', subjects: { groups: ['breakglass'] }, targets: [TARGET], masking: { mode: 'off' }, rules: [{ name: 'all-unmasked', effect: 'allow', extra: {} }] },
];

/** A raw upgrade request on a fresh connection of `port`: everything received until it closes (or 5 s). */
async function rawUpgrade(port: number, caPem: string, secret: string, path: string, headers: string, send?: Buffer): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca: caPem });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  let received = '';
  socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${secret}\r\n${headers}\r\n`);
  if (send) socket.write(send);
  await Promise.race([closed, new Promise((r) => setTimeout(r, 5_000))]);
  socket.destroy();
  return received;
}

describe('kubectl exec output is masked', () => {
  let stack: K8sStack;
  before(async () => {
    stack = await startK8sStack({ policies });
    stack.api.put('pods', { metadata: { name: 'web-1', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx', env: [{ name: 'AWS_ACCESS_KEY_ID', value: AWS_KEY }, { name: 'MODE', value: 'prod' }] }] } });
  });
  after(async () => {
    await stack?.close();
  });

  test('control: the pod prints the key (the API server answers it to an unmasked session)', async () => {
    const breakglass = await stack.connectAs('sre-1', ['breakglass']);
    const r = await stack.kubectl(['exec', 'web-1', '--', 'printenv'], { kubeconfig: breakglass.kubeconfig });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`AWS_ACCESS_KEY_ID=${AWS_KEY}`));
    await breakglass.close();
  });

  test('kubectl exec -- printenv: the key is masked, the rest of the output is intact, the count is on record', async () => {
    const r = await stack.kubectl(['exec', 'web-1', '--', 'printenv']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(AWS_KEY), r.stdout);
    assert.ok(!r.stdout.includes('AKIAIOSFODNN'), r.stdout);
    assert.match(r.stdout, /^HOSTNAME=web-1$/m);
    assert.match(r.stdout, /^MODE=prod$/m);
    assert.match(r.stdout, /^AWS_ACCESS_KEY_ID=\S+$/m);
    const end = await eventually('k8s.stream.end', async () => (await stack.events()).find((e) => e.type === 'k8s.stream.end' && String(e.detail['query'] ?? '').includes('printenv') && e.actor?.sub === 'agent-7'));
    assert.equal(end.detail['status_code'], 101);
    const req = (await stack.events()).find((e) => e.type === 'k8s.request' && e.session === end.session && e.detail['id'] === end.detail['id']);
    assert.ok(req, 'the exec request is on record');
  });

  test('a value split across frames is seen whole', async () => {
    const r = await stack.kubectl(['exec', 'web-1', '--', 'chunks', 'AKIAIO', 'SFODNN', '7EXAM', 'PLE']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes('AKIAIO'), r.stdout);
    assert.ok(r.stdout.length > 0);
  });

  test('stderr and the exec status are masked too; the exit code still reaches kubectl', async () => {
    const r = await stack.kubectl(['exec', 'web-1', '--', 'fail', `key=${AWS_KEY}`]);
    assert.equal(r.code, 3, `${r.stdout} ${r.stderr}`);
    assert.ok(!r.stderr.includes('AKIAIOSFODNN'), r.stderr);
    assert.match(r.stderr, /key=/);
  });

  test('output the broker cannot hold to scan (a line past its cap) cuts the stream, and says so', async () => {
    const r = await stack.kubectl(['exec', 'web-1', '--', 'noline', String(2 * 1024 * 1024)], { timeoutMs: 30_000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /agentgate: exec output without a line break longer than/);
    assert.ok(r.stdout.length < 1024 * 1024, `${r.stdout.length} bytes of unscanned output reached the client`);
    const end = await eventually('k8s.stream.end', async () => (await stack.events()).find((e) => e.type === 'k8s.stream.end' && String(e.detail['query'] ?? '').includes('noline')));
    assert.match(String(end.detail['error']), /without a line break/);
  });

  test('kubectl exec with stdin: what the pod echoes is masked', async () => {
    const child = stack.spawnKubectl(['exec', '-i', 'web-1', '--', 'cat']);
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stdin.end(`one\nsecret ${AWS_KEY}\ntwo\n`);
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    assert.equal(code, 0);
    assert.match(out, /^one\n/);
    assert.match(out, /two\n$/);
    assert.ok(!out.includes('AKIAIOSFODNN'), out);
  });

  test('SPDY, port-forward and proxy upgrades are refused in a masked session, before the API server sees them', async () => {
    const before = stack.api.requests.length;
    const spdy = await rawUpgrade(stack.main.port, stack.main.endpoint.caPem, stack.main.session.secret, '/api/v1/namespaces/default/pods/web-1/exec?command=printenv&stdout=true', 'Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n');
    assert.match(spdy, /^HTTP\/1\.1 403 /);
    assert.match(spdy, /reads exec output only over WebSocket with v5\.channel\.k8s\.io or v4\.channel\.k8s\.io/);
    assert.match(spdy, /masking: off/);
    const base64 = await rawUpgrade(stack.main.port, stack.main.endpoint.caPem, stack.main.session.secret, '/api/v1/namespaces/default/pods/web-1/exec?command=printenv&stdout=true', `${WS_HEADERS}Sec-WebSocket-Protocol: base64.channel.k8s.io\r\n`);
    assert.match(base64, /^HTTP\/1\.1 403 /);
    const pf = await rawUpgrade(stack.main.port, stack.main.endpoint.caPem, stack.main.session.secret, '/api/v1/namespaces/default/pods/web-1/portforward?ports=5432', `${WS_HEADERS}Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n`);
    assert.match(pf, /^HTTP\/1\.1 403 /);
    assert.match(pf, /port-forward stream carries raw bytes/);
    assert.deepEqual(stack.api.requests.slice(before).map((q) => q.url), []);
    const denied = (await stack.events()).filter((e) => e.type === 'k8s.request' && e.decision?.effect === 'deny' && /raw bytes|only over WebSocket/.test(String(e.decision.reason)));
    assert.equal(denied.length, 3);
  });

  test('the API server is offered only the protocols the broker reads, and no extension', async () => {
    const before = stack.api.requests.length;
    const got = await rawUpgrade(
      stack.main.port,
      stack.main.endpoint.caPem,
      stack.main.session.secret,
      '/api/v1/namespaces/default/pods/web-1/exec?command=printenv&stdout=true',
      `${WS_HEADERS}Sec-WebSocket-Protocol: base64.channel.k8s.io, v5.channel.k8s.io, channel.k8s.io\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n`,
    );
    assert.match(got, /^HTTP\/1\.1 101 /);
    assert.ok(!got.includes(AWS_KEY), 'the output is masked');
    assert.match(got, /MODE=prod/);
    const seen = stack.api.requests.slice(before);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.headers['sec-websocket-protocol'], 'v5.channel.k8s.io');
    assert.equal(seen[0]?.headers['sec-websocket-extensions'], undefined);
  });

  test('a session whose policy has masking off still gets SPDY as a raw pipe', async () => {
    const breakglass = await stack.connectAs('sre-2', ['breakglass']);
    const got = await rawUpgrade(breakglass.port, breakglass.endpoint.caPem, breakglass.session.secret, '/api/v1/namespaces/default/pods/web-1/exec?command=sh&stdin=true', 'Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n', Buffer.from('raw-bytes-echoed'));
    assert.match(got, /^HTTP\/1\.1 101 /);
    assert.match(got, /raw-bytes-echoed/);
    await breakglass.close();
  });
});

// ─────────────────────────────── the Transform, frame by frame ───────────────────────────────

const masker = createValueMasker({ masking: {}, policies: [] }, { sub: 'a', groups: [], kind: 'agent', issuer: 'x', expiresAt: 0 }, 't', Buffer.alloc(32))!;
const out = (ch: number, text: string | Buffer): Buffer => wsFrame(0x2, Buffer.concat([Buffer.from([ch]), Buffer.isBuffer(text) ? text : Buffer.from(text)]));

/** Runs `input` (split into `pieces`) through the masker; the frames the client gets, and whether it was cut. */
async function run(input: Buffer, o: { split?: number; tty?: boolean } = {}): Promise<{ frames: { op: number; data: Buffer }[]; cut: string | undefined; masked: number }> {
  let cut: string | undefined;
  let masked = 0;
  const t = maskRemoteCommand(masker, { tty: o.tty ?? false, onMasked: (n) => (masked += n), onCut: (r) => (cut = r) });
  const step = o.split ?? input.length;
  const chunks: Buffer[] = [];
  for (let i = 0; i < input.length; i += step) chunks.push(input.subarray(i, i + step));
  const bytes: Buffer[] = [];
  for await (const c of Readable.from(chunks).pipe(t)) bytes.push(c as Buffer);
  const frames: { op: number; data: Buffer }[] = [];
  const reader = new WsFrameReader((op, p) => frames.push({ op, data: p }));
  reader.push(Buffer.concat(bytes));
  return { frames, cut, masked };
}
const text = (frames: { op: number; data: Buffer }[], ch: number): string =>
  frames
    .filter((f) => f.op === 0x2 && f.data[0] === ch)
    .map((f) => f.data.subarray(1).toString('utf8'))
    .join('');

describe('maskRemoteCommand', () => {
  test('split at every byte: the key is masked, each channel keeps its own text, the status comes after the output', async () => {
    const input = Buffer.concat([out(1, 'a AKIAIOSF'), out(2, 'err\n'), out(1, `ODNN7EXAMPLE b\n`), out(3, '{"status":"Success"}'), wsFrame(0x8, Buffer.from([0x03, 0xe8]))]);
    const r = await run(input, { split: 1 });
    assert.equal(r.cut, undefined);
    assert.equal(text(r.frames, 2), 'err\n');
    const stdout = text(r.frames, 1);
    assert.ok(!stdout.includes('AKIAIOSF'), stdout);
    assert.match(stdout, /^a .+ b\n$/);
    assert.equal(r.masked, 1);
    assert.deepEqual(
      r.frames.map((f) => (f.op === 0x2 ? `ch${f.data[0]}` : `op${f.op}`)).slice(-2),
      ['ch3', 'op8'],
    );
  });

  test('output held without a newline goes out before the status and before a close', async () => {
    const r = await run(Buffer.concat([out(1, 'no newline'), out(3, '{"status":"Success"}'), wsFrame(0x8, Buffer.alloc(0))]));
    assert.deepEqual(
      r.frames.map((f) => (f.op === 0x2 ? `ch${f.data[0]}:${f.data.subarray(1).toString()}` : `op${f.op}`)),
      ['ch1:no newline', 'ch3:{"status":"Success"}', 'op8'],
    );
  });

  test('a continuation keeps its channel; pings and pongs pass; a status is masked whole', async () => {
    const first = wsFrame(0x2, Buffer.concat([Buffer.from([1]), Buffer.from('x=AKIAIOSF')]));
    first[0] = first[0]! & 0x7f; // not FIN
    const cont = wsFrame(0x0, Buffer.from('ODNN7EXAMPLE\n'));
    const status = out(3, JSON.stringify({ status: 'Failure', message: `bad ${AWS_KEY}` }));
    const r = await run(Buffer.concat([first, wsFrame(0x9, Buffer.from('p')), cont, status]), { split: 3 });
    assert.equal(r.cut, undefined);
    assert.ok(!text(r.frames, 1).includes('AKIA'), text(r.frames, 1));
    assert.ok(r.frames.some((f) => f.op === 0x9 && f.data.toString() === 'p'));
    const st = text(r.frames, 3);
    assert.ok(!st.includes('AKIAIOSFODNN'), st);
    assert.match(st, /Failure/);
  });

  test('at the end of the stream what is held goes out, masked', async () => {
    const r = await run(out(1, `tail ${AWS_KEY}`));
    assert.ok(!text(r.frames, 1).includes('AKIAIOSFODNN'));
    assert.match(text(r.frames, 1), /^tail /);
  });

  test('what cannot be read cuts the stream with a Failure and a close: reserved bits, unknown opcodes, binary output, too long a line', async () => {
    const compressed = out(1, 'zzz\n');
    compressed[0] = compressed[0]! | 0x40; // RSV1: permessage-deflate
    for (const [input, why] of [
      [compressed, /extension/],
      [Buffer.concat([out(1, 'ok\n'), wsFrame(0x3, Buffer.from('?'))]), /opcode 3/],
      [wsFrame(0x0, Buffer.from('orphan')), /continuation/],
    ] as const) {
      const r = await run(input);
      assert.match(r.cut ?? '', why);
      const st = text(r.frames, 3);
      assert.match(st, /"status":"Failure"/);
      assert.equal(r.frames.at(-1)?.op, 0x8);
      assert.ok(!text(r.frames, 1).includes('zzz'));
    }
    const binary = await run(Buffer.concat([out(1, 'text\n'), out(1, Buffer.from([0x75, 0x73, 0x74, 0x61, 0x72, 0xff, 0xfe, 0x0a]))]));
    assert.match(binary.cut ?? '', /not UTF-8 text/);
    assert.equal(text(binary.frames, 1), 'text\n', 'what came before goes out; nothing of the binary does');
    let cut: string | undefined;
    const t = maskRemoteCommand(masker, { tty: false, maxHeld: 1000, onMasked: () => {}, onCut: (r) => (cut = r) });
    const bytes: Buffer[] = [];
    for await (const c of Readable.from([out(1, Buffer.alloc(600, 'x')), out(1, Buffer.alloc(600, 'y')), out(1, 'after\n')]).pipe(t)) bytes.push(c as Buffer);
    assert.match(cut ?? '', /longer than 1000 characters/);
    assert.ok(!Buffer.concat(bytes).includes('xxxxxxxxxx'), 'nothing of the unscanned line went out');
    assert.ok(!Buffer.concat(bytes).includes('after'), 'nothing after the cut went out');
  });

  test('with a tty an unfinished line (a prompt) goes out after a quiet pause; without one it waits', async () => {
    for (const tty of [true, false]) {
      const t = maskRemoteCommand(masker, { tty, onMasked: () => {}, onCut: () => {} });
      const got: Buffer[] = [];
      t.on('data', (c: Buffer) => got.push(c));
      t.write(out(1, '$ '));
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(Buffer.concat(got).includes('$ '), tty, `tty=${tty}`);
      t.destroy();
    }
  });
});
