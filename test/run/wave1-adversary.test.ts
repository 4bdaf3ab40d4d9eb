/**
 * `agentgate run`, red team wave 1: the wrapped command is the adversary. It gets the
 * session's endpoints and nothing that is the user's broker credential, and its psql goes
 * through the tunnel whatever libpq variables the caller's environment held. Real
 * bin/agentgate, real psql, real broker and PostgreSQL; a local issuer in GitHub's role.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPgStack, TARGET, type PgStack } from '../postgres/stack.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function agentgate(args: string[], env: NodeJS.ProcessEnv): Promise<Result> {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const r: Result = { code: null, stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => (r.stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (r.stderr += d.toString()));
  return new Promise<Result>((resolve) => child.on('close', (code) => resolve({ ...r, code })));
}

describe('agentgate run: red team wave 1 (the child is the adversary)', () => {
  let stack: PgStack;
  let gh: TestIssuer;
  let runner: Server;
  let runnerUrl: string;

  const baseEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
    PATH: process.env['PATH'],
    HOME: stack.tmp.path,
    XDG_CONFIG_HOME: join(stack.tmp.path, 'xdg-config'),
    XDG_STATE_HOME: join(stack.tmp.path, 'xdg-state'),
    AGENTGATE_BROKER: stack.broker.url,
    AGENTGATE_FINGERPRINT: stack.broker.fingerprint,
    AGENTGATE_KEYCHAIN: 'off',
    ...extra,
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
            { name: 'rest', effect: 'deny', extra: {} },
          ],
        },
      ],
    });
    const ghToken = await gh.sign({ sub: 'repo:acme/app:ref:refs/heads/main', aud: 'agentgate' }, { expiresIn: 600 });
    // GitHub's token service: any holder of the request token gets an OIDC token.
    runner = createServer((req, res) => {
      if (req.headers.authorization !== 'bearer runner-request-token') {
        res.statusCode = 401;
        res.end('{}');
        return;
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ value: ghToken }));
    });
    await new Promise<void>((resolve) => runner.listen(0, '127.0.0.1', resolve));
    runnerUrl = `http://127.0.0.1:${(runner.address() as AddressInfo).port}/_apis/token?api-version=2.0`;
  });

  after(async () => {
    runner?.closeAllConnections();
    await new Promise<void>((resolve) => (runner ? runner.close(() => resolve()) : resolve()));
    await stack?.close();
    await gh?.close();
  });

  test('control: under GitHub Actions OIDC the child\'s psql works through the tunnel', async () => {
    const env = baseEnv({ ACTIONS_ID_TOKEN_REQUEST_URL: runnerUrl, ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'runner-request-token' });
    const r = await agentgate(['run', '--target', TARGET, '--', 'psql', '-X', '-At', '-c', "select 'through-the-tunnel'"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^through-the-tunnel$/m);
    assert.match(r.stderr, /1 statement: 1 allowed, 0 denied/);
  });

  test('the child cannot mint the job\'s broker token: GitHub\'s OIDC request token and URL are not in its environment', async () => {
    const env = baseEnv({ ACTIONS_ID_TOKEN_REQUEST_URL: runnerUrl, ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'runner-request-token' });
    // The agent runs the real CLI with what it was handed: with the request token it would be
    // the job's identity at the broker, outside this session (whoami answers for it).
    const script = `echo "req=\${ACTIONS_ID_TOKEN_REQUEST_TOKEN:-none} url=\${ACTIONS_ID_TOKEN_REQUEST_URL:-none}"; "${process.execPath}" "${BIN}" whoami --json; echo "whoami-exit=$?"`;
    const r = await agentgate(['run', '--target', TARGET, '--', 'sh', '-c', script], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^req=none url=none$/m);
    assert.doesNotMatch(r.stdout, /repo:acme/, 'the child did not become the job identity at the broker');
    assert.doesNotMatch(r.stdout, /^whoami-exit=0$/m);
  });

  test('a PGSERVICE (or PGHOSTADDR, PGPASSFILE) in the caller\'s environment does not take the child\'s psql past the tunnel', async () => {
    const services = join(stack.tmp.path, 'pg_service.conf');
    await writeFile(services, `[direct]\nhost=127.0.0.1\nport=${stack.pg.port}\nuser=app\npassword=${stack.pg.password}\ndbname=app\nsslmode=disable\n`, { mode: 0o600 });
    const env = baseEnv({ AGENTGATE_TOKEN: stack.token, PGSERVICEFILE: services, PGSERVICE: 'direct', PGAPPNAME: 'kept-app-name' });
    const r = await agentgate(['run', '--target', TARGET, '--', 'psql', '-X', '-At', '-c', "select current_user || ' ' || current_setting('application_name')"], env);
    assert.equal(r.code, 0, r.stderr);
    // Through the broker: PostgreSQL sees the broker's login for the target (app) and the
    // statement is on record; directly, it would be app too but no statement counted.
    assert.match(r.stderr, /1 statement: 1 allowed, 0 denied/, 'the statement went through the broker');
    const events = await stack.events();
    assert.ok(
      events.some((e) => e.type === 'query' && String(e.detail['sql']).includes("current_setting('application_name')")),
      'the statement is in the audit log',
    );
  });

  test('a process the child leaves behind cannot kill agentgate run while it saves the receipts (SIGTERM/SIGHUP to its PPID)', async () => {
    const dir = join(stack.tmp.path, 'receipts-signalled');
    // The child runs a statement, leaves a process that signals agentgate run (its parent)
    // until it is gone, and exits at once.
    const script = `psql -X -At -c "select 'signalled'"; P=$PPID; (while kill -TERM $P 2>/dev/null && kill -HUP $P 2>/dev/null; do sleep 0.01; done) >/dev/null 2>&1 & exit 0`;
    const r = await agentgate(['run', '--target', TARGET, '--receipt-dir', dir, '--', 'sh', '-c', script], baseEnv({ AGENTGATE_TOKEN: stack.token }));
    // (Its exit status is not asserted: a signal landing in Node's own teardown, after the
    // summary, still ends the process by it; nothing is left to save by then.)
    assert.match(r.stdout, /^signalled$/m);
    assert.match(r.stderr, /1 statement: 1 allowed, 0 denied/);
    const saved = await readdir(dir);
    assert.equal(saved.filter((f) => f.endsWith('.receipt.json')).length, 1, 'the receipt was saved');
  });
});
