/**
 * The broker's client side against a real PostgreSQL 15: a raw socket, our builders and
 * BackendReader, ScramClient for SCRAM roles and md5Password for md5 roles. Also checks
 * that verifiers we derive equal the ones PostgreSQL stores, SASLprep included.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';

import * as fe from '../../src/broker/postgres/build-frontend.js';
import * as dbe from '../../src/broker/postgres/decode-backend.js';
import { md5Password } from '../../src/broker/postgres/md5.js';
import { AuthCode, BackendType, SCRAM_SHA_256 } from '../../src/broker/postgres/protocol.js';
import { BackendReader } from '../../src/broker/postgres/reader.js';
import { ScramClient, ScramServer, makeScramVerifier, parseScramVerifier } from '../../src/broker/postgres/scram.js';
import { startPostgres } from '../helpers/postgres.js';
import type { PgServer } from '../helpers/postgres.js';
import { snapshot } from './helpers.js';
import type { Seen } from './helpers.js';

/** A socket plus a BackendReader, read one message at a time. */
class Upstream {
  readonly #socket: Socket;
  readonly reader = new BackendReader();
  readonly #queue: Seen[] = [];
  #waiter: ((m: Seen | Error) => void) | undefined;
  #failure: Error | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => {
      try {
        this.reader.push(chunk, (m) => this.#deliver(snapshot(m)));
      } catch (e) {
        this.#fail(e as Error);
      }
    });
    socket.on('error', (e) => this.#fail(e));
    socket.on('close', () => this.#fail(new Error('connection closed')));
  }

  static open(port: number): Promise<Upstream> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(new Upstream(socket)));
      socket.once('error', reject);
    });
  }

  #deliver(m: Seen): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    if (w) w(m);
    else this.#queue.push(m);
  }

  #fail(e: Error): void {
    this.#failure ??= e;
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.(e);
  }

  next(): Promise<Seen> {
    const m = this.#queue.shift();
    if (m) return Promise.resolve(m);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#waiter = (v) => (v instanceof Error ? reject(v) : resolve(v));
    });
  }

  write(bytes: Buffer): void {
    this.#socket.write(bytes);
  }

  close(): void {
    this.#socket.end(fe.TERMINATE);
    this.#socket.destroy();
  }
}

interface Session {
  upstream: Upstream;
  params: Map<string, string>;
  processId: number;
  method: 'scram' | 'md5';
}

function expectAuth(m: Seen, code: number): Buffer {
  if (m.type === BackendType.errorResponse) {
    const f = dbe.decodeErrorResponse(m.body);
    throw Object.assign(new Error(f.message), { sqlState: f.code });
  }
  assert.equal(m.type, BackendType.authentication);
  const auth = dbe.decodeAuthentication(m.body);
  assert.equal(auth.code, code);
  return auth.data;
}

/** SSLRequest (declined), StartupMessage, then whichever password method the server picks. */
async function login(port: number, user: string, password: string): Promise<Session> {
  const upstream = await Upstream.open(port);
  try {
    upstream.reader.expectSslReply();
    upstream.write(fe.SSL_REQUEST);
    const reply = await upstream.next();
    assert.equal(reply.type, 0x4e); // 'N': this server has no TLS

    upstream.write(fe.startupMessage({ user, database: 'app', application_name: 'agentgate-test' }));
    const first = await upstream.next();
    assert.equal(first.type, BackendType.authentication, 'expected an authentication request');
    const request = dbe.decodeAuthentication(first.body);
    let method: Session['method'];
    if (request.code === AuthCode.sasl) {
      method = 'scram';
      assert.ok(dbe.decodeSASLMechanisms(request.data).includes(SCRAM_SHA_256));
      const scram = new ScramClient(password);
      upstream.write(fe.saslInitialResponse(SCRAM_SHA_256, scram.clientFirst()));
      const serverFirst = expectAuth(await upstream.next(), AuthCode.saslContinue);
      upstream.write(fe.saslResponse(await scram.clientFinal(serverFirst)));
      scram.verifyServerFinal(expectAuth(await upstream.next(), AuthCode.saslFinal));
      assert.ok(scram.verified);
    } else {
      method = 'md5';
      assert.equal(request.code, AuthCode.md5Password);
      upstream.write(fe.passwordMessage(md5Password(user, password, request.data)));
    }
    expectAuth(await upstream.next(), AuthCode.ok);

    const params = new Map<string, string>();
    let processId = 0;
    for (;;) {
      const m = await upstream.next();
      if (m.type === BackendType.parameterStatus) {
        const p = dbe.decodeParameterStatus(m.body);
        params.set(p.name, p.value);
      } else if (m.type === BackendType.backendKeyData) {
        processId = dbe.decodeBackendKeyData(m.body).processId;
      } else {
        assert.equal(m.type, BackendType.readyForQuery);
        assert.equal(dbe.decodeReadyForQuery(m.body), 'I');
        break;
      }
    }
    return { upstream, params, processId, method };
  } catch (e) {
    upstream.close();
    throw e;
  }
}

/** One simple query; returns the text values of the first row and the command tag. */
async function query(upstream: Upstream, sql: string): Promise<{ columns: string[]; row: (string | null)[]; tag: string }> {
  upstream.write(fe.query(sql));
  let columns: string[] = [];
  let row: (string | null)[] = [];
  let tag = '';
  for (;;) {
    const m = await upstream.next();
    if (m.type === BackendType.rowDescription) columns = dbe.decodeRowDescription(m.body).map((f) => f.name);
    else if (m.type === BackendType.dataRow) {
      const cur = dbe.dataRowValues(m.body);
      row = [];
      while (cur.next()) row.push(cur.text());
    } else if (m.type === BackendType.commandComplete) tag = dbe.decodeCommandComplete(m.body).tag;
    else if (m.type === BackendType.errorResponse) throw new Error(dbe.decodeErrorResponse(m.body).message);
    else if (m.type === BackendType.readyForQuery) return { columns, row, tag };
  }
}

describe('ScramClient and md5Password against a real PostgreSQL 15', () => {
  let pg: PgServer;
  const scramPassword = randomBytes(18).toString('base64url');
  // Non-ASCII passwords, stored by PostgreSQL through its own SASLprep.
  const unicode: Record<string, string> = {
    u_nfkc: `Ⅸ-ª-${randomBytes(6).toString('hex')}`,
    u_space: `a\u00A0b\u3000c\u00AD${randomBytes(6).toString('hex')}`,
    u_prohibited: `ü\u0007${randomBytes(6).toString('hex')}`,
    u_plain: `Äpfel-${randomBytes(6).toString('hex')}`,
  };

  before(async () => {
    // md5 in pg_hba: md5-stored roles get an MD5 challenge, SCRAM-stored roles get SCRAM.
    pg = await startPostgres({ auth: 'md5' });
    const lit = (s: string): string => `'${s.replaceAll("'", "''")}'`;
    await pg.psql(
      [
        "SET password_encryption = 'scram-sha-256';",
        `CREATE ROLE s LOGIN PASSWORD ${lit(scramPassword)};`,
        ...Object.entries(unicode).map(([role, pw]) => `CREATE ROLE ${role} LOGIN PASSWORD ${lit(pw)};`),
      ].join('\n'),
    );
  });

  after(async () => {
    await pg?.stop();
  });

  it('logs in with SCRAM, verifying the server signature, and runs a query', async () => {
    const s = await login(pg.port, 's', scramPassword);
    try {
      assert.equal(s.method, 'scram');
      assert.equal(s.params.get('server_version')?.split('.')[0], '15');
      assert.ok(s.processId > 0);
      const r = await query(s.upstream, 'select current_user, 1 + 1 as two');
      assert.deepEqual(r, { columns: ['current_user', 'two'], row: ['s', '2'], tag: 'SELECT 1' });
    } finally {
      s.upstream.close();
    }
  });

  it('a wrong SCRAM password is refused by the server with 28P01', async () => {
    await assert.rejects(login(pg.port, 's', 'wrong'), (e: Error & { sqlState?: string }) => {
      assert.equal(e.sqlState, '28P01');
      assert.match(e.message, /password authentication failed for user "s"/);
      return true;
    });
  });

  it('logs in with md5', async () => {
    const s = await login(pg.port, pg.user, pg.password);
    try {
      assert.equal(s.method, 'md5');
      assert.deepEqual((await query(s.upstream, 'select current_user')).row, ['app']);
    } finally {
      s.upstream.close();
    }
    await assert.rejects(login(pg.port, pg.user, 'wrong'), (e: Error & { sqlState?: string }) => e.sqlState === '28P01');
  });

  it('derives the same verifier PostgreSQL stores, and ScramServer accepts the password against it', async () => {
    const stored = (await pg.psql("select rolpassword from pg_authid where rolname = 's'")).trim();
    const v = parseScramVerifier(stored);
    assert.deepEqual(makeScramVerifier(scramPassword, { salt: v.salt, iterations: v.iterations }), v);

    const server = new ScramServer(v);
    const client = new ScramClient(scramPassword);
    const result = server.finish(await client.clientFinal(server.start(client.clientFirst())));
    assert.ok(result.ok);
    client.verifyServerFinal(result.serverFinal);
  });

  it('normalizes non-ASCII passwords exactly as PostgreSQL does', async () => {
    for (const [role, password] of Object.entries(unicode)) {
      const stored = (await pg.psql(`select rolpassword from pg_authid where rolname = '${role}'`)).trim();
      const v = parseScramVerifier(stored);
      assert.deepEqual(makeScramVerifier(password, { salt: v.salt, iterations: v.iterations }), v, role);
    }
    const s = await login(pg.port, 'u_space', unicode.u_space as string);
    s.upstream.close();
  });
});
