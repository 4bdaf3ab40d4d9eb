/**
 * `agentgate run` as CI and agents use it: the real bin/agentgate wrapping real commands
 * (sh, psql) against the real broker and PostgreSQL. Exit codes, signals, environment,
 * pty and plain modes, receipts, --json, --timeout, and a GitHub Actions job simulated
 * with a local OIDC issuer in GitHub's role.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually, startPgStack, TARGET, type PgStack } from '../postgres/stack.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import type { Identity } from '../../src/broker/identity/types.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function agentgate(args: string[], env: NodeJS.ProcessEnv, opts: { onStderr?: (s: string) => void } = {}): Promise<Result> & { kill(sig: NodeJS.Signals): void } {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const r: Result = { code: null, stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => (r.stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    r.stderr += d.toString();
    opts.onStderr?.(r.stderr);
  });
  const p = new Promise<Result>((resolve) => child.on('close', (code) => resolve({ ...r, code }))) as Promise<Result> & { kill(sig: NodeJS.Signals): void };
  p.kill = (sig) => child.kill(sig);
  return p;
}

describe('agentgate run', () => {
  let stack: PgStack;
  let gh: TestIssuer;
  let receipts: string;

  const baseEnv = (token?: string): NodeJS.ProcessEnv => ({
    PATH: process.env['PATH'],
    HOME: stack.tmp.path,
    XDG_CONFIG_HOME: join(stack.tmp.path, 'xdg-config'),
    XDG_STATE_HOME: join(stack.tmp.path, 'xdg-state'),
    AGENTGATE_BROKER: stack.broker.url,
    AGENTGATE_FINGERPRINT: stack.broker.fingerprint,
    AGENTGATE_KEYCHAIN: 'off',
    ...(token ? { AGENTGATE_TOKEN: token } : {}),
  });

  before(async () => {
    gh = await startTestIssuer({ audience: 'agentgate' });
    stack = await startPgStack({
      ciIssuers: [{ issuer: gh.issuer, audience: 'agentgate', subject: 'repo:acme/*', groups: ['ci'] }],
      policies: [
        {
          name: 'agents',
          subjects: { groups: ['ai-agents', 'ci'] },
          targets: [TARGET],
          rules: [
            { name: 'reads', sql: ['select'], effect: 'allow', extra: {} },
            { name: 'writes', sql: ['insert', 'update', 'delete'], effect: 'review', approvers: { groups: ['dba'], count: 1 }, extra: {} },
            { name: 'rest', effect: 'deny', extra: {} },
          ],
        },
      ],
    });
    await stack.pg.psql('CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1); GRANT ALL ON t TO app;', { database: 'app' });
    receipts = await mkdtemp(join(tmpdir(), 'agentgate-receipts-'));
  });
  after(async () => {
    await stack?.close();
    await gh?.close();
  });

  test('exit codes pass through; a signal becomes 128+n', async () => {
    const env = baseEnv(stack.token);
    assert.equal((await agentgate(['run', '--target', TARGET, '--', 'sh', '-c', 'exit 7'], env)).code, 7);
    assert.equal((await agentgate(['run', '--target', TARGET, '--', 'true'], env)).code, 0);
    assert.equal((await agentgate(['run', '--target', TARGET, '--', 'sh', '-c', 'kill -TERM $$'], env)).code, 143);
    const missing = await agentgate(['run', '--target', TARGET, '--', 'no-such-command-here'], env);
    assert.notEqual(missing.code, 0);
  });

  test('the child gets DATABASE_URL and PG* for the tunnel, no token, and psql works with them', async () => {
    const r = await agentgate(
      [
        'run',
        '--target',
        TARGET,
        '--receipt-dir',
        receipts,
        '--',
        'sh',
        '-c',
        'echo "host=$PGHOST port=$PGPORT db=$PGDATABASE user=$PGUSER ssl=$PGSSLMODE session=$AGENTGATE_SESSION token=${AGENTGATE_TOKEN:-none}"; case "$DATABASE_URL" in postgresql://agent:*@127.0.0.1:*) echo url-ok;; esac; psql -X -At -c "select v from t"',
      ],
      baseEnv(stack.token),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /host=127\.0\.0\.1 port=\d+ db=app user=agent ssl=disable session=ags_[0-9a-f-]+ token=none/);
    assert.match(r.stdout, /url-ok/);
    assert.match(r.stdout, /^1$/m);
    assert.match(r.stderr, /1 statement: 1 allowed, 0 denied, /);
    assert.match(r.stderr, /receipt pgs_\S+: .*\.receipt\.json/);
    const files = (await readdir(receipts)).filter((f) => f.endsWith('.receipt.json'));
    assert.equal(files.length, 1);
    assert.equal((await stat(join(receipts, files[0] as string))).mode & 0o777, 0o600);
    const verify = await agentgate(['receipt', 'verify', join(receipts, files[0] as string)], baseEnv());
    assert.equal(verify.code, 0, verify.stderr + verify.stdout);
  });

  test('while the child runs, no process on the machine carries the token or the session password in its argv', async () => {
    const child = spawn(process.execPath, [BIN, 'run', '--target', TARGET, '--', 'sh', '-c', 'echo "url=$DATABASE_URL"; sleep 4'], { env: baseEnv(stack.token), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    const url = await eventually('the child to start', () => /url=(\S+)/.exec(out)?.[1], 20_000);
    const password = decodeURIComponent(new URL(url).password);
    assert.ok(password.length >= 16, 'the session has a password');
    const argvs: string[] = [];
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        argvs.push((await readFile(`/proc/${entry}/cmdline`, 'utf8')).replaceAll('\0', ' '));
      } catch {
        // gone meanwhile
      }
    }
    assert.ok(argvs.some((a) => a.includes('sleep 4')), 'the scan saw the child');
    for (const a of argvs) {
      assert.ok(!a.includes(stack.token), `a process's argv holds the token: ${a.slice(0, 80)}`);
      assert.ok(!a.includes(password), `a process's argv holds the session password: ${a.slice(0, 80)}`);
    }
    assert.equal(await closed, 0);
  });

  test('--json: stdout is exactly one JSON document, the child\'s stdout goes to stderr; --fail-on-deny gives 4', async () => {
    const script = 'echo child-said-this; psql -X -q -c "DROP TABLE t" || true';
    const plain = await agentgate(['run', '--json', '--target', TARGET, '--receipt-dir', receipts, '--', 'sh', '-c', script], baseEnv(stack.token));
    assert.equal(plain.code, 0, 'pass-through: the command succeeded, so run does');
    const summary = JSON.parse(plain.stdout) as { exit_code: number; denied: number };
    assert.deepEqual([summary.exit_code, summary.denied], [0, 1]);
    assert.match(plain.stderr, /^child-said-this$/m);
    const strict = await agentgate(['run', '--json', '--fail-on-deny', '--target', TARGET, '--receipt-dir', receipts, '--', 'sh', '-c', script], baseEnv(stack.token));
    assert.equal(strict.code, 4, strict.stderr);
    assert.equal((JSON.parse(strict.stdout) as { denied: number }).denied, 1);
    assert.match(strict.stderr, /--fail-on-deny: 1 statement was denied; exit 4/);
  });

  test('--json prints the summary on stdout; a denied statement is counted', async () => {
    const r = await agentgate(['run', '--json', '--target', TARGET, '--receipt-dir', receipts, '--', 'psql', '-X', '-q', '-c', 'DROP TABLE t'], baseEnv(stack.token));
    assert.equal(r.code, 1, 'psql failed, so run fails with its code');
    const summary = JSON.parse(r.stdout) as { exit_code: number; statements: number; denied: number; receipts: { path: string }[] };
    assert.equal(summary.exit_code, 1);
    assert.equal(summary.statements, 1);
    assert.equal(summary.denied, 1);
    assert.equal(summary.receipts.length, 1);
  });

  test('--timeout stops the command with exit 124', async () => {
    const r = await agentgate(['run', '--timeout', '1s', '--target', TARGET, '--', 'sleep', '30'], baseEnv(stack.token));
    assert.equal(r.code, 124);
    assert.match(r.stderr, /--timeout/);
  });

  test('on a terminal the command runs in a pty', async () => {
    // script(1) gives agentgate a terminal, as an interactive user would.
    const cmd = `${process.execPath} ${BIN} run --target ${TARGET} -- sh -c 'tty; test -t 0 && echo stdin-is-a-tty'`;
    const child = spawn('script', ['-qefc', cmd, '/dev/null'], { env: baseEnv(stack.token), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, out);
    assert.match(out, /\/dev\/pts\/\d+/);
    assert.match(out, /stdin-is-a-tty/);
  });

  test('a GitHub Actions job: OIDC token from the runner, held statement announced, job summary with receipts', async () => {
    const ghToken = await gh.sign({ sub: 'repo:acme/app:ref:refs/heads/main', aud: 'agentgate' }, { expiresIn: 600 });
    const seen: string[] = [];
    const runner: Server = createServer((req, res) => {
      seen.push(req.url ?? '');
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ value: ghToken }));
    });
    await new Promise<void>((resolve) => runner.listen(0, '127.0.0.1', resolve));
    const summaryFile = join(stack.tmp.path, 'step-summary.md');
    await writeFile(summaryFile, '');
    try {
      const env = {
        ...baseEnv(),
        GITHUB_ACTIONS: 'true',
        GITHUB_STEP_SUMMARY: summaryFile,
        ACTIONS_ID_TOKEN_REQUEST_URL: `http://127.0.0.1:${(runner.address() as AddressInfo).port}/_apis/token?api-version=2.0`,
        ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'runner-request-token',
      };
      const running = agentgate(['run', '--target', TARGET, '--receipt-dir', receipts, '--', 'psql', '-X', '-q', '-c', 'UPDATE t SET v = 2 WHERE id = 1'], env);
      const reviewer: Identity = { sub: 'dba-1', groups: ['dba'], kind: 'human', issuer: 'test', expiresAt: Math.floor(Date.now() / 1000) + 600 };
      const req = await eventually('the held request', () =>
        stack.broker.approvals.list(reviewer, {}).requests.find((x) => x.status === 'pending' && x.statement.includes('SET v = 2')),
      );
      assert.equal(req.requester.kind, 'ci');
      await stack.broker.approvals.decide(req.id, reviewer, 'approve', 'deploy window');
      const r = await running;
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`::notice title=agentgate: waiting for approval::.*waiting for 1 approval from \\w+ \\(${req.id}\\); a reviewer runs: agentgate approve ${req.id}`));
      assert.match(r.stderr, /agentgate: waiting for 1 approval from \w+ \(apr_\w+\); a reviewer runs: agentgate approve apr_/);
      assert.ok(seen.some((u) => u.includes('audience=agentgate')), 'the runner was asked for a token with the broker audience');
      const md = await readFile(summaryFile, 'utf8');
      assert.match(md, /### agentgate/);
      assert.match(md, /1 of them waited for approval first/);
      assert.match(md, /\.receipt\.json/);
    } finally {
      runner.closeAllConnections();
      await new Promise<void>((resolve) => runner.close(() => resolve()));
    }
  });
});
