/**
 * "A session dies with its credential", end to end with real parts: the real
 * `agentgate connect` (bin/agentgate) with a short-lived token from the test issuer in a
 * --token-file, real psql through it, the real broker and PostgreSQL. Expiry ends a live
 * psql session with FATAL 28000 and refuses new ones; a renewed token (the file rewritten)
 * keeps a session alive past the first token's expiry; operators revoke by session and by
 * subject with `agentgate broker revoke`; every end is in the audit log with its reason.
 * No fixed sleeps: tests wait for events (output, audit rows), and only the refresh test
 * waits for the clock to pass the first token's expiry, which is what it is about.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import pg from 'pg';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually, startPgStack, TARGET, type PgStack } from '../postgres/stack.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';
import type { LiveSessionsResponse } from '../../src/shared/api-types.js';
import { startConnectSession } from '../../src/tunnel/connect-session.js';
import type { RenewalEvent } from '../../src/tunnel/credential-renewal.js';

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

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = start(cmd, args, env);
  p.child.stdin.end();
  return p.exited.then((code) => ({ code, stdout: p.stdout(), stderr: p.stderr() }));
}

describe('sessions end with their credential', () => {
  let stack: PgStack;
  let operatorToken: string;
  const connects: Proc[] = [];

  const cliEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
    PATH: process.env['PATH'],
    HOME: stack.tmp.path,
    XDG_CONFIG_HOME: join(stack.tmp.path, 'xdg-config'),
    XDG_STATE_HOME: join(stack.tmp.path, 'xdg-state'),
    AGENTGATE_BROKER: stack.broker.url,
    AGENTGATE_FINGERPRINT: stack.broker.fingerprint,
    AGENTGATE_KEYCHAIN: 'off',
    ...extra,
  });

  /** The real `agentgate connect` reading its token from `file`; resolves once it printed its endpoint. */
  async function connect(file: string): Promise<{ proc: Proc; pgEnv: NodeJS.ProcessEnv }> {
    const proc = start(process.execPath, [BIN, 'connect', TARGET, '--port', '0', '--json', '--token-file', file], cliEnv());
    connects.push(proc);
    const line = await eventually('agentgate connect to print its endpoint', () => (proc.stdout().includes('\n') ? proc.stdout() : undefined), 20_000);
    const { url } = JSON.parse(line) as { url: string };
    const u = new URL(url);
    const pgEnv = { PATH: process.env['PATH'], PGHOST: u.hostname, PGPORT: u.port, PGUSER: 'agent', PGDATABASE: 'app', PGPASSWORD: decodeURIComponent(u.password), PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' };
    return { proc, pgEnv };
  }

  /** An interactive psql on a pipe; `query` sends one statement and waits for its line of output. */
  function psqlSession(pgEnv: NodeJS.ProcessEnv): Proc & { query(sql: string, expect: string): Promise<void> } {
    const p = start('psql', ['-X', '-At', '-v', 'VERBOSITY=verbose'], pgEnv);
    return {
      ...p,
      async query(sql, expect) {
        p.child.stdin.write(`${sql};\n`);
        await eventually(`psql to print ${expect}`, () => p.stdout().split('\n').includes(expect));
      },
    };
  }

  async function ends(sub: string): Promise<AuditRecord[]> {
    return (await stack.events()).filter((e) => e.type === 'session.end' && e.actor?.sub === sub);
  }

  async function liveSessions(): Promise<LiveSessionsResponse['sessions']> {
    const r = await run(process.execPath, [BIN, 'broker', 'sessions', '--json'], cliEnv({ AGENTGATE_TOKEN: operatorToken }));
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as LiveSessionsResponse).sessions;
  }

  before(async () => {
    stack = await startPgStack({
      config: { sessions: { expiryLeewaySeconds: 0, maxDurationSeconds: undefined }, operators: { groups: ['ops'] } },
    });
    await stack.pg.psql('CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1); GRANT ALL ON t TO app;', { database: 'app' });
    operatorToken = await stack.issuer.sign({ sub: 'op-1', groups: ['ops'] }, { expiresIn: 3600 });
  });
  after(async () => {
    for (const c of connects) c.child.kill('SIGKILL');
    await Promise.all(connects.map((c) => c.exited));
    await stack?.close();
  });

  test('at expiry a live psql session gets FATAL 28000 and new local connections are refused', async () => {
    const file = join(stack.tmp.path, 'short.token');
    // Long enough for the CLI, the tunnel and psql to start on a loaded machine before it expires.
    await writeFile(file, await stack.issuer.sign({ sub: 'short-1', groups: ['ai-agents'] }, { expiresIn: 8 }), { mode: 0o600 });
    const { proc, pgEnv } = await connect(file);
    const psql = psqlSession(pgEnv);
    await psql.query('select 41 + 1', '42');

    const [end] = await eventually(
      'session.end for short-1',
      async () => {
        const e = await ends('short-1');
        return e.length > 0 ? e : undefined;
      },
      20_000,
    );
    assert.equal(end?.detail['reason'], 'credential_expired');
    assert.match(String(end?.detail['message']), /credential of short-1 expired/);

    psql.child.stdin.end('select 2;\n');
    assert.equal(await psql.exited, 2, psql.stderr());
    assert.match(psql.stderr(), /FATAL:\s+28000: agentgate: the credential of short-1 expired at \S+ and was not renewed/);
    assert.match(psql.stderr(), /agentgate login/);

    const fresh = await run('psql', ['-X', '-At', '-c', 'select 3'], pgEnv);
    assert.equal(fresh.code, 2);
    assert.match(fresh.stderr, /FATAL:\s+agentgate: the credential of short-1 expired/);
    assert.doesNotMatch(fresh.stdout, /3/);
    // psql prints no SQLSTATE for a failed connection; node-postgres does.
    const client = new pg.Client({ host: pgEnv['PGHOST'], port: Number(pgEnv['PGPORT']), user: 'agent', database: 'app', password: pgEnv['PGPASSWORD'] });
    await assert.rejects(client.connect(), (err: Error & { code?: string; severity?: string }) => err.code === '28000' && err.severity === 'FATAL');
    // The file still holds the same token: the CLI said it could not renew it.
    assert.match(proc.stderr(), /could not renew the credential: .*same token/);
    assert.equal((await ends('short-1')).length, 1);
  });

  test('a renewed token keeps the session alive past the first token\'s expiry', async () => {
    const file = join(stack.tmp.path, 'renewed.token');
    // Long enough for connect and a first query on a loaded machine (4 s was not): the
    // session must still be on its first token when the renewal is written.
    const first = await stack.issuer.sign({ sub: 'short-2', groups: ['ai-agents'] }, { expiresIn: 12 });
    const firstExp = (JSON.parse(Buffer.from(first.split('.')[1] as string, 'base64url').toString()) as { exp: number }).exp;
    await writeFile(file, first, { mode: 0o600 });
    const { pgEnv } = await connect(file);
    const psql = psqlSession(pgEnv);
    await psql.query('select 7', '7');
    // What the token source hands out next (a refreshed login, a rewritten file, …).
    await writeFile(file, await stack.issuer.sign({ sub: 'short-2', groups: ['ai-agents'] }, { expiresIn: 3600 }), { mode: 0o600 });

    const renewed = await eventually('the broker to extend short-2\'s deadline', async () => {
      const s = (await liveSessions()).find((x) => x.actor.sub === 'short-2');
      return s && Date.parse(s.credential_expires_at) > firstExp * 1000 + 60_000 ? s : undefined;
    });
    assert.equal(renewed.target, TARGET);
    // The one wait on the clock: past the first token's expiry (leeway 0) before asking again.
    await new Promise((r) => setTimeout(r, Math.max(0, firstExp * 1000 + 300 - Date.now())));
    await psql.query('select 8', '8');
    assert.deepEqual(await ends('short-2'), []);
    psql.child.stdin.end();
    assert.equal(await psql.exited, 0, psql.stderr());
  });

  test('the broker refuses a renewed credential for another subject, or one it cannot verify', async () => {
    const tokens = [
      await stack.issuer.sign({ sub: 'short-3', groups: ['ai-agents'] }, { expiresIn: 3 }),
      await stack.issuer.sign({ sub: 'mallory', groups: ['ai-agents'] }, { expiresIn: 3600 }),
      'not.a.jwt',
    ];
    let calls = 0;
    const events: RenewalEvent[] = [];
    const twoFailures = new Promise<void>((resolve, reject) => {
      const session = startConnectSession({
        endpoint: `${stack.broker.url}/v1/tunnel`,
        dispatcher: stack.dispatcher,
        getToken: async () => tokens[Math.min(calls++, 2)] as string,
        hostKeyFingerprint: stack.broker.keys.sshHostKeyFingerprint,
        reconnect: false,
        renewal: { retryMs: 10 },
        onRenewal: (e) => {
          events.push(e);
          if (events.length === 2) {
            resolve();
            session.close().catch(reject);
          }
        },
      });
    });
    await twoFailures;
    assert.deepEqual(events.map((e) => (e.ok ? 'ok' : (e.error as { code?: string }).code)), ['AG_CREDENTIAL_SUBJECT_CHANGED', 'AG_TOKEN_REJECTED']);
    assert.match(events[0]?.ok === false ? events[0].error.message : '', /renewed credential is for mallory/);
  });

  test('operators revoke one session, then every session of a subject, with the real CLI; others may not', async () => {
    const file = join(stack.tmp.path, 'revoke.token');
    await writeFile(file, await stack.issuer.sign({ sub: 'rev-1', groups: ['ai-agents'] }, { expiresIn: 3600 }), { mode: 0o600 });
    const { pgEnv } = await connect(file);
    const a = psqlSession(pgEnv);
    const b = psqlSession(pgEnv);
    await a.query('select 101', '101');
    await b.query('select 102', '102');
    const mine = (await liveSessions()).filter((s) => s.actor.sub === 'rev-1');
    assert.equal(mine.length, 2);

    const notOperator = await run(process.execPath, [BIN, 'broker', 'revoke', (mine[0] as { id: string }).id], cliEnv({ AGENTGATE_TOKEN: stack.token }));
    assert.notEqual(notOperator.code, 0);
    assert.match(notOperator.stderr, /may not revoke sessions/);

    const one = await run(process.execPath, [BIN, 'broker', 'revoke', (mine[0] as { id: string }).id, '--json'], cliEnv({ AGENTGATE_TOKEN: operatorToken }));
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual((JSON.parse(one.stdout) as { ended: string[] }).ended, [(mine[0] as { id: string }).id]);
    const firstEnded = await eventually('session.end of the revoked session', async () => (await ends('rev-1')).find((e) => e.session === (mine[0] as { id: string }).id));
    assert.equal(firstEnded.detail['reason'], 'revoked');
    assert.equal(firstEnded.detail['revoked_by'], 'op-1');

    const all = await run(process.execPath, [BIN, 'broker', 'revoke', 'rev-1', '--json'], cliEnv({ AGENTGATE_TOKEN: operatorToken }));
    assert.equal(all.code, 0, all.stderr);
    assert.deepEqual((JSON.parse(all.stdout) as { ended: string[] }).ended, [(mine[1] as { id: string }).id]);
    await eventually('both sessions of rev-1 to end', async () => (await ends('rev-1')).length === 2);

    for (const p of [a, b]) {
      p.child.stdin.end('select 1;\n');
      assert.equal(await p.exited, 2);
      assert.match(p.stderr(), /FATAL:\s+28000: agentgate: this session was revoked by an operator \(op-1\)/);
    }
    // The subject's tunnel refuses new sessions for good.
    const again = await run('psql', ['-X', '-At', '-c', 'select 1'], pgEnv);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /revoked by an operator/);

    const revokes = (await stack.events()).filter((e) => e.type === 'session.revoke');
    assert.deepEqual(
      revokes.map((e) => [e.actor?.sub, e.detail['session'] ?? e.detail['sub'], e.detail['ended']]),
      [
        ['op-1', (mine[0] as { id: string }).id, [(mine[0] as { id: string }).id]],
        ['op-1', 'rev-1', [(mine[1] as { id: string }).id]],
      ],
    );
  });
});

describe('sessions.max_duration', () => {
  let stack: PgStack;
  before(async () => {
    stack = await startPgStack({ config: { sessions: { expiryLeewaySeconds: 30, maxDurationSeconds: 1 } } });
  });
  after(async () => {
    await stack?.close();
  });

  test('a session is ended at max_duration with FATAL 57P01, recorded as max_duration', async () => {
    const psql = start('psql', ['-X', '-At', '-v', 'VERBOSITY=verbose'], stack.env);
    psql.child.stdin.write('select 5;\n');
    await eventually('psql to answer', () => psql.stdout().split('\n').includes('5'));
    const end = await eventually('session.end at max_duration', async () => (await stack.events()).find((e) => e.type === 'session.end'));
    assert.equal(end.detail['reason'], 'max_duration');
    psql.child.stdin.end('select 6;\n');
    assert.equal(await psql.exited, 2);
    assert.match(psql.stderr(), /FATAL:\s+57P01: agentgate: this session reached the broker's maximum session duration \(1s\)/);
  });
});
