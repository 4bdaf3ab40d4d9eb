/**
 * Wave 4 red team: `kubectl exec` / `attach` output masked in-stream (exec-mask.ts), and the
 * other ways text leaves the Kubernetes proxy. Each attack tries to get a secret to the
 * client unmasked — the stand-in's AWS key id, a Secret's value, a PEM private key — and
 * names the channel it uses. Each family has a CONTROL: the same request from a session
 * whose policy has `masking: off` gets the secret, so the attack is real.
 *
 * Tests marked LIMIT assert a documented (or out-of-scope) behaviour as it is, so a change
 * shows; every other test asserts the guarantee ("masked means masked everywhere").
 *
 * The stand-in API server (test/helpers/kube-apiserver.ts) was extended only as a real
 * kubelet / API server behaves: `printenv` resolves `valueFrom.secretKeyRef`, Secret volumes
 * are files (`cat FILE`, also in the tty shell), `tar cf - FILE` (kubectl cp), `pods/…/proxy`
 * relays the pod's HTTP answer, and `frames` writes raw server-side WebSocket frames (how a
 * server fragments and interleaves control frames).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { generateKeyPairSync } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { startK8sStack, eventually, TARGET, type Connection, type K8sStack } from './stack.js';
import { maskRemoteCommand } from '../../src/broker/kubernetes/exec-mask.js';
import { WsFrameReader, wsFrame } from '../../src/broker/kubernetes/remote-command.js';
import { createValueMasker } from '../../src/broker/masking/value-mask.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';

const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';
/** A Secret's value no detector recognises (the Secret object itself is always masked). */
const SECRET_VALUE = 's3cr3t-from-the-secret-object';
/** A pod env literal whose name (DB_PASSWORD) makes the pod JSON mask it. */
const PASSWORD = 'hunter2-in-the-clear';
const PEM = String(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs1', format: 'pem' }));
/** A line from the middle of the key's base64 body: if it shows, the key showed. */
const PEM_LINE = PEM.split('\n')[3] ?? '';
const CRLF_PEM = PEM.replace(/\n/g, '\r\n');

const policies: PolicyConfig[] = [
  { name: 'agents', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: [{ name: 'all', effect: 'allow', extra: {} }] },
  { name: 'unmasked', subjects: { groups: ['breakglass'] }, targets: [TARGET], masking: { mode: 'off' }, rules: [{ name: 'all-unmasked', effect: 'allow', extra: {} }] },
];

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

function seed(stack: K8sStack): void {
  stack.api.put('secrets', { metadata: { name: 'db-creds', namespace: 'default' }, type: 'Opaque', data: { password: b64(SECRET_VALUE) } });
  stack.api.put('secrets', { metadata: { name: 'web-tls', namespace: 'default' }, type: 'kubernetes.io/tls', data: { 'tls.key': b64(PEM), 'tls.crt': b64('cert') } });
  for (const name of ['web-1', 'web-3']) {
    stack.api.put('pods', {
      metadata: { name, namespace: 'default' },
      spec: {
        containers: [
          {
            name: 'app',
            image: 'nginx',
            env: [
              { name: 'AWS_ACCESS_KEY_ID', value: AWS_KEY },
              { name: 'DB_PASSWORD', value: PASSWORD },
              { name: 'DB_PASS_FROM_SECRET', valueFrom: { secretKeyRef: { name: 'db-creds', key: 'password' } } },
              { name: 'MODE', value: 'prod' },
            ],
            volumeMounts: [
              { name: 'creds', mountPath: '/etc/db' },
              { name: 'tls', mountPath: '/etc/tls' },
            ],
          },
        ],
        volumes: [
          { name: 'creds', secret: { secretName: 'db-creds' } },
          { name: 'tls', secret: { secretName: 'web-tls' } },
        ],
      },
    });
  }
}

// ─────────────────────────────── raw clients ───────────────────────────────

const WS = 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
const V5 = 'Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n';

/** One raw request on a fresh connection of `conn`; everything received until it closes (or `waitMs`). */
async function rawRequest(conn: Connection, head: string, o: { send?: Buffer; waitMs?: number } = {}): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port: conn.port, ca: conn.endpoint.caPem });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  let received = '';
  socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(head.replace('{AUTH}', `Authorization: Bearer ${conn.session.secret}`));
  if (o.send) socket.write(o.send);
  await Promise.race([closed, new Promise((r) => setTimeout(r, o.waitMs ?? 3_000))]);
  socket.destroy();
  return received;
}

const execPath = (pod: string, command: string[], extra = 'stdout=true&stderr=true'): string => `/api/v1/namespaces/default/pods/${pod}/exec?${command.map((c) => `command=${encodeURIComponent(c)}`).join('&')}&${extra}`;
const upgrade = (path: string, headers = `${WS}${V5}`): string => `GET ${path} HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n${headers}\r\n`;

/** A client-to-server frame (masked, as RFC 6455 requires). */
function clientFrame(channel: number, data: string): Buffer {
  const payload = Buffer.concat([Buffer.from([channel]), Buffer.from(data, 'utf8')]);
  const key = Buffer.from([1, 2, 3, 4]);
  const masked = Buffer.from(payload.map((b, i) => b ^ key[i & 3]!));
  const head = payload.length < 126 ? Buffer.from([0x82, 0x80 | payload.length]) : Buffer.from([0x82, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([head, key, masked]);
}

/** `kubectl exec -it` as a raw client: the terminal's size, then `typed` + Enter; all bytes received in `waitMs`. */
async function ttyExec(conn: Connection, pod: string, typed: string, waitMs: number): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port: conn.port, ca: conn.endpoint.caPem });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  let received = '';
  socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
  socket.on('error', () => {});
  socket.write(upgrade(`/api/v1/namespaces/default/pods/${pod}/exec?command=sh&stdin=true&stdout=true&tty=true`).replace('{AUTH}', `Authorization: Bearer ${conn.session.secret}`));
  await eventually('101', () => /^HTTP\/1\.1 101 /.test(received) || undefined);
  socket.write(clientFrame(4, JSON.stringify({ Width: 80, Height: 24 })));
  await eventually('the prompt', () => received.includes('$ ') || undefined);
  socket.write(clientFrame(0, `${typed}\r`));
  await new Promise((r) => setTimeout(r, waitMs));
  socket.destroy();
  return received;
}

/** The frames after a 101 head: each channel's text, and the control frames. */
function frames(received: string): { ch: Record<number, string>; controls: { op: number; data: string }[]; text: string[] } {
  const at = received.indexOf('\r\n\r\n');
  const ch: Record<number, string> = {};
  const controls: { op: number; data: string }[] = [];
  const texts: string[] = [];
  let channel = -1;
  const reader = new WsFrameReader((op, p, continuation) => {
    if (op >= 0x8) return void controls.push({ op, data: p.toString('latin1') });
    if (op === 0x1) return void texts.push(p.toString('utf8'));
    let data = p;
    if (!continuation) {
      channel = p[0] ?? -1;
      data = p.subarray(1);
    }
    ch[channel] = (ch[channel] ?? '') + data.toString('utf8');
  });
  reader.push(Buffer.from(received.slice(at + 4), 'latin1'));
  return { ch, controls, text: texts };
}

/** Server-side frames for the stand-in's `frames` command. */
const frame = (op: number, payload: Buffer | string, fin = true): string => {
  const f = wsFrame(op, Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'latin1'));
  if (!fin) f[0] = f[0]! & 0x7f;
  return f.toString('base64');
};
const data = (channel: number, text: string, fin = true): string => frame(0x2, Buffer.concat([Buffer.from([channel]), Buffer.from(text, 'utf8')]), fin);
const SUCCESS = data(3, JSON.stringify({ metadata: {}, status: 'Success' }));
const CLOSE = frame(0x8, Buffer.from([0x03, 0xe8]));

// ─────────────────────────────── end to end ───────────────────────────────

describe('wave 4: exec / attach / logs / proxy output through a masked session', () => {
  let stack: K8sStack;
  let glass: Connection;
  before(async () => {
    stack = await startK8sStack({ policies });
    seed(stack);
    glass = await stack.connectAs('sre-1', ['breakglass']);
    const api = stack.api;
    api.setFile('default', 'web-1', '/var/log/app.json', [`{"level":"info","msg":"rotated credentials:\\n${AWS_KEY}\\n"}\n`]);
    api.setFile('default', 'web-1', '/etc/tls/crlf.key', [CRLF_PEM.slice(0, 7), CRLF_PEM.slice(7, 40), CRLF_PEM.slice(40, -22), CRLF_PEM.slice(-22, -12), CRLF_PEM.slice(-12)]);
    api.setFile('default', 'web-1', '/split/key', ['id=AKIAIOSFOD', { pauseMs: 400 }, 'NN7EXAMPLE\n']);
    api.setFile('default', 'web-1', '/split/pem', [PEM.slice(0, 9), { pauseMs: 400 }, PEM.slice(9)]);
    api.setFile('default', 'web-1', '/split/pem-whole', [PEM]);
    api.setFile('default', 'web-1', '/grep-color', [`creds:3:\x1b[01;31m\x1b[KAKIA\x1b[m\x1b[KIOSFODNN7EXAMPLE\n`]);
    api.setFile('default', 'web-1', '/data/creds.txt', [`aws_access_key_id = ${AWS_KEY}\nregion = eu-west-1\n`]);
    // A line of 1 MiB less 100 characters, the key at its end, in 64 KiB frames without a newline until the last.
    const long = `${'x '.repeat((1024 * 1024 - 100 - AWS_KEY.length - 2) / 2)} ${AWS_KEY}\n`;
    const pieces: string[] = [];
    for (let i = 0; i < long.length; i += 65536) pieces.push(long.slice(i, i + 65536));
    api.setFile('default', 'web-1', '/data/long', pieces);
    api.setLog('default', 'web-1', [`{"level":"info","msg":"rotated credentials:\\n${AWS_KEY}"}\n`]);
    api.setLog('default', 'web-3', ['start AKIAIO', 'SFODNN7EX', `AMPLE end\n${PEM.slice(0, 20)}`, PEM.slice(20, 300), `${PEM.slice(300)}done\n`]);
    api.setProxy('default', 'web-1', { status: 200, headers: { 'content-type': 'text/plain', 'x-debug-aws-key': AWS_KEY }, body: `hello ${AWS_KEY}\n` });
    api.setProxy('default', 'web-3', { status: 200, headers: { 'content-type': 'text/plain; charset=utf-16le' }, body: Buffer.from(`key ${AWS_KEY}\n`, 'utf16le') });
  });
  after(async () => {
    await glass?.close();
    await stack?.close();
  });

  test('w4k-00 CONTROL: an unmasked session gets every secret the attacks below go after', async () => {
    const env = await stack.kubectl(['exec', 'web-1', '--', 'printenv'], { kubeconfig: glass.kubeconfig });
    assert.equal(env.code, 0, env.stderr);
    for (const s of [AWS_KEY, SECRET_VALUE, PASSWORD]) assert.ok(env.stdout.includes(s), s);
    const file = await stack.kubectl(['exec', 'web-1', '--', 'cat', '/etc/db/password', '/etc/tls/tls.key', '/var/log/app.json'], { kubeconfig: glass.kubeconfig });
    assert.ok(file.stdout.includes(SECRET_VALUE) && file.stdout.includes(PEM_LINE) && file.stdout.includes(`\\n${AWS_KEY}`), file.stdout);
    const logs = await stack.kubectl(['logs', 'web-1'], { kubeconfig: glass.kubeconfig });
    assert.ok(logs.stdout.includes(AWS_KEY));
    const proxied = await rawRequest(glass, 'GET /api/v1/namespaces/default/pods/web-1/proxy/ HTTP/1.1\r\nHost: x\r\n{AUTH}\r\nConnection: close\r\n\r\n');
    assert.match(proxied, new RegExp(`x-debug-aws-key: ${AWS_KEY}`, 'i'));
    const frag = await rawRequest(glass, upgrade(execPath('web-1', ['frames', data(3, JSON.stringify({ status: 'Failure', message: `boom:\n${AWS_KEY}` })), CLOSE])));
    assert.ok(frag.includes(AWS_KEY));
    const tty = await ttyExec(glass, 'web-1', 'cat /split/pem-whole', 800);
    assert.ok(tty.includes(PEM_LINE));
  });

  // ── a Secret's value on exec stdout (channel 1): the broker masks the Secret object, not its value elsewhere ──

  test('w4k-01 printenv: a variable from secretKeyRef (a secret-looking name) is masked as `get secret` masks its Secret', async () => {
    const secret = await stack.kubectl(['get', 'secret', 'db-creds', '-o', 'json']);
    assert.ok(!secret.stdout.includes(b64(SECRET_VALUE)) && !secret.stdout.includes(SECRET_VALUE), 'sanity: the Secret object is masked');
    const r = await stack.kubectl(['exec', 'web-1', '--', 'printenv']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(AWS_KEY), 'the detector still masks the key');
    assert.ok(!r.stdout.includes(SECRET_VALUE), `the Secret's value reached the client through exec:\n${r.stdout}`);
  });

  test('w4k-03 printenv: an env value the pod JSON masks by its name (DB_PASSWORD) is masked on exec too', async () => {
    const pod = await stack.kubectl(['get', 'pod', 'web-1', '-o', 'json']);
    assert.ok(!pod.stdout.includes(PASSWORD), 'sanity: the pod JSON masks DB_PASSWORD by name');
    const r = await stack.kubectl(['exec', 'web-1', '--', 'printenv', 'DB_PASSWORD']);
    assert.ok(!r.stdout.includes(PASSWORD), `DB_PASSWORD's value reached the client through exec: ${r.stdout}`);
  });

  // ── detectors on encoded text: the key verbatim, after a JSON escape (channel 1, pods/log) ──

  test('w4k-04 exec cat of a JSON log line: a key right after a `\\n` escape is masked', async () => {
    const r = await stack.kubectl(['exec', 'web-1', '--', 'cat', '/var/log/app.json']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(AWS_KEY), `the key, verbatim, reached the client: ${r.stdout}`);
  });

  test('w4k-05 kubectl logs of a JSON log line: the same `\\n` + key is masked by the pods/log scanner', async () => {
    const r = await stack.kubectl(['logs', 'web-1']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(AWS_KEY), `the key, verbatim, reached the client: ${r.stdout}`);
  });

  test('w4k-06 kubectl logs -f: a key and a PEM key split across chunks are seen whole', async () => {
    const r = await stack.kubectl(['logs', '-f', 'web-3']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes('AKIAIO') && !r.stdout.includes(PEM_LINE), r.stdout);
    assert.match(r.stdout, /^start .+ end\n/);
    assert.match(r.stdout, /done\n$/);
  });

  // ── PEM keys on channel 1 ──

  test('w4k-07 a PEM key with CRLF line ends, split inside its BEGIN and END lines across frames, is masked', async () => {
    const r = await stack.kubectl(['exec', 'web-1', '--', 'cat', '/etc/tls/crlf.key', '/etc/tls/tls.key']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(PEM_LINE), r.stdout);
    assert.ok(!/[A-Za-z0-9+/]{60}/.test(r.stdout), `a base64 key line reached the client:\n${r.stdout}`);
  });

  // ── lines at the scanner's cap ──

  test('w4k-08 a line of 1 MiB less 100 characters, the key at its end, is held, scanned and masked', async () => {
    const r = await stack.kubectl(['exec', 'web-1', '--', 'cat', '/data/long'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr.slice(0, 400));
    assert.ok(r.stdout.length > 1024 * 1000, `${r.stdout.length}`);
    assert.ok(!r.stdout.includes(AWS_KEY));
  });

  // ── the exec status (channel 3), control frames, fragments, other channels: raw server framing ──

  test('w4k-09 the exec status with the key in details.causes and in a fragmented message (ping between) is masked', async () => {
    const status = JSON.stringify({ metadata: {}, status: 'Failure', reason: 'InternalError', message: 'exec failed', details: { causes: [{ reason: 'Output', message: `key ${AWS_KEY}` }] } });
    const got = await rawRequest(stack.main, upgrade(execPath('web-1', ['frames', data(3, status.slice(0, 120), false), frame(0x9, 'p'), frame(0x0, status.slice(120)), CLOSE])));
    assert.match(got, /^HTTP\/1\.1 101 /);
    assert.ok(!got.includes(AWS_KEY) && !got.includes('AKIAIOSFODNN'), got);
    assert.match(frames(got).ch[3] ?? '', /"causes"/);
  });

  test('w4k-10 the exec status (channel 3) with `\\n` before the key in its message is masked', async () => {
    // A runtime error that quotes the process's output: Go's JSON writes its newline as \n.
    const status = JSON.stringify({ metadata: {}, status: 'Failure', reason: 'InternalError', message: `exec failed: process wrote:\n${AWS_KEY}` });
    const got = await rawRequest(stack.main, upgrade(execPath('web-1', ['frames', data(3, status), CLOSE])));
    assert.match(got, /^HTTP\/1\.1 101 /);
    assert.ok(!got.includes(AWS_KEY), `the key reached the client in the exec status: ${frames(got).ch[3]}`);
  });

  test('w4k-11 a key split across a fragmented channel-1 message (ping, pong between; a fragment starting with byte 2) and across stdout frames with stderr between', async () => {
    const seq = [
      data(1, 'x=AKIAIOSF', false),
      frame(0x9, 'ping'),
      frame(0x0, 'ODNN7EXA', false),
      frame(0xa, 'pong'),
      frame(0x0, 'MPLE\n'),
      data(1, 'y=AKIAIOSFOD'),
      data(2, 'err\n'),
      data(1, 'NN7EXAMPLE\n'),
      // A continuation whose first byte is 2 is still stdout.
      data(1, 'z=', false),
      frame(0x0, '\x02AKIAIOSFODNN7EXAMPLE\n'),
      SUCCESS,
      CLOSE,
    ];
    const got = await rawRequest(stack.main, upgrade(execPath('web-1', ['frames', ...seq])));
    const f = frames(got);
    assert.ok(!got.includes('AKIAIOSF'), JSON.stringify(f.ch));
    // All three on stdout, masked; a masked line goes out as a terminal shows it, so the
    // invisible \x02 before the key is not kept.
    assert.match(f.ch[1] ?? '', /^x=\S+\ny=\S+\nz=\S+\n$/);
    assert.equal(f.ch[2], 'err\n');
    assert.deepEqual(f.controls.map((c) => c.op), [0x9, 0xa, 0x8]);
  });

  test('w4k-12 the key on other channels (0, 4, 255 v5 close), in a text frame and on a fragmented stderr message is masked', async () => {
    const seq = [data(0, `in ${AWS_KEY}`), data(4, `{"k":"${AWS_KEY}"}`), data(255, `\x01${AWS_KEY}`), frame(0x1, `text ${AWS_KEY}`), data(2, 'e=AKIAIOSF', false), frame(0x0, 'ODNN7EXAMPLE\n'), SUCCESS, CLOSE];
    const got = await rawRequest(stack.main, upgrade(execPath('web-1', ['frames', ...seq])));
    assert.match(got, /^HTTP\/1\.1 101 /);
    assert.ok(!got.includes('AKIAIOSF'), got);
    assert.equal(frames(got).text.length, 1);
  });

  test('w4k-13 (hostile API server) a close frame whose reason carries the key is masked', async () => {
    const got = await rawRequest(stack.main, upgrade(execPath('web-1', ['frames', SUCCESS, frame(0x8, Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from(`bye ${AWS_KEY}`)]))])));
    assert.match(got, /^HTTP\/1\.1 101 /);
    assert.ok(!got.includes(AWS_KEY), `close reason: ${JSON.stringify(frames(got).controls)}`);
  });

  test('w4k-14 (hostile API server) a ping payload carrying the key is masked', async () => {
    const got = await rawRequest(stack.main, upgrade(execPath('web-1', ['frames', frame(0x9, `ping ${AWS_KEY}`), SUCCESS, CLOSE])));
    assert.ok(!got.includes(AWS_KEY), `ping: ${JSON.stringify(frames(got).controls)}`);
  });

  // ── attach ──

  test('w4k-15 attach: what the container echoes is masked (attach goes through the same reader)', async () => {
    const glassGot = await rawRequest(glass, upgrade('/api/v1/namespaces/default/pods/web-1/attach?stdin=true&stdout=true'), { send: clientFrame(0, `typed ${AWS_KEY}\n`), waitMs: 1_500 });
    assert.ok(glassGot.includes(AWS_KEY), 'CONTROL: unmasked attach echoes it');
    const got = await rawRequest(stack.main, upgrade('/api/v1/namespaces/default/pods/web-1/attach?stdin=true&stdout=true'), { send: clientFrame(0, `typed ${AWS_KEY}\n`), waitMs: 1_500 });
    assert.match(got, /^HTTP\/1\.1 101 /);
    assert.match(frames(got).ch[1] ?? '', /^typed /);
    assert.ok(!got.includes(AWS_KEY), got);
  });

  // ── the WebSocket offer and the upgrade headers ──

  test('w4k-16 protocol and header variants never get an unmasked stream: case, commas, repeats, Upgrade and Connection forms', async () => {
    const path = execPath('web-1', ['printenv']);
    const cases: { name: string; headers: string; status: RegExp }[] = [
      { name: 'upper-case v5 with base64', headers: `${WS}Sec-WebSocket-Protocol: V5.CHANNEL.K8S.IO, base64.channel.k8s.io\r\n`, status: /^HTTP\/1\.1 403 / },
      { name: 'no spaces', headers: `${WS}Sec-WebSocket-Protocol: base64.channel.k8s.io,v5.channel.k8s.io\r\n`, status: /^HTTP\/1\.1 101 / },
      { name: 'tabs and empty items', headers: `${WS}Sec-WebSocket-Protocol: ,\tbase64.channel.k8s.io ,, v4.channel.k8s.io\t\r\n`, status: /^HTTP\/1\.1 101 / },
      { name: 'repeated header', headers: `${WS}Sec-WebSocket-Protocol: base64.channel.k8s.io\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n`, status: /^HTTP\/1\.1 101 / },
      { name: 'Upgrade: WebSocket', headers: `${WS.replace('websocket', 'WebSocket')}${V5}`, status: /^HTTP\/1\.1 101 / },
      { name: 'Upgrade: websocket, SPDY/3.1', headers: `${WS.replace('websocket', 'websocket, SPDY/3.1')}${V5}`, status: /^HTTP\/1\.1 403 / },
      { name: 'Upgrade: h2c', headers: `Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n`, status: /^HTTP\/1\.1 403 / },
      { name: 'Connection: keep-alive, Upgrade', headers: `${WS.replace('Connection: Upgrade', 'Connection: keep-alive, Upgrade')}${V5}`, status: /^HTTP\/1\.1 101 / },
      { name: 'Upgrade without Connection: upgrade (a plain request)', headers: `Connection: close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${V5}`, status: /^HTTP\/1\.1 [45]\d\d / },
    ];
    for (const c of cases) {
      const got = await rawRequest(stack.main, upgrade(path, c.headers), { waitMs: 3_000 });
      assert.match(got, c.status, `${c.name}: ${got.slice(0, 200)}`);
      assert.ok(!got.includes(AWS_KEY), `${c.name}: the key reached the client`);
    }
    const offered = stack.api.requests.filter((q) => q.url.includes('command=printenv') && q.headers['sec-websocket-protocol'] !== undefined).map((q) => String(q.headers['sec-websocket-protocol']));
    assert.ok(offered.every((p) => /^(v5|v4)\.channel\.k8s\.io(, (v5|v4)\.channel\.k8s\.io)*$/.test(p)), offered.join(' | '));
  });

  test('w4k-17 exec through pods/proxy, services/proxy, nodes/proxy (kubelet /exec) and the legacy /proxy/ prefix is refused before the API server', async () => {
    const before = stack.api.requests.length;
    for (const path of [
      '/api/v1/namespaces/default/pods/web-1/proxy/exec?command=printenv',
      '/api/v1/namespaces/default/services/web:80/proxy/exec?command=printenv',
      '/api/v1/nodes/node-1/proxy/exec/default/web-1/app?command=printenv&output=1',
      '/api/v1/proxy/namespaces/default/pods/web-1/exec?command=printenv',
      '/api/v1/namespaces/default/pods/web-1/portforward?ports=80',
    ]) {
      const got = await rawRequest(stack.main, upgrade(path), { waitMs: 3_000 });
      assert.match(got, /^HTTP\/1\.1 403 /, `${path}: ${got.slice(0, 200)}`);
    }
    assert.deepEqual(stack.api.requests.slice(before).map((q) => q.url), []);
  });

  test('w4k-18 an upgrade with a body and a pipelined request behind it: nothing unmasked comes back', async () => {
    const pipelined = 'GET /api/v1/namespaces/default/secrets/db-creds HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n\r\n';
    for (const headers of [`Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 4\r\n`, `${WS}${V5}Content-Length: 4\r\n`]) {
      // `echo hi`: its own output holds nothing; only the pipelined Secret read could.
      const head = `${upgrade(execPath('web-1', ['echo', 'hi']), headers)}body${pipelined}`;
      const got = await rawRequest(stack.main, head.replaceAll('{AUTH}', `Authorization: Bearer ${stack.main.session.secret}`), { waitMs: 3_000 });
      assert.ok(!got.includes(SECRET_VALUE) && !got.includes(b64(SECRET_VALUE)) && !got.includes(AWS_KEY), got.slice(0, 400));
    }
  });

  // ── pods/proxy (plain, allowed in a masked session): what the pod's HTTP server answers ──

  test('w4k-19 pods/proxy: the body is masked', async () => {
    const got = await rawRequest(stack.main, 'GET /api/v1/namespaces/default/pods/web-1/proxy/ HTTP/1.1\r\nHost: x\r\n{AUTH}\r\nConnection: close\r\n\r\n');
    assert.match(got, /^HTTP\/1\.1 200 /);
    assert.match(got, /\r\nhello \*{8}\n\r\n/);
    assert.ok(!got.slice(got.indexOf('\r\n\r\n')).includes(AWS_KEY));
  });

  test('w4k-20 pods/proxy: a response header from the pod carrying the key is masked', async () => {
    const got = await rawRequest(stack.main, 'GET /api/v1/namespaces/default/pods/web-1/proxy/ HTTP/1.1\r\nHost: x\r\n{AUTH}\r\nConnection: close\r\n\r\n');
    assert.match(got, /^HTTP\/1\.1 200 /);
    assert.ok(!got.includes(AWS_KEY), `the key reached the client in a header:\n${got.slice(0, got.indexOf('\r\n\r\n'))}`);
  });

  test('w4k-21 pods/proxy: text/plain declared UTF-16 (unreadable to the detectors) is refused, not relayed', async () => {
    const got = await rawRequest(stack.main, 'GET /api/v1/namespaces/default/pods/web-3/proxy/ HTTP/1.1\r\nHost: x\r\n{AUTH}\r\nConnection: close\r\n\r\n');
    const body = Buffer.from(got.slice(got.indexOf('\r\n\r\n') + 4), 'latin1').toString('utf16le');
    assert.ok(!body.includes(AWS_KEY), `${got.slice(0, 200)} … body as the client decodes it: ${body}`);
  });

  // ── tty: the quiet flush ──

  test('w4k-22 LIMIT (documented): with a tty, a key printed in two pieces 400 ms apart goes out in two pieces, unmasked', async () => {
    const got = await ttyExec(stack.main, 'web-1', 'cat /split/key', 1_200);
    const out = frames(got).ch[1] ?? '';
    assert.ok(out.includes('id=AKIAIOSFOD') && out.includes('NN7EXAMPLE'), out);
  });

  test('w4k-23 tty: a PEM key whole is held to its END and masked (control for w4k-24)', async () => {
    const got = await ttyExec(stack.main, 'web-1', 'cat /split/pem-whole', 1_000);
    assert.ok(!got.includes(PEM_LINE), got);
    assert.match(frames(got).ch[1] ?? '', /cat \/split\/pem-whole/);
  });

  test('w4k-24 tty: a pause inside "-----BEGIN" does not release the marker early; the key is held to its END and masked', async () => {
    const got = await ttyExec(stack.main, 'web-1', 'cat /split/pem', 1_200);
    const out = frames(got).ch[1] ?? '';
    assert.ok(!out.includes(PEM_LINE), `the key body reached the client:\n${out}`);
  });

  // ── what the terminal shows ──

  test('w4k-25 grep --color output (escape sequences inside the key) is judged as a terminal shows it, and masked', async () => {
    const r = await stack.kubectl(['exec', 'web-1', '--', 'cat', '/grep-color']);
    assert.equal(r.code, 0, r.stderr);
    // eslint-disable-next-line no-control-regex
    const shown = r.stdout.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
    assert.ok(!shown.includes(AWS_KEY), `a terminal shows: ${shown}`);
  });

  // ── kubectl cp, port-forward ──

  test('w4k-26 kubectl cp (exec with tar): no raw key, and no silently corrupted file', async () => {
    const dir = join(stack.tmp.path, 'cp');
    const control = await stack.kubectl(['cp', 'default/web-1:/data/creds.txt', join(dir, 'glass.txt')], { kubeconfig: glass.kubeconfig });
    assert.equal(control.code, 0, control.stderr);
    assert.equal(await readFile(join(dir, 'glass.txt'), 'utf8'), `aws_access_key_id = ${AWS_KEY}\nregion = eu-west-1\n`, 'CONTROL: an unmasked session copies the file intact');
    const r = await stack.kubectl(['cp', 'default/web-1:/data/creds.txt', join(dir, 'masked.txt')]);
    const local = await readFile(join(dir, 'masked.txt'), 'utf8').catch(() => '');
    assert.ok(!local.includes(AWS_KEY), local);
    // Either a clear refusal naming agentgate, or the file complete with only the key masked.
    const refused = r.code !== 0 && /agentgate/.test(r.stderr);
    const whole = r.code === 0 && /^aws_access_key_id = \S+\nregion = eu-west-1\n$/.test(local);
    assert.ok(refused || whole, `exit ${r.code}, stderr: ${r.stderr.slice(0, 300)}; local file: ${JSON.stringify(local)}`);
  });

  test('w4k-27 kubectl port-forward is refused in a masked session, before the API server', async () => {
    const before = stack.api.requests.length;
    const r = await stack.kubectl(['port-forward', 'pod/web-1', '0:80'], { timeoutMs: 8_000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /port-forward stream carries raw bytes|masked/);
    assert.deepEqual(stack.api.requests.slice(before).filter((q) => q.url.includes('portforward')).map((q) => q.url), []);
  });
});

// ─────────────────────────────── audit and recordings ───────────────────────────────

describe('wave 4: what the broker keeps (audit log, recordings)', () => {
  let stack: K8sStack;
  before(async () => {
    stack = await startK8sStack({ policies });
    seed(stack);
  });
  after(async () => {
    await stack?.close();
  });

  /** Every file under the broker's state dir that holds `needle` (the audit database, recordings, …). */
  async function filesHolding(needle: string): Promise<string[]> {
    const hits: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) await walk(p);
        else if ((await stat(p)).size < 64 * 1024 * 1024 && (await readFile(p)).includes(needle)) hits.push(p);
      }
    };
    await walk(stack.config.stateDir);
    return hits;
  }

  test('w4k-28 masked exec output leaves no raw key in recordings or the audit database', async () => {
    for (const args of [['printenv'], ['chunks', 'AKIAIO', 'SFODNN', '7EXAM', 'PLE'], ['cat', '/etc/tls/tls.key'], ['fail', `key=${AWS_KEY}`]]) {
      const r = await stack.kubectl(['exec', 'web-1', '--', ...args]);
      assert.ok(!r.stdout.includes(AWS_KEY) && !r.stdout.includes(PEM_LINE));
    }
    await eventually('the recordings closed', async () => (await stack.events()).filter((e) => e.type === 'recording.end').length >= 4 || undefined);
    assert.deepEqual(await filesHolding(AWS_KEY), []);
    assert.deepEqual(await filesHolding(PEM_LINE), []);
  });

  test('w4k-29 the exec path and query (a pod "named" by the key, the key as an argument) are masked in the audit log', async () => {
    const got = await rawRequest(stack.main, upgrade(`/api/v1/namespaces/default/pods/${AWS_KEY}/exec?command=echo&command=${AWS_KEY}&stdout=true`));
    assert.match(got, /^HTTP\/1\.1 404 /);
    await eventually('the stream end', async () => (await stack.events()).find((e) => e.type === 'k8s.stream.end' && e.detail['status_code'] === 404));
    const leaked = (await stack.events()).filter((e) => JSON.stringify(e).includes(AWS_KEY));
    assert.deepEqual(leaked.map((e) => e.type), []);
  });

  test('w4k-30 an Upgrade header carrying the key is masked in the audit log (detail.upgrade, decision reason)', async () => {
    const got = await rawRequest(stack.main, upgrade(execPath('web-1', ['printenv']), `Connection: Upgrade\r\nUpgrade: websocket, ${AWS_KEY}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${V5}`));
    assert.match(got, /^HTTP\/1\.1 403 /);
    const leaked = (await stack.events()).filter((e) => JSON.stringify(e).includes(AWS_KEY));
    assert.deepEqual(leaked.map((e) => ({ type: e.type, upgrade: e.detail['upgrade'], reason: e.decision?.reason })), []);
  });

  test('w4k-31 a Sec-WebSocket-Protocol offer carrying the key is masked in the audit log (decision reason)', async () => {
    const got = await rawRequest(stack.main, upgrade(execPath('web-1', ['printenv']), `${WS}Sec-WebSocket-Protocol: base64.channel.k8s.io, ${AWS_KEY}\r\n`));
    assert.match(got, /^HTTP\/1\.1 403 /);
    const leaked = (await stack.events()).filter((e) => JSON.stringify(e).includes(AWS_KEY) && JSON.stringify(e).includes('base64.channel'));
    assert.deepEqual(leaked.map((e) => ({ type: e.type, reason: e.decision?.reason })), []);
  });
});

// ─────────────────────────────── the Transform alone ───────────────────────────────

const masker = createValueMasker({ masking: {}, policies: [] }, { sub: 'a', groups: [], kind: 'agent', issuer: 'x', expiresAt: 0 }, 't', Buffer.alloc(32))!;
const out = (ch: number, text: string): Buffer => wsFrame(0x2, Buffer.concat([Buffer.from([ch]), Buffer.from(text)]));

async function run(input: Buffer[]): Promise<Buffer> {
  const t = maskRemoteCommand(masker, { tty: false, onMasked: () => {}, onCut: () => {} });
  const bytes: Buffer[] = [];
  for await (const c of Readable.from(input).pipe(t)) bytes.push(c as Buffer);
  return Buffer.concat(bytes);
}

describe('wave 4: maskRemoteCommand alone', () => {
  test('w4k-32 LIMIT (transform class): a key split between stdout and stderr is scanned per channel; a terminal shows both halves together', async () => {
    const got = await run([out(1, 'AKIAIOSFOD'), out(2, 'NN7EXAMPLE'), out(3, '{"status":"Success"}')]);
    const f = frames(`\r\n\r\n${got.toString('latin1')}`);
    assert.equal(`${f.ch[1]}${f.ch[2]}`, AWS_KEY);
  });

});
