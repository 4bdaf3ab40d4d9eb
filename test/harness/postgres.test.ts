import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startPostgres, type PgServer } from '../helpers/postgres.js';

const servers: PgServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

async function start(...args: Parameters<typeof startPostgres>): Promise<{ server: PgServer; ms: number }> {
  const t0 = performance.now();
  const server = await startPostgres(...args);
  servers.push(server);
  return { server, ms: performance.now() - t0 };
}

async function queryOne(config: pg.ClientConfig, sql: string): Promise<Record<string, unknown>> {
  const client = new pg.Client(config);
  await client.connect();
  try {
    const res = await client.query(sql);
    assert.equal(res.rows.length, 1);
    return res.rows[0] as Record<string, unknown>;
  } finally {
    await client.end();
  }
}

/** True when something accepts TCP connections on the port. */
function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('startPostgres', { timeout: 60_000 }, () => {
  test('scram-sha-256: psql and pg connect, wrong password is refused, stop cleans up', async () => {
    const { server, ms } = await start();
    assert.ok(ms < 5000, `startup took ${Math.round(ms)} ms`);
    assert.equal(server.auth, 'scram-sha-256');

    assert.equal(await server.psql('select 1'), '1\n');
    assert.equal(await server.psql("select rolpassword like 'SCRAM-SHA-256$%' from pg_authid where rolname = 'app'"), 't\n');
    assert.equal(await server.psql("select pg_catalog.pg_get_userbyid(datdba) from pg_database where datname = 'app'"), 'app\n');
    await assert.rejects(server.psql('select from no_such_table'), /no_such_table/);

    const row = await queryOne({ connectionString: server.url() }, 'select 1 as one, current_user as who, current_database() as db');
    assert.deepEqual(row, { one: 1, who: 'app', db: 'app' });
    const su = await queryOne({ connectionString: server.url('postgres') }, 'select current_user as who');
    assert.equal(su.who, 'postgres');

    // The host rule really checks the password (a trust setup would let this through).
    await assert.rejects(
      queryOne({ host: server.host, port: server.port, user: 'app', password: 'wrong', database: 'app' }, 'select 1'),
      (e: Error & { code?: string }) => e.code === '28P01',
    );

    const port = server.port;
    await server.stop();
    await server.stop(); // idempotent
    assert.equal(existsSync(server.dir), false);
    assert.equal(await accepting(port), false);
  });

  test('md5: the password is stored as md5 and pg authenticates with it', async () => {
    const { server } = await start({ auth: 'md5' });
    assert.equal(await server.psql("select left(rolpassword, 3) from pg_authid where rolname = 'app'"), 'md5\n');
    const row = await queryOne({ connectionString: server.url() }, 'select 1 as one');
    assert.equal(row.one, 1);
    await assert.rejects(
      queryOne({ host: server.host, port: server.port, user: 'app', password: 'wrong', database: 'app' }, 'select 1'),
      (e: Error & { code?: string }) => e.code === '28P01',
    );
    await server.stop();
  });

  test('ssl: verify-full against the generated CA succeeds; an unknown CA is refused', async () => {
    const { server } = await start({ ssl: true, auth: 'password' });
    assert.ok(server.caPath);
    const ca = readFileSync(server.caPath, 'utf8');
    const base = { host: server.host, port: server.port, user: server.user, password: server.password, database: server.database };

    // Node checks the certificate chain and that 127.0.0.1 is in the certificate's SANs.
    const row = await queryOne({ ...base, ssl: { ca, rejectUnauthorized: true } },
      'select ssl from pg_stat_ssl where pid = pg_backend_pid()');
    assert.equal(row.ssl, true);
    const byName = await queryOne({ ...base, host: 'localhost', ssl: { ca, rejectUnauthorized: true } }, 'select 1 as one');
    assert.equal(byName.one, 1);

    await assert.rejects(queryOne({ ...base, ssl: { rejectUnauthorized: true } }, 'select 1'), /self[- ]signed|unable to (get|verify)/i);
    await server.stop();
  });

  test('a process that crashes without stop() leaves no server or temp dir behind', async () => {
    const script = fileURLToPath(new URL('./fixtures/crash-with-server.js', import.meta.url));
    const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      execFile(process.execPath, [script], (err, out) => resolve({ code: err ? (err as { code?: number }).code ?? 1 : 0, stdout: out }));
    });
    assert.notEqual(code, 0);
    const { port, dir } = JSON.parse(stdout.trim()) as { port: number; dir: string };
    assert.equal(existsSync(dir), false);
    // The postmaster got SIGQUIT from the hook; give it a moment to release the port.
    const deadline = Date.now() + 5000;
    while ((await accepting(port)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await accepting(port), false);
  });
});
