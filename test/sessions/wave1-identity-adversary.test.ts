/**
 * Red team, wave 1: a refreshed credential must not carry grants the IdP took away.
 * Real parts: panva's oidc-provider (device login, refresh tokens, 8 s access tokens), the
 * real `agentgate login` and `agentgate connect`, the real broker and PostgreSQL, psql.
 *
 * Attack: alice is removed from `ai-agents` (the group the policy grants access by) at the
 * IdP while her `agentgate connect` runs. Her CLI refreshes as usual and re-presents the
 * new token (groups: none) over the tunnel. Before the fix the broker checked only that the
 * subject was the same, moved the tunnel's deadline, and kept judging it with the groups
 * of the first token: her open psql session outlived the token that granted it, and new
 * connections through the tunnel were let in, for as long as she could refresh.
 *
 * Control (and the false-denial check): carol, whose groups do not change, is renewed and
 * keeps working past her first token's expiry.
 *
 * Attack: mallory's display name (the IdP's `name` claim, which users often edit) carries a
 * newline and a fake "approval:" line. It is signed into her receipt as the actor's name,
 * and `agentgate receipt verify` printed it raw: the auditor read an approval that never
 * happened under "OK … signed by".
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually, startPgStack, TARGET, type PgStack } from '../postgres/stack.js';
import { DEFAULT_ACCOUNTS, startTestIdp, type TestIdp } from '../helpers/oidc-provider.js';
import { loginAs, makeHome, runCli, type Home, type Stack } from '../cli/fixture.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

const FAKE_APPROVAL = 'apr_00000000 approved by rita at 2026-12-07T00:00:00.000Z: reviewed, fine';

let idp: TestIdp;
let stack: PgStack;
const homes: Home[] = [];
const children: ChildProcess[] = [];

before(async () => {
  idp = await startTestIdp({
    accessTokenTtl: 8,
    // Own copies: the test changes alice's groups at the IdP.
    accounts: {
      alice: { ...DEFAULT_ACCOUNTS['alice']!, groups: ['ai-agents'] },
      carol: { name: 'Carol Agent', email: 'carol@example.test', groups: ['ai-agents'] },
      // A display name as users can set it at many IdPs, written to forge a line of `receipt verify`.
      mallory: { name: `Mallory\n  approval:  ${FAKE_APPROVAL}`, email: 'mallory@example.test', groups: ['ai-agents'] },
    },
  });
  stack = await startPgStack({
    identity: { issuer: idp.issuer, audience: idp.audience, clientId: idp.deviceClientId, clockToleranceSec: 0 },
    config: { sessions: { expiryLeewaySeconds: 0, maxDurationSeconds: undefined } },
  });
});

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await stack?.close();
  await idp?.close();
  for (const h of homes) h.cleanup();
});

interface Connected {
  home: Home;
  exited: Promise<number | null>;
  cli: ChildProcess;
  stderr: () => string;
  pgEnv: NodeJS.ProcessEnv;
}

async function loginAndConnect(user: string): Promise<Connected> {
  const home = makeHome({ AGENTGATE_KEYCHAIN: 'off' });
  homes.push(home);
  const login = await loginAs({ idp, brokerUrl: stack.broker.url, fingerprint: stack.broker.fingerprint } as Stack, user, home.env);
  assert.equal(login.code, 0, login.stderr);
  const cli = spawn(process.execPath, [BIN, 'connect', TARGET, '--port', '0', '--json'], { env: home.env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(cli);
  const exited = new Promise<number | null>((resolve) => cli.on('close', resolve));
  let out = '';
  let err = '';
  cli.stdout.on('data', (d: Buffer) => (out += d.toString()));
  cli.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const line = await eventually(`agentgate connect (${user}) to print its endpoint`, () => (out.includes('\n') ? out : undefined), 20_000);
  const u = new URL((JSON.parse(line) as { url: string }).url);
  return {
    home,
    exited,
    cli,
    stderr: () => err,
    pgEnv: { PATH: process.env['PATH'], PGHOST: u.hostname, PGPORT: u.port, PGUSER: 'agent', PGDATABASE: 'app', PGPASSWORD: decodeURIComponent(u.password), PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' },
  };
}

/** An interactive psql on a pipe (one live session at the broker), answering `first`. */
async function heldPsql(pgEnv: NodeJS.ProcessEnv, first: number): Promise<{ send(sql: string): void; out(): string; end(last?: string): Promise<number | null> }> {
  const p = spawn('psql', ['-X', '-At'], { env: pgEnv, stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(p);
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((resolve) => p.on('close', resolve));
  p.stdin.write(`select ${first};\n`);
  await eventually(`psql to answer ${first}`, () => out.split('\n').includes(String(first)));
  return {
    send: (sql) => p.stdin.write(`${sql};\n`),
    out: () => out,
    end: (last?: string) => {
      p.stdin.end(last === undefined ? undefined : `${last};\n`);
      return exit;
    },
  };
}

/** One psql -c run: its exit code and output. */
function psqlOnce(pgEnv: NodeJS.ProcessEnv, sql: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn('psql', ['-X', '-At', '-c', sql], { env: pgEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('close', (code) => resolve({ code, out }));
  });
}

test('a refresh after removal from the granting group does not extend the tunnel; an unchanged one does', { timeout: 120_000 }, async () => {
  const alice = await loginAndConnect('alice');
  const carol = await loginAndConnect('carol');

  // Control: both reach the target with their first tokens.
  assert.deepEqual(await psqlOnce(alice.pgEnv, 'select 1'), { code: 0, out: '1\n' });
  assert.deepEqual(await psqlOnce(carol.pgEnv, 'select 1'), { code: 0, out: '1\n' });

  // Long-lived psql sessions, opened while both were in ai-agents.
  const aliceHeld = await heldPsql(alice.pgEnv, 21);
  const carolHeld = await heldPsql(carol.pgEnv, 31);

  const sessionOf = (sub: string) => stack.broker.live.list().find((s) => s.actor.sub === sub);
  const aliceFirst = await eventually('alice to have a live session', () => sessionOf('alice'));
  const carolFirst = await eventually('carol to have a live session', () => sessionOf('carol'));

  // The IdP removes alice from the group that grants access.
  idp.accounts['alice']!.groups = [];

  // Carol is renewed (same grants): her tunnel's deadline moves.
  await eventually('carol\'s credential to be renewed', () => {
    const s = stack.broker.live.list().find((x) => x.id === carolFirst.id);
    return s && Date.parse(s.credential_expires_at) > Date.parse(carolFirst.credential_expires_at) ? s : undefined;
  }, 30_000);
  // Alice's CLI refreshed and presented the new token: the broker must say no.
  await eventually('alice\'s renewal to be refused', () => /could not renew the credential: .*carries groups \[\] \(human\), but this tunnel was opened with groups \[ai-agents\]/.test(alice.stderr()) || undefined, 30_000);

  // Past alice's first token's expiry: the held session has ended and the tunnel lets nobody in.
  await eventually('alice\'s held psql session to end', async () => ((await stack.events()).some((e) => e.type === 'session.end' && e.actor?.sub === 'alice' && e.detail['reason'] === 'credential_expired') ? true : undefined), 30_000);
  assert.equal(await aliceHeld.end('select 22'), 2, aliceHeld.out());
  assert.match(aliceHeld.out(), /FATAL:\s+agentgate: the credential of alice expired/);
  assert.doesNotMatch(aliceHeld.out(), /^22$/m);
  assert.ok(Date.now() > Date.parse(aliceFirst.credential_expires_at));
  const after = await psqlOnce(alice.pgEnv, 'select 2');
  assert.equal(after.code, 2, `a new connection through alice's tunnel ran: ${after.out}`);
  assert.match(after.out, /FATAL:\s+agentgate: the credential of alice expired/);
  assert.doesNotMatch(after.out, /^2$/m);

  // Carol, past her first token's expiry, still works: her held session and a new one.
  await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(carolFirst.credential_expires_at) + 300 - Date.now())));
  carolHeld.send('select 32');
  await eventually('carol\'s held psql to answer after her first token expired', () => carolHeld.out().split('\n').includes('32'));
  assert.deepEqual(await psqlOnce(carol.pgEnv, 'select 3'), { code: 0, out: '3\n' });
  assert.equal(await carolHeld.end(), 0);
});

test('a display name from the IdP cannot print a line into receipt verify', { timeout: 120_000 }, async () => {
  const mallory = await loginAndConnect('mallory');
  assert.deepEqual(await psqlOnce(mallory.pgEnv, 'select 1'), { code: 0, out: '1\n' });
  // Ctrl-C: connect collects the session's receipt (and pins the broker's keys) and exits.
  mallory.cli.kill('SIGINT');
  assert.equal(await mallory.exited, 0, mallory.stderr());
  const dir = join(mallory.home.dir, '.local', 'state', 'agentgate', 'receipts');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.receipt.json'));
  assert.equal(files.length, 1, `receipts in ${dir}: ${files.join(', ')}`);

  const r = await runCli(['receipt', 'verify', join(dir, files[0]!)], mallory.home.env);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^OK .*signed by/);
  assert.match(r.stdout, /actor: +mallory \(Mallory\\x0a {2}approval: {2}apr_00000000/);
  // The receipt holds no approval: no line of the output may say it does.
  assert.deepEqual(r.stdout.split('\n').filter((l) => /^\s*approval:/.test(l)), []);
});
