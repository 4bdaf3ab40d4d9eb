/**
 * Audit completeness under faults, wave 1: "no statement without a record".
 *
 * The guarantee: a statement's intent is durable before it is forwarded; its outcome is
 * durable before the client sees it complete; an intent without an outcome reads
 * `outcome: unknown` once the log can say so. These cases break the audit store for real
 * (a PostgreSQL store's connections terminated and its database closed to connections; the
 * SQLite journal made immutable with chattr +i) while a statement runs, through the real
 * clients (node-postgres, OpenSSH).
 *
 * wf1-01 A statement ran while the PostgreSQL store went away; the store came back without a
 *        restart. Its intent stayed without an outcome, and its session without an end or a
 *        receipt, for good (a clean stop later did not look back either).
 * wf1-02 An SSH command finished while the store could not take its outcome: the client was
 *        still told its exit status 0, as if the command had completed on record.
 * wf1-03 The SQLite audit database removed from the state directory while the broker ran:
 *        every later event was committed into the unlinked file and acknowledged, statements
 *        ran, and the next start began a new, empty chain (the log before it gone).
 * wf1-04 A pipelined statement (Execute, Flush, Execute, then one Sync) whose outcome could not be
 *        recorded: the client was sent its CommandComplete anyway (only the ReadyForQuery
 *        waited for the outcomes).
 *
 * wf1-05 (Kubernetes, a 204 answered before its outcome was durable) is in wave1-faults-k8s.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { freezeAuditJournal } from '../helpers/audit-faults.js';
import { eventually } from '../helpers/eventually.js';
import { startPgStack, type PgStack } from '../postgres/stack.js';
import { RawPg, type Msg } from '../postgres/raw-client.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';
import { BackendType } from '../../src/broker/postgres/protocol.js';
import { decodeCommandComplete, decodeErrorResponse } from '../../src/broker/postgres/decode-backend.js';
import { TARGET as SSH_TARGET, startSshStack, type SshStack } from '../ssh/stack.js';
import { Secret } from '../../src/shared/secret.js';
import { verifyStore } from '../../src/broker/audit/store.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';

const STORE_DB = 'agstore';

/** Runs one statement on a fresh connection through the tunnel. */
async function query(url: string, sql: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end().catch(() => {});
  }
}

const sessionEvents = (events: AuditRecord[], session: string): AuditRecord[] => events.filter((e) => e.session === session);

describe('wave 1 faults: a PostgreSQL audit store that goes away and comes back', { timeout: 180_000 }, () => {
  let store: PgServer;
  let stack: PgStack;
  before(async () => {
    store = await startPostgres();
    await store.psql(`CREATE DATABASE ${STORE_DB} OWNER app`, { database: 'postgres' });
    const url = store.url().replace(/\/app$/, `/${STORE_DB}`);
    stack = await startPgStack({ config: { store: { kind: 'postgres', url: new Secret(url, '${env:AG_STORE_URL}') } } });
    await stack.pg.psql('CREATE TABLE wf1 (x int); GRANT ALL ON wf1 TO app;');
  });
  after(async () => {
    // Whatever a failed case left behind: the store answers again before the broker closes.
    await store?.psql(`ALTER DATABASE ${STORE_DB} ALLOW_CONNECTIONS true`, { database: 'postgres' }).catch(() => {});
    await stack?.close();
    await store?.stop();
  });

  test('control: with the store up a statement has its intent, its outcome, and its session an end and a receipt', async () => {
    const r = await query(stack.url, 'insert into wf1 values (1)');
    assert.equal(r.rowCount, 1);
    const events = await eventually('the session to end on record', async () => {
      const all = await stack.events();
      const intent = all.find((e) => e.type === 'query.intent' && String(e.detail['sql']).includes('values (1)'));
      return intent && all.some((e) => e.session === intent.session && e.type === 'session.end') ? sessionEvents(all, intent.session!) : undefined;
    });
    const intent = events.find((e) => e.type === 'query.intent')!;
    const outcome = events.find((e) => e.type === 'query' && e.detail['id'] === intent.detail['id']);
    assert.equal(outcome?.outcome?.status, 'ok');
    await eventually('the receipt', () => stack.broker.receipts.get(intent.session!));
  });

  test('wf1-01: a statement that ran while the store was down gets outcome unknown, and its session an end and a receipt, once the store is back', async () => {
    const c = new pg.Client({ connectionString: stack.url });
    c.on('error', () => {});
    await c.connect();
    const running = c.query('insert into wf1 select 2 from pg_sleep(2)');
    running.catch(() => {});
    // Its intent is durable: the statement is forwarded and runs upstream.
    const intent = await eventually('the intent on record', async () => (await stack.events()).find((e) => e.type === 'query.intent' && String(e.detail['sql']).includes('pg_sleep(2)')), 15_000);
    const session = intent.session!;
    await eventually('the statement running upstream', async () => (await stack.pg.psql("select count(*) from pg_stat_activity where query like 'insert into wf1 select 2%'")).trim() === '1');

    // The store goes away: its connections are cut and the database takes no new ones.
    await store.psql(`ALTER DATABASE ${STORE_DB} ALLOW_CONNECTIONS false; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${STORE_DB}'`, { database: 'postgres' });
    await eventually('the store to fail closed', () => stack.broker.audit.failed !== undefined);

    // The client is not told the statement completed: its outcome could not be recorded.
    await assert.rejects(running, (e: Error) => /audit log is unavailable/.test(e.message));
    await c.end().catch(() => {});
    // Control: the statement did run upstream (so the log must not leave it open).
    assert.equal((await stack.pg.psql('select count(*) from wf1 where x = 2')).trim(), '1');

    // The store comes back; the broker was never restarted.
    await store.psql(`ALTER DATABASE ${STORE_DB} ALLOW_CONNECTIONS true`, { database: 'postgres' });
    await eventually('the store to recover', () => stack.broker.audit.failed === undefined, 30_000);

    const events = await eventually(
      'the session to be closed on record',
      async () => {
        const mine = sessionEvents(await stack.events(), session);
        return mine.some((e) => e.type === 'session.end') ? mine : undefined;
      },
      20_000,
    );
    const outcomes = events.filter((e) => e.type === 'query' && e.detail['id'] === intent.detail['id']);
    assert.equal(outcomes.length, 1, 'one outcome for the intent');
    assert.equal(outcomes[0]!.outcome?.status, 'unknown');
    assert.equal(outcomes[0]!.detail['intent_seq'], intent.seq);
    const end = events.filter((e) => e.type === 'session.end');
    assert.equal(end.length, 1);
    assert.equal(end[0]!.detail['reason'], 'audit log unavailable');
    assert.equal(end[0]!.detail['unknown'], 1);
    const verified = await verifyStore(stack.broker.audit);
    assert.equal(verified.ok, true, JSON.stringify(verified));

    // Its receipt says one statement's outcome is unknown.
    const receipt = await eventually('the session receipt', () => stack.broker.receipts.get(session));
    const payload = JSON.parse(Buffer.from(receipt.envelope.payload, 'base64').toString('utf8')) as { predicate: { counts: { unknown?: number } } };
    assert.equal(payload.predicate.counts.unknown, 1);

    // Ordinary use goes on after the outage, on record.
    assert.equal((await query(stack.url, 'insert into wf1 values (3)')).rowCount, 1);
    await eventually('the later statement on record', async () => (await stack.events()).some((e) => e.type === 'query' && String(e.detail['sql']).includes('values (3)') && e.outcome?.status === 'ok'));
  });
});

const SSH_POLICIES: PolicyConfig[] = [
  { name: 'agents-ssh', subjects: { groups: ['ai-agents'] }, targets: [SSH_TARGET], rules: [{ name: 'run', ssh: { commands: ['touch *', 'sleep *'] }, effect: 'allow', extra: {} }] },
];

describe('wave 1 faults: an SSH command whose outcome cannot be recorded', { timeout: 120_000 }, () => {
  let stack: SshStack;
  let thaw: (() => void) | undefined;
  before(async () => {
    stack = await startSshStack(SSH_POLICIES);
  });
  after(async () => {
    thaw?.(); // before the broker closes: it deletes the journal
    await stack?.close();
  });

  test('control: a recorded command returns its exit status, with its outcome on record', async () => {
    const marker = join(stack.tmp.path, 'control-marker');
    const r = await stack.run('ssh', ['-F', stack.sshConfig, SSH_TARGET, `touch ${marker}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(marker), true);
    const events = await stack.events();
    const outcome = events.find((e) => e.type === 'ssh.command' && String(e.detail['command']).includes('control-marker'));
    assert.equal(outcome?.outcome?.status, 'ok');
  });

  test('wf1-02: a command that finished while its outcome could not be recorded is not reported to the client as exit status 0', async () => {
    const running = stack.run('ssh', ['-F', stack.sshConfig, SSH_TARGET, 'sleep 2'], { timeoutMs: 30_000 });
    await eventually('the intent on record', async () => (await stack.events()).some((e) => e.type === 'ssh.command.intent' && e.detail['command'] === 'sleep 2'));
    const path = stack.config.store.kind === 'sqlite' ? stack.config.store.path : '';
    thaw = freezeAuditJournal(path);
    const r = await running;
    assert.ok(stack.broker.audit.failed, 'the store failed on the outcome');
    assert.notEqual(r.code, 0, 'no exit status 0 without the outcome on record');
    assert.match(r.stderr, /AG_AUDIT_WRITE_FAILED: the audit log is unavailable, so the end of this command could not be recorded/);
  });
});

describe('wave 1 faults: the SQLite audit database removed while the broker runs', { timeout: 120_000 }, () => {
  let stack: PgStack;
  before(async () => {
    stack = await startPgStack();
    await stack.pg.psql('CREATE TABLE wf3 (x int); GRANT ALL ON wf3 TO app;');
  });
  after(async () => {
    await stack?.close();
  });

  test('wf1-03: the store fails closed instead of writing into the removed file, and the next start still holds the log', async () => {
    // Control: recorded as usual.
    assert.equal((await query(stack.url, 'insert into wf3 values (1)')).rowCount, 1);
    const control = await eventually('the control statement on record', async () => (await stack.events()).find((e) => e.type === 'query' && String(e.detail['sql']).includes('values (1)') && e.outcome?.status === 'ok'));
    // Its session's end too (written once the server closed that connection): an event still
    // to come would hit the removed file first, and the statement below would be refused unrecorded.
    await eventually('the control session\'s end on record', async () => (await stack.events()).some((e) => e.type === 'session.end' && e.session === control.session));

    const path = stack.config.store.kind === 'sqlite' ? stack.config.store.path : '';
    for (const f of [path, `${path}-wal`, `${path}-shm`]) rmSync(f, { force: true });
    assert.equal(existsSync(path), false);

    // The next events go to the writer: the file it writes is not the one on disk any more.
    // (This statement's own events are in the journal, so whether it ran is not the question.)
    await query(stack.url, 'insert into wf3 values (2)').catch(() => undefined);
    await eventually('the store to fail closed', () => stack.broker.audit.failed, 15_000);
    assert.match(String(stack.broker.audit.failed?.message), /removed or replaced/);
    assert.equal((stack.broker.audit.failed as Error & { code?: string }).code, 'AG_AUDIT_WRITE_FAILED');

    // Nothing more runs unrecorded.
    await assert.rejects(query(stack.url, 'insert into wf3 values (3)'), (e: Error) => /audit log is unavailable/.test(e.message));
    assert.equal((await stack.pg.psql('select count(*) from wf3 where x = 3')).trim(), '0');

    // The next start finds the log, not a new empty chain: the control statement is still in it.
    await stack.restartBroker();
    const events = await stack.events();
    assert.equal(events[0]?.seq, 1);
    assert.ok(events.some((e) => e.type === 'query' && String(e.detail['sql']).includes('values (1)') && e.outcome?.status === 'ok'), 'the control statement is still on record');
    assert.ok(events.some((e) => e.type === 'query.intent' && String(e.detail['sql']).includes('values (2)')), 'the statement after the removal is on record');
    const verified = await verifyStore(stack.broker.audit);
    assert.equal(verified.ok, true, JSON.stringify(verified));
  });
});

/** Parse, Bind and Execute of `sql` on the unnamed statement and portal (no Sync). */
const pipelined = (sql: string): Buffer[] => [fe.parse('', sql), fe.bind('', '', []), fe.execute('')];
const completions = (msgs: Msg[]): string[] => msgs.filter((m) => m.type === BackendType.commandComplete).map((m) => decodeCommandComplete(m.body).tag);

describe('wave 1 faults: a pipelined statement\'s completion and its outcome', { timeout: 120_000 }, () => {
  let stack: PgStack;
  let thaw: (() => void) | undefined;
  before(async () => {
    stack = await startPgStack();
    await stack.pg.psql('CREATE TABLE wf4 (x int); GRANT ALL ON wf4 TO app;');
  });
  after(async () => {
    thaw?.(); // before the broker closes: it deletes the journal
    await stack?.close();
  });

  test('control: a pipeline of two Executes and a Sync completes both, each on record', async () => {
    const c = await RawPg.login(stack.port, stack.session.secret);
    c.send(...pipelined('insert into wf4 values (1)'), fe.FLUSH, ...pipelined('select 1'), fe.SYNC);
    const msgs = await c.untilReady();
    assert.deepEqual(completions(msgs), ['INSERT 0 1', 'SELECT 1']);
    c.socket.end();
    const events = await stack.events();
    assert.equal(events.find((e) => e.type === 'query' && String(e.detail['sql']).includes('values (1)'))?.outcome?.status, 'ok');
  });

  test('wf1-04: the first Execute\'s CommandComplete is not sent while its outcome is not durable', async () => {
    const c = await RawPg.login(stack.port, stack.session.secret);
    // Flush: the server sends the first Execute's results as soon as it has them, not at the Sync.
    c.send(...pipelined('insert into wf4 select 2 from pg_sleep(1.5)'), fe.FLUSH, ...pipelined('select pg_sleep(4)'), fe.SYNC);
    await eventually('both intents on record', async () => {
      const events = await stack.events();
      return events.some((e) => e.type === 'query.intent' && String(e.detail['sql']).includes('pg_sleep(1.5)')) && events.some((e) => e.type === 'query.intent' && String(e.detail['sql']).includes('pg_sleep(4)'));
    });
    const path = stack.config.store.kind === 'sqlite' ? stack.config.store.path : '';
    thaw = freezeAuditJournal(path);
    const msgs = await c.untilClosed(20_000);
    assert.ok(stack.broker.audit.failed, 'the store failed on the outcome');
    assert.deepEqual(completions(msgs), [], 'no statement reported complete without its outcome on record');
    const errors = msgs.filter((m) => m.type === BackendType.errorResponse).map((m) => decodeErrorResponse(m.body));
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.severity, 'FATAL');
    assert.match(errors[0]!.message, /audit log is unavailable/);
  });
});
