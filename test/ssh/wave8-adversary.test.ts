/**
 * Wave 8 red team, SSH (ids w8s-NN): masked means masked on every stream that leaves.
 *
 * - A key block is held from its `-----BEGIN` to its `-----END` and masked whole, but the
 *   scanner looked for the BEGIN in the bytes as they came, and judged a line holding an
 *   escape or a control one line at a time. `grep --color=always -A 30 PRIVATE key.pem`
 *   (GNU grep colours the match: `-----BEGIN RSA ESC[01;31mESC[KPRIVATE ESC[mESC[K KEY-----`)
 *   and a key file in UTF-16 (a NUL after every character) had the BEGIN line masked
 *   alone and the key's body relayed as text.
 * - A zero-width character (U+200B, U+2060, a BOM…) inside a key: wcwidth gives it no
 *   cell, so the terminal shows the key whole, while the detectors read two pieces (the
 *   same class as SSH wave 7's NUL and DEL).
 * - An sftp subsystem or a local forwarding (`-L`) a rule allows was relayed as raw bytes
 *   in a masked session: `sftp get` of a key file, or a service on the target answering
 *   with a token, reached the client in the clear. Kubernetes refuses port-forward in a
 *   masked session for the same reason; SSH now does too (AG_SSH_UNMASKABLE_STREAM on
 *   record), and a policy with `masking: off` keeps both.
 *
 * Each leak case has a control: the same straight to the sshd shows the key (as the
 * terminal renders it). Plain output, plain grep and colours without a key pass unchanged.
 *
 * Looked at and not kept: a key split between stdout and stderr, or printed transformed
 * (`base64`, `rev`): documented limits (README, SSH masking); the command line and the
 * recording title of `echo AKIA…` (masked already, by the detectors before anything records them).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { startSshStack, TARGET, type SshStack } from './stack.js';
import { direct as directVia, directArgs, viaBroker } from './adversary.js';
import { freePort } from '../helpers/sshd.js';
import { UNMASKABLE_STREAM } from '../../src/broker/ssh/proxy.js';

const BASE = mkdtempSync('/tmp/w8s-');
const FILES = join(BASE, 'files');
const KEY_BODY = ['MIIEowIBAAKCAQEAw8sWave8Body1Line0123456789abcdefghijklmnopqrstu', 'Zk8w4v3Body2Line0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkl', 'Zm9vYmFyLastLine3x=='];
const PEM = `-----BEGIN RSA PRIVATE KEY-----\n${KEY_BODY.join('\n')}\n-----END RSA PRIVATE KEY-----\n`;
const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';
/** A recognisable piece of the key: its first body line's start. */
const PIECE = KEY_BODY[0]!.slice(0, 40);

const rules = (): PolicyConfig['rules'] => [
  { name: 'read-files', ssh: { commands: [`cat ${FILES}/*`, `grep *`] }, effect: 'allow', extra: {} },
  { name: 'files-sftp', ssh: { subsystems: ['sftp'] }, effect: 'allow', extra: {} },
  { name: 'tunnels', ssh: { forwarding: true }, effect: 'allow', extra: {} },
  { name: 'rest', effect: 'deny', extra: {} },
];
const MASKED: PolicyConfig[] = [{ name: 'agents-ssh', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: rules() }];
const UNMASKED: PolicyConfig[] = [{ name: 'agents-ssh', subjects: { groups: ['ai-agents'] }, targets: [TARGET], masking: { mode: 'off' }, rules: rules() }];

/** What a terminal shows for `out`: escape sequences and invisible controls (NULs) consumed. */
function rendered(out: string): string {
  // eslint-disable-next-line no-control-regex
  return out.replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, '').replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '').replace(/\u200b|\u200c|\u200d|\u2060|\ufeff/g, '');
}

/** Connects to a local port until something answers (or the time is up); what it sent. */
async function readThrough(port: number, ms = 8_000): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    const r = await new Promise<string | null>((resolve) => {
      const c = connect(port, '127.0.0.1');
      let got = '';
      let connected = false;
      c.on('connect', () => (connected = true));
      c.on('data', (b: Buffer) => (got += b.toString()));
      c.on('error', () => resolve(connected ? got : null));
      c.on('close', () => resolve(connected ? got : null));
      setTimeout(() => c.destroy(), 3_000).unref();
    });
    if (r !== null && r !== '') return r;
    if (Date.now() > until) return r ?? '';
    await sleep(150);
  }
}

/** A service on the target's side answering every connection with a token. */
async function tokenService(): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => s.end(`service ready; api token ${AWS_KEY}\n`));
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  return { server, port: (server.address() as { port: number }).port };
}

after(async () => {
  await rm(BASE, { recursive: true, force: true });
});

describe('wave 8: ssh masking on every stream (key blocks as a terminal shows them, subsystems, forwarding)', () => {
  let stack: SshStack;
  before(async () => {
    await mkdir(FILES, { recursive: true });
    await writeFile(join(FILES, 'key.pem'), PEM);
    await writeFile(join(FILES, 'key16.pem'), Buffer.from(PEM, 'utf16le'));
    await writeFile(join(FILES, 'plain.txt'), 'alpha\nbeta PRIVATE notes\ngamma\n');
    stack = await startSshStack(MASKED);
  });
  after(async () => {
    await stack?.close();
  });
  const direct = (cmd: string): ReturnType<typeof directVia> => directVia(stack, BASE, cmd);

  test('w8s-00. harmless: cat, grep and grep --color of text without a key pass unchanged; a plain key file is masked', async () => {
    const f = join(FILES, 'plain.txt');
    const text = await readFile(f, 'utf8');
    const cat = await viaBroker(stack, `cat ${f}`);
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stdout, text);
    const grep = await viaBroker(stack, `grep -A1 PRIVATE ${f}`);
    assert.equal(grep.stdout, 'beta PRIVATE notes\ngamma\n');
    const colour = await viaBroker(stack, `grep --color=always -A1 PRIVATE ${f}`);
    const colourDirect = await direct(`grep --color=always -A1 PRIVATE ${f}`);
    assert.ok(colourDirect.stdout.includes('\x1b['), 'control: grep colours the match');
    assert.equal(colour.stdout, colourDirect.stdout, 'coloured output without a key was changed');
    const key = await viaBroker(stack, `cat ${FILES}/key.pem`);
    assert.equal(key.code, 0, key.stderr);
    assert.ok(!key.stdout.includes(PIECE), key.stdout);
  });

  test('w8s-01. grep --color=always -A of a key file (the match coloured inside the BEGIN line): the key body is masked', async () => {
    for (const pattern of ['PRIVATE', 'BEGIN']) {
      const cmd = `grep --color=always -A 30 ${pattern} ${FILES}/key.pem`;
      const d = await direct(cmd);
      assert.ok(rendered(d.stdout).includes(PIECE) && d.stdout.includes('\x1b['), `control: the terminal shows the key, coloured: ${JSON.stringify(d.stdout)}`);
      const r = await viaBroker(stack, cmd);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(!rendered(r.stdout).includes(PIECE), `the key body through agentgate (${pattern}): ${JSON.stringify(r.stdout)}`);
      for (const line of KEY_BODY) assert.ok(!r.stdout.includes(line), line);
    }
  });

  test('w8s-02. a key file in UTF-16 (a NUL after every character): the key body is masked', async () => {
    const cmd = `cat ${FILES}/key16.pem`;
    const d = await direct(cmd);
    assert.ok(rendered(d.stdout).includes(PIECE), 'control: the terminal shows the key');
    const r = await viaBroker(stack, cmd);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!rendered(r.stdout).includes(PIECE), `the key body through agentgate: ${JSON.stringify(r.stdout.slice(0, 300))}`);
  });

  test('w8s-06. a zero-width character (U+200B, U+200D, U+2060, U+FEFF) inside a key: a terminal shows the key whole; masked', async () => {
    for (const zw of ['\u200b', '\u200d', '\u2060', '\ufeff']) {
      const f = join(FILES, `zw-${zw.codePointAt(0)!.toString(16)}.log`);
      await writeFile(f, `aws ${AWS_KEY.slice(0, 8)}${zw}${AWS_KEY.slice(8)} loaded\n`);
      const d = await direct(`cat ${f}`);
      assert.ok(rendered(d.stdout).includes(AWS_KEY) && !d.stdout.includes(AWS_KEY), `control: shown whole, not there as bytes: ${JSON.stringify(d.stdout)}`);
      const r = await viaBroker(stack, `cat ${f}`);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^aws .* loaded\n$/);
      assert.ok(!rendered(r.stdout).includes(AWS_KEY), `the key through agentgate: ${JSON.stringify(r.stdout)}`);
    }
  });

  test('w8s-03. an sftp subsystem a rule allows, in a masked session: refused before the target, nothing of the key file arrives', async () => {
    const out = join(BASE, 'got-direct.pem');
    const args = directArgs(stack, BASE).filter((a) => a !== '-p');
    await stack.run('sftp', ['-b', '-', ...args.map((a) => (a === String(stack.sshd.port) ? `-P${a}` : a))], { input: `get ${FILES}/key.pem ${out}\n`, timeoutMs: 20_000 });
    assert.ok((await readFile(out, 'utf8')).includes(PIECE), 'control: sftp straight to sshd reads the key file');
    const via = join(BASE, 'got-via.pem');
    const r = await stack.run('sftp', ['-F', stack.sshConfig, '-b', '-', TARGET], { input: `get ${FILES}/key.pem ${via}\n`, timeoutMs: 20_000 });
    assert.notEqual(r.code, 0);
    assert.equal(existsSync(via), false, `sftp through agentgate read the key file: ${r.stderr}`);
    assert.ok(!r.stdout.includes(PIECE));
    const refused = (await stack.events()).filter((e) => e.type === 'ssh.command' && e.detail['kind'] === 'subsystem');
    assert.ok(refused.length > 0);
    for (const e of refused) {
      assert.equal(e.decision?.effect, 'deny');
      assert.equal(e.decision?.rule, 'files-sftp');
      assert.match(String(e.detail['error']), new RegExp(UNMASKABLE_STREAM));
      assert.match(String(e.decision?.reason), /cannot read to mask.*masking: off/);
    }
  });

  test('w8s-04. a local forwarding (-L) a rule allows, in a masked session: refused; straight to sshd the service sends its token', async () => {
    const { server, port } = await tokenService();
    try {
      const lc = await freePort();
      const ctl = stack.spawn('ssh', ['-N', '-L', `${lc}:127.0.0.1:${port}`, ...directArgs(stack, BASE)]);
      const got = await readThrough(lc);
      ctl.kill('SIGKILL');
      assert.match(got, new RegExp(AWS_KEY), 'control: -L straight to sshd reaches the service');
      const lb = await freePort();
      const via = stack.spawn('ssh', ['-F', stack.sshConfig, '-N', '-L', `${lb}:127.0.0.1:${port}`, TARGET]);
      const got2 = await readThrough(lb, 4_000);
      via.kill('SIGKILL');
      assert.ok(!got2.includes(AWS_KEY), `agentgate relayed the token over a forwarding: ${got2}`);
      const refused = (await stack.events()).filter((e) => e.type === 'ssh.command' && String(e.detail['command']).startsWith('tcpip '));
      assert.ok(refused.length > 0);
      for (const e of refused) assert.match(String(e.detail['error']), new RegExp(UNMASKABLE_STREAM));
    } finally {
      server.close();
    }
  });
});

describe('wave 8: with masking off, sftp and forwarding stay raw pipes (no false denial)', () => {
  let stack: SshStack;
  before(async () => {
    await mkdir(FILES, { recursive: true });
    await writeFile(join(FILES, 'notes.txt'), 'just notes\n');
    stack = await startSshStack(UNMASKED);
  });
  after(async () => {
    await stack?.close();
  });

  test('w8s-05. masking off: sftp get and -L work through agentgate', async () => {
    const got = join(BASE, 'notes-via.txt');
    const r = await stack.run('sftp', ['-F', stack.sshConfig, '-b', '-', TARGET], { input: `get ${FILES}/notes.txt ${got}\n`, timeoutMs: 20_000 });
    assert.equal(r.code, 0, `${r.stderr} ${r.stdout}`);
    assert.equal(await readFile(got, 'utf8'), 'just notes\n');
    const { server, port } = await tokenService();
    try {
      const lb = await freePort();
      const via = stack.spawn('ssh', ['-F', stack.sshConfig, '-N', '-L', `${lb}:127.0.0.1:${port}`, TARGET]);
      const out = await readThrough(lb);
      via.kill('SIGKILL');
      assert.match(out, /service ready/);
    } finally {
      server.close();
    }
  });
});
