/**
 * What one broker learns of a target's masked data reaches another on the same PostgreSQL
 * store — all real parts: two broker processes, a real `agentgate connect` through each, one
 * OIDC issuer, PostgreSQL 15 for the target and for the store.
 * - A copy of a masked column made through one broker reads masked through the other. Before
 *   the taint was shared, broker B (which never saw the write) returned the copy raw.
 * - A view replaced through one broker is read by its new definition in a session of the
 *   other that cached the old one. Before schema changes were told, B's session read the
 *   masked column raw through the view for as long as its cache lived.
 */
import { after, before, test } from 'node:test';
import pg from 'pg';
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { eventually } from '../helpers/eventually.js';
import { loadBrokerConfig } from '../../src/broker/config/load.js';
import { ensureBrokerKeys } from '../../src/broker/keys.js';
import { FINGERPRINT, freePort, run, spawnCli, storeBrokerYaml, type Proc } from './broker-procs.js';

const EMAIL = 'zqvkx.mellor@victim.example';

let target: PgServer;
let storeDb: PgServer;
let issuer: TestIssuer;
let dir: string;
const procs: Proc[] = [];
let viaA: string;
let viaB: string;

before(async () => {
  [target, storeDb, issuer] = await Promise.all([startPostgres(), startPostgres(), startTestIssuer()]);
  dir = await mkdtemp(join(tmpdir(), 'agentgate-shared-taint-'));
  await target.psql(`CREATE TABLE users (id int PRIMARY KEY, email text); INSERT INTO users VALUES (1, '${EMAIL}');
    CREATE SCHEMA scratch AUTHORIZATION app; GRANT SELECT ON users TO app;`);
  [viaA, viaB] = await startBrokers();
});

after(async () => {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await target?.stop();
  await storeDb?.stop();
  await issuer?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Brokers A and B on one store, and a `connect` through each: their local URLs. */
async function startBrokers(): Promise<[string, string]> {
  const ports = { a: await freePort(), b: await freePort() };
  const configPath = async (name: 'a' | 'b'): Promise<string> => {
    const path = join(dir, `agentgate-${name}.yaml`);
    await writeFile(
      path,
      storeBrokerYaml({
        port: ports[name],
        stateDir: join(dir, `state-${name}`),
        issuer: issuer.issuer,
        targetPort: target.port,
        rules: ['{ effect: allow }'],
        extra: ['masking:', '  pg: { columns: [users.email], style: full }'],
      }),
      { mode: 0o600 },
    );
    return path;
  };
  const brokerEnv = { PATH: process.env['PATH'], HOME: dir, PG_PASSWORD: target.password, AG_STORE_URL: storeDb.url() };
  await ensureBrokerKeys(await loadBrokerConfig(await configPath('a'), { env: brokerEnv }));
  await cp(join(dir, 'state-a'), join(dir, 'state-b'), { recursive: true });
  const startBroker = async (name: 'a' | 'b'): Promise<string> => {
    const proc = spawnCli(['broker', 'start', '--config', await configPath(name)], brokerEnv);
    procs.push(proc);
    await eventually(`broker ${name} listening`, () => (proc.child.exitCode !== null ? assert.fail(proc.err) : /listening on https:/.test(proc.err)), 20_000);
    const fingerprint = FINGERPRINT.exec(proc.err)?.[0];
    assert.ok(fingerprint, proc.err);
    return fingerprint;
  };
  const [fpA, fpB] = await Promise.all([startBroker('a'), startBroker('b')]);
  const token = await issuer.sign({ sub: 'agent-copier', groups: ['ai-agents'] }, { expiresIn: 3600 });
  const connect = async (name: 'a' | 'b', fingerprint: string): Promise<string> => {
    const proc = spawnCli(['connect', 'pg', '--port', '0', '--json', '--receipt-dir', join(dir, `receipts-${name}`)], {
      PATH: process.env['PATH'],
      HOME: dir,
      XDG_CONFIG_HOME: join(dir, `xdg-${name}`),
      XDG_STATE_HOME: join(dir, `xdg-state-${name}`),
      AGENTGATE_BROKER: `https://127.0.0.1:${ports[name]}`,
      AGENTGATE_FINGERPRINT: fingerprint,
      AGENTGATE_TOKEN: token,
      AGENTGATE_KEYCHAIN: 'off',
    });
    procs.push(proc);
    await eventually(`the connection details from ${name}`, () => proc.out.trim().endsWith('}') || (proc.child.exitCode !== null && assert.fail(proc.err)), 20_000);
    return (JSON.parse(proc.out) as { url: string }).url;
  };
  return Promise.all([connect('a', fpA), connect('b', fpB)]);
}

test('a copy of a masked column written through broker A reads masked through broker B', async () => {
  // Both brokers mask the column itself.
  for (const url of [viaA, viaB]) assert.notEqual((await run(url, 'SELECT email FROM users'))[0]?.['email'], EMAIL);
  // Through B, a relation nobody copied anything into reads as it is (control).
  await run(viaB, "CREATE TABLE scratch.clean AS SELECT 'plain@example.org'::text AS x");
  assert.equal((await run(viaB, 'SELECT x FROM scratch.clean'))[0]?.['x'], 'plain@example.org');

  // The copy is made through A; its rows hold the raw value (read directly).
  await run(viaA, 'CREATE TABLE scratch.copy AS SELECT email AS x FROM users');
  assert.equal((await target.psql('SELECT x FROM scratch.copy')).trim(), EMAIL);
  // A masks its own copy; B, which never saw the write, masks it too.
  const throughA = (await run(viaA, 'SELECT x FROM scratch.copy'))[0]?.['x'];
  const throughB = (await run(viaB, 'SELECT x FROM scratch.copy'))[0]?.['x'];
  assert.notEqual(throughA, EMAIL, 'masked through A');
  assert.notEqual(throughB, EMAIL, 'masked through B');
  assert.equal(throughB, throughA, 'the same mask through both');
  // The taint is in the store, once.
  assert.equal((await storeDb.psql("SELECT string_agg(name, ',') FROM written_relations WHERE target = 'pg'")).trim(), 'copy');
});

test('a view replaced through broker A is read by its new definition in a session of broker B that cached the old one', async () => {
  const LOCAL = EMAIL.split('@')[0]!;
  await run(viaA, "CREATE VIEW scratch.v AS SELECT id, 'plain'::text AS x FROM users");
  const b = new pg.Client({ connectionString: viaB });
  b.on('error', () => {});
  await b.connect();
  try {
    const read = async (): Promise<unknown> => (await b.query('SELECT x FROM scratch.v'))?.rows[0]?.['x'];
    // B's session resolves the view, and caches its definition.
    assert.equal(await read(), 'plain');
    await run(viaA, `CREATE OR REPLACE VIEW scratch.v AS SELECT id, split_part(email, '@', 1) AS x FROM users`);
    // CONTROL: the view now returns the local part (read directly).
    assert.equal((await target.psql('SELECT x FROM scratch.v')).trim(), LOCAL);
    // Told within milliseconds; without the note B's session kept its cache for 30 s.
    await eventually('B to read the replaced view masked', async () => {
      const x = await read();
      return typeof x === 'string' && x !== 'plain' && !x.includes(LOCAL);
    }, 10_000);
  } finally {
    await b.end().catch(() => {});
  }
});
