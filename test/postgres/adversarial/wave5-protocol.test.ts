/**
 * Adversarial corpus, wave 5 — binary result formats and message orderings.
 *
 * Binary results: a masked column (`*.email`) of every type a value can take (text,
 * varchar, bpchar, name, a domain over text, citext, an enum, json, jsonb, xml, bytea,
 * text[], a composite, a range and multirange of text, tsvector, hstore) and computed
 * records, arrays and casts, with result format codes 1 for all, per column, mixed, more
 * codes than columns and codes other than 0/1; with Describe of the portal, of the statement
 * before the Bind, or none. A masked value must come back as a valid value of its binary
 * type (the mask) or NULL, never raw. Columns no rule masks are scanned by the detectors:
 * their binary form must not carry a detector's find past them (an AWS key in a text[],
 * xml, enum, citext, hstore, tsvector, composite or range; a card number in a numeric or
 * int8, which no string search would see). Harmless binary values pass unchanged.
 *
 * Orderings: an extended-protocol error answered at a Flush puts the server into "skip to
 * Sync", where it ignores even a simple Query or a FunctionCall; a proxy that queued those
 * as owed an answer reads every later result against the wrong statement (w5p-40…43). Also
 * a suspended portal resumed after a refused session change, stray COPY messages with no
 * COPY active, binary parameters feeding the gate, bytea_output=escape from startup, and
 * binary COPY (refused by this policy).
 *
 * Each case shows the attack works directly against the server as `app` (read-only), then
 * what agentgate does.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertIntact,
  assertNoError,
  assertNoRaw,
  assertRefused,
  assertStoreClean,
  AWS_KEY,
  BackendType,
  CARD1,
  collectClientBytes,
  describeMsgs,
  drain,
  EMAIL1,
  errorsOf,
  exchange,
  fe,
  functionCall,
  loginWith,
  noticesOf,
  RawPg,
  rowsOf,
  useAdversary,
  type Adversary,
  type Msg,
} from './harness.js';
import { dataRowValues } from '../../../src/broker/postgres/decode-backend.js';

const SEED = `
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE TYPE e_mail AS ENUM ('${EMAIL1}', 'other');
CREATE TYPE e_key AS ENUM ('${AWS_KEY}', 'other');
CREATE DOMAIN d_mail AS text;
CREATE TYPE c_mail AS (v text, n int);
CREATE TYPE textrange AS RANGE (subtype = text);
CREATE TABLE w5_varchar (email varchar(80)); INSERT INTO w5_varchar VALUES ('${EMAIL1}');
CREATE TABLE w5_bpchar (email char(40)); INSERT INTO w5_bpchar VALUES ('${EMAIL1}');
CREATE TABLE w5_name (email name); INSERT INTO w5_name VALUES ('${EMAIL1}');
CREATE TABLE w5_citext (email citext); INSERT INTO w5_citext VALUES ('${EMAIL1}');
CREATE TABLE w5_dom (email d_mail); INSERT INTO w5_dom VALUES ('${EMAIL1}');
CREATE TABLE w5_enum (email e_mail); INSERT INTO w5_enum VALUES ('${EMAIL1}');
CREATE TABLE w5_json (email json); INSERT INTO w5_json VALUES ('"${EMAIL1}"');
CREATE TABLE w5_jsonb (email jsonb); INSERT INTO w5_jsonb VALUES ('"${EMAIL1}"');
CREATE TABLE w5_xml (email xml); INSERT INTO w5_xml VALUES ('<a>${EMAIL1}</a>');
CREATE TABLE w5_bytea (email bytea); INSERT INTO w5_bytea VALUES ('${EMAIL1}'::bytea);
CREATE TABLE w5_arr (email text[]); INSERT INTO w5_arr VALUES (ARRAY['${EMAIL1}', NULL]);
CREATE TABLE w5_comp (email c_mail); INSERT INTO w5_comp VALUES (ROW('${EMAIL1}', 1));
CREATE TABLE w5_range (email textrange); INSERT INTO w5_range VALUES (textrange('${EMAIL1}', 'zz'));
CREATE TABLE w5_mrange (email textmultirange); INSERT INTO w5_mrange VALUES (textmultirange(textrange('${EMAIL1}', 'zz')));
CREATE TABLE w5_tsv (email tsvector); INSERT INTO w5_tsv VALUES (to_tsvector('simple', '${EMAIL1}'));
CREATE TABLE w5_hstore (email hstore); INSERT INTO w5_hstore VALUES (hstore('k', '${EMAIL1}'));
CREATE TABLE w5_det (id int, arr text[], js jsonb, x xml, en e_key, ci citext, hs hstore, tsv tsvector, num numeric, big int8, comp c_mail, rng textrange, vc varchar);
INSERT INTO w5_det VALUES (1, ARRAY['${AWS_KEY}'], '{"k": "${AWS_KEY}"}', '<a>${AWS_KEY}</a>', '${AWS_KEY}', '${AWS_KEY}', hstore('k', '${AWS_KEY}'),
  'key ${AWS_KEY}'::tsvector, ${CARD1}, ${CARD1}, ROW('${AWS_KEY}', 1), textrange('${AWS_KEY}', 'zz'), '${AWS_KEY}');
GRANT SELECT ON ALL TABLES IN SCHEMA public TO app;
`;

/** How a masked value of each column type comes back in binary: the mask in the type's own binary form, or NULL. */
const MASKED_TYPES: readonly [table: string, outcome: 'mask' | 'null'][] = [
  ['users', 'mask'],
  ['w5_varchar', 'mask'],
  ['w5_bpchar', 'mask'],
  ['w5_name', 'mask'],
  ['w5_dom', 'mask'],
  ['w5_json', 'mask'],
  ['w5_jsonb', 'mask'],
  ['w5_xml', 'mask'],
  ['w5_bytea', 'mask'],
  // Sent by textsend and enum_send: read as text (wire-types.ts, wave 12).
  ['w5_citext', 'mask'],
  ['w5_enum', 'mask'],
  ['w5_arr', 'null'],
  ['w5_comp', 'null'],
  ['w5_range', 'null'],
  ['w5_mrange', 'null'],
  ['w5_tsv', 'null'],
  ['w5_hstore', 'null'],
];

/** Columns of w5_det (no rule masks them) in binary: the detectors' find masked in place, or the value withheld (NULL). */
const DETECTED: readonly [column: string, outcome: 'mask' | 'null', why: string][] = [
  ['vc', 'mask', 'varchar: the binary form is the text'],
  ['js', 'mask', 'jsonb: the text after its version byte'],
  ['x', 'mask', 'xml: the binary form is the text'],
  ['arr', 'null', 'text[]: read element by element, a hit withholds the array'],
  ['num', 'null', 'numeric: read as its decimal text, a card number'],
  ['big', 'null', 'int8: read as its decimal text, a card number'],
  ['en', 'mask', 'an enum: enum_send writes the label, read as text'],
  ['ci', 'mask', 'citext: sent by textsend, read as text'],
  ['hs', 'null', 'hstore: binary form not read'],
  ['tsv', 'null', 'tsvector: binary form not read'],
  ['comp', 'null', 'a composite: binary form not read'],
  ['rng', 'null', 'a range of text: binary form not read'],
];

/** Every DataRow's values as bytes (null = SQL NULL). */
function valuesOf(msgs: Msg[]): (Buffer | null)[][] {
  return msgs
    .filter((m) => m.type === BackendType.dataRow)
    .map((m) => {
      const row: (Buffer | null)[] = [];
      const cur = dataRowValues(m.body);
      while (cur.next()) {
        const v = cur.value();
        row.push(v === null ? null : Buffer.from(v));
      }
      return row;
    });
}

const has = (b: Buffer | null | undefined, s: string): boolean => b !== null && b !== undefined && b.includes(Buffer.from(s));

/** numeric_send's base-10000 digits of a binary numeric. */
function numericDigits(b: Buffer): number[] {
  const n = b.readInt16BE(0);
  return Array.from({ length: n }, (_, i) => b.readInt16BE(8 + 2 * i));
}

function extendedBinary(sql: string, formats: number[], how: 'portal' | 'statement' | 'none'): Buffer[] {
  const b = fe.bind('', '', [], { resultFormats: formats });
  if (how === 'portal') return [fe.parse('', sql), b, fe.describe('P', ''), fe.execute('', 0), fe.SYNC];
  if (how === 'statement') return [fe.parse('', sql), fe.describe('S', ''), b, fe.execute('', 0), fe.SYNC];
  return [fe.parse('', sql), b, fe.execute('', 0), fe.SYNC];
}

/** Every value of the first column is masked whole (stars) or NULL; and there is a row. */
function assertMaskedWhole(rows: (string | null)[][]): void {
  assert.ok(rows.length > 0, 'rows came back');
  for (const row of rows) {
    const v = row[0] ?? null;
    assert.ok(v === null || /^\*+$/.test(v), `masked whole: ${v}`);
  }
}

/** The "skip to Sync" trick: an error answered at a Flush, then `between` (which the server ignores), then the Sync. */
async function afterFlushedError(c: RawPg, between: Buffer[]): Promise<Msg[]> {
  c.send(fe.parse('', 'select 1/0'), fe.bind('', '', []), fe.execute('', 0), fe.FLUSH);
  const out = await drain(c, 600);
  assert.deepEqual(
    errorsOf(out).map((e) => e.code),
    ['22012'],
    `the flushed error: ${describeMsgs(out)}`,
  );
  c.send(...between);
  out.push(...(await drain(c, 600)));
  out.push(...(await exchange(c, [fe.SYNC])));
  return out;
}

/** A statement whose output column is labelled `reverse` and computes nothing from a masked column. */
const DECOY = "select 'decoy'::text as reverse";
/** The same label over the masked column, in a form no detector recognises. */
const REAL = "select translate(reverse(email), '@.', '##') as reverse from users";

describe('adversarial corpus wave 5: binary formats and message orderings', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    setup: async (a) => {
      await a.stack.pg.psql(SEED, { database: 'app' });
    },
  });

  /** `bufs` sent directly to the server as app in a read-only session: the messages and every byte received. */
  const direct = async (bufs: Buffer[], readies = 1, between?: (c: RawPg) => Promise<Msg[]>): Promise<{ msgs: Msg[]; bytes: Buffer }> => {
    const c = await RawPg.login(adv.stack.pg.port, adv.stack.pg.password, 'app', { options: '-c default_transaction_read_only=on' });
    const bytes = collectClientBytes(c);
    try {
      const msgs = between ? await between(c) : [];
      msgs.push(...(await exchange(c, bufs, readies)));
      return { msgs, bytes: bytes() };
    } finally {
      c.close();
    }
  };

  // ───────────── binary results of masked columns ─────────────

  test('w5p-00: control — directly, the binary result of each column type carries the raw email (and w5_det the raw key / card digits)', async () => {
    for (const [table] of MASKED_TYPES) {
      const { msgs } = await direct(extendedBinary(`select email from ${table}`, [1], 'portal'));
      const v = valuesOf(msgs)[0]?.[0];
      assert.ok(has(v, EMAIL1), `${table}: the binary value holds the email: ${describeMsgs(msgs)}`);
    }
    for (const [col] of DETECTED) {
      const { msgs } = await direct(extendedBinary(`select ${col} from w5_det`, [1], 'portal'));
      const v = valuesOf(msgs)[0]?.[0] ?? null;
      assert.ok(v !== null, `${col}: a value`);
      if (col === 'num') assert.deepEqual(numericDigits(v), [4111, 1111, 1111, 1111], 'numeric: the card number in base-10000 digits');
      else if (col === 'big') assert.equal(v.readBigInt64BE(0).toString(), CARD1, 'int8: the card number');
      else assert.ok(has(v, AWS_KEY), `${col}: the binary value holds the key`);
    }
  });

  for (const [table, outcome] of MASKED_TYPES) {
    test(`w5p-01 ${table}: the masked email in binary (formats [1], [1,1], [0,1]; Describe of the portal, of the statement before Bind, or none) is ${outcome === 'mask' ? 'the mask' : 'NULL'}`, () =>
      withClient(async ({ c }) => {
        const runs: [number[], 'portal' | 'statement' | 'none'][] = [
          [[1], 'portal'],
          [[1, 1], 'portal'],
          [[0, 1], 'portal'],
          [[1], 'statement'],
          [[1], 'none'],
        ];
        for (const [formats, how] of runs) {
          const msgs = await exchange(c, extendedBinary(`select 7, email from ${table}`, formats, how));
          assertNoError(msgs, `${table} ${JSON.stringify(formats)} ${how}`);
          const rows = valuesOf(msgs);
          assert.ok(rows.length >= 1, `${table}: rows`);
          const v = rows[0]![1]!;
          const what = `${table} ${JSON.stringify(formats)} ${how}: ${describeMsgs(msgs)}`;
          // What nothing described cannot be read: NULL, whatever the type (fail closed).
          if (outcome === 'null' || how === 'none') {
            assert.equal(v, null, `${what}: NULL`);
            continue;
          }
          assert.ok(v !== null, `${what}: the mask, not NULL`);
          assert.ok(!has(v, 'qxzjv') && !has(v, 'vjqxp'), `${what}: no raw local part`);
          if (table === 'w5_jsonb') {
            assert.equal(v[0], 1, 'jsonb keeps its version byte');
            assert.equal(typeof JSON.parse(v.subarray(1).toString('utf8')), 'string', `jsonb: valid JSON: ${v.toString('latin1')}`);
          }
          if (table === 'w5_json') assert.equal(typeof JSON.parse(v.toString('utf8')), 'string', 'json: valid JSON');
          // The int4 beside it, in binary when asked for, is untouched.
          const n = rows[0]![0]!;
          if (formats[0] === 1) assert.equal(n.readInt32BE(0), 7, 'binary int4 untouched');
          else assert.equal(n.toString(), '7', 'text int4 untouched');
        }
      }));
  }

  test('w5p-02: records, arrays and casts over the masked column in binary (row(email, 1), u, array[email], to_tsvector, hstore, a range, ::xml, ::citext, ::e_mail) never carry it', () =>
    withClient(async ({ c }) => {
      for (const sql of [
        'select row(email, 1) from users',
        'select u from users u',
        'select array[email] from users',
        "select to_tsvector('simple', email) from users",
        "select hstore('k', email) from users",
        "select textrange(email, 'zz') from users",
        'select email::xml from users',
        'select to_jsonb(u) from users u',
        'select email::citext from users',
        'select email::e_mail from w5_enum',
      ]) {
        const d = await direct(extendedBinary(sql, [1], 'portal'));
        assert.ok(d.bytes.includes(Buffer.from(EMAIL1)), `control: ${sql} carries the email directly`);
        const msgs = await exchange(c, extendedBinary(sql, [1], 'portal'));
        assertNoError(msgs, sql);
        for (const row of valuesOf(msgs)) assert.ok(!has(row[0], 'qxzjv') && !has(row[0], 'vjqxp'), `${sql}: ${describeMsgs(msgs)}`);
      }
    }));

  test('w5p-03: result format codes the server refuses (2; more codes than columns) run nothing and show nothing', () =>
    withClient(async ({ c }) => {
      const d = await direct(extendedBinary('select email, 1 from users', [1, 0, 1], 'portal'));
      assert.deepEqual(
        errorsOf(d.msgs).map((e) => e.code),
        ['08P01'],
        'control: the server refuses three codes for two columns',
      );
      const many = await exchange(c, extendedBinary('select email, 1 from users', [1, 0, 1], 'portal'));
      assert.deepEqual(
        errorsOf(many).map((e) => e.code),
        ['08P01'],
        describeMsgs(many),
      );
      assert.equal(valuesOf(many).length, 0);
      const two = await exchange(c, extendedBinary('select email, 1 from users', [2], 'portal'));
      assert.deepEqual(
        errorsOf(two).map((e) => e.code),
        ['08P01'],
        describeMsgs(two),
      );
      assert.equal(valuesOf(two).length, 0);
    }));

  // ───────────── detectors over binary values ─────────────

  for (const [col, outcome, why] of DETECTED) {
    test(`w5p-10 ${col}: a detector's find in binary (${why}) is ${outcome === 'mask' ? 'masked in place' : 'withheld as NULL'}`, () =>
      withClient(async ({ c }) => {
        for (const how of ['portal', 'statement'] as const) {
          const msgs = await exchange(c, extendedBinary(`select ${col} from w5_det`, [1], how));
          assertNoError(msgs, `${col} ${how}`);
          const v = valuesOf(msgs)[0]![0]!;
          if (outcome === 'null') {
            assert.equal(v, null, `${col} ${how}: NULL, got ${v?.toString('latin1')}`);
            continue;
          }
          assert.ok(v !== null && !has(v, AWS_KEY) && !has(v, 'AKIAIOSFODNN'), `${col} ${how}: masked in place: ${v?.toString('latin1')}`);
        }
        // Text format of the same column stays as it was: the value, with the key masked.
        const text = await exchange(c, extendedBinary(`select ${col} from w5_det`, [0], 'portal'));
        assertNoError(text, `${col} text`);
        assert.ok(rowsOf(text)[0]![0] !== null, `${col} in text is not withheld`);
      }));
  }

  test('w5p-11: harmless binary values pass unchanged (int8 count, numeric, text[], int4[], jsonb, a date)', () =>
    withClient(async ({ c }) => {
      const sql = "select count(*), 12345.678::numeric, array['plain', null], array[1, 2], '{\"a\": 1}'::jsonb, date '2024-01-02' from users";
      const d = await direct(extendedBinary(sql, [1], 'portal'));
      const msgs = await exchange(c, extendedBinary(sql, [1], 'portal'));
      assertNoError(msgs, 'harmless binary values');
      assert.deepEqual(valuesOf(msgs), valuesOf(d.msgs), 'the same bytes as the server sent');
      assert.deepEqual(noticesOf(msgs), [], 'no notice');
    }));

  // ───────────── "skip to Sync": what the server ignores ─────────────

  test('w5p-40: control — after an error answered at a Flush, the server ignores a simple Query (no answer) until Sync', async () => {
    const { msgs } = await direct([], 0, (c) => afterFlushedError(c, [fe.query('select 1')]));
    assert.deepEqual(
      msgs.map((m) => String.fromCharCode(m.type)),
      ['1', 'E', 'Z'],
      `the Query got no answer: ${describeMsgs(msgs)}`,
    );
  });

  test('w5p-41: a Query ignored in "skip to Sync" must not shift the tracker: a later batch labelled like a decoy is still masked', () =>
    withClient(async ({ c }) => {
      // Directly the rows come back raw: that is what the masker must catch.
      const d = await direct([], 0, async (dc) => {
        const out = await afterFlushedError(dc, [fe.query('select 1')]);
        out.push(...(await exchange(dc, extendedBinary(DECOY, [], 'portal'))));
        out.push(...(await exchange(dc, extendedBinary(REAL, [], 'portal'))));
        return out;
      });
      assert.throws(() => assertNoRaw(d.bytes), /raw value/, 'control: the reversed email comes back directly');
      const out = await afterFlushedError(c, [fe.query('select 1')]);
      assert.equal(out.filter((m) => m.type === BackendType.readyForQuery).length, 1, `one ReadyForQuery, for the Sync: ${describeMsgs(out)}`);
      const decoy = await exchange(c, extendedBinary(DECOY, [], 'portal'));
      assert.deepEqual(rowsOf(decoy), [['decoy']], `the decoy answers for itself: ${describeMsgs(decoy)}`);
      const real = await exchange(c, extendedBinary(REAL, [], 'portal'));
      assertNoError(real, 'the real read');
      assertMaskedWhole(rowsOf(real));
    }));

  test('w5p-42: the same with a FunctionCall (ignored too) between the flushed error and the Sync', () =>
    withClient(async ({ c }) => {
      const lower = Number((await adv.stack.pg.psql("select 'lower(text)'::regprocedure::oid", { database: 'app' })).trim());
      const d = await direct([], 0, (dc) => afterFlushedError(dc, [functionCall(lower, ['X'])]));
      assert.deepEqual(
        d.msgs.map((m) => String.fromCharCode(m.type)),
        ['1', 'E', 'Z'],
        `control: the FunctionCall got no answer: ${describeMsgs(d.msgs)}`,
      );
      const out = await afterFlushedError(c, [functionCall(lower, ['X'])]);
      assert.deepEqual(
        out.map((m) => String.fromCharCode(m.type)),
        ['1', 'E', 'Z'],
        describeMsgs(out),
      );
      await exchange(c, extendedBinary(DECOY, [], 'portal'));
      const real = await exchange(c, extendedBinary(REAL, [], 'portal'));
      assertMaskedWhole(rowsOf(real));
    }));

  test('w5p-43: a denied Query in "skip to Sync" runs nothing and leaves no stale refusal: the next refusal names its own statement', () =>
    withClient(async ({ c }) => {
      const out = await afterFlushedError(c, [fe.query('select f_del()'), fe.parse('', 'select f_del()'), fe.bind('', '', []), fe.execute('', 0)]);
      await assertIntact(adv, 'f_del() in skip-to-Sync');
      assert.deepEqual(
        errorsOf(out).map((e) => e.code),
        ['22012'],
        `only the flushed error: ${describeMsgs(out)}`,
      );
      const next = await exchange(c, [fe.query('delete from cards')]);
      assertRefused(next, 'delete from cards');
      assert.ok(!/f_del/.test(errorsOf(next)[0]!.message), `stale refusal: ${errorsOf(next)[0]!.message}`);
      const alive = await exchange(c, [fe.query('select 4242')]);
      assert.deepEqual(rowsOf(alive), [['4242']]);
    }));

  test('w5p-44: Parse/Bind/Execute of the masked column sent in "skip to Sync" is ignored; the next batch reads its own columns', () =>
    withClient(async ({ c }) => {
      const out = await afterFlushedError(c, [fe.parse('', REAL), fe.bind('', '', []), fe.describe('P', ''), fe.execute('', 0)]);
      assert.equal(valuesOf(out).length, 0, `nothing ran: ${describeMsgs(out)}`);
      const decoy = await exchange(c, extendedBinary(DECOY, [], 'portal'));
      assert.deepEqual(rowsOf(decoy), [['decoy']], describeMsgs(decoy));
      const real = await exchange(c, extendedBinary(REAL, [], 'none'));
      assertMaskedWhole(rowsOf(real));
    }));

  // ───────────── other orderings ─────────────

  test('w5p-50: a portal suspended by a row limit, the search_path changed (set_config, allowed) before Sync, then the resumed Execute: still masked, the same plan', () =>
    withClient(async ({ c }) => {
      const bufs = [
        fe.query('begin'),
        fe.parse('p50', 'select id, lower(email) from users order by id'),
        fe.bind('c50', 'p50', [], { resultFormats: [1] }),
        fe.describe('P', 'c50'),
        fe.execute('c50', 1),
        fe.parse('', "select set_config('search_path', 'shadow, public', false)"),
        fe.bind('', '', []),
        fe.execute('', 0),
        fe.execute('c50', 0),
        fe.SYNC,
        fe.query('rollback'),
      ];
      // Directly the rows are raw.
      const d = await direct(bufs, 3);
      assert.ok(d.bytes.includes(Buffer.from(EMAIL1)), `control: ${describeMsgs(d.msgs)}`);
      await adv.reset();
      const msgs = await exchange(c, bufs, 3);
      await assertIntact(adv, 'the resumed portal after a search_path change');
      assert.deepEqual(errorsOf(msgs), [], describeMsgs(msgs));
      // The portal's rows are the two-column ones (set_config answers with one column between them).
      const rows = valuesOf(msgs).filter((r) => r.length === 2);
      assert.deepEqual(
        rows.map((r) => r[0]?.readInt32BE(0)),
        [1, 2],
        `both rows, across the suspension: ${describeMsgs(msgs)}`,
      );
      for (const [, v] of rows) assert.ok(v === null || v === undefined || /^\*+$/.test(v.toString('latin1')), `lower(email) masked whole: ${v?.toString('latin1')}`);
      const path = await exchange(c, [fe.query('show search_path')]);
      assert.deepEqual(rowsOf(path), [['"$user", public']], 'search_path back after the rollback');
    }));

  test('w5p-51: CopyData, CopyDone and CopyFail with no COPY active, inside an extended batch, are ignored; the rows stay masked', () =>
    withClient(async ({ c }) => {
      const copyData = Buffer.concat([Buffer.from('d'), Buffer.from([0, 0, 0, 9]), Buffer.from('x\tyz\n')]);
      const copyDone = Buffer.from([0x63, 0, 0, 0, 4]);
      const copyFail = Buffer.concat([Buffer.from('f'), Buffer.from([0, 0, 0, 7]), Buffer.from('no\0')]);
      const bufs = [fe.parse('', 'select email from users'), copyData, fe.bind('', '', [], { resultFormats: [1] }), copyDone, fe.describe('P', ''), copyFail, fe.execute('', 0), fe.SYNC];
      const d = await direct(bufs);
      assert.ok(d.bytes.includes(Buffer.from(EMAIL1)), `control: the rows come back directly: ${describeMsgs(d.msgs)}`);
      const msgs = await exchange(c, bufs);
      assertNoError(msgs, 'stray COPY messages');
      assert.equal(valuesOf(msgs).length, 2, describeMsgs(msgs));
    }));

  test('w5p-52: the unnamed statement replaced between Bind and Execute, the new one Described: the portal runs the old text, still masked', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', REAL), fe.bind('', '', [], { resultFormats: [1] }), fe.parse('', DECOY), fe.describe('S', ''), fe.execute('', 0), fe.SYNC]);
      assertNoError(msgs, 'replaced unnamed statement');
      const rows = valuesOf(msgs);
      assert.equal(rows.length >= 1, true, describeMsgs(msgs));
      assertMaskedWhole(rows.map((r) => r.map((v) => (v === null ? null : v.toString('latin1')))));
    }));

  test('w5p-53: binary parameters feeding the gate (set_config role, $1::regclass to nextval, table_to_xml of a binary regclass, query_to_xml text) are refused', () =>
    withClient(async ({ c }) => {
      const oid = async (e: string): Promise<Buffer> => {
        const b = Buffer.alloc(4);
        b.writeUInt32BE(Number((await adv.stack.pg.psql(`select (${e})::oid`, { database: 'app' })).trim()));
        return b;
      };
      const cases: [string, number[], (Buffer | string)[], number[]][] = [
        ['select set_config($1, $2, false)', [], ['role', 'admin_role'], [1, 1]],
        ['select set_config($1, $2, false)', [25, 25], ['default_transaction_read_only', 'off'], [1]],
        ['select nextval($1)', [2205], [await oid("'s'::regclass")], [1]],
        ["select table_to_xml($1, true, true, '')", [2205], [await oid("'users'::regclass")], [1]],
        ["select query_to_xml($1, true, true, '')", [], ['select email from users'], [1]],
      ];
      for (const [sql, types, values, formats] of cases) {
        const msgs = await exchange(c, [fe.parse('', sql, types), fe.bind('', '', values, { paramFormats: formats }), fe.describe('P', ''), fe.execute('', 0), fe.SYNC]);
        assertRefused(msgs, sql);
      }
      await assertIntact(adv, 'binary parameters');
      const state = await exchange(c, [fe.query('select current_user, current_setting($$default_transaction_read_only$$)')]);
      assert.equal(rowsOf(state)[0]![0], 'app');
    }));

  test('w5p-60: bytea_output=escape from startup: bytea of the masked column (text and binary) is masked', async () => {
    const d = await direct([fe.query("set bytea_output = escape; select email::bytea from users")]);
    assert.ok(d.bytes.includes(Buffer.from(EMAIL1)), 'control: escape output shows the email as is');
    const cl = await loginWith(adv, { options: '-c bytea_output=escape' });
    try {
      assert.ok(cl.ready, 'the startup setting is accepted');
      const text = await exchange(cl.c, [fe.query('select email::bytea, convert_to(email, $$UTF8$$) from users')]);
      assertNoError(text, 'bytea escape');
      const bin = await exchange(cl.c, extendedBinary('select email::bytea from users', [1], 'portal'));
      assertNoError(bin, 'bytea binary');
      assertNoRaw(cl.bytes());
    } finally {
      cl.close();
    }
  });

  test('w5p-61: binary COPY of the masked column is refused by the read-only policy (directly it carries the email)', () =>
    withClient(async ({ c }) => {
      const d = await direct([fe.query('copy (select email from users) to stdout (format binary)')]);
      assert.ok(d.bytes.includes(Buffer.from(EMAIL1)), 'control: binary COPY carries the email');
      for (const sql of ['copy users to stdout (format binary)', 'copy (select row(email, 1) from users) to stdout (format binary)', 'copy w5_det to stdout (format binary)']) {
        assertRefused(await exchange(c, [fe.query(sql)]), sql);
      }
    }));

  test('w5p-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
