/**
 * `agentgate dev` as a user runs it: a child process of bin/agentgate, then the tour's
 * steps with the real CLI and real psql in "a second terminal" (the env file's broker and
 * fingerprint, the token files), then Ctrl-C — and nothing left running.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTempDir, type TempDir } from '../broker/fixtures.js';
import { startDev } from '../../src/dev/run-dev.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

interface DevInfo {
  dir: string;
  broker: string;
  fingerprint: string;
  issuer: string;
  target: string;
  database: { kind: 'postgres' | 'pglite'; host: string; port: number; database: string; data_dir: string | null };
  env_file: string;
  receipt_dir: string;
  token_files: { human: string; reviewer: string; agent: string };
}

interface Running {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exit: Promise<number | null>;
}

function baseEnv(tmp: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env['PATH'],
    HOME: tmp,
    XDG_CONFIG_HOME: join(tmp, 'config'),
    XDG_STATE_HOME: join(tmp, 'state'),
    AGENTGATE_KEYCHAIN: 'off',
    LANG: 'C',
  };
}

function start(args: string[], env: NodeJS.ProcessEnv): Running {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const r: Running = { child, stdout: '', stderr: '', exit: new Promise((resolve) => child.on('close', (code) => resolve(code))) };
  child.stdout?.on('data', (d: Buffer) => (r.stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (r.stderr += d.toString()));
  return r;
}

async function until(r: Running, cond: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (r.child.exitCode !== null) throw new Error(`agentgate exited (${r.child.exitCode}) before ${what}: ${r.stderr}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 25));
  }
}

function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Starts `agentgate dev … --json` and waits for its ready line. */
async function startDevProcess(args: string[], env: NodeJS.ProcessEnv): Promise<{ r: Running; info: DevInfo; cliEnv: NodeJS.ProcessEnv }> {
  const r = start(['dev', '--json', ...args], env);
  await until(r, () => r.stderr.includes('agentgate dev: ready'), 'the ready line');
  const info = JSON.parse(r.stdout) as DevInfo;
  // What `. <dir>/env` gives the second terminal.
  const envText = readFileSync(info.env_file, 'utf8');
  const exported = Object.fromEntries([...envText.matchAll(/^export (AGENTGATE_\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
  assert.deepEqual(exported, { AGENTGATE_BROKER: info.broker, AGENTGATE_FINGERPRINT: info.fingerprint });
  // …and puts this agentgate and its Node first on PATH, so the tour's bare `agentgate` is this one.
  const path = /^export PATH=(.*):"\$PATH"$/m.exec(envText)?.[1];
  assert.equal(path, `${dirname(process.execPath)}:${dirname(BIN)}`);
  return { r, info, cliEnv: { ...env, ...exported } };
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

/** Processes whose command line names the path (a postmaster's `-D <data>`). */
function processesNaming(path: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(path)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

function postmasterPid(dataDir: string): number {
  return Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
}

describe('agentgate dev', () => {
  let tmp: TempDir;
  let blocker: Server | undefined;
  const running: Running[] = [];
  before(async () => {
    tmp = await makeTempDir('agentgate-dev-');
  });
  after(async () => {
    for (const r of running) r.child.kill('SIGKILL');
    blocker?.close();
    await tmp?.remove();
  });

  test('the tour works end to end with a local PostgreSQL, and Ctrl-C leaves nothing running', async () => {
    const env = baseEnv(tmp.path);
    const { r, info, cliEnv } = await startDevProcess(['--dir', join(tmp.path, 'dev'), '--port', '0'], env);
    running.push(r);
    assert.equal(info.database.kind, 'postgres');
    assert.ok(info.database.data_dir);
    const dataDir = info.database.data_dir;
    const pmPid = postmasterPid(dataDir);
    assert.ok(processesNaming(dataDir).includes(pmPid), 'the postmaster runs from the data dir');
    const { agent, reviewer, human } = info.token_files;
    for (const f of [agent, reviewer, human]) assert.equal(statSync(f).mode & 0o777, 0o600, f);
    assert.equal(statSync(info.dir).mode & 0o777, 0o700);
    const tokens = await Promise.all([agent, reviewer, human].map((f) => readFile(f, 'utf8')));
    // The tour names the real commands with the real files.
    assert.ok(r.stderr.includes(`agentgate run --target pg-demo --token-file ${agent}`));
    assert.ok(r.stderr.includes(`agentgate approve --token-file ${reviewer}`));
    assert.ok(r.stderr.includes(`agentgate audit export --token-file ${reviewer} --out audit.jsonl`));
    assert.ok(r.stderr.includes('agentgate receipt verify'));

    const runAgent = ['run', '--target', 'pg-demo', '--token-file', agent, '--receipt-dir', info.receipt_dir, '--', 'psql', '-X', '-At', '-c'];
    // 1 + 2. Connect as the agent and read: masked on the way out.
    const read = await cli([...runAgent, 'select name, email, card_number from customers where id = 1'], cliEnv);
    assert.equal(read.code, 0, read.stderr);
    assert.equal(read.stdout.trim(), 'Ada Lovelace|****@example.com|****1111');

    // 3. An UPDATE is held…
    const upd = start([...runAgent, "update orders set status = 'refunded' where id = 2"], cliEnv);
    running.push(upd);
    // psql shows the agent what happens and who decides.
    await until(upd, () => /waiting for 1 approval from dba \(apr_\w+\); a reviewer runs: agentgate approve apr_/.test(upd.stderr), 'the hold');
    const id = /waiting for 1 approval from dba \((apr_\w+)\)/.exec(upd.stderr)![1]!;
    // 4. …until the reviewer approves it from another terminal.
    const approved = await cli(['approve', id, '--approve', '--token-file', reviewer], cliEnv);
    assert.equal(approved.code, 0, approved.stderr);
    assert.equal(await upd.exit, 0, upd.stderr);
    assert.equal(upd.stdout.trim(), 'UPDATE 1');
    const after = await cli([...runAgent, 'select status from orders where id = 2'], cliEnv);
    assert.equal(after.stdout.trim(), 'refunded', after.stderr);

    // 5. The reviewer, an auditor, exports the audit log.
    const out = join(tmp.path, 'audit.jsonl');
    const exported = await cli(['audit', 'export', '--token-file', reviewer, '--out', out, '--json'], cliEnv);
    assert.equal(exported.code, 0, exported.stderr);
    const events = (await readFile(out, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type?: string });
    for (const type of ['session.start', 'approval.requested', 'approval.decided', 'session.end']) {
      assert.ok(events.some((e) => e.type === type), type);
    }
    const verified = await cli(['audit', 'verify', out], cliEnv);
    assert.equal(verified.code, 0, verified.stderr);

    // 6. A receipt verifies offline.
    const receipts = readdirSync(info.receipt_dir).filter((f) => f.endsWith('.receipt.json'));
    assert.equal(receipts.length, 3, receipts.join(', '));
    // With the key pinned when `run` collected the receipts over verified TLS, not the jwks.json beside it.
    const receipt = await cli(['receipt', 'verify', join(info.receipt_dir, receipts[0]!)], cliEnv);
    assert.equal(receipt.code, 0, receipt.stderr);
    assert.match(receipt.stdout, /^OK .*: signed by \S+ \(the key set pinned for https:\/\/127\.0\.0\.1:\d+ \(.*keys\/127\.0\.0\.1_\d+\.jwks\.json\)\)/);
    // Another user, with nothing pinned and no broker configured, is not handed the key beside the receipt.
    const stranger = await cli(['receipt', 'verify', join(info.receipt_dir, receipts[0]!)], { PATH: env['PATH'], HOME: join(tmp.path, 'stranger') });
    assert.equal(stranger.code, 2, stranger.stderr);
    assert.match(stranger.stderr, /no pinned key for the broker that signed .* pass --key/s);

    // Ctrl-C: a clean stop, exit 0, nothing left.
    r.child.kill('SIGINT');
    assert.equal(await r.exit, 0, r.stderr);
    assert.match(r.stderr, /agentgate dev: stopped/);
    assert.deepEqual(processesNaming(dataDir), []);
    assert.ok(!existsSync(`/proc/${pmPid}`), 'the postmaster is gone');
    assert.ok(!existsSync(dataDir), 'the throwaway cluster is removed');
    for (const port of [new URL(info.broker).port, new URL(info.issuer).port, info.database.port]) {
      assert.ok(await refused(Number(port)), `port ${port} is closed`);
    }
    for (const f of [agent, reviewer, human]) assert.ok(!existsSync(f), `${f} removed`);
    // No token in anything it printed, nor in the export.
    const printed = r.stdout + r.stderr + read.stderr + upd.stderr + approved.stdout + approved.stderr + (await readFile(out, 'utf8'));
    for (const t of tokens) assert.ok(!printed.includes(t.trim()));
  });

  test('PGlite mode serves the demo through the broker, and a taken port is replaced by a free one', async () => {
    blocker = createServer();
    await new Promise<void>((resolve) => blocker!.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as { port: number }).port;
    const env = baseEnv(tmp.path);
    const { r, info, cliEnv } = await startDevProcess(['--dir', join(tmp.path, 'dev-pglite'), '--pglite', '--port', String(taken)], env);
    running.push(r);
    assert.equal(info.database.kind, 'pglite');
    assert.match(r.stderr, new RegExp(`port ${taken} is taken`));
    const brokerPort = Number(new URL(info.broker).port);
    assert.notEqual(brokerPort, taken);
    // The written config shows the port the broker really listens on.
    assert.match(await readFile(join(info.dir, 'agentgate.yaml'), 'utf8'), new RegExp(`^listen: 127\\.0\\.0\\.1:${brokerPort}$`, 'm'));

    const read = await cli(
      ['run', '--target', 'pg-demo', '--token-file', info.token_files.agent, '--receipt-dir', info.receipt_dir, '--', 'psql', '-X', '-At', '-c', 'select email, card_number from customers order by id limit 2'],
      cliEnv,
    );
    assert.equal(read.code, 0, read.stderr);
    assert.deepEqual(read.stdout.trim().split('\n'), ['****@example.com|****1111', '****@example.com|****4444']);

    r.child.kill('SIGINT');
    assert.equal(await r.exit, 0, r.stderr);
    assert.ok(await refused(brokerPort));
    assert.ok(await refused(info.database.port));
  });

  test('a forced stop kills the database server at once', async () => {
    const dev = await startDev({ dir: join(tmp.path, 'dev-kill'), port: 0, say: () => {} });
    try {
      assert.equal(dev.database.kind, 'postgres');
      const dataDir = dev.database.dataDir!;
      const pid = postmasterPid(dataDir);
      assert.ok(existsSync(dev.tokenFiles.agent));
      dev.kill();
      // Synchronous: by the time kill() returns the postmaster is dead (a zombie at most) and its data gone.
      const state = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] : 'gone';
      assert.ok(state === 'gone' || state === 'Z' || state === 'X', `postmaster state ${state}`);
      assert.ok(!existsSync(dataDir));
      assert.ok(!existsSync(dev.tokenFiles.agent));
    } finally {
      await dev.close();
    }
  });
});
