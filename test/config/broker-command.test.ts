/**
 * `agentgate broker init` and `agentgate broker start` as a user runs them: the real
 * executable in a child process.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// dist/test/config/ → repository root.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const BIN = join(ROOT, 'bin', 'agentgate');
const FINGERPRINT = /\b(?:[0-9A-F]{2}:){31}[0-9A-F]{2}\b/;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete env['AGENTGATE_CONFIG'];
  return env;
}

function run(args: string[], cwd: string): Promise<Result> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

let tmp: string;
const running: ChildProcess[] = [];

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'agentgate-broker-cmd-'));
});
after(async () => {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await rm(tmp, { recursive: true, force: true });
});

test('broker init writes a 0600 config and a 0700 state dir, prints the fingerprint and next steps', async () => {
  const dir = join(tmp, 'ag');
  const r = await run(['broker', 'init', dir, '--issuer', 'https://idp.acme.test/', '--audience', 'acme-broker'], tmp);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '');

  const configPath = join(dir, 'agentgate.yaml');
  assert.equal((await stat(configPath)).mode & 0o777, 0o600);
  assert.equal((await stat(join(dir, 'state'))).mode & 0o777, 0o700);
  const text = await readFile(configPath, 'utf8');
  assert.match(text, /^ {2}issuer: https:\/\/idp\.acme\.test\/$/m);
  assert.match(text, /^ {2}audience: acme-broker$/m);

  // The printed fingerprint is the generated certificate's.
  const printed = FINGERPRINT.exec(r.stderr)?.[0];
  assert.ok(printed, r.stderr);
  const cert = new X509Certificate(await readFile(join(dir, 'state', 'tls.crt')));
  assert.equal(printed, cert.fingerprint256);
  assert.ok(r.stderr.includes(`agentgate broker start --config ${configPath}`), r.stderr);
  assert.ok(r.stderr.includes(`--fingerprint ${printed}`), r.stderr);

  // A second init refuses to overwrite, and says how.
  const again = await run(['broker', 'init', dir], tmp);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /^agentgate: .* is not empty \(\d+ entries\); broker init writes private keys there\n  → .*--force/);
  assert.equal(await readFile(configPath, 'utf8'), text);

  // --force --json rewrites the config, keeps the keys, and prints one JSON document.
  const forced = await run(['broker', 'init', dir, '--force', '--json'], tmp);
  assert.equal(forced.code, 0, forced.stderr);
  assert.deepEqual(JSON.parse(forced.stdout), { config: configPath, state_dir: join(dir, 'state'), fingerprint: printed });
  assert.match(await readFile(configPath, 'utf8'), /^ {2}issuer: https:\/\/login\.example\.com\/$/m);
});

test('broker init warns when its folder is inside a git work tree', async () => {
  const repo = await mkdtemp(join(tmp, 'repo-'));
  await mkdir(join(repo, '.git'));
  const r = await run(['broker', 'init', join(repo, 'ops', 'agentgate')], repo);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`^warning: .* is inside the git work tree ${repo}: keep its keys out of commits`, 'm'));
  const outside = await run(['broker', 'init', join(tmp, 'plain')], tmp);
  assert.doesNotMatch(outside.stderr, /git work tree/);
});

test('broker start with a broken config exits 1 and lists every problem', async () => {
  const configPath = join(tmp, 'broken.yaml');
  await writeFile(
    configPath,
    `identity:
  issuer: https://login.example.com/
  audiance: agentgate
  client_id: cli
targets:
  pg-prod:
    type: postgres
    host: db
    port: abc
    database: app
    user: u
`,
  );
  const r = await run(['broker', 'start', '--config', configPath], tmp);
  assert.equal(r.code, 1);
  assert.ok(r.stderr.includes(`config ${configPath} has 2 problems:`), r.stderr);
  assert.ok(r.stderr.includes('  identity.audiance: unknown key (did you mean "audience"?)'), r.stderr);
  assert.ok(r.stderr.includes('  targets.pg-prod.port: expected an integer 1-65535, got "abc"'), r.stderr);
  assert.doesNotMatch(r.stderr, /listening on/);
});

test('broker start finds ./agentgate/agentgate.yaml, serves, and stops cleanly on SIGTERM', async () => {
  const cwd = await mkdtemp(join(tmp, 'start-'));
  const init = await run(['broker', 'init', '--listen', '127.0.0.1:0'], cwd);
  assert.equal(init.code, 0, init.stderr);
  const fingerprint = FINGERPRINT.exec(init.stderr)?.[0];

  const child = spawn(process.execPath, [BIN, 'broker', 'start'], { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(child);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((done) => child.on('close', (code) => done(code)));

  const deadline = Date.now() + 15_000;
  while (!/listening on https:\/\/127\.0\.0\.1:\d+/.test(stderr) && child.exitCode === null && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.match(stderr, /listening on https:\/\/127\.0\.0\.1:[1-9]\d*/);
  assert.ok(fingerprint && stderr.includes(fingerprint), stderr);
  // The template as written: its placeholder issuer is named before it listens.
  assert.match(stderr, /"level":"warn","msg":"identity\.issuer is the template's placeholder https:\/\/login\.example\.com\//);
  // Not a terminal: every line on stderr is one JSON log record.
  for (const line of stderr.trim().split('\n')) assert.doesNotThrow(() => JSON.parse(line), line);
  // The broker replaced itself (same pid) with a node that has the data path's V8 flags
  // and the allocator setting (bin/runtime-flags.mjs); the pid we signal is still the broker.
  const argv = (await readFile(`/proc/${child.pid}/cmdline`, 'utf8')).split('\0');
  assert.ok(argv.includes('--max-semi-space-size=4') && argv.includes('--liftoff-only'), argv.join(' '));
  assert.ok((await readFile(`/proc/${child.pid}/environ`, 'utf8')).split('\0').includes('MALLOC_ARENA_MAX=2'));

  child.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);

  // --log-format plain: the same stream as plain lines, no JSON among them.
  const plain = spawn(process.execPath, [BIN, 'broker', 'start', '--log-format', 'plain'], { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(plain);
  let plainErr = '';
  plain.stderr.on('data', (d: Buffer) => (plainErr += d.toString()));
  const plainExit = new Promise<number | null>((done) => plain.on('close', (code) => done(code)));
  const until = Date.now() + 15_000;
  while (!/listening on https:/.test(plainErr) && plain.exitCode === null && Date.now() < until) await new Promise((r) => setTimeout(r, 25));
  assert.match(plainErr, /^\d\d:\d\d:\d\d\.\d{3} WARN  identity\.issuer is the template's placeholder/m);
  assert.match(plainErr, /^\d\d:\d\d:\d\d\.\d{3} INFO  listening on https:\/\/127\.0\.0\.1:\d+ url=https:/m);
  assert.doesNotMatch(plainErr, /^\{/m);
  plain.kill('SIGTERM');
  assert.equal(await plainExit, 0, plainErr);
});
