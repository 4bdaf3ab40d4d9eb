/**
 * Shared setup for the adversarial corpus: one real stack per file (PostgreSQL 15, issuer,
 * broker, tunnel) with a read-only policy for the agent and masking on, a seeded database
 * in which every attack WOULD succeed for the `app` role without agentgate, and the checks
 * every case ends with: the data is intact (read directly as the superuser), no raw secret
 * (nor a trivially decodable transform of one) reached the client, and at the end of a
 * file, none reached the audit store or any file in the broker's state.
 *
 * A case that succeeds as an attack changes the database; `reset()` runs before each case
 * and restores the seed, so one failing case never cascades into the next.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { startPgStack, TARGET, type PgStack } from '../stack.js';
import { RawPg, type Msg } from '../raw-client.js';
import * as fe from '../../../src/broker/postgres/build-frontend.js';
import { AuthCode, BackendType, FrontendType } from '../../../src/broker/postgres/protocol.js';
import {
  dataRowValues,
  decodeAuthentication,
  decodeBackendKeyData,
  decodeCommandComplete,
  decodeErrorResponse,
  decodeNoticeResponse,
  decodeParameterStatus,
} from '../../../src/broker/postgres/decode-backend.js';
import { ScramClient } from '../../../src/broker/postgres/scram.js';
import type { PolicyConfig } from '../../../src/broker/config/types.js';

export { fe, RawPg, type Msg, BackendType };

// ─────────────────────────────── the secrets ───────────────────────────────

/** Raw values seeded into the database; none may ever reach the agent or the audit store. */
export const EMAIL1 = 'qxzjv.wolk@victim.example';
export const EMAIL2 = 'vjqxp.rimbo@victim.example';
export const CARD1 = '4111111111111111';
export const CARD2 = '4556737586899855';
export const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';
/** Readable only by `admin_role` (which `app` may SET ROLE to). */
export const VAULT = 'vault-zkqwjx-plmn-9931';
export const SECRETS = [EMAIL1, EMAIL2, CARD1, CARD2, AWS_KEY, VAULT] as const;

/**
 * The parts of each secret that masking must hide. Partial masking keeps an email's domain
 * and a card's last four digits, so those are not secrets; the local part and the leading
 * digits are.
 */
/** Short pieces of the seeded emails' local parts (and their reversals) that no mask style keeps. */
export const SHORT_FRAGMENTS: readonly string[] = ['qxzjv', 'vjqxp', 'rimbo', 'wolk', 'vjzxq', 'pxqjv', 'obmir', 'klow'];

const FRAGMENTS = ['qxzjv.wolk', 'vjqxp.rimbo', '411111111111', '455673758689', 'AKIAIOSFODNN', 'zkqwjx-plmn'];

/** The seeded large object's OID (fixed, so it can be restored and recognised). */
export const LO_OID = 424242;

/** A refusal by agentgate: permission, read-only transaction, protocol violation, unsupported. */
export const REFUSAL_CODES: readonly string[] = ['42501', '25006', '08P01', '0A000'];

// ─────────────────────────────── the stack ───────────────────────────────

export const READ_ONLY_POLICY: PolicyConfig[] = [
  {
    name: 'ro',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'ro#1', sql: ['select', 'show', 'explain', 'transaction'], effect: 'allow', extra: {} },
      { name: 'ro#2', effect: 'deny', extra: {} },
    ],
  },
];

export interface FunctionOids {
  lo_unlink: number;
  lo_creat: number;
  lo_create: number;
  pg_read_file: number;
  nextval: number;
}

export interface Adversary {
  stack: PgStack;
  oids: FunctionOids;
  /** Restore the seed (data, sequence, large objects) and take the baseline for assertIntact. */
  reset(): Promise<void>;
  /** Everything any client of this file received (RawPg sockets, psql/pg_dump output). */
  received: Buffer[];
  close(): Promise<void>;
}

const SEED_SCHEMA = `
CREATE ROLE admin_role NOLOGIN;
GRANT admin_role TO app;
-- app holds admin_role's privileges only after SET ROLE, never implicitly.
ALTER ROLE app NOINHERIT;
CREATE TABLE users (id int PRIMARY KEY, name text, email text, note text);
CREATE TABLE cards (id int, card text);
CREATE SEQUENCE s;
CREATE SCHEMA priv;
CREATE TABLE priv.vault (secret text);
INSERT INTO priv.vault VALUES ('${VAULT}');
GRANT USAGE ON SCHEMA priv TO admin_role;
GRANT SELECT ON priv.vault TO admin_role;
GRANT ALL ON users, cards TO app;
GRANT ALL ON SEQUENCE s TO app;
CREATE FUNCTION f_del() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
DECLARE n int; BEGIN DELETE FROM users; GET DIAGNOSTICS n = ROW_COUNT; RETURN n; END $$;
CREATE FUNCTION f_imm() RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 42 $$;
CREATE FUNCTION f_op(int, int) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN DELETE FROM users; RETURN true; END $$;
CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = f_op);
CREATE FUNCTION f_raise(v text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION USING MESSAGE = v, DETAIL = v, HINT = v, COLUMN = v, CONSTRAINT = v,
  DATATYPE = v, TABLE = v, SCHEMA = v, ERRCODE = 'P0001'; END $$;
CREATE FUNCTION f_notice(v text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE USING MESSAGE = v, DETAIL = v, HINT = v, COLUMN = v, CONSTRAINT = v,
  DATATYPE = v, TABLE = v, SCHEMA = v; RETURN 1; END $$;
CREATE VIEW v_users AS SELECT id, email AS contact FROM users;
GRANT SELECT ON v_users TO app;
CREATE SCHEMA shadow;
CREATE FUNCTION shadow.upper(text) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN DELETE FROM users; RETURN $1; END $$;
GRANT USAGE ON SCHEMA shadow TO app;
GRANT EXECUTE ON FUNCTION pg_stat_reset() TO app;
GRANT EXECUTE ON FUNCTION pg_read_file(text) TO app;
`;

const SEED_DATA = `
TRUNCATE users, cards;
INSERT INTO users VALUES
  (1, 'Alpha', '${EMAIL1}', 'deploy key ${AWS_KEY} rotate monthly'),
  (2, 'Bravo', '${EMAIL2}', 'plain note');
INSERT INTO cards VALUES (1, '${CARD1}'), (2, '${CARD2}');
SELECT setval('s', 1, false);
SELECT lo_unlink(oid) FROM pg_largeobject_metadata;
SELECT lo_from_bytea(${LO_OID}, 'seeded large object');
ALTER LARGE OBJECT ${LO_OID} OWNER TO app;
`;

/** One line that changes whenever anything an attack could touch changes. */
const SNAPSHOT_SQL = `
SELECT concat_ws(' # ',
  'users=' || coalesce((SELECT string_agg(concat_ws('|', id, name, email, note), ';' ORDER BY id) FROM users), '<none>'),
  'cards=' || coalesce((SELECT string_agg(concat_ws('|', id, card), ';' ORDER BY id) FROM cards), '<none>'),
  'seq=' || (SELECT last_value || '/' || is_called FROM s),
  'lo=' || coalesce((SELECT string_agg(oid::text, ',' ORDER BY oid) FROM pg_largeobject_metadata), '<none>'),
  'lodata=' || coalesce((SELECT string_agg(encode(data, 'hex'), '' ORDER BY pageno) FROM pg_largeobject WHERE loid = ${LO_OID}), '<none>'),
  'rels=' || (SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace),
  'funcs=' || (SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc WHERE pronamespace = 'public'::regnamespace),
  'stats_reset=' || coalesce((SELECT stats_reset::text FROM pg_stat_database WHERE datname = 'app'), 'never'),
  'role_config=' || coalesce((SELECT array_to_string(rolconfig, ',') FROM pg_roles WHERE rolname = 'app'), '<none>')
);`;

let baseline = '';

export async function snapshot(stack: PgStack): Promise<string> {
  return (await stack.pg.psql(SNAPSHOT_SQL, { database: 'app' })).trim();
}

/** Start the stack for one file with the read-only policy (or `policies`) and masking; seed the database. */
export async function startAdversary(policies: PolicyConfig[] = READ_ONLY_POLICY, columns: readonly string[] = ['*.email']): Promise<Adversary> {
  const stack = await startPgStack({
    policies,
    config: {
      masking: {
        [TARGET]: { columns: [...columns], detectors: ['email', 'credit_card', 'aws_key', 'jwt'], style: 'partial' },
      },
    },
  });
  await stack.pg.psql(SEED_SCHEMA + SEED_DATA, { database: 'app' });
  const oidLine = (
    await stack.pg.psql(
      `SELECT concat_ws(',', 'lo_unlink'::regproc::oid, 'lo_creat'::regproc::oid, 'lo_create'::regproc::oid,
         'pg_read_file(text)'::regprocedure::oid, 'nextval'::regproc::oid);`,
      { database: 'app' },
    )
  ).trim();
  const [lo_unlink, lo_creat, lo_create, pg_read_file, nextval] = oidLine.split(',').map(Number) as [number, number, number, number, number];
  const received: Buffer[] = [];
  const adv: Adversary = {
    stack,
    oids: { lo_unlink, lo_creat, lo_create, pg_read_file, nextval },
    received,
    async reset() {
      await stack.pg.psql(SEED_DATA, { database: 'app' });
      baseline = await snapshot(stack);
    },
    async close() {
      await stack.close();
    },
  };
  baseline = await snapshot(stack);
  return adv;
}

/** The database is exactly as seeded: rows, sequence, large objects, relations, functions, stats. */
export async function assertIntact(adv: Adversary, what = 'the attack'): Promise<void> {
  assert.ok(baseline.includes(EMAIL1), 'the baseline snapshot holds the seed');
  assert.equal(await snapshot(adv.stack), baseline, `${what} changed the database`);
}

// ─────────────────────────────── leak checks ───────────────────────────────

const rev = (s: string): string => [...s].reverse().join('');
const norm = (s: string): string => s.toLowerCase().replace(/[^a-z0-9]/g, '');

/** base64 of `s` as it appears at each of the three byte alignments inside a longer input. */
function base64Forms(s: string): string[] {
  const out: string[] = [];
  for (let pad = 0; pad < 3; pad++) {
    const b64 = Buffer.concat([Buffer.alloc(pad, 0x20), Buffer.from(s, 'utf8')]).toString('base64');
    const start = pad === 0 ? 0 : 4;
    out.push(b64.slice(start, b64.length - 4));
  }
  return out.filter((x) => x.length >= 8);
}

interface Needles {
  /** Matched case-insensitively against the bytes as latin1. */
  plain: string[];
  /** Matched exactly (base64 is case-sensitive). */
  exact: string[];
  /** Matched against the bytes lowercased with everything but [a-z0-9] removed. */
  squashed: string[];
}

const NEEDLES: Needles = (() => {
  const plain = new Set<string>();
  const exact = new Set<string>();
  const squashed = new Set<string>();
  for (const s of [...SECRETS, ...FRAGMENTS]) {
    plain.add(s.toLowerCase());
    plain.add(rev(s).toLowerCase());
    plain.add(Buffer.from(s, 'utf8').toString('hex'));
    plain.add(Buffer.from(rev(s), 'utf8').toString('hex'));
    for (const b of base64Forms(s)) exact.add(b);
    squashed.add(norm(s));
    squashed.add(rev(norm(s)));
  }
  for (const s of SECRETS) {
    plain.add(createHash('md5').update(s).digest('hex'));
    plain.add(createHash('sha256').update(s).digest('hex'));
  }
  return { plain: [...plain], exact: [...exact], squashed: [...squashed] };
})();

/**
 * No raw secret, and no trivially decodable transform of one (reversed, upper/lower case,
 * hex, base64, md5/sha256, separators inserted or translated such as '@' → '#'), in `bytes`.
 */
export function assertNoRaw(bytes: Buffer | string, where = 'the client'): void {
  const latin = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8').toString('latin1') : bytes.toString('latin1');
  const lower = latin.toLowerCase();
  const squashed = norm(latin);
  for (const n of NEEDLES.plain) assert.ok(!lower.includes(n), `${where} received a raw value (or a transform of it): ${n}`);
  for (const n of NEEDLES.exact) assert.ok(!latin.includes(n), `${where} received a raw value as base64: ${n}`);
  for (const n of NEEDLES.squashed) assert.ok(!squashed.includes(n), `${where} received a raw value with separators changed: ${n}`);
}

/** A short, case-specific fragment (e.g. the 3 characters `left(email, 3)` returns) is absent. */
export function assertAbsent(bytes: Buffer | string, fragment: string, where = 'the client'): void {
  const text = (typeof bytes === 'string' ? bytes : bytes.toString('latin1')).toLowerCase();
  assert.ok(!text.includes(fragment.toLowerCase()), `${where} received ${JSON.stringify(fragment)}`);
}

/** None of the seeded emails' short fragments (SHORT_FRAGMENTS) is in `bytes`. */
export function assertNoFragments(bytes: Buffer | string, where = 'the client'): void {
  for (const f of SHORT_FRAGMENTS) assertAbsent(bytes, f, where);
}

// ─────────────────── controls: the same attack without agentgate, decoded ───────────────────

/** One value of a row as node-postgres returns it in array mode. */
export type Cell = string | number | boolean | null | undefined;
export type Rows = readonly (readonly Cell[])[];

/** A boolean cell in either protocol's spelling. */
export const isTrue = (v: Cell): boolean => v === true || v === 't' || v === 'true';

/** Rows [i, code] (i from 1) → the string of those character codes ('?' for a gap). */
export function decodeCodes(rows: Rows): string {
  const chars: string[] = [];
  for (const r of rows) {
    const i = Number(r[0]);
    const code = r[1] === null || r[1] === undefined ? 0 : Number(r[1]);
    if (Number.isInteger(i) && i >= 1 && i <= 1000 && Number.isInteger(code) && code > 0 && code < 256) chars[i - 1] = String.fromCharCode(code);
  }
  return Array.from(chars, (c) => c ?? '?').join('');
}

/** Rows [i, b, v] (i from 1, bit b): bit b of character i is set when v is `setWhen`. */
export function decodeBits(rows: Rows, setWhen: boolean): string {
  const codes: number[] = [];
  for (const r of rows) {
    const i = Number(r[0]);
    const b = Number(r[1]);
    if (!Number.isInteger(i) || i < 1 || i > 1000 || !Number.isInteger(b) || r[2] === null || r[2] === undefined) continue;
    codes[i - 1] ??= 0;
    if (isTrue(r[2]) === setWhen) codes[i - 1]! |= 1 << b;
  }
  return Array.from(codes, (c) => (c ? String.fromCharCode(c) : '?')).join('');
}

/** Run `fn` on a direct connection to the stack's PostgreSQL as the app role (no agentgate). */
export async function direct<T>(adv: Adversary, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adv.stack.pg.url() });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A direct connection as the app role in a read-only session (the upstream backstop agentgate sets), for controls. */
export async function readOnlyApp(adv: Adversary): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: adv.stack.pg.url(), options: '-c default_transaction_read_only=on' });
  await client.connect();
  return client;
}

/** `sql` through psql as the superuser in the app database, trimmed (to inspect state after an attack). */
export async function superQuery(adv: Adversary, sql: string): Promise<string> {
  return (await adv.stack.pg.psql(sql, { database: 'app' })).trim();
}

/** A query's rows in array mode, on a direct connection. */
export async function directRows(client: pg.Client, sql: string): Promise<Cell[][]> {
  return (await client.query({ text: sql, rowMode: 'array' })).rows as Cell[][];
}

/** Every audit event (as JSON) and every file under the broker's temp/state dir hold no raw value. */
export async function assertStoreClean(adv: Adversary): Promise<void> {
  const events = await adv.stack.events();
  assert.ok(events.length > 0, 'the audit store recorded the session');
  assertNoRaw(JSON.stringify(events), 'the audit store (events)');
  const files = await listFiles(adv.stack.tmp.path);
  assert.ok(files.some((f) => f.includes('agentgate.db')), `the SQLite store is among the files searched: ${files.join(', ')}`);
  for (const f of files) assertNoRaw(await readFile(f), `state file ${f}`);
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

// ─────────────────────────────── clients ───────────────────────────────

/** Start recording every byte the client's socket receives from now on; returns a reader. */
export function collectClientBytes(c: RawPg, sink?: Buffer[]): () => Buffer {
  const chunks: Buffer[] = [];
  c.socket.on('data', (d: Buffer) => {
    chunks.push(d);
    sink?.push(d);
  });
  return () => Buffer.concat(chunks);
}

export interface Client {
  c: RawPg;
  /** Every byte received since login (or since the startup packet, for loginWith). */
  bytes(): Buffer;
  close(): void;
}

/** A logged-in RawPg whose received bytes are recorded (also into adv.received). */
export async function connect(adv: Adversary): Promise<Client> {
  const c = await RawPg.login(adv.stack.port, adv.stack.session.secret);
  const bytes = collectClientBytes(c, adv.received);
  return { c, bytes, close: () => c.close() };
}

export interface StartupResult extends Client {
  /** Messages of the startup phase, up to ReadyForQuery or the connection's end. */
  startup: Msg[];
  /** Whether the startup reached ReadyForQuery. */
  ready: boolean;
}

/**
 * Log in with extra startup parameters (`options`, `client_encoding`, …), recording every
 * byte from the first. A refusal during startup is returned, not thrown.
 */
export async function loginWith(adv: Adversary, params: Record<string, string>): Promise<StartupResult> {
  const c = await RawPg.open(adv.stack.port);
  const bytes = collectClientBytes(c, adv.received);
  c.send(fe.startupMessage({ user: 'agent', database: 'app', ...params }));
  const startup: Msg[] = [];
  let scram: ScramClient | undefined;
  for (;;) {
    let m: Msg;
    try {
      m = await c.next();
    } catch (err) {
      assert.ok(c.closed, `startup stalled: ${String(err)}`);
      return { c, bytes, close: () => c.close(), startup, ready: false };
    }
    startup.push(m);
    if (m.type === BackendType.backendKeyData) c.key = decodeBackendKeyData(m.body);
    if (m.type === BackendType.readyForQuery) return { c, bytes, close: () => c.close(), startup, ready: true };
    if (m.type !== BackendType.authentication) continue;
    const auth = decodeAuthentication(m.body);
    if (auth.code === AuthCode.sasl) {
      scram = new ScramClient(adv.stack.session.secret);
      c.send(fe.saslInitialResponse('SCRAM-SHA-256', scram.clientFirst()));
    } else if (auth.code === AuthCode.saslContinue) {
      c.send(fe.saslResponse(await (scram as ScramClient).clientFinal(auth.data)));
    } else if (auth.code === AuthCode.saslFinal) {
      (scram as ScramClient).verifyServerFinal(auth.data);
    }
  }
}

/**
 * Send `bufs` and read until `readies` ReadyForQuery messages arrived or the server closed
 * the connection (a refusal may end the session); a stall is an error.
 */
export async function exchange(c: RawPg, bufs: Buffer[], readies = 1, timeoutMs = 15_000): Promise<Msg[]> {
  if (bufs.length > 0) c.send(...bufs);
  const out: Msg[] = [];
  let seen = 0;
  while (seen < readies) {
    let m: Msg;
    try {
      m = await c.next(timeoutMs);
    } catch (err) {
      assert.ok(c.closed, `no answer: ${String(err)}; so far ${describeMsgs(out)}`);
      return out;
    }
    out.push(m);
    if (m.type === BackendType.readyForQuery) seen++;
  }
  return out;
}

/** Read whatever arrives within `ms` (for messages answered without a Sync, after a Flush). */
export async function drain(c: RawPg, ms: number): Promise<Msg[]> {
  const out: Msg[] = [];
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return out;
    try {
      out.push(await c.next(left));
    } catch {
      return out;
    }
  }
}

/** A simple Query. */
export function simple(c: RawPg, sql: string | Buffer): Promise<Msg[]> {
  const q = typeof sql === 'string' ? fe.query(sql) : queryBytes(sql);
  return exchange(c, [q]);
}

/** Several simple Queries, each in its own round trip; all messages, in order. */
export async function simpleEach(c: RawPg, sqls: string[]): Promise<Msg[]> {
  const out: Msg[] = [];
  for (const s of sqls) out.push(...(await simple(c, s)));
  return out;
}

/** Parse/Bind/Describe/Execute/Sync of the unnamed statement, with chosen result formats. */
export function extended(c: RawPg, sql: string, params: (string | null)[] = [], resultFormats: number[] = []): Promise<Msg[]> {
  return exchange(c, [fe.parse('', sql), fe.bind('', '', params, { resultFormats }), fe.describe('P', ''), fe.execute('', 0), fe.SYNC]);
}

/** A Query message whose body is the given bytes plus the terminating NUL (for NULs and non-UTF-8 text). */
export function queryBytes(body: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeInt32BE(4 + body.length + 1);
  return Buffer.concat([Buffer.from([FrontendType.query]), len, body, Buffer.from([0])]);
}

/** A Parse message whose SQL is given as raw bytes (may hold a NUL). */
export function parseBytes(name: string, sql: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(name + '\0', 'utf8'), sql, Buffer.from([0, 0, 0])]);
  const len = Buffer.alloc(4);
  len.writeInt32BE(4 + body.length);
  return Buffer.concat([Buffer.from([FrontendType.parse]), len, body]);
}

/**
 * FunctionCall ('F'): function OID, argument format codes, arguments (null = SQL NULL),
 * result format. Not among the broker's frame builders, which never call functions.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-FUNCTIONCALL
 */
export function functionCall(oid: number, args: readonly (Buffer | string | null)[], argFormats: readonly number[] = [], resultFormat = 0): Buffer {
  const parts: Buffer[] = [];
  const i32 = (v: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    return b;
  };
  const i16 = (v: number): Buffer => {
    const b = Buffer.alloc(2);
    b.writeInt16BE(v);
    return b;
  };
  parts.push(i32(oid), i16(argFormats.length), ...argFormats.map(i16), i16(args.length));
  for (const a of args) {
    if (a === null) parts.push(i32(-1));
    else {
      const b = typeof a === 'string' ? Buffer.from(a, 'utf8') : a;
      parts.push(i32(b.length), b);
    }
  }
  parts.push(i16(resultFormat));
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([FrontendType.functionCall]), i32(4 + body.length), body]);
}

// ─────────────────────────────── reading answers ───────────────────────────────

export function errorsOf(msgs: Msg[]): { code: string; message: string }[] {
  return msgs.filter((m) => m.type === BackendType.errorResponse).map((m) => {
    const e = decodeErrorResponse(m.body);
    return { code: e.code, message: e.message };
  });
}

export function noticesOf(msgs: Msg[]): string[] {
  return msgs.filter((m) => m.type === BackendType.noticeResponse).map((m) => decodeNoticeResponse(m.body).message);
}

export function tagsOf(msgs: Msg[]): string[] {
  return msgs.filter((m) => m.type === BackendType.commandComplete).map((m) => decodeCommandComplete(m.body).tag);
}

export function parameterStatusOf(msgs: Msg[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of msgs.filter((x) => x.type === BackendType.parameterStatus)) {
    const p = decodeParameterStatus(m.body);
    out[p.name] = p.value;
  }
  return out;
}

/** DataRow values as text (binary values decoded as latin1, NULL as null). */
export function rowsOf(msgs: Msg[]): (string | null)[][] {
  const out: (string | null)[][] = [];
  for (const m of msgs) {
    if (m.type !== BackendType.dataRow) continue;
    const row: (string | null)[] = [];
    const cur = dataRowValues(m.body);
    while (cur.next()) row.push(cur.text());
    out.push(row);
  }
  return out;
}

export function describeMsgs(msgs: Msg[]): string {
  return msgs
    .map((m) => {
      const t = String.fromCharCode(m.type);
      if (m.type === BackendType.errorResponse) {
        const e = decodeErrorResponse(m.body);
        return `E(${e.code} ${e.message.slice(0, 80)})`;
      }
      if (m.type === BackendType.commandComplete) return `C(${decodeCommandComplete(m.body).tag})`;
      return t;
    })
    .join(' ');
}

/**
 * The first ErrorResponse in `msgs` is an agentgate refusal (42501, 25006, 08P01 or 0A000).
 * `alsoAccept` widens the set for cases whose natural server answer is itself safe.
 */
export function assertRefused(msgs: Msg[], what: string, alsoAccept: readonly string[] = []): void {
  const errs = errorsOf(msgs);
  assert.ok(errs.length > 0, `${what}: expected a refusal, got ${describeMsgs(msgs)}`);
  const codes = [...REFUSAL_CODES, ...alsoAccept];
  assert.ok(codes.includes(errs[0]!.code), `${what}: refused with ${errs[0]!.code} (${errs[0]!.message}), expected one of ${codes.join(', ')}`);
}

/** Some ErrorResponse in `msgs` is an agentgate refusal (for multi-step attacks stopped at any step). */
export function assertSomeRefusal(msgs: Msg[], what: string, alsoAccept: readonly string[] = []): void {
  const errs = errorsOf(msgs);
  const codes = [...REFUSAL_CODES, ...alsoAccept];
  assert.ok(errs.some((e) => codes.includes(e.code)), `${what}: expected a refusal (${codes.join(', ')}) somewhere, got ${describeMsgs(msgs)}`);
}

/** Either refused (first error is a refusal) or answered with rows and no error. */
export function assertRefusedOrRows(msgs: Msg[], what: string): void {
  const errs = errorsOf(msgs);
  const refused = errs.length > 0 && REFUSAL_CODES.includes(errs[0]!.code);
  const answered = errs.length === 0 && msgs.some((m) => m.type === BackendType.dataRow || m.type === BackendType.copyData);
  assert.ok(refused || answered, `${what}: neither refused nor answered: ${describeMsgs(msgs)}`);
}

/** No ErrorResponse at all, and the exchange completed. */
export function assertNoError(msgs: Msg[], what: string): void {
  assert.deepEqual(errorsOf(msgs), [], `${what} must work: ${describeMsgs(msgs)}`);
  assert.ok(msgs.some((m) => m.type === BackendType.readyForQuery), `${what}: no ReadyForQuery: ${describeMsgs(msgs)}`);
}

// ─────────────────────────────── command-line clients ───────────────────────────────

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a client program (psql, pg_dump) against the broker with stack.env; its output is recorded. */
export function runClient(adv: Adversary, cmd: string, args: string[], input = ''): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...adv.stack.env, LANG: 'C', LC_ALL: 'C' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      adv.received.push(d);
      stdout += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      adv.received.push(d);
      stderr += d.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.on('error', () => {
      /* the exit status tells */
    });
    child.stdin.end(input);
  });
}

/** psql with verbose errors (SQLSTATE in each `ERROR:  XXXXX:` line). */
export function psql(adv: Adversary, args: string[], input = ''): Promise<RunResult> {
  return runClient(adv, 'psql', ['-X', '-v', 'VERBOSITY=verbose', ...args], input);
}

/** SQLSTATEs of the errors psql printed with VERBOSITY=verbose. */
export function psqlErrorCodes(stderr: string): string[] {
  return [...stderr.matchAll(/ERROR:\s+([0-9A-Z]{5}):/g)].map((m) => m[1]!);
}

// ─────────────────────────────── one adversary per suite ───────────────────────────────

export interface SuiteOptions {
  /** Extra seeding or sanity checks once the adversary has started. */
  setup?: (adv: Adversary) => Promise<void>;
  /** Extra checks on a client's received bytes after each case (beyond assertNoRaw). */
  check?: (cl: Client) => void;
  /** The policy the stack enforces (default READ_ONLY_POLICY). */
  policies?: PolicyConfig[];
  /** The masked column patterns (default `['*.email']`). */
  maskedColumns?: readonly string[];
}

/**
 * Registers the suite's lifecycle in the enclosing describe(): start one adversary before,
 * restore its seed before each case, close it after. `bind` receives the adversary once it
 * is up. Returns `withClient`: runs a case on a fresh client, then asserts that nothing raw
 * reached that client (and `check`), and closes it.
 */
export function useAdversary(bind: (adv: Adversary) => void, opts: SuiteOptions = {}): (fn: (cl: Client) => Promise<void>) => Promise<void> {
  let adv: Adversary | undefined;
  before(async () => {
    adv = await startAdversary(opts.policies, opts.maskedColumns);
    bind(adv);
    await opts.setup?.(adv);
  });
  after(async () => {
    await adv?.close();
  });
  beforeEach(async () => {
    await adv!.reset();
  });
  return async (fn) => {
    const cl = await connect(adv!);
    try {
      await fn(cl);
      assertNoRaw(cl.bytes());
      opts.check?.(cl);
    } finally {
      cl.close();
    }
  };
}

/** An attack of a statistics-reset corpus: the statement, and what runs and where it comes from. */
export interface ResetAttack {
  id: string;
  sql: string;
  why: string;
  /** Already refused before the change the corpus was written for: kept as a regression. */
  regression?: boolean;
}

export interface ResetCorpus {
  /** The seed (superuser objects, in database app), run once; statistics are then reset once. */
  seed: string;
  /** Test id prefix (`w3x`): the control is `<prefix>-00`. */
  prefix: string;
  /** Statements whose hidden effect is pg_stat_reset(): each shown to reset without agentgate, then refused through it. */
  resets: readonly ResetAttack[];
  /** Refused through agentgate too, with effects their own file's controls show. */
  alsoRefused?: readonly ResetAttack[];
  /** Harmless statements of the same shapes: allowed, with this many rows. */
  allowed: readonly { id: string; sql: string; rows: number }[];
}

/**
 * Registers a statistics-reset corpus in the current describe(): a control (read-only,
 * without agentgate, each statement changes stats_reset), each attack refused through
 * agentgate with the database intact, each allowed statement answered. Returns the suite's
 * client runner, the adversary and the stats_reset reader for the file's own tests.
 */
export function useResetCorpus(corpus: ResetCorpus): {
  withClient: (fn: (cl: Client) => Promise<void>) => Promise<void>;
  adv: () => Adversary;
  statsReset: () => Promise<string>;
} {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    setup: async (a) => {
      await a.stack.pg.psql(corpus.seed, { database: 'app' });
      // Statistics must have been reset once for stats_reset to be a timestamp that can change.
      await a.stack.pg.psql('SELECT pg_stat_reset();', { database: 'app' });
    },
  });
  const statsReset = async (): Promise<string> => (await adv.stack.pg.psql("SELECT stats_reset FROM pg_stat_database WHERE datname = 'app'", { database: 'app' })).trim();

  test(`${corpus.prefix}-00: control — without agentgate, app resets statistics with every statement below, even in a read-only session`, async () => {
    const client = await readOnlyApp(adv);
    try {
      assert.equal((await client.query('show transaction_read_only')).rows[0].transaction_read_only, 'on');
      for (const { id, sql } of corpus.resets) {
        const before = await statsReset();
        await new Promise((r) => setTimeout(r, 20));
        await client.query(sql);
        assert.notEqual(await statsReset(), before, `${id}: ${sql} resets statistics for app`);
      }
    } finally {
      await client.end();
    }
  });

  for (const { id, sql, why, regression } of [...corpus.resets, ...(corpus.alsoRefused ?? [])]) {
    test(`${id}: ${regression ? '[regression] ' : ''}${sql} — ${why}`, () =>
      withClient(async ({ c }) => {
        const msgs = await simple(c, sql);
        // The database first: if the statement ran, the report names what it changed.
        await assertIntact(adv, sql);
        assertRefused(msgs, sql);
      }));
  }

  for (const { id, sql, rows } of corpus.allowed) {
    test(`${id}: allowed — ${sql}`, () =>
      withClient(async ({ c }) => {
        const msgs = await simple(c, sql);
        assertNoError(msgs, sql);
        assert.equal(rowsOf(msgs).length, rows, `${sql}: ${describeMsgs(msgs)}`);
        await assertIntact(adv, sql);
      }));
  }

  return { withClient, adv: () => adv, statsReset };
}

/**
 * Seed fragments the statistics-reset corpora share (superuser objects in database app).
 * RESET_SEED: f_reset(), and a domain d_reset whose CHECK calls a volatile function.
 */
export const RESET_SEED = `CREATE FUNCTION f_reset() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN 1; END $$;
CREATE FUNCTION f_reset_chk(int) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN true; END $$;
CREATE DOMAIN d_reset AS int CHECK (f_reset_chk(VALUE));
`;

/** A base type with the I/O of text and volatile default btree and hash operator classes, and a table of it (t_sort). */
export const MYTEXT_SEED = `CREATE TYPE mytext;
CREATE FUNCTION mytext_in(cstring) RETURNS mytext LANGUAGE internal IMMUTABLE STRICT AS 'textin';
CREATE FUNCTION mytext_out(mytext) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'textout';
CREATE TYPE mytext (INPUT = mytext_in, OUTPUT = mytext_out, LIKE = text);
CREATE FUNCTION mytext_cmp(mytext, mytext) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN bttextcmp($1::text, $2::text); END $$;
CREATE FUNCTION mytext_lt(mytext, mytext) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN $1::text < $2::text; END $$;
CREATE FUNCTION mytext_le(mytext, mytext) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN $1::text <= $2::text; END $$;
CREATE FUNCTION mytext_eq(mytext, mytext) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN $1::text = $2::text; END $$;
CREATE FUNCTION mytext_ge(mytext, mytext) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN $1::text >= $2::text; END $$;
CREATE FUNCTION mytext_gt(mytext, mytext) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN $1::text > $2::text; END $$;
CREATE FUNCTION mytext_hash(mytext) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN hashtext($1::text); END $$;
CREATE OPERATOR < (LEFTARG = mytext, RIGHTARG = mytext, FUNCTION = mytext_lt, COMMUTATOR = >, NEGATOR = >=);
CREATE OPERATOR <= (LEFTARG = mytext, RIGHTARG = mytext, FUNCTION = mytext_le, COMMUTATOR = >=, NEGATOR = >);
CREATE OPERATOR = (LEFTARG = mytext, RIGHTARG = mytext, FUNCTION = mytext_eq, COMMUTATOR = =, HASHES, MERGES);
CREATE OPERATOR >= (LEFTARG = mytext, RIGHTARG = mytext, FUNCTION = mytext_ge, COMMUTATOR = <=, NEGATOR = <);
CREATE OPERATOR > (LEFTARG = mytext, RIGHTARG = mytext, FUNCTION = mytext_gt, COMMUTATOR = <, NEGATOR = <=);
CREATE OPERATOR CLASS mytext_ops DEFAULT FOR TYPE mytext USING btree AS
  OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >, FUNCTION 1 mytext_cmp(mytext, mytext);
CREATE OPERATOR CLASS mytext_hash_ops DEFAULT FOR TYPE mytext USING hash AS
  OPERATOR 1 =, FUNCTION 1 mytext_hash(mytext);
CREATE TABLE t_sort (v mytext, n int);
INSERT INTO t_sort VALUES ('b', 2), ('a', 1), ('c', 3), ('a', 4);
GRANT SELECT ON t_sort TO app;
`;

/** A user cast from the users row to int (explicit) and one from int to point (implicit), each resetting. */
export const CASTS_SEED = `CREATE FUNCTION f_cast(users) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN 1; END $$;
CREATE CAST (users AS int) WITH FUNCTION f_cast(users);
CREATE FUNCTION f_int_point(int) RETURNS point LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN point($1, $1); END $$;
CREATE CAST (int AS point) WITH FUNCTION f_int_point(int) AS IMPLICIT;
`;
