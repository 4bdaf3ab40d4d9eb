/**
 * What clients send at connect time, through the broker to a real PostgreSQL 15 with real
 * node-postgres and psql: settings in the StartupMessage and in `options` are forwarded
 * (read back with SHOW) or refused with a FATAL that names them, never dropped silently;
 * the user and database must be the ones `connect` printed; a client that connects and
 * ends at once gets no reply, as from PostgreSQL; session.start names what became of
 * every parameter.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';

import { startPgStack, TARGET, type PgStack } from './stack.js';
import { RawPg } from './raw-client.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';
import { BackendType } from '../../src/broker/postgres/protocol.js';
import { decodeNegotiateProtocolVersion } from '../../src/broker/postgres/decode-backend.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';

const run = promisify(execFile);

interface Startup {
  forwarded: string[];
  rewritten: { name: string; from: string; to: string }[];
  dropped: { name: string }[];
  refused: { name: string; reason: string }[];
}

function startupOf(e: AuditRecord | undefined): Startup {
  assert.ok(e, 'a session.start event');
  return e.detail['startup'] as unknown as Startup;
}

/** psql's outcome, failures included: exit code, stdout, stderr. */
async function psql(env: NodeJS.ProcessEnv, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('psql', ['-X', '-At', ...args], { env });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** The error a pg client's connect() rejects with (fails the test if it connects). */
async function connectError(config: pg.ClientConfig): Promise<Error & { code?: string; hint?: string }> {
  const client = new pg.Client(config);
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    return err as Error & { code?: string };
  }
  await client.end();
  assert.fail('the connection was accepted');
}

/**
 * node-postgres connect() then end() at once (it sends Terminate ahead of its startup
 * packet): the error events it emitted and how connect() stood when end() resolved, which
 * is after the socket closed (so anything the server sent had been read by then).
 */
async function connectThenEnd(config: pg.ClientConfig): Promise<{ errorEvents: string[]; connect: string }> {
  const client = new pg.Client(config);
  const errorEvents: string[] = [];
  client.on('error', (err: Error) => errorEvents.push(err.message));
  let connect = 'pending';
  void client.connect().then(
    () => (connect = 'connected'),
    (err: Error & { code?: string }) => (connect = `rejected ${err.code ?? ''} ${err.message}`),
  );
  await client.end();
  return { errorEvents, connect };
}

/** Raw bytes sent on a fresh socket: everything the server answered before it closed. */
function bytesBeforeClose(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(payload));
    s.on('data', (d: Buffer) => got.push(d));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(got)));
  });
}

describe('postgres startup parameters through the broker', () => {
  let stack: PgStack;
  let dba: { port: number; session: { secret: string } };

  before(async () => {
    stack = await startPgStack({
      policies: [
        {
          name: 'dbas', subjects: { groups: ['dba'] }, targets: [TARGET],
          rules: [{ name: 'dbas#1', sql: ['select', 'set'], effect: 'allow', extra: {} }, { name: 'dbas#2', effect: 'deny', extra: {} }],
        },
        {
          name: 'agents', subjects: { groups: ['ai-agents'] }, targets: [TARGET],
          rules: [{ name: 'agents#1', sql: ['select', 'show'], effect: 'allow', extra: {} }, { name: 'agents#2', effect: 'deny', extra: {} }],
        },
      ],
    });
    dba = await stack.connectAs('dba-1', ['dba']);
  });
  after(async () => {
    await stack?.close();
  });

  const url = (): string => stack.url;
  async function startOf(appName: string): Promise<AuditRecord | undefined> {
    return (await stack.events()).filter((e) => e.type === 'session.start' && e.detail['application_name'] === appName).at(-1);
  }

  test('node-postgres: timeouts, application_name and options settings reach the server (SHOW) and session.start names them', async () => {
    const client = new pg.Client({
      connectionString: url(),
      application_name: 'startup-pg',
      statement_timeout: 4321,
      lock_timeout: 1234,
      idle_in_transaction_session_timeout: 5678,
      options: '-c work_mem=8MB --enable-seqscan=off -c DateStyle=German -c search_path="$user",public',
    });
    await client.connect();
    try {
      const show = async (name: string): Promise<string> => (await client.query(`show ${name}`)).rows[0][name] as string;
      assert.equal(await show('statement_timeout'), '4321ms');
      assert.equal(await show('lock_timeout'), '1234ms');
      assert.equal(await show('idle_in_transaction_session_timeout'), '5678ms');
      assert.equal(await show('application_name'), 'startup-pg');
      assert.equal(await show('work_mem'), '8MB');
      assert.equal(await show('enable_seqscan'), 'off');
      assert.equal(await show('DateStyle'), 'German, DMY');
      assert.equal(await show('search_path'), '"$user",public');
      assert.equal(await show('client_encoding'), 'UTF8');
      // The broker logs in as the target's role, in the target's database.
      const who = (await client.query('select current_user as u, current_database() as d')).rows[0];
      assert.deepEqual(who, { u: 'app', d: 'app' });
    } finally {
      await client.end();
    }
    const s = startupOf(await startOf('startup-pg'));
    for (const name of ['statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'application_name', 'work_mem', 'enable_seqscan', 'datestyle', 'search_path', 'client_encoding']) {
      assert.ok(s.forwarded.includes(name), `${name} forwarded: ${JSON.stringify(s)}`);
    }
    assert.deepEqual(s.rewritten.map((r) => r.name), ['user', 'options']);
    assert.deepEqual(s.rewritten[0], { name: 'user', from: 'agent', to: 'app', reason: "the broker logs in to pg-test as the target's role" });
    assert.equal(s.rewritten[1]?.to, 'work_mem, enable_seqscan, DateStyle, search_path');
    assert.deepEqual(s.refused, []);
  });

  test('psql: PGOPTIONS settings reach the server; a non-UTF8 client_encoding is rewritten to UTF8 and recorded', async () => {
    const r = await psql(
      { ...stack.env, PGAPPNAME: 'startup-psql', PGOPTIONS: '-c statement_timeout=7s --lock-timeout=3s -c extra_float_digits=2', PGCLIENTENCODING: 'LATIN1' },
      ['-c', 'show statement_timeout', '-c', 'show lock_timeout', '-c', 'show extra_float_digits', '-c', 'show client_encoding'],
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['7s', '3s', '2', 'UTF8']);
    const s = startupOf(await startOf('startup-psql'));
    assert.deepEqual(s.rewritten.find((x) => x.name === 'client_encoding'), {
      name: 'client_encoding', from: 'LATIN1', to: 'UTF8',
      reason: 'the server must read statement text as the policy parser does; ParameterStatus tells the client',
    });
    for (const name of ['statement_timeout', 'lock_timeout', 'extra_float_digits']) assert.ok(s.forwarded.includes(name), name);
  });

  test('a setting the policy would not allow as SET refuses the connection with a FATAL naming it, recorded in session.start', async () => {
    // node-postgres, options -c role=…: the agents' policy allows no `set`.
    const role = await connectError({ connectionString: url(), application_name: 'startup-role', options: '-c role=pg_read_all_data' });
    assert.equal(role.code, '42501');
    assert.match(role.message, /^startup parameter "role" \(options -c role=pg_read_all_data\) refused: rule agents#2 denies set$/);
    const start = await startOf('startup-role');
    assert.equal(start?.decision?.effect, 'deny');
    assert.equal(start?.outcome?.sqlstate, '42501');
    assert.deepEqual(startupOf(start).refused.map((x) => x.name), ['role']);

    // psql, PGOPTIONS undoing the read-only backstop: refused even for the dbas, whose policy allows `set` but grants no write.
    const ro = await psql(
      { ...stack.env, PGPORT: String(dba.port), PGPASSWORD: dba.session.secret, PGAPPNAME: 'startup-ro', PGOPTIONS: '-c default_transaction_read_only=off' },
      ['-c', 'select 1'],
    );
    assert.equal(ro.code, 2);
    assert.match(ro.stderr, /FATAL: {2}startup parameter "default_transaction_read_only" \(options -c default_transaction_read_only=off\) refused: SET default_transaction_read_only denied: this session is read-only/);
    assert.deepEqual(startupOf(await startOf('startup-ro')).refused.map((x) => x.name), ['default_transaction_read_only']);

    // A raw StartupMessage parameter that is not harmless, with standard_conforming_strings=off (a hazard).
    const raw = await assert.rejects(RawPg.login(stack.port, stack.session.secret, 'agent', { application_name: 'startup-raw', session_replication_role: 'replica', standard_conforming_strings: 'off' }), (err: Error) => {
      assert.match(err.message, /^startup parameter "session_replication_role" refused/);
      return true;
    });
    assert.equal(raw, undefined);
    const rawStart = await startOf('startup-raw');
    assert.deepEqual(startupOf(rawStart).refused.map((x) => x.name), ['session_replication_role', 'standard_conforming_strings']);
    assert.match(startupOf(rawStart).refused[1]?.reason ?? '', /would make the server read SQL differently/);
  });

  test('search_path at connect time other than the default, and switches other than -c, are refused (0A000)', async () => {
    const sp = await psql({ ...stack.env, PGAPPNAME: 'startup-sp', PGOPTIONS: '-c search_path=shadow,public' }, ['-c', 'select 1']);
    assert.equal(sp.code, 2);
    assert.match(sp.stderr, /FATAL: {2}startup parameter "search_path" \(options -c search_path=shadow,public\) refused: a session starts with the server's default search_path/);
    assert.match(sp.stderr, /HINT: {2}run SET search_path after connecting/);
    assert.deepEqual(startupOf(await startOf('startup-sp')).refused.map((x) => x.name), ['search_path']);

    const d = await connectError({ connectionString: url(), options: '-d 5' });
    assert.equal(d.code, '0A000');
    assert.match(d.message, /startup option "-d" is not supported through agentgate/);
  });

  test('a setting the policy allows as SET is forwarded: role for an identity whose policy allows set', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: dba.port, user: 'agent', database: 'app', password: dba.session.secret, application_name: 'startup-dba', options: '-c role=app' });
    await client.connect();
    try {
      assert.equal((await client.query('select current_setting($1) as v', ['role'])).rows[0].v, 'app');
    } finally {
      await client.end();
    }
    const s = startupOf(await startOf('startup-dba'));
    assert.ok(s.forwarded.includes('role'), JSON.stringify(s));
  });

  test('a wrong user name fails with 28000 and a wrong database with 3D000, worded as PostgreSQL words them', async () => {
    const user = await psql({ ...stack.env, PGUSER: 'postgres' }, ['-c', 'select 1']);
    assert.equal(user.code, 2);
    assert.match(user.stderr, /FATAL: {2}role "postgres" does not exist/);
    assert.match(user.stderr, /HINT: {2}connect as "agent"/);

    const db = await connectError({ host: '127.0.0.1', port: stack.port, user: 'agent', database: 'nope', password: stack.session.secret });
    assert.equal(db.code, '3D000');
    assert.equal(db.message, 'database "nope" does not exist');
    // PostgreSQL itself, asked for a database that does not exist, says the same.
    const direct = await connectError({ connectionString: stack.pg.url().replace(/\/app(\?|$)/, '/nope$1') });
    assert.equal(direct.code, '3D000');
    assert.equal(direct.message, db.message);

    // psql without a database name asks for one named like the user (agent): also 3D000.
    const env = { ...stack.env };
    delete env['PGDATABASE'];
    const none = await psql(env, ['-c', 'select 1']);
    assert.match(none.stderr, /FATAL: {2}database "agent" does not exist/);
  });

  test('a client that connects and ends at once gets no reply, as from PostgreSQL', async () => {
    const viaBroker = await connectThenEnd({ connectionString: url() });
    const direct = await connectThenEnd({ connectionString: stack.pg.url() });
    assert.deepEqual(viaBroker, { errorEvents: [], connect: 'pending' });
    assert.deepEqual(direct, viaBroker);

    // The bytes such a client sends first: Terminate, where a startup packet belongs.
    const terminate = Buffer.from([0x58, 0, 0, 0, 4]);
    assert.equal((await bytesBeforeClose(stack.port, terminate)).length, 0);
    assert.equal((await bytesBeforeClose(stack.pg.port, terminate)).length, 0);
    // Malformed input after a startup packet still gets FATAL 08P01.
    const afterStartup = await bytesBeforeClose(stack.port, Buffer.concat([fe.startupMessage({ user: 'agent', database: 'app' }), Buffer.from([0x01, 0, 0, 0, 4])]));
    assert.equal(afterStartup[0], BackendType.authentication);
    assert.ok(afterStartup.includes(Buffer.from('08P01')), 'FATAL 08P01 after a startup packet');
  });

  test('protocol options (_pq_.*) are answered with NegotiateProtocolVersion and dropped; replication=false dropped, replication refused', async () => {
    const c = await RawPg.login(stack.port, stack.session.secret, 'agent', { application_name: 'startup-pq', '_pq_.future': 'on', replication: 'false' });
    c.close();
    const negotiate = c.startup.find((m) => m.type === BackendType.negotiateProtocolVersion);
    assert.ok(negotiate, 'NegotiateProtocolVersion sent');
    assert.deepEqual(decodeNegotiateProtocolVersion(negotiate.body), { newestMinor: 0, unrecognizedOptions: ['_pq_.future'] });
    assert.deepEqual(startupOf(await startOf('startup-pq')).dropped.map((d) => d.name), ['_pq_.future', 'replication']);

    await assert.rejects(RawPg.login(stack.port, stack.session.secret, 'agent', { replication: 'database' }), /replication connections are not supported/);
  });
});
