/**
 * No statement without a record, across a crash: a real broker process is killed with
 * SIGKILL under an insert workload (client-side ids, through a real `agentgate connect`)
 * while one statement is known to be running upstream, then restarted on the same state.
 * Every row the database committed must have its statement's intent in the log, every
 * acknowledged insert its outcome, and the statement the kill cut off an outcome that says
 * `unknown`, in a session ended with reason `broker stopped` and given a receipt.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { eventually } from '../helpers/eventually.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));
const FINGERPRINT = /\b(?:[0-9A-F]{2}:){31}[0-9A-F]{2}\b/;

interface Proc {
  child: ChildProcess;
  out: string;
  err: string;
  exit: Promise<number | null>;
}

function spawnCli(args: string[], env: NodeJS.ProcessEnv): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { child, out: '', err: '', exit: new Promise((done) => child.on('close', done)) };
  child.stdout?.on('data', (d: Buffer) => (p.out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (p.err += d.toString()));
  return p;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

let db: PgServer;
let issuer: TestIssuer;
let dir: string;
const procs: Proc[] = [];

before(async () => {
  db = await startPostgres();
  issuer = await startTestIssuer();
  dir = await mkdtemp(join(tmpdir(), 'agentgate-crash-'));
  await db.psql('CREATE TABLE items (id text PRIMARY KEY); GRANT ALL ON items TO app;');
});

after(async () => {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await db?.stop();
  await issuer?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('SIGKILL under load: every committed row has its intent, the cut-off statement reads unknown, and the session gets its end and receipt', async () => {
  const port = await freePort();
  const configPath = join(dir, 'agentgate.yaml');
  await writeFile(
    configPath,
    [
      `listen: 127.0.0.1:${port}`,
      `state_dir: ${join(dir, 'state')}`,
      'identity:',
      `  issuer: ${issuer.issuer}`,
      '  audience: agentgate',
      '  client_id: agentgate-cli',
      '  agent_groups: [ai-agents]',
      'targets:',
      '  pg:',
      '    type: postgres',
      '    host: 127.0.0.1',
      `    port: ${db.port}`,
      '    database: app',
      '    user: app',
      '    password: ${env:PG_PASSWORD}',
      '    tls: disable',
      'policies:',
      '  - name: agents',
      '    subjects: { groups: [ai-agents] }',
      '    targets: [pg]',
      '    rules:',
      '      - { effect: allow }',
      'auditors: { groups: [security] }',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const brokerEnv = { PATH: process.env['PATH'], HOME: dir, PG_PASSWORD: db.password };
  const startBroker = async (): Promise<{ proc: Proc; fingerprint: string }> => {
    const proc = spawnCli(['broker', 'start', '--config', configPath], brokerEnv);
    procs.push(proc);
    await eventually('the broker listening', () => proc.child.exitCode === null && /listening on https:/.test(proc.err) ? true : proc.child.exitCode !== null ? assert.fail(proc.err) : false, 20_000);
    const fingerprint = FINGERPRINT.exec(proc.err)?.[0];
    assert.ok(fingerprint, proc.err);
    return { proc, fingerprint };
  };

  const first = await startBroker();
  const agentToken = await issuer.sign({ sub: 'agent-crash', groups: ['ai-agents'] }, { expiresIn: 3600 });
  const cliEnv = (token: string): NodeJS.ProcessEnv => ({
    PATH: process.env['PATH'],
    HOME: dir,
    XDG_CONFIG_HOME: join(dir, 'xdg'),
    XDG_STATE_HOME: join(dir, 'xdg-state'),
    AGENTGATE_BROKER: `https://127.0.0.1:${port}`,
    AGENTGATE_FINGERPRINT: first.fingerprint,
    AGENTGATE_TOKEN: token,
    AGENTGATE_KEYCHAIN: 'off',
  });
  const connect = spawnCli(['connect', 'pg', '--port', '0', '--json', '--receipt-dir', join(dir, 'receipts')], cliEnv(agentToken));
  procs.push(connect);
  await eventually('the connection details', () => connect.out.trim().endsWith('}') || (connect.child.exitCode !== null && assert.fail(connect.err)), 20_000);
  const { url } = JSON.parse(connect.out) as { url: string };

  // A statement that is running upstream when the broker dies: its intent was durable
  // before it was forwarded, and it commits after the broker is gone.
  const slow = new pg.Client({ connectionString: url });
  slow.on('error', () => {});
  await slow.connect();
  const slowDone = slow.query("INSERT INTO items SELECT 'slow-1' FROM pg_sleep(1.5)").then(
    () => 'acknowledged',
    () => 'cut off',
  );
  await eventually('the slow insert running upstream', async () => (await db.psql("select count(*) from pg_stat_activity where query like '%pg_sleep(1.5)%' and pid <> pg_backend_pid()")).trim() === '1');

  // Writers with client-side ids, each insert its own simple Query.
  const acked: string[] = [];
  let stop = false;
  const writer = async (w: number): Promise<void> => {
    const c = new pg.Client({ connectionString: url });
    c.on('error', () => {});
    await c.connect();
    for (let n = 0; !stop; n++) {
      const id = `w${w}-${n}`;
      try {
        await c.query(`INSERT INTO items VALUES ('${id}')`);
        acked.push(id);
      } catch {
        return; // the broker died under it
      }
    }
  };
  const writers = [0, 1, 2, 3].map((w) => writer(w));
  await eventually('some acknowledged inserts', () => acked.length >= 100);
  first.proc.child.kill('SIGKILL');
  await first.proc.exit;
  stop = true;
  await Promise.all(writers);
  assert.equal(await slowDone, 'cut off');
  // The database finishes the statement without the broker.
  await eventually('the slow insert committed upstream', async () => (await db.psql("select count(*) from items where id = 'slow-1'")).trim() === '1');

  // Restart on the same state: the interrupted sessions are closed on record.
  const second = await startBroker();
  const auditorToken = await issuer.sign({ sub: 'auditor-1', groups: ['security'] }, { expiresIn: 3600 });
  const exportPath = join(dir, 'audit.jsonl');
  const exp = spawnCli(['audit', 'export', '--out', exportPath], { ...cliEnv(auditorToken), AGENTGATE_FINGERPRINT: second.fingerprint });
  assert.equal(await exp.exit, 0, exp.err);
  const verify = spawnCli(['audit', 'verify', exportPath], cliEnv(auditorToken));
  assert.equal(await verify.exit, 0, verify.err + verify.out);

  const events = (await readFile(exportPath, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as AuditRecord);
  const intents = events.filter((e) => e.type === 'query.intent');
  const outcomes = new Map(events.filter((e) => e.type === 'query').map((e) => [`${e.session}#${String(e.detail['id'])}`, e]));

  // Every row the database holds was on record before it reached the database.
  const rows = (await db.psql('select id from items order by id')).trim().split('\n');
  assert.ok(rows.length >= 101);
  for (const id of rows) assert.ok(intents.some((e) => String(e.detail['sql']).includes(`'${id}'`)), `row ${id} has its intent on record`);
  // Every acknowledged insert has its outcome, ok.
  for (const id of acked) {
    const intent = intents.find((e) => String(e.detail['sql']).includes(`'${id}'`));
    assert.equal(outcomes.get(`${intent?.session}#${String(intent?.detail['id'])}`)?.outcome?.status, 'ok', `acknowledged ${id} has its outcome`);
  }
  // Every intent has an outcome now; the slow one's is unknown.
  for (const i of intents) assert.ok(outcomes.has(`${i.session}#${String(i.detail['id'])}`), `intent ${String(i.detail['sql'])} has an outcome`);
  const slowIntent = intents.find((e) => String(e.detail['sql']).includes('slow-1'));
  assert.ok(slowIntent);
  const slowOutcome = outcomes.get(`${slowIntent.session}#${String(slowIntent.detail['id'])}`);
  assert.equal(slowOutcome?.outcome?.status, 'unknown');
  assert.equal(slowOutcome?.detail['intent_seq'], slowIntent.seq);
  // Each session the kill interrupted is ended on record, after the restart.
  const starts = events.filter((e) => e.type === 'session.start' && e.detail['protocol'] === 'postgres');
  assert.equal(starts.length, 5);
  for (const s of starts) {
    const end = events.find((e) => e.type === 'session.end' && e.session === s.session);
    assert.equal(end?.detail['reason'], 'broker stopped', `session ${s.session} ended by the stop`);
  }
  const slowEnd = events.find((e) => e.type === 'session.end' && e.session === slowIntent.session);
  assert.equal(slowEnd?.detail['unknown'], 1);

  // The CLI reconnects to the restarted broker and collects the receipts at Ctrl-C,
  // the interrupted sessions' among them: the slow one's counts its unknown statement.
  connect.child.kill('SIGINT');
  assert.equal(await connect.exit, 0, connect.err);
  const receiptFile = new RegExp(`receipt \\S+: (\\S+${slowIntent.session}\\S*)`).exec(connect.err)?.[1];
  assert.ok(receiptFile, connect.err);
  const envelope = JSON.parse(await readFile(receiptFile, 'utf8')) as { payload: string };
  const statement = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as { predicate: { counts: { unknown?: number }; session: string } };
  assert.equal(statement.predicate.session, slowIntent.session);
  assert.equal(statement.predicate.counts.unknown, 1);

  second.proc.child.kill('SIGTERM');
  assert.equal(await second.proc.exit, 0, second.proc.err);
});
