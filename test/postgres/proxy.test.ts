/**
 * Postgres through the broker, end to end with real parts: PostgreSQL 15, the broker's
 * HTTPS tunnel and proxy, real psql / pgbench / node-postgres clients. Every test checks
 * what reached the audit store.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';

import { startPgStack, eventually, TARGET, type PgStack } from './stack.js';
import { RawPg, errorCodes, errorMessages } from './raw-client.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';
import { BackendType } from '../../src/broker/postgres/protocol.js';
import { decodeCommandComplete, decodeNotificationResponse } from '../../src/broker/postgres/decode-backend.js';
import { verifyChain } from '../../src/shared/audit-hash.js';

const run = promisify(execFile);

function psql(stack: PgStack, args: string[], env: NodeJS.ProcessEnv = stack.env): Promise<{ stdout: string; stderr: string }> {
  return run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', ...args], { env, maxBuffer: 256 * 1024 * 1024 });
}

async function queryEvents(stack: PgStack, sql: string) {
  return (await stack.events()).filter((e) => e.type === 'query' && e.detail['sql'] === sql);
}

describe('postgres through the broker', () => {
  let stack: PgStack;

  before(async () => {
    stack = await startPgStack();
    await stack.pg.psql('create table items (id int primary key, name text); grant all on items to app;', { database: 'app' });
  });
  after(async () => {
    await stack?.close();
  });

  test('psql runs a query and every step is audited in one valid chain', async () => {
    const { stdout } = await psql(stack, ['-At', '-c', "select 40 + 2 as answer"]);
    assert.equal(stdout.trim(), '42');
    const events = await eventually('session.end', async () => {
      const ev = await stack.events();
      return ev.some((e) => e.type === 'session.end') ? ev : undefined;
    });
    const q = events.find((e) => e.type === 'query' && e.detail['sql'] === 'select 40 + 2 as answer');
    assert.ok(q, 'query event recorded');
    assert.equal(q.target, TARGET);
    assert.equal(q.actor?.sub, 'agent-7');
    assert.equal(q.actor?.kind, 'agent');
    assert.deepEqual(q.decision, { effect: 'allow', rule: 'agents#1' });
    assert.equal(q.outcome?.status, 'ok');
    assert.equal(q.outcome?.rows, 1);
    assert.equal(q.detail['tag'], 'SELECT 1');
    const start = events.find((e) => e.type === 'session.start' && e.session === q.session);
    const end = events.find((e) => e.type === 'session.end' && e.session === q.session);
    assert.ok(start && end, 'session.start and session.end share the session id');
    assert.equal(start.detail['connect_session'], stack.session.id);
    assert.equal((start.detail['application_name'] as string | null), 'psql');
    assert.ok(verifyChain(events).ok, 'hash chain verifies');
    // The secret never reaches the log.
    assert.ok(!JSON.stringify(events).includes(stack.session.secret));
  });

  test('the upstream login comes from the target: the printed user and database log in as its role; other names are refused', async () => {
    const { stdout } = await psql(stack, ['-At', '-c', 'select current_user, current_database()']);
    assert.equal(stdout.trim(), 'app|app');
    await assert.rejects(
      psql(stack, ['-At', '-c', 'select 1'], { ...stack.env, PGUSER: 'postgres', PGDATABASE: 'postgres' }),
      (err: Error & { stderr?: string }) => /FATAL: {2}role "postgres" does not exist/.test(err.stderr ?? ''),
    );
  });

  test('a wrong session secret is refused with the password error psql knows', async () => {
    await assert.rejects(psql(stack, ['-At', '-c', 'select 1'], { ...stack.env, PGPASSWORD: 'not-the-secret' }), /password authentication failed/);
  });

  test('an identity no policy matches is refused with a message naming it and the target', async () => {
    const other = await stack.connectAs('mallory', ['interns']);
    await assert.rejects(
      psql(stack, ['-At', '-c', 'select 1'], { ...stack.env, PGPORT: String(other.port), PGPASSWORD: other.session.secret }),
      (err: Error & { stderr?: string }) => /mallory may not use target "pg-test"/.test(err.stderr ?? err.message),
    );
  });

  test('node-postgres: extended protocol with parameters, transactions and savepoints', async () => {
    const client = new pg.Client({ connectionString: stack.url });
    await client.connect();
    try {
      await client.query('begin');
      await client.query('insert into items values ($1, $2)', [1, 'one']);
      await client.query('savepoint s1');
      await assert.rejects(client.query('insert into items values ($1, $2)', [1, 'dup']), /duplicate key/);
      await client.query('rollback to savepoint s1');
      await client.query('insert into items values ($1, $2)', [2, 'two']);
      await client.query('commit');
      const r = await client.query('select name from items where id = any($1) order by id', [[1, 2]]);
      assert.deepEqual(r.rows.map((x) => x.name), ['one', 'two']);
    } finally {
      await client.end();
    }
    const ins = await eventually('insert events', async () => {
      const ev = await queryEvents(stack, 'insert into items values ($1, $2)');
      if (ev.length > 3) throw new Error('too many: ' + JSON.stringify(ev.map((e) => e.outcome)));
      return ev.length === 3 ? ev : undefined;
    });
    assert.deepEqual(ins.map((e) => e.outcome?.status), ['ok', 'error', 'ok']);
    assert.equal(ins[1]?.outcome?.sqlstate, '23505');
    assert.equal(ins[0]?.detail['params'], 2);
    assert.equal(ins[0]?.detail['protocol'], 'extended');
    // Parameter values are not recorded, only their count.
    assert.ok(!JSON.stringify(ins).includes('"dup"'));
  });

  test('a pipeline with an error in the middle: earlier result kept, later statements skipped, each recorded', async () => {
    const c = await RawPg.login(stack.port, stack.session.secret);
    try {
      c.send(
        fe.parse('', 'select 1 as a'), fe.bind('', '', []), fe.execute(),
        fe.parse('', 'select 1/0 as boom'), fe.bind('', '', []), fe.execute(),
        fe.parse('', 'select 3 as c'), fe.bind('', '', []), fe.execute(),
        fe.SYNC,
        fe.parse('', 'select 4 as d'), fe.bind('', '', []), fe.execute(), fe.SYNC,
      );
      const first = await c.untilReady();
      assert.deepEqual(errorCodes(first), ['22012']);
      const tags = first.filter((m) => m.type === BackendType.commandComplete).map((m) => decodeCommandComplete(m.body).tag);
      assert.deepEqual(tags, ['SELECT 1']);
      const second = await c.untilReady();
      assert.deepEqual(second.filter((m) => m.type === BackendType.commandComplete).map((m) => decodeCommandComplete(m.body).tag), ['SELECT 1']);
    } finally {
      c.close();
    }
    const all = await stack.events();
    const ev = all.filter((e) => e.type === 'query');
    // Every statement forwarded has its intent on record, and every intent its outcome.
    const outcomes = new Set(ev.map((e) => `${e.session}#${String(e.detail['id'])}`));
    const intents = all.filter((e) => e.type === 'query.intent');
    assert.ok(intents.length >= 2);
    for (const i of intents) assert.ok(outcomes.has(`${i.session}#${String(i.detail['id'])}`), `intent ${String(i.detail['sql'])} has an outcome`);
    assert.equal(ev.filter((e) => e.detail['sql'] === 'select 1 as a').length, 1);
    // PostgreSQL folds 1/0 while planning, at Bind: the Bind fails, and the Execute behind it
    // (when it was already forwarded) is skipped. One error, whatever the timing.
    const boom = ev.filter((e) => e.detail['sql'] === 'select 1/0 as boom' && e.outcome?.status !== 'skipped');
    assert.equal(boom.length, 1);
    assert.equal(boom[0]?.outcome?.sqlstate, '22012');
    // Dropped by the proxy (when the error came back before it was judged) it has no record;
    // forwarded and skipped by the server, its outcome says `skipped`. Never ran, either way.
    assert.deepEqual(ev.filter((e) => e.detail['sql'] === 'select 3 as c' && e.outcome?.status !== 'skipped'), [], 'skipped statement not recorded as executed');
    assert.equal(ev.filter((e) => e.detail['sql'] === 'select 4 as d').length, 1);
  });

  test('COPY in and out with psql', async () => {
    const dir = stack.tmp.path;
    const csv = Array.from({ length: 1000 }, (_, i) => `${1000 + i},name-${i}`).join('\n') + '\n';
    await writeFile(join(dir, 'in.csv'), csv);
    await psql(stack, ['-c', `\\copy items from '${join(dir, 'in.csv')}' with (format csv)`]);
    await psql(stack, ['-c', `\\copy (select * from items where id >= 1000 order by id) to '${join(dir, 'out.csv')}' with (format csv)`]);
    assert.equal(await readFile(join(dir, 'out.csv'), 'utf8'), csv);
    const ev = await stack.events();
    const copyIn = ev.find((e) => e.type === 'query' && String(e.detail['sql']).startsWith('COPY  items FROM STDIN') || (e.type === 'query' && /copy\s+items\s+from\s+stdin/i.test(String(e.detail['sql']))));
    assert.ok(copyIn, 'COPY FROM recorded');
    assert.equal(copyIn.outcome?.rows, 1000);
    assert.ok((copyIn.outcome?.bytes ?? 0) >= csv.length, 'COPY IN bytes counted');
    const copyOut = ev.find((e) => e.type === 'query' && /to stdout/i.test(String(e.detail['sql'])));
    assert.ok(copyOut, 'COPY TO recorded');
    assert.equal(copyOut.outcome?.rows, 1000);
  });

  test('LISTEN/NOTIFY is delivered through the proxy', async () => {
    const listener = await RawPg.login(stack.port, stack.session.secret);
    try {
      listener.send(fe.query('listen jobs'));
      await listener.untilReady();
      await psql(stack, ['-c', "notify jobs, 'hello'"]);
      const m = await (async () => {
        for (;;) {
          const x = await listener.next(10_000);
          if (x.type === BackendType.notificationResponse) return x;
        }
      })();
      const n = decodeNotificationResponse(m.body);
      assert.equal(n.channel, 'jobs');
      assert.equal(n.payload, 'hello');
    } finally {
      listener.close();
    }
  });

  test('CancelRequest on a fresh connection cancels the running query, via the broker-made key', async () => {
    const c = await RawPg.login(stack.port, stack.session.secret);
    try {
      assert.ok(c.key, 'client received a BackendKeyData');
      const serverPids = (await stack.pg.psql("select pid from pg_stat_activity where usename = 'app'")).trim().split('\n');
      assert.ok(!serverPids.includes(String(c.key.processId)), 'the real server pid is not revealed');
      c.send(fe.query('select pg_sleep(30)'));
      await eventually('query running', async () => (await stack.pg.psql("select count(*) from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'")).trim() === '1');
      const canceller = await RawPg.open(stack.port);
      canceller.send(fe.cancelRequest(c.key.processId, c.key.secretKey));
      const msgs = await c.untilReady(10_000);
      assert.deepEqual(errorCodes(msgs), ['57014']);
      canceller.close();
    } finally {
      c.close();
    }
    const ev = await queryEvents(stack, 'select pg_sleep(30)');
    assert.equal(ev.at(-1)?.outcome?.sqlstate, '57014');
  });

  test('a client that disconnects mid-query gets its upstream query cancelled', async () => {
    const c = await RawPg.login(stack.port, stack.session.secret);
    c.send(fe.query('select pg_sleep(31)'));
    await eventually('query running', async () => (await stack.pg.psql("select count(*) from pg_stat_activity where query = 'select pg_sleep(31)' and state = 'active'")).trim() === '1');
    c.close();
    await eventually(
      'upstream query gone',
      async () => (await stack.pg.psql("select count(*) from pg_stat_activity where query = 'select pg_sleep(31)' and state = 'active'")).trim() === '0',
      10_000,
    );
    const ev = await eventually('interrupted statement recorded', async () => {
      const e = await queryEvents(stack, 'select pg_sleep(31)');
      return e.length > 0 ? e : undefined;
    });
    assert.equal(ev[0]?.outcome?.status, 'error');
  });

  test('a 50 MB result streams through with its size recorded', async () => {
    const sql = "select repeat('x', 1000) from generate_series(1, 50000)";
    const child = spawn('psql', ['-X', '-At', '-c', sql], { env: stack.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let bytes = 0;
    child.stdout.on('data', (d: Buffer) => (bytes += d.length));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0);
    assert.equal(bytes, 50_000 * 1001);
    const [ev] = await queryEvents(stack, sql);
    assert.equal(ev?.outcome?.rows, 50_000);
    assert.ok((ev?.outcome?.bytes ?? 0) > 50_000_000);
  });

  test('pgbench -i and a short pgbench run through the proxy', async () => {
    await stack.pg.psql('grant create on schema public to app');
    await run('pgbench', ['-i', '-s', '1', '-q'], { env: stack.env });
    const { stdout } = await run('pgbench', ['-c', '2', '-t', '50', '-M', 'prepared', '-S'], { env: stack.env });
    assert.match(stdout, /number of transactions actually processed: 100\/100/);
    const ev = await stack.events();
    assert.ok(ev.filter((e) => e.type === 'query' && /pgbench_accounts/.test(String(e.detail['sql']))).length >= 100);
  });

  test('malformed and oversized client messages get 08P01 (an impossible startup packet: no reply) and the broker carries on', async () => {
    // An oversized startup packet: closed without a reply, as PostgreSQL does before it has read one.
    const a = await RawPg.open(stack.port);
    const big = Buffer.alloc(8);
    big.writeInt32BE(100_000, 0);
    big.writeInt32BE(196608, 4);
    a.send(big);
    assert.deepEqual(await a.untilClosed(), []);

    // After login: an unknown message type, then a claimed 1 GiB message.
    const b = await RawPg.login(stack.port, stack.session.secret);
    b.send(Buffer.from([0x01, 0, 0, 0, 4]));
    assert.deepEqual(errorCodes(await b.untilClosed()), ['08P01']);
    const c = await RawPg.login(stack.port, stack.session.secret);
    const huge = Buffer.alloc(5);
    huge[0] = 0x51;
    huge.writeInt32BE(0x4000_0000, 1);
    c.send(huge);
    const msgs = await c.untilClosed();
    assert.deepEqual(errorCodes(msgs), ['08P01']);
    assert.match(errorMessages(msgs)[0] ?? '', /limit/);

    // A truncated stream: half a message, then EOF.
    const d = await RawPg.login(stack.port, stack.session.secret);
    d.socket.end(fe.query('select 1').subarray(0, 7));
    await d.untilClosed();

    const { stdout } = await psql(stack, ['-At', '-c', 'select 7']);
    assert.equal(stdout.trim(), '7');
  });

  test('the broker restarts mid-session: the CLI reconnects and new connections work', async () => {
    const client = new pg.Client({ connectionString: stack.url });
    await client.connect();
    client.on('error', () => {});
    await stack.restartBroker();
    await assert.rejects(client.query('select 1'));
    await client.end().catch(() => {});
    await eventually('tunnel back up', () => stack.session.tunnel.state === 'up', 15_000);
    const { stdout } = await psql(stack, ['-At', '-c', 'select 8']);
    assert.equal(stdout.trim(), '8');
    const ev = await stack.events();
    assert.ok(verifyChain(ev).ok, 'the chain continues across the restart');
    assert.equal((await queryEvents(stack, 'select 8')).length, 1);
  });
});
