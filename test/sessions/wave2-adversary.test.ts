/**
 * Red team, wave 2: work must not outlive the credential (or the session) that allowed it.
 * Real parts: the real `agentgate connect` with a short-lived token from the test issuer in
 * a --token-file, real psql through it, the real broker and PostgreSQL 15; real ssh and
 * OpenSSH's sshd. The server side proves whether the work stopped: pg_stat_activity and
 * pg_locks (read as the superuser), the processes left at the SSH target (pgrep).
 *
 * Attack: the agent runs a statement that catches the cancel request
 * (`EXCEPTION WHEN query_canceled`) and loops. When the broker ended the session (credential
 * expiry, an operator's revocation, or the client simply going away) it sent a cancel and a
 * Terminate and closed the socket, and called the session over. A busy backend reads
 * nothing, and the cancel was swallowed, so the statement ran on with its locks held for as
 * long as the server let it: the session.end said "credential_expired" while the work
 * continued. Now the broker waits for the server to close the connection; when it does not,
 * it terminates the backend from a connection of its own and records `server_end:
 * "terminated"` in session.end.
 *
 * Controls: before the end the statement runs and holds its lock, and a cancel (the server's
 * own pg_cancel_backend) does not stop it; an ordinary session that ends (a plain
 * pg_sleep at expiry, a psql that quits) ends as before, with no termination needed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { fileURLToPath } from 'node:url';
import { eventually, startPgStack, TARGET, type PgStack } from '../postgres/stack.js';
import { TARGET as SSH_TARGET, startSshStack, type SshStack } from '../ssh/stack.js';
import { startTestIdp, type TestIdp } from '../helpers/oidc-provider.js';
import { loginAs, makeHome, runCli, type Home, type Stack } from '../cli/fixture.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

interface Proc {
  child: ChildProcessWithoutNullStreams;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function start(cmd: string, args: string[], env: NodeJS.ProcessEnv): Proc {
  const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** A statement that swallows cancel requests and holds a lock on t: only terminating its backend stops it. */
const stubborn = (tag: string): string =>
  `LOCK TABLE t IN ACCESS EXCLUSIVE MODE; DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(0.2); EXCEPTION WHEN query_canceled THEN RAISE NOTICE 'ignored a cancel'; END; END LOOP; END $$ /* ${tag} */`;

describe('postgres work does not outlive its session', () => {
  let stack: PgStack;
  const procs: Proc[] = [];

  const cliEnv = (): NodeJS.ProcessEnv => ({
    PATH: process.env['PATH'],
    HOME: stack.tmp.path,
    XDG_CONFIG_HOME: join(stack.tmp.path, 'xdg-config'),
    XDG_STATE_HOME: join(stack.tmp.path, 'xdg-state'),
    AGENTGATE_BROKER: stack.broker.url,
    AGENTGATE_FINGERPRINT: stack.broker.fingerprint,
    AGENTGATE_KEYCHAIN: 'off',
  });

  /** The real `agentgate connect` on a token of `sub` valid for `expiresIn` seconds. */
  async function connect(sub: string, expiresIn: number): Promise<NodeJS.ProcessEnv> {
    const file = join(stack.tmp.path, `${sub}.token`);
    await writeFile(file, await stack.issuer.sign({ sub, groups: ['ai-agents'] }, { expiresIn }), { mode: 0o600 });
    const proc = start(process.execPath, [BIN, 'connect', TARGET, '--port', '0', '--json', '--token-file', file], cliEnv());
    procs.push(proc);
    const line = await eventually('agentgate connect to print its endpoint', () => (proc.stdout().includes('\n') ? proc.stdout() : undefined), 20_000);
    const u = new URL((JSON.parse(line) as { url: string }).url);
    return { PATH: process.env['PATH'], PGHOST: u.hostname, PGPORT: u.port, PGUSER: 'agent', PGDATABASE: 'app', PGPASSWORD: decodeURIComponent(u.password), PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' };
  }

  function psql(pgEnv: NodeJS.ProcessEnv, sql: string): Proc {
    const p = start('psql', ['-X', '-At', '-v', 'VERBOSITY=verbose', '-c', sql], pgEnv);
    procs.push(p);
    return p;
  }

  /** The server's view: pids of backends running the statement tagged `tag`. */
  const backends = async (tag: string): Promise<string[]> =>
    (await stack.pg.psql(`SELECT pid FROM pg_stat_activity WHERE query LIKE '%/* ${tag} */%' AND pid <> pg_backend_pid()`)).split('\n').filter((l) => l.trim() !== '');
  const locksOnT = async (): Promise<number> => Number((await stack.pg.psql(`SELECT count(*) FROM pg_locks WHERE relation = 'public.t'::regclass`, { database: 'app' })).trim());

  const ends = async (sub: string): Promise<AuditRecord[]> => (await stack.events()).filter((e) => e.type === 'session.end' && e.actor?.sub === sub);
  const endOf = (sub: string): Promise<AuditRecord> =>
    eventually(`session.end for ${sub}`, async () => (await ends(sub))[0], 40_000);

  /** Starts the stubborn statement and proves (the control) that it runs, holds its lock and survives a cancel. */
  async function runStubborn(pgEnv: NodeJS.ProcessEnv, tag: string): Promise<Proc> {
    const p = psql(pgEnv, stubborn(tag));
    const [pid] = await eventually(`the ${tag} statement to run`, async () => {
      const b = await backends(tag);
      return b.length === 1 ? b : undefined;
    }, 20_000);
    assert.equal(await locksOnT(), 1);
    await stack.pg.psql(`SELECT pg_cancel_backend(${pid})`);
    await eventually('the statement to swallow the cancel', () => (/ignored a cancel/.test(p.stderr()) ? true : undefined));
    assert.deepEqual(await backends(tag), [pid]);
    return p;
  }

  before(async () => {
    stack = await startPgStack({ config: { sessions: { expiryLeewaySeconds: 0, maxDurationSeconds: undefined } } });
    await stack.pg.psql('CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1); GRANT ALL ON t TO app;', { database: 'app' });
  });
  after(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    await stack?.close();
  });

  test('w2-01: a statement that swallows cancels is terminated at credential expiry, its lock released', { timeout: 120_000 }, async () => {
    const pgEnv = await connect('w2-expiry', 20);
    const p = await runStubborn(pgEnv, 'w2-expiry');
    const end = await endOf('w2-expiry');
    assert.equal(end.detail['reason'], 'credential_expired');
    // session.end is written once the backend is gone: the server agrees at once.
    assert.deepEqual(await backends('w2-expiry'), []);
    assert.equal(end.detail['server_end'], 'terminated');
    assert.equal(await locksOnT(), 0);
    assert.equal(await p.exited, 2);
    assert.match(p.stderr(), /FATAL:\s+28000: agentgate: the credential of w2-expiry expired/);
  });

  test('w2-02: an operator\'s revocation terminates it as well', { timeout: 120_000 }, async () => {
    const pgEnv = await connect('w2-revoked', 3600);
    const p = await runStubborn(pgEnv, 'w2-revoked');
    assert.equal(stack.broker.live.revoke({ sub: 'w2-revoked' }, 'op-1').length, 1);
    const end = await endOf('w2-revoked');
    assert.equal(end.detail['reason'], 'revoked');
    assert.deepEqual(await backends('w2-revoked'), []);
    assert.equal(end.detail['server_end'], 'terminated');
    assert.equal(await locksOnT(), 0);
    assert.equal(await p.exited, 2);
    assert.match(p.stderr(), /FATAL:\s+28000: agentgate: this session was revoked by an operator \(op-1\)/);
  });

  test('w2-03: a client that vanishes mid-statement leaves nothing running on the server', { timeout: 120_000 }, async () => {
    const pgEnv = await connect('w2-vanish', 3600);
    const p = await runStubborn(pgEnv, 'w2-vanish');
    p.child.kill('SIGKILL');
    const end = await endOf('w2-vanish');
    assert.deepEqual(await backends('w2-vanish'), []);
    assert.equal(end.detail['server_end'], 'terminated');
    assert.equal(await locksOnT(), 0);
  });

  test('w2-04 (control): an ordinary statement at expiry and an ordinary quit end without a termination', { timeout: 120_000 }, async () => {
    const pgEnv = await connect('w2-plain', 15);
    // A psql that quits normally before expiry: the server closes on Terminate.
    const quick = psql(pgEnv, 'select 41 + 1');
    assert.equal(await quick.exited, 0, quick.stderr());
    assert.equal(quick.stdout(), '42\n');
    // A plain long statement running at expiry stops on the cancel.
    const slow = psql(pgEnv, `select pg_sleep(120) /* w2-plain */`);
    await eventually('the plain statement to run', async () => ((await backends('w2-plain')).length === 1 ? true : undefined), 20_000);
    const all = await eventually('both sessions of w2-plain to end', async () => {
      const e = await ends('w2-plain');
      return e.length === 2 ? e : undefined;
    }, 40_000);
    assert.deepEqual(all.map((e) => [e.detail['reason'], e.detail['server_end']]), [['client terminated the session', undefined], ['credential_expired', undefined]]);
    assert.deepEqual(await backends('w2-plain'), []);
    assert.equal(await slow.exited, 2);
    assert.match(slow.stderr(), /FATAL:\s+28000: agentgate: the credential of w2-plain expired/);
  });
});

/** The pids of processes on this machine (where the test sshd runs) whose whole command line is `command`. */
function processesRunning(command: string): Promise<string[]> {
  return new Promise((resolve) => {
    // pgrep exits 1 when nothing matches: that is an answer, not a failure.
    execFile('pgrep', ['-x', '-f', command], (_err, stdout) => resolve(stdout.split('\n').filter((l) => l.trim() !== '')));
  });
}

const SSH_POLICIES: PolicyConfig[] = [
  { name: 'agents-ssh', subjects: { groups: ['ai-agents'] }, targets: [SSH_TARGET], rules: [{ name: 'any', ssh: { commands: ['*'] }, effect: 'allow', extra: {} }] },
];

/**
 * Attack: an ssh command without a terminal (`ssh target 'sleep …'`) when the broker ends the
 * session. The broker closed the channels and the connection, the client saw the end, the
 * audit log said the session ended, and the command ran on at the target: sshd only closes a
 * command's pipes when its channel closes, so anything that does not write (a long job, a
 * loop) outlives the credential, a revocation, or the client. Now the broker kills the
 * command's process group (RFC 4254 "signal", which OpenSSH applies with killpg) before it
 * closes a channel whose command has not exited.
 */
describe('ssh commands do not outlive their session', () => {
  let short: SshStack;
  let long: SshStack;
  const spawned: ChildProcessWithoutNullStreams[] = [];
  before(async () => {
    // An ordinary account at the target (OpenSSH refuses "signal" requests to root's sessions): the PostgreSQL helper's `postgres` when the tests run as root.
    const sshdUser = userInfo().uid === 0 ? 'postgres' : userInfo().username;
    short = await startSshStack(SSH_POLICIES, undefined, { tokenExpiresIn: 12, sessions: { expiryLeewaySeconds: 0 }, sshdUser });
    long = await startSshStack(SSH_POLICIES, undefined, { sessions: { expiryLeewaySeconds: 0 }, sshdUser });
  });
  after(async () => {
    for (const c of spawned) c.kill('SIGKILL');
    await short?.close();
    await long?.close();
  });

  /** `ssh target <command>` through `stack`; resolves once the command runs at the target (the control). */
  async function runRemote(stack: SshStack, command: string): Promise<{ child: ChildProcessWithoutNullStreams; exited: Promise<number | null>; pid: string }> {
    const child = stack.spawn('ssh', ['-F', stack.sshConfig, SSH_TARGET, command]);
    spawned.push(child);
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    const [pid] = await eventually(`${command} to run at the target`, async () => {
      const p = await processesRunning(command);
      return p.length === 1 ? p : undefined;
    }, 20_000);
    return { child, exited, pid: pid ?? '' };
  }

  const sessionEnd = (stack: SshStack, reason: string): Promise<AuditRecord> =>
    eventually(`an ssh session.end (${reason})`, async () => (await stack.events()).find((e) => e.type === 'session.end' && e.detail['reason'] === reason), 40_000);

  test('w2-05: at credential expiry a running ssh command is killed at the target, not only cut', { timeout: 120_000 }, async () => {
    const run = await runRemote(short, 'sleep 3131');
    await sessionEnd(short, 'credential_expired');
    assert.notEqual(await run.exited, 0);
    await eventually('the command to be gone at the target', async () => ((await processesRunning('sleep 3131')).length === 0 ? true : undefined), 15_000);
    const cmd = await eventually('the command\'s outcome', async () => (await short.events()).find((e) => e.type === 'ssh.command' && e.detail['command'] === 'sleep 3131'));
    assert.equal(cmd.detail['signal'], 'SIGKILL');
  });

  test('w2-06: an operator\'s revocation of the session kills its command', { timeout: 120_000 }, async () => {
    const run = await runRemote(long, 'sleep 3132');
    const [session] = long.broker.live.list().filter((s) => s.protocol === 'ssh');
    assert.ok(session, 'the ssh session is live');
    assert.deepEqual(long.broker.live.revoke({ session: session.id }, 'op-1'), [session.id]);
    const end = await sessionEnd(long, 'revoked');
    assert.equal(end.detail['revoked_by'], 'op-1');
    assert.notEqual(await run.exited, 0);
    await eventually('the command to be gone at the target', async () => ((await processesRunning('sleep 3132')).length === 0 ? true : undefined), 15_000);
  });

  test('w2-07: a client that vanishes mid-command leaves nothing running at the target', { timeout: 120_000 }, async () => {
    const run = await runRemote(long, 'sleep 3133');
    run.child.kill('SIGKILL');
    await run.exited;
    await eventually('the command to be gone at the target', async () => ((await processesRunning('sleep 3133')).length === 0 ? true : undefined), 15_000);
  });

  test('w2-08 (control): ordinary commands run to their end, exit status and output intact', { timeout: 60_000 }, async () => {
    const ok = await long.run('ssh', ['-F', long.sshConfig, SSH_TARGET, 'echo done'], { timeoutMs: 30_000 });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, 'done\n');
    const failed = await long.run('ssh', ['-F', long.sshConfig, SSH_TARGET, 'ls /nonexistent-w2-08'], { timeoutMs: 30_000 });
    assert.equal(failed.code, 2, failed.stderr);
    const outcomes = await eventually('both outcomes', async () => {
      const e = (await long.events()).filter((x) => x.type === 'ssh.command' && ['echo done', 'ls /nonexistent-w2-08'].includes(String(x.detail['command'])));
      return e.length === 2 ? e : undefined;
    });
    assert.deepEqual(outcomes.map((e) => [e.detail['exit_status'], e.detail['signal']]), [[0, undefined], [2, undefined]]);
  });
});

describe('postgres work does not outlive max_duration', () => {
  let stack: PgStack;
  const procs: Proc[] = [];
  before(async () => {
    stack = await startPgStack({ config: { sessions: { expiryLeewaySeconds: 30, maxDurationSeconds: 8 } } });
    await stack.pg.psql('CREATE TABLE t (id int PRIMARY KEY); GRANT ALL ON t TO app;', { database: 'app' });
  });
  after(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    await stack?.close();
  });

  test('w2-09: a statement that swallows cancels is terminated at max_duration', { timeout: 120_000 }, async () => {
    const p = start('psql', ['-X', '-At', '-v', 'VERBOSITY=verbose', '-c', stubborn('w2-max')], stack.env);
    procs.push(p);
    const running = async (): Promise<string[]> =>
      (await stack.pg.psql(`SELECT pid FROM pg_stat_activity WHERE query LIKE '%/* w2-max */%' AND pid <> pg_backend_pid()`)).split('\n').filter((l) => l.trim() !== '');
    // Control: it runs.
    await eventually('the statement to run', async () => ((await running()).length === 1 ? true : undefined), 20_000);
    const end = await eventually('session.end at max_duration', async () => (await stack.events()).find((e) => e.type === 'session.end'), 40_000);
    assert.equal(end.detail['reason'], 'max_duration');
    assert.deepEqual(await running(), []);
    assert.equal(end.detail['server_end'], 'terminated');
    assert.equal(await p.exited, 2);
    assert.match(p.stderr(), /FATAL:\s+57P01: agentgate: this session reached the broker's maximum session duration \(8s\)/);
  });
});

/**
 * Measured, not changed: what `agentgate logout` does to a running `agentgate connect`. The
 * broker has no introspection or revocation list, so it cannot learn of a logout; the CLI
 * forgets the login and the IdP revokes the refresh token, so the next renewal fails and the
 * live session ends at the current access token's expiry (plus `sessions.expiry_leeway`),
 * recorded as credential_expired; no reconnect is possible. The longest a session outlives a
 * logout is the access token's remaining lifetime plus the leeway.
 */
describe('agentgate logout and a live session (measured)', () => {
  let idp: TestIdp;
  let stack: PgStack;
  let home: Home;
  const procs: Proc[] = [];
  before(async () => {
    idp = await startTestIdp({ accessTokenTtl: 8 });
    stack = await startPgStack({
      identity: { issuer: idp.issuer, audience: idp.audience, clientId: idp.deviceClientId, clockToleranceSec: 0 },
      config: { sessions: { expiryLeewaySeconds: 0, maxDurationSeconds: undefined } },
    });
    home = makeHome({ AGENTGATE_KEYCHAIN: 'off' });
  });
  after(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    await stack?.close();
    await idp?.close();
    home?.cleanup();
  });

  test('w2-10 (measured): after logout the session ends at the access token\'s expiry, and the tunnel cannot come back', { timeout: 120_000 }, async () => {
    const login = await loginAs({ idp, brokerUrl: stack.broker.url, fingerprint: stack.broker.fingerprint } as Stack, 'alice', home.env);
    assert.equal(login.code, 0, login.stderr);
    const cli = start(process.execPath, [BIN, 'connect', TARGET, '--port', '0', '--json'], home.env);
    procs.push(cli);
    const line = await eventually('agentgate connect to print its endpoint', () => (cli.stdout().includes('\n') ? cli.stdout() : undefined), 20_000);
    const u = new URL((JSON.parse(line) as { url: string }).url);
    const pgEnv = { PATH: process.env['PATH'], PGHOST: u.hostname, PGPORT: u.port, PGUSER: 'agent', PGDATABASE: 'app', PGPASSWORD: decodeURIComponent(u.password), PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' };
    const held = start('psql', ['-X', '-At'], pgEnv);
    procs.push(held);
    held.child.stdin.write('select 51;\n');
    await eventually('psql to answer', () => held.stdout().split('\n').includes('51'));
    const first = await eventually('alice\'s live session', () => stack.broker.live.list().find((s) => s.actor.sub === 'alice'));

    const out = await runCli(['logout'], home.env);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /Logged out of/);
    assert.equal(idp.revokedGrants(), 1);

    const end = await eventually('alice\'s session to end', async () => (await stack.events()).find((e) => e.type === 'session.end' && e.actor?.sub === 'alice'), 40_000);
    assert.equal(end.detail['reason'], 'credential_expired');
    // The broker learnt nothing from the logout: the end came with the token's expiry, not before.
    assert.ok(Date.now() >= Date.parse(first.credential_expires_at));
    held.child.stdin.end('select 52;\n');
    assert.equal(await held.exited, 2);
    assert.match(held.stderr(), /FATAL:\s+agentgate: the credential of alice expired/);
    assert.match(cli.stderr(), /could not renew the credential/);
    const again = start('psql', ['-X', '-At', '-c', 'select 53'], pgEnv);
    procs.push(again);
    assert.equal(await again.exited, 2);
    assert.doesNotMatch(again.stdout(), /53/);
  });
});
