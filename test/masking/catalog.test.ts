/**
 * Against a real PostgreSQL: the catalog lookup, and the masking stage fed with what the
 * server really sends (text and binary results, COPY in three formats, constraint
 * errors), checked byte for byte for raw values.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { RawPg } from '../postgres/raw-client.js';
import { createCatalogLookup, ResultMasker } from '../../src/broker/postgres/proxy-masking.js';
import { compileMaskingPlan } from '../../src/broker/masking/rules.js';
import type { PostgresTargetConfig } from '../../src/broker/config/types.js';
import { Secret } from '../../src/shared/secret.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';
import { BackendType } from '../../src/broker/postgres/protocol.js';
import { dataRowValues, decodeErrorResponse } from '../../src/broker/postgres/decode-backend.js';
import { READS_MASKED_TEXT } from '../../src/broker/masking/notice-fields.js';
import { frames } from './helpers.js';

let pg: PgServer;
let target: PostgresTargetConfig;
let usersOid: number;
const lookups: { close(): void }[] = [];
const clients: RawPg[] = [];

const RAW = [
  'alice@example.com',
  '123-45-6789',
  '4111 1111 1111 1111',
  'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  'alice.backup@example.net',
  '$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW',
  '1990-01-02',
  'bob@example.org',
  '078-05-1120',
  'new@example.com',
  '219-09-9999',
];

before(async () => {
  pg = await startPostgres();
  await pg.psql(`
    SET ROLE app;
    CREATE TABLE users (
      id int PRIMARY KEY,
      email text UNIQUE NOT NULL,
      ssn char(11),
      note text,
      password_hash text,
      profile jsonb,
      birth_date date,
      code varchar(10) CHECK (code <> 'BAD'),
      email_lower text GENERATED ALWAYS AS (lower(email)) STORED
    );
    INSERT INTO users (id, email, ssn, note, password_hash, profile, birth_date, code) VALUES
      (1, 'alice@example.com', '123-45-6789', 'card 4111 1111 1111 1111 on file',
       '$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW',
       '{"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "backup_email": "alice.backup@example.net", "name": "Ålice Ünïcødé"}',
       '1990-01-02', 'A1'),
      (2, 'bob@example.org', '078-05-1120', 'nothing, to see', NULL, '{"tags": ["x"]}', NULL, 'B2');
  `);
  usersOid = Number((await pg.psql("SELECT 'public.users'::regclass::oid")).trim());
  target = { type: 'postgres', name: 'pg-test', host: pg.host, port: pg.port, database: pg.database, user: pg.user, password: new Secret(pg.password), tls: 'disable', ca: undefined };
});

after(async () => {
  for (const l of lookups) l.close();
  for (const c of clients) c.close();
  await pg?.stop();
});

function lookup(): ReturnType<typeof createCatalogLookup> {
  const l = createCatalogLookup(target);
  lookups.push(l);
  return l;
}

test('createCatalogLookup resolves table OIDs to names, types and generated columns', async () => {
  const l = lookup();
  const found = await l([usersOid, 4_000_000_000]);
  assert.equal(found.size, 1, 'an unknown OID is left out');
  const users = found.get(usersOid);
  assert.ok(users);
  assert.equal(users.schema, 'public');
  assert.equal(users.table, 'users');
  assert.deepEqual([...users.columns.values()], ['id', 'email', 'ssn', 'note', 'password_hash', 'profile', 'birth_date', 'code', 'email_lower']);
  assert.equal(users.types?.get(3), 1042);
  assert.deepEqual([...(users.generated ?? [])], [9]);

  const fields = await l.describe!('SELECT email, 1 AS one FROM users');
  assert.deepEqual(fields?.map((f) => [f.name, f.tableOid, f.columnAttr]), [['email', usersOid, 2], ['one', 0, 0]]);
  assert.equal(await l.describe!('SELECT * FROM no_such_table'), undefined, 'the server refuses: undefined');
  // The connection survived the refused query.
  assert.equal((await l([usersOid])).size, 1);

  l.close();
  await assert.rejects(l([usersOid]));
});

test('createCatalogLookup reports a target it cannot reach', async () => {
  const l = createCatalogLookup({ ...target, port: 1, name: 'nowhere' }, { connectTimeoutMs: 2000 });
  lookups.push(l);
  await assert.rejects(l([usersOid]), /could not connect/);
});

/** Send frames as a client would, run every server message through the masker, return what the client gets. */
async function exchange(c: RawPg, m: ResultMasker, ...sent: Buffer[]): Promise<Buffer> {
  for (const f of sent) m.frontend(f[0]!, f.subarray(5));
  c.send(...sent);
  const out: Buffer[] = [];
  for (const msg of await c.untilReady()) {
    const header = Buffer.alloc(5);
    header[0] = msg.type;
    header.writeInt32BE(msg.body.length + 4, 1);
    const frame = Buffer.concat([header, msg.body]);
    let r = m.backend({ type: msg.type, frame, body: frame.subarray(5) });
    if (r instanceof Promise) r = (await r) ?? frame; // an error or notice resolves to its masked frame
    out.push(r);
    for (let n = m.takeNoticeFrame(); n; n = m.takeNoticeFrame()) out.push(n);
  }
  return Buffer.concat(out);
}

function rows(bytes: Buffer): (string | null)[][] {
  return frames(bytes)
    .filter((f) => f.type === BackendType.dataRow)
    .map((f) => {
      const v: (string | null)[] = [];
      const cur = dataRowValues(f.body);
      while (cur.next()) v.push(cur.text());
      return v;
    });
}

function copyText(bytes: Buffer): string {
  return Buffer.concat(frames(bytes).filter((f) => f.type === BackendType.copyData).map((f) => f.body)).toString('utf8');
}

test('a session through the masking stage: nothing raw reaches the client', async () => {
  const plan = compileMaskingPlan('pg-test', {
    'pg-test': { columns: ['*.email', 'users.ssn', '*password*', '*.birth_date'], detectors: ['all'], style: 'partial' },
  });
  assert.ok(plan);
  const l = lookup();
  const m = new ResultMasker(plan, Buffer.alloc(32, 9), l);
  const c = await RawPg.login(pg.port, pg.password, 'app');
  clients.push(c);
  const all: Buffer[] = [];

  // psql-style text results.
  const text = await exchange(c, m, fe.query('SELECT id, email, ssn, note, password_hash, profile, birth_date, code, email_lower FROM users ORDER BY id'));
  all.push(text);
  const [alice, bob] = rows(text);
  assert.deepEqual(alice?.slice(0, 4), ['1', '****@example.com', '****6789', 'card ****1111 on file']);
  assert.equal(alice?.[4], '****WMUW');
  const profile = JSON.parse(alice?.[5] ?? 'null') as Record<string, string>;
  assert.deepEqual(profile, { aws_secret_access_key: '****EKEY', backup_email: '****@example.net', name: 'Ålice Ünïcødé' });
  assert.equal(alice?.[6], '****1-02');
  assert.equal(alice?.[8], '****@example.com', 'a generated copy of the email is caught by the detector');
  assert.deepEqual(bob?.slice(0, 4), ['2', '****@example.org', '****1120', 'nothing, to see']);

  // node-postgres-style extended protocol with binary results, prepared once.
  all.push(await exchange(c, m, fe.parse('s1', 'SELECT id, email, ssn, profile, birth_date FROM users WHERE id = $1'), fe.describe('S', 's1'), fe.SYNC));
  const bin = await exchange(c, m, fe.bind('', 's1', ['1'], { resultFormats: [1] }), fe.execute(''), fe.SYNC);
  all.push(bin);
  const binRow = frames(bin).find((f) => f.type === BackendType.dataRow);
  assert.ok(binRow);
  const cur = dataRowValues(binRow.body);
  const values: (Buffer | null)[] = [];
  while (cur.next()) values.push(cur.value());
  assert.equal(values[0]?.readInt32BE(0), 1);
  assert.equal(values[1]?.toString(), '****@example.com');
  assert.equal(values[2]?.toString(), '****6789');
  assert.equal(values[3]?.[0], 1, 'jsonb version byte');
  assert.match(values[3]?.subarray(1).toString() ?? '', /"backup_email": "\*\*\*\*@example\.net"/);
  assert.equal(values[4], null, 'a masked date in binary is NULL');
  const notices = frames(bin).filter((f) => f.type === BackendType.noticeResponse).map((f) => decodeErrorResponse(f.body).message);
  assert.ok(notices.some((n) => n.startsWith('masked binary column public.users.birth_date returned as NULL')), notices.join('; '));

  // COPY: text (generated column left out by the server), CSV with HEADER, a query, two in one Query.
  const copy = await exchange(c, m, fe.query('COPY users TO STDOUT'));
  all.push(copy);
  const copyLines = copyText(copy).split('\n');
  assert.equal(copyLines[0]?.split('\t').length, 8);
  assert.deepEqual(copyLines[0]?.split('\t').slice(0, 4), ['1', '****@example.com', '****6789', 'card ****1111 on file']);
  const csv = await exchange(c, m, fe.query("COPY users (id, email, note) TO STDOUT WITH (FORMAT csv, HEADER)"));
  all.push(csv);
  assert.equal(copyText(csv), 'id,email,note\n1,****@example.com,card ****1111 on file\n2,****@example.org,"nothing, to see"\n');
  const q = await exchange(c, m, fe.query('COPY (SELECT ssn, upper(note) AS n FROM users ORDER BY id) TO STDOUT WITH CSV'));
  all.push(q);
  assert.equal(copyText(q), '****6789,CARD ****1111 ON FILE\n****1120,"NOTHING, TO SEE"\n');
  const two = await exchange(c, m, fe.query('COPY users (email) TO STDOUT; COPY users (code) TO STDOUT'));
  all.push(two);
  assert.equal(copyText(two), '****@example.com\n****@example.org\nA1\nB2\n');

  // Errors that echo values.
  const dup = await exchange(c, m, fe.query("INSERT INTO users (id, email, ssn) VALUES (3, 'alice@example.com', '219-09-9999')"));
  all.push(dup);
  const dupErr = decodeErrorResponse(frames(dup).find((f) => f.type === BackendType.errorResponse)!.body);
  assert.equal(dupErr.code, '23505');
  // This masker has no statement analysis, so every statement counts as reading a masked
  // column (and a write to a table with one does anyway: a key or a failing row shows
  // stored values): the detail is withheld whole (notice-fields.ts, `reads`).
  assert.equal(dupErr.detail, READS_MASKED_TEXT);
  const check = await exchange(c, m, fe.query("INSERT INTO users (id, email, ssn, code) VALUES (3, 'new@example.com', '219-09-9999', 'BAD')"));
  all.push(check);
  const checkErr = decodeErrorResponse(frames(check).find((f) => f.type === BackendType.errorResponse)!.body);
  assert.equal(checkErr.code, '23514');
  assert.equal(checkErr.detail, READS_MASKED_TEXT);

  // Byte for byte: no raw value anywhere in what the client received.
  const everything = Buffer.concat(all);
  for (const raw of RAW) assert.equal(everything.indexOf(raw), -1, `raw value leaked: ${raw}`);
  const counts = m.counts();
  assert.ok(counts.values > 20, JSON.stringify(counts));
  assert.ok((counts.byRule['column:*.email'] ?? 0) > 0 && (counts.byRule['email'] ?? 0) > 0 && (counts.byRule['aws_key'] ?? 0) > 0);
});
