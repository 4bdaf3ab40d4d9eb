/**
 * Several brokers on one PostgreSQL store, all real parts: two broker processes (separate
 * ports and state directories) started at once on an empty store database (a PostgreSQL
 * 15 of its own, not the target's), a real `agentgate connect` through each, one OIDC
 * issuer. Statements through both land in one chain that an export through either holds
 * and `audit verify` accepts; a statement held on one is approved through the other (and
 * not by its requester); the store stopped mid-load refuses statements and serves
 * them again once it is back, without a broker restart; `kill -9` of one broker under a
 * write workload leaves every committed row with its intent on record, the CLI (given both
 * brokers) reconnects to the other with its local listener up, and the killed broker's
 * restart closes only its own sessions.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Agent, request } from 'undici';
import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { eventually } from '../helpers/eventually.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';
import { FINGERPRINT, freePort, run, spawnCli, storeBrokerYaml, type Proc } from './broker-procs.js';
import { loadBrokerConfig } from '../../src/broker/config/load.js';
import { ensureBrokerKeys } from '../../src/broker/keys.js';

let target: PgServer;
let storeDb: PgServer;
let issuer: TestIssuer;
let dir: string;
const procs: Proc[] = [];

before(async () => {
  [target, storeDb, issuer] = await Promise.all([startPostgres(), startPostgres(), startTestIssuer()]);
  dir = await mkdtemp(join(tmpdir(), 'agentgate-two-brokers-'));
  await target.psql('CREATE TABLE items (id text PRIMARY KEY); GRANT ALL ON items TO app;');
});

after(async () => {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await target?.stop();
  await storeDb?.stop();
  await issuer?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('two brokers on one PostgreSQL store: one chain, fail closed while the store is down, kill -9 of one', async () => {
  const brokers = { a: { port: await freePort() }, b: { port: await freePort() } };
  const configPath = async (name: 'a' | 'b'): Promise<string> => {
    const path = join(dir, `agentgate-${name}.yaml`);
    await writeFile(
      path,
      storeBrokerYaml({
        port: brokers[name].port,
        stateDir: join(dir, `state-${name}`),
        issuer: issuer.issuer,
        targetPort: target.port,
        rules: ['{ name: agent-deletes, sql: [delete], effect: review, approvers: { groups: [dba], count: 1 } }', '{ effect: allow }'],
        extra: ['auditors: { groups: [security] }'],
      }),
      { mode: 0o600 },
    );
    return path;
  };
  const storeUrl = storeDb.url();
  const brokerEnv = { PATH: process.env['PATH'], HOME: dir, PG_PASSWORD: target.password, AG_STORE_URL: storeUrl };
  const startBroker = async (name: 'a' | 'b'): Promise<{ proc: Proc; fingerprint: string }> => {
    const proc = spawnCli(['broker', 'start', '--config', await configPath(name)], brokerEnv);
    procs.push(proc);
    await eventually(`broker ${name} listening`, () => proc.child.exitCode === null && /listening on https:/.test(proc.err) ? true : proc.child.exitCode !== null ? assert.fail(proc.err) : false, 20_000);
    const fingerprint = FINGERPRINT.exec(proc.err)?.[0];
    assert.ok(fingerprint, proc.err);
    // The store URL is a secret: never in the log.
    assert.ok(!proc.err.includes(storeDb.password), 'the store password stays out of the log');
    return { proc, fingerprint };
  };

  // Behind one address the brokers share their key material (README): A's, made once, copied to B.
  await ensureBrokerKeys(await loadBrokerConfig(await configPath('a'), { env: brokerEnv }));
  await cp(join(dir, 'state-a'), join(dir, 'state-b'), { recursive: true });
  // Both start at once on an empty store: one migrates, the other waits and finds it done.
  let [a, b] = await Promise.all([startBroker('a'), startBroker('b')]);
  assert.equal(a.fingerprint, b.fingerprint);
  assert.equal((await storeDb.psql('SELECT count(*) = count(DISTINCT version) AND max(version) = count(*) FROM agentgate_schema')).trim(), 't');

  const agentToken = await issuer.sign({ sub: 'agent-many', groups: ['ai-agents'] }, { expiresIn: 3600 });
  const auditorToken = await issuer.sign({ sub: 'auditor-1', groups: ['security'] }, { expiresIn: 3600 });
  const cliEnv = (name: 'a' | 'b' | 'a,b', fingerprint: string, token: string): NodeJS.ProcessEnv => ({
    PATH: process.env['PATH'],
    HOME: dir,
    XDG_CONFIG_HOME: join(dir, `xdg-${name}`),
    XDG_STATE_HOME: join(dir, `xdg-state-${name}`),
    AGENTGATE_BROKER: name.split(',').map((n) => `https://127.0.0.1:${brokers[n as 'a' | 'b'].port}`).join(','),
    AGENTGATE_FINGERPRINT: fingerprint,
    AGENTGATE_TOKEN: token,
    AGENTGATE_KEYCHAIN: 'off',
  });
  const connect = async (name: 'a' | 'b' | 'a,b', fingerprint: string): Promise<{ proc: Proc; url: string }> => {
    const proc = spawnCli(['connect', 'pg', '--port', '0', '--json', '--receipt-dir', join(dir, `receipts-${name}`)], cliEnv(name, fingerprint, agentToken));
    procs.push(proc);
    await eventually(`the connection details from ${name}`, () => proc.out.trim().endsWith('}') || (proc.child.exitCode !== null && assert.fail(proc.err)), 20_000);
    return { proc, url: (JSON.parse(proc.out) as { url: string }).url };
  };
  // The CLI is given both brokers, A first: it connects to A and fails over to B.
  const viaA = await connect('a,b', a.fingerprint);
  const viaB = await connect('b', b.fingerprint);

  // Statements through both brokers.
  await run(viaA.url, "INSERT INTO items VALUES ('a-1')");
  await run(viaB.url, "INSERT INTO items VALUES ('b-1')");

  const exportThrough = async (name: 'a' | 'b', fingerprint: string, file: string): Promise<AuditRecord[]> => {
    const path = join(dir, file);
    const exp = spawnCli(['audit', 'export', '--out', path], cliEnv(name, fingerprint, auditorToken));
    assert.equal(await exp.exit, 0, exp.err);
    const verify = spawnCli(['audit', 'verify', path], cliEnv(name, fingerprint, auditorToken));
    assert.equal(await verify.exit, 0, verify.err + verify.out);
    return (await readFile(path, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as AuditRecord);
  };
  const sqlOf = (events: AuditRecord[], type: string): string[] => events.filter((e) => e.type === type).map((e) => String(e.detail['sql']));
  for (const [name, fp] of [['a', a.fingerprint], ['b', b.fingerprint]] as const) {
    const events = await exportThrough(name, fp, `export-1-${name}.jsonl`);
    const intents = sqlOf(events, 'query.intent');
    assert.ok(intents.some((s) => s.includes("'a-1'")), `the export through ${name} holds A's statement`);
    assert.ok(intents.some((s) => s.includes("'b-1'")), `the export through ${name} holds B's statement`);
  }

  // A statement held on A is listed and approved through B, and A releases it at once.
  const reviewerToken = await issuer.sign({ sub: 'dba-1', groups: ['dba'] }, { expiresIn: 3600 });
  const heldClient = new pg.Client({ connectionString: viaA.url });
  heldClient.on('error', () => {});
  await heldClient.connect();
  const heldDelete = heldClient.query("DELETE FROM items WHERE id = 'a-1'");
  const pending = await eventually('the held request listed through B', async () => {
    const list = spawnCli(['requests', '--json'], cliEnv('b', b.fingerprint, reviewerToken));
    assert.equal(await list.exit, 0, list.err);
    return (JSON.parse(list.out) as { requests: { id: string; statement: string; can_decide: boolean }[] }).requests.find((r) => r.statement.includes("'a-1'"));
  });
  assert.equal(pending.can_decide, true);
  // The requester may not approve their own statement, through any broker.
  const self = spawnCli(['approve', pending.id, '--approve'], cliEnv('b', b.fingerprint, agentToken));
  assert.equal(await self.exit, 4, self.err);
  assert.match(self.err, /cannot decide it/);
  const approve = spawnCli(['approve', pending.id, '--approve', '--json'], cliEnv('b', b.fingerprint, reviewerToken));
  assert.equal(await approve.exit, 0, approve.err);
  assert.equal((JSON.parse(approve.out) as { status: string }).status, 'approved');
  assert.equal((await heldDelete).rowCount, 1);
  await heldClient.end();
  assert.equal((await target.psql("SELECT count(*) FROM items WHERE id = 'a-1'")).trim(), '0');

  // Readiness for the load balancer follows the store.
  const tls = new Agent({ connect: { ca: await readFile(join(dir, 'state-a', 'tls.crt'), 'utf8') } });
  const ready = async (name: 'a' | 'b'): Promise<number> => {
    const r = await request(`https://127.0.0.1:${brokers[name].port}/readyz`, { dispatcher: tls });
    await r.body.dump();
    return r.statusCode;
  };
  assert.deepEqual([await ready('a'), await ready('b')], [200, 200]);

  // The store goes down: statements are refused, with the reason, and nothing runs.
  await storeDb.halt();
  await assert.rejects(run(viaA.url, "INSERT INTO items VALUES ('during-outage')"), /audit log is unavailable/);
  await assert.rejects(run(viaB.url, "INSERT INTO items VALUES ('during-outage-b')"), /audit log is unavailable/);
  assert.equal((await target.psql("SELECT count(*) FROM items WHERE id LIKE 'during-outage%'")).trim(), '0');
  assert.deepEqual([await ready('a'), await ready('b')], [503, 503]);
  // Back up: both brokers serve again, without a restart.
  await storeDb.restart();
  await eventually('A serving again', async () => (await run(viaA.url, "INSERT INTO items VALUES ('after-outage-a')").then(() => true, () => false)) || undefined, 20_000);
  await eventually('B serving again', async () => (await run(viaB.url, "INSERT INTO items VALUES ('after-outage-b')").then(() => true, () => false)) || undefined, 20_000);
  assert.equal(a.proc.child.exitCode, null);
  assert.equal(b.proc.child.exitCode, null);
  assert.deepEqual([await ready('a'), await ready('b')], [200, 200]);

  // A session on B that stays open across A's crash and restart.
  const onB = new pg.Client({ connectionString: viaB.url });
  onB.on('error', () => {});
  await onB.connect();
  await onB.query("INSERT INTO items VALUES ('b-long-1')");

  // kill -9 of A under a write workload with client-side ids.
  const acked: string[] = [];
  let stop = false;
  const writer = async (w: number): Promise<void> => {
    const c = new pg.Client({ connectionString: viaA.url });
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
  await eventually('some acknowledged inserts through A', () => acked.length >= 100);
  a.proc.child.kill('SIGKILL');
  await a.proc.exit;
  stop = true;
  await Promise.all(writers);

  // The CLI reconnects to B by itself; its local listener stayed up, so the same URL serves.
  await eventually('served through B while A is down', async () => (await run(viaA.url, "INSERT INTO items VALUES ('after-failover')").then(() => true, () => false)) || undefined, 30_000);
  assert.equal(viaA.proc.child.exitCode, null, 'the connect session stayed up');

  // A restarts on its state directory: it closes the sessions it left open, and only those.
  a = await startBroker('a');
  await onB.query("INSERT INTO items VALUES ('b-long-2')");
  await onB.end();

  const events = await exportThrough('b', b.fingerprint, 'export-2.jsonl');
  const intents = events.filter((e) => e.type === 'query.intent');
  const outcomes = new Map(events.filter((e) => e.type === 'query').map((e) => [`${e.session}#${String(e.detail['id'])}`, e]));
  const rows = (await target.psql('SELECT id FROM items ORDER BY id')).trim().split('\n');
  assert.ok(rows.length >= 106);
  assert.ok(rows.includes('after-failover'));
  for (const id of rows) assert.ok(intents.some((e) => String(e.detail['sql']).includes(`'${id}'`)), `row ${id} has its intent on record`);
  for (const id of acked) {
    const intent = intents.find((e) => String(e.detail['sql']).includes(`'${id}'`));
    assert.equal(outcomes.get(`${intent?.session}#${String(intent?.detail['id'])}`)?.outcome?.status, 'ok', `acknowledged ${id} has its outcome`);
  }
  // Every intent has its outcome now, the ones A's crash cut off included.
  for (const i of intents) assert.ok(outcomes.has(`${i.session}#${String(i.detail['id'])}`), `intent ${String(i.detail['sql'])} has an outcome`);
  // B's long session was not A's to close: no "broker stopped" end for it.
  const bLong = intents.find((e) => String(e.detail['sql']).includes("'b-long-1'"));
  assert.ok(bLong);
  const bLongEnd = events.find((e) => e.type === 'session.end' && e.session === bLong.session);
  assert.notEqual(bLongEnd?.detail['reason'], 'broker stopped');
  // The writers' sessions on A were closed by A's restart.
  const writerSessions = new Set(intents.filter((e) => /'w\d-/.test(String(e.detail['sql']))).map((e) => e.session));
  assert.equal(writerSessions.size, 4);
  for (const s of writerSessions) {
    assert.equal(events.find((e) => e.type === 'session.end' && e.session === s)?.detail['reason'], 'broker stopped', `session ${s} ended by the stop`);
  }

  for (const p of [viaA.proc, viaB.proc]) p.child.kill('SIGINT');
  await Promise.all([viaA.proc.exit, viaB.proc.exit]);
  await tls.close();
  for (const br of [a, b]) {
    br.proc.child.kill('SIGTERM');
    assert.equal(await br.proc.exit, 0, br.proc.err);
  }
});
