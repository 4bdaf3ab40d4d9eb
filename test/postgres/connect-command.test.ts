/**
 * `agentgate connect` as a user runs it: a real child process of bin/agentgate, a token
 * from the environment, the broker's self-signed certificate pinned by fingerprint, and
 * real psql against the printed connection string.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startPgStack, type PgStack } from './stack.js';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

function cliEnv(stack: PgStack, token: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env['PATH'],
    HOME: stack.tmp.path,
    XDG_CONFIG_HOME: `${stack.tmp.path}/xdg`,
    AGENTGATE_BROKER: stack.broker.url,
    AGENTGATE_FINGERPRINT: stack.broker.fingerprint,
    AGENTGATE_TOKEN: token,
    AGENTGATE_KEYCHAIN: 'off',
  };
}

interface Running {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exit: Promise<number | null>;
}

function start(args: string[], env: NodeJS.ProcessEnv): Running {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const r: Running = { child, stdout: '', stderr: '', exit: new Promise((resolve) => child.on('close', resolve)) };
  child.stdout?.on('data', (d: Buffer) => (r.stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (r.stderr += d.toString()));
  return r;
}

async function until(r: Running, cond: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (r.child.exitCode !== null) throw new Error(`agentgate exited (${r.child.exitCode}) before ${what}: ${r.stderr}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 25));
  }
}

describe('agentgate connect', () => {
  let stack: PgStack;
  before(async () => {
    stack = await startPgStack();
  });
  after(async () => {
    await stack?.close();
  });

  test('prints a working connection string, and Ctrl-C ends the session cleanly', async () => {
    const r = start(['connect', 'pg-test', '--port', '0', '--json'], cliEnv(stack, stack.token));
    try {
      await until(r, () => r.stdout.trim().endsWith('}'), 'the JSON details');
      const info = JSON.parse(r.stdout) as { url: string; port: number; target: string; session: string };
      assert.equal(info.target, 'pg-test');
      assert.match(info.url, /^postgresql:\/\/agent:[A-Za-z0-9_-]+@127\.0\.0\.1:\d+\/app\?sslmode=disable$/);
      const { stdout } = await run('psql', ['-X', '-At', '-c', 'select 6 * 7', info.url]);
      assert.equal(stdout.trim(), '42');
      const ev = await stack.events();
      assert.ok(ev.some((e) => e.type === 'session.start' && e.detail['connect_session'] === info.session));
      // The token never shows up in what the CLI prints.
      assert.ok(!r.stdout.includes(stack.token) && !r.stderr.includes(stack.token));
      r.child.kill('SIGINT');
      assert.equal(await r.exit, 0);
      assert.match(r.stderr, /closed/);
      // The secret died with the session: the port is closed.
      await assert.rejects(run('psql', ['-X', '-At', '-c', 'select 1', info.url]));
    } finally {
      r.child.kill('SIGKILL');
    }
  });

  test('a target the identity may not use exits 4 with advice', async () => {
    const token = await stack.issuer.sign({ sub: 'intern-1', groups: ['interns'] }, { expiresIn: 600 });
    const r = start(['connect', 'pg-test', '--port', '0'], cliEnv(stack, token));
    assert.equal(await r.exit, 4);
    assert.match(r.stderr, /no target "pg-test" among the targets you may use/);
  });

  test('a mistyped target name gets a did-you-mean over the targets the identity can see', async () => {
    const r = start(['connect', 'pg-tset', '--port', '0'], cliEnv(stack, stack.token));
    assert.equal(await r.exit, 4);
    assert.match(r.stderr, /^agentgate: no target "pg-tset" among the targets you may use \(did you mean pg-test\?\)$/m);
  });

  test('a taken port is a usage error that suggests --port 0', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = start(['connect', 'pg-test', '--port', String(port)], cliEnv(stack, stack.token));
      assert.equal(await r.exit, 2);
      assert.match(r.stderr, new RegExp(`^agentgate: local port ${port} on 127\\.0\\.0\\.1 is taken by another program\n  → .*--port 0`, 'm'));
      // Found before the tunnel opens: nothing claims a connection first.
      assert.doesNotMatch(r.stderr, /connected to the broker/);
    } finally {
      blocker.close();
    }
  });

  test('an expired token exits 3 and says to log in', async () => {
    const token = await stack.issuer.sign({ sub: 'agent-7', groups: ['ai-agents'] }, { expiresIn: -120 });
    const r = start(['connect', 'pg-test', '--port', '0'], cliEnv(stack, token));
    assert.equal(await r.exit, 3);
    assert.match(r.stderr, /expired/);
  });
});
