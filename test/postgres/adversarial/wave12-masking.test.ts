/**
 * Adversarial corpus, wave 12 — what the masker knew only from hand-kept lists.
 *
 * 1. Set-returning functions in the select list (and ORDER BY, GROUP BY, DISTINCT ON, which
 *    PostgreSQL evaluates per row as hidden outputs, and where the analysis did not look): a masked column in the arguments of a
 *    set-returning function decides how many rows the statement returns, one more per
 *    character code. The analysis knew which functions return sets from a list of the
 *    common ones (generate_series, unnest, regexp_split_to_table …); any other built-in
 *    (pg_options_to_table, ts_parse, ts_debug, aclexplode, txid_snapshot_xip) passed its
 *    row count through. The catalog (pg_proc.proretset) now answers, for every name. The
 *    same answer ends a false denial: a name with an extension's overload (citext adds
 *    `translate(citext, …)`) counted as set-returning, so `translate(reverse(email), …), id`
 *    showed one row and a NULL id.
 * 2. Binary result format of types the detectors could not read: citext, an enum, a
 *    domain over citext, arrays of them went out as NULL (a masked citext email column
 *    too). Their send function (pg_type.typsend, an internal function) says they are sent
 *    as text: they are now read, and masked, as text — in DataRows and binary COPY.
 *
 * 3. COPY … TO STDOUT (ENCODING 'SJIS'): PostgreSQL writes the rows in that encoding, where
 *    the second byte of a character may be a backslash or the delimiter (`ソ` is 0x83 0x5C,
 *    `ポ` 0x83 0x7C); the masker, reading UTF-8, took it for a field's end and put its masks
 *    on the wrong fields, so the masked column went out raw. Such a COPY's rows are now
 *    withheld (COPY 0, with a notice); ENCODING 'UTF8' (any spelling) copies as before.
 *
 * The values: the seeded email (the email detector and the `*.email` rule) and the AWS key
 * (the aws_key detector); the character codes of the email's local part (no detector).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AWS_KEY,
  assertAbsent,
  assertNoFragments,
  noticesOf,
  BackendType,
  EMAIL1,
  describeMsgs,
  direct,
  errorsOf,
  exchange,
  fe,
  rowsOf,
  simple,
  superQuery,
  tagsOf,
  useAdversary,
  type Adversary,
  type Msg,
  READ_ONLY_POLICY,
} from './harness.js';
import type pg from 'pg';
import type { PolicyConfig } from '../../../src/broker/config/types.js';

/** The harness's read-only policy with COPY … TO STDOUT allowed (it reads). */
const COPY_POLICY: PolicyConfig[] = READ_ONLY_POLICY.map((p) => ({ ...p, rules: p.rules.map((r) => (r.sql ? { ...r, sql: [...r.sql, 'copy'] } : r)) }));

const LOCAL1 = EMAIL1.split('@')[0]!;
/** How many characters of the local part each row-count attack spells in its control. */
const K = 5;

const SEED = `
CREATE EXTENSION IF NOT EXISTS citext;
CREATE DOMAIN w12_addr AS citext;
CREATE TYPE w12_kind AS ENUM ('${EMAIL1}', 'plain');
CREATE TABLE w12_people (id int, email citext, contact w12_addr, kind w12_kind, note citext, tags citext[]);
INSERT INTO w12_people VALUES (1, '${EMAIL1}', '${EMAIL1}', '${EMAIL1}', 'deploy key ${AWS_KEY}', '{${EMAIL1},x}');
GRANT SELECT ON w12_people TO app;
`;

/** Parse/Bind (every result binary)/Describe/Execute/Sync. */
function binary(c: Parameters<typeof exchange>[0], sql: string): Promise<Msg[]> {
  return exchange(c, [fe.parse('', sql), fe.bind('', '', [], { resultFormats: [1] }), fe.describe('P', ''), fe.execute('', 0), fe.SYNC]);
}

function copyBytes(msgs: Msg[]): Buffer {
  return Buffer.concat(msgs.filter((m) => m.type === BackendType.copyData).map((m) => m.body));
}

/** Occurrences of `needle` in `hay`. */
function count(hay: Buffer, needle: string): number {
  let n = 0;
  for (let at = hay.indexOf(needle); at >= 0; at = hay.indexOf(needle, at + 1)) n++;
  return n;
}

/** A query's rows as text on a direct connection, in binary result format when `binary`. */
async function directText(client: pg.Client, sql: string, asBinary = false): Promise<string> {
  const r = await client.query({ text: sql, rowMode: 'array', ...(asBinary ? { binary: true } : {}) });
  return JSON.stringify((r.rows as unknown[][]).map((row) => row.map((v) => (Buffer.isBuffer(v) ? v.toString('latin1') : String(v)))));
}

/** Row-count attacks: one statement per character `k` of the local part; `code` reads the character code from its row count. */
interface CountAttack {
  id: string;
  fn: string;
  sql: (k: number) => string;
  code: (rows: number) => number;
}

const MINUS_ONE = (n: number): number => n - 1;
const SAME = (n: number): number => n;
/** `repeat('a ', code)` parses to a word and a blank per repetition. */
const HALF = (n: number): number => n / 2;

const CHAR = (k: number): string => `ascii(substr(email, ${k}, 1))`;
const COUNTS: CountAttack[] = [
  { id: 'w12m-10', fn: 'pg_options_to_table in the select list', sql: (k) => `select pg_options_to_table(string_to_array(repeat('a=b,', ${CHAR(k)}), ',')) from users where id = 1`, code: MINUS_ONE },
  { id: 'w12m-11', fn: 'ts_parse in the select list', sql: (k) => `select ts_parse('default', repeat('a ', ${CHAR(k)})) from users where id = 1`, code: HALF },
  { id: 'w12m-12', fn: 'ts_debug in the select list', sql: (k) => `select ts_debug(repeat('a ', ${CHAR(k)})) from users where id = 1`, code: HALF },
  { id: 'w12m-13', fn: 'aclexplode in the select list', sql: (k) => `select aclexplode(array_fill('app=r/app'::aclitem, array[${CHAR(k)}])) from users where id = 1`, code: SAME },
  {
    id: 'w12m-14',
    fn: 'txid_snapshot_xip in the select list',
    sql: (k) =>
      `select txid_snapshot_xip(('1:' || (${CHAR(k)} + 2) || ':' || (select string_agg(g::text, ',') from generate_series(1, ${CHAR(k)}) g))::txid_snapshot) from users where id = 1`,
    code: SAME,
  },
  {
    id: 'w12m-15',
    fn: 'pg_options_to_table in the select list (IS NULL, beside a clean 1)',
    sql: (k) => `select 1 as one, pg_options_to_table(string_to_array(repeat('a=b,', ${CHAR(k)}), ',')) is null from users where id = 1`,
    code: MINUS_ONE,
  },
  { id: 'w12m-18a', fn: 'generate_series in ORDER BY (a hidden output)', sql: (k) => `select 1 from users where id = 1 order by generate_series(1, ${CHAR(k)})`, code: SAME },
  { id: 'w12m-18b', fn: 'generate_series in GROUP BY (a group per value)', sql: (k) => `select 1 from users where id = 1 group by generate_series(1, ${CHAR(k)})`, code: SAME },
  { id: 'w12m-18c', fn: 'generate_series in DISTINCT ON', sql: (k) => `select distinct on (generate_series(1, ${CHAR(k)})) 1 from users where id = 1`, code: SAME },
];

/** The characters a list of row counts spells. */
function spell(counts: readonly number[], code: (rows: number) => number): string {
  return counts.map((n) => String.fromCharCode(code(n))).join('');
}

describe('adversarial corpus wave 12: set-returning functions, binary values of types sent as text, COPY in other encodings', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    policies: COPY_POLICY,
    maskedColumns: ['*.email', 'w12_people.kind'],
    setup: async (a) => {
      await superQuery(a, SEED);
    },
  });

  test('w12m-00: control — without agentgate, each statement below counts the characters of the email, and binary results carry it', async () => {
    await direct(adv, async (client) => {
      for (const a of COUNTS) {
        const counts: number[] = [];
        for (let k = 1; k <= K; k++) counts.push((await client.query(a.sql(k))).rowCount ?? 0);
        assert.equal(spell(counts, a.code), LOCAL1.slice(0, K), `${a.id} (${a.fn}) spells the value directly`);
      }
      const bin = await directText(client, 'select email, contact, kind, note from w12_people', true);
      assert.equal(count(Buffer.from(bin, 'latin1'), EMAIL1), 3, `binary values hold the email: ${bin}`);
      assert.ok(bin.includes(AWS_KEY), bin);
    });
  });

  for (const a of COUNTS) {
    test(`${a.id}: ${a.fn}, sized by ${CHAR(1)} (k = 1…${K}): one row (masked) and SELECT 1 each`, () =>
      withClient(async ({ c }) => {
        for (let k = 1; k <= K; k++) {
          const msgs = await simple(c, a.sql(k));
          assert.deepEqual(errorsOf(msgs), [], describeMsgs(msgs));
          assert.deepEqual(tagsOf(msgs), ['SELECT 1'], `${a.id} k=${k}: ${describeMsgs(msgs)}`);
          assert.equal(rowsOf(msgs).length, 1, `${a.id} k=${k}`);
        }
      }));
  }

  test('w12m-16: the same through Parse/Bind/Execute with binary results and no Describe', () =>
    withClient(async ({ c }) => {
      for (let k = 1; k <= K; k++) {
        const msgs = await exchange(c, [fe.parse('', COUNTS[0]!.sql(k)), fe.bind('', '', [], { resultFormats: [1] }), fe.execute('', 0), fe.SYNC]);
        assert.deepEqual(tagsOf(msgs), ['SELECT 1'], describeMsgs(msgs));
        assert.ok(rowsOf(msgs).length <= 1, describeMsgs(msgs));
      }
    }));

  test('w12m-17: [no false denial] a set-returning function over constants, and translate() where citext adds an overload, keep every row', () =>
    withClient(async ({ c }) => {
      const options = await simple(c, "select pg_options_to_table(array['a=b', 'c=d', 'e=f'])");
      assert.deepEqual(tagsOf(options), ['SELECT 3'], describeMsgs(options));
      const ordered = await simple(c, 'select id from users where id = 1 order by id, generate_series(1, 3)');
      assert.deepEqual(rowsOf(ordered), [['1'], ['1'], ['1']], describeMsgs(ordered));
      // citext's translate(citext, citext, text) is not set-returning: the rows are the table's
      // (its output stays masked whole: a name with an overload not built in is opaque).
      const translated = await simple(c, "select translate(reverse(email), 'abc', 'xyz'), id from users order by id");
      assert.deepEqual(rowsOf(translated), [
        ['********', '1'],
        ['********', '2'],
      ]);
    }));

  const COLUMNS = 'select email, contact, kind, note from w12_people';

  test('w12m-20: citext, a domain over citext and an enum in binary format are masked as in text format, not NULLed', () =>
    withClient(async ({ c }) => {
      const text = rowsOf(await simple(c, COLUMNS));
      assert.deepEqual(text, [['****@victim.example', '****@victim.example', '****@victim.example', 'deploy key ****MPLE']]);
      const msgs = await binary(c, COLUMNS);
      assert.deepEqual(errorsOf(msgs), [], describeMsgs(msgs));
      assert.deepEqual(rowsOf(msgs), text, describeMsgs(msgs));
    }));

  test('w12m-21: arrays of citext and of an enum in binary format: read element by element (a detector hit withholds the array)', () =>
    withClient(async ({ c }) => {
      const msgs = await binary(c, "select array['plain'::citext, 'x'], array['plain'::w12_kind], array[note] from w12_people");
      assert.deepEqual(errorsOf(msgs), [], describeMsgs(msgs));
      const [row] = rowsOf(msgs);
      assert.ok(row?.[0]?.endsWith('plain\u0000\u0000\u0000\u0001x'), `citext[] arrives: ${JSON.stringify(row)}`);
      assert.ok(row?.[1]?.endsWith('plain'), `w12_kind[] arrives: ${JSON.stringify(row)}`);
      assert.equal(row?.[2], null, 'the array holding the key is withheld');
    }));

  test('w12m-22: COPY (citext, domain, enum, citext) TO STDOUT (FORMAT binary): masked values, not NULLs', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, `copy (${COLUMNS}) to stdout (format binary)`);
      assert.deepEqual(errorsOf(msgs), [], describeMsgs(msgs));
      const data = copyBytes(msgs);
      assert.equal(count(data, '****@victim.example'), 3, data.toString('latin1'));
      assert.equal(count(data, 'deploy key ****MPLE'), 1, data.toString('latin1'));
    }));

  /** COPYs whose rows PostgreSQL writes in an encoding where a character's second byte is ASCII. */
  const ENCODED: { id: string; sql: string; why: string }[] = [
    {
      id: 'w12m-31',
      sql: "copy (select 'ソ' as a, split_part(email, '@', 1) as b from users) to stdout (encoding 'SJIS')",
      why: "text format: ソ ends in a backslash, which escapes the tab after it, so the computed column was taken for part of the clean one",
    },
    {
      id: 'w12m-32',
      sql: "copy (select 'ポ' as a, name, email from users) to stdout (format csv, delimiter '|', encoding 'SJIS')",
      why: "CSV, delimiter '|': ポ ends in '|', one field more, so the rule's mask fell on name and the email went out whole",
    },
    {
      id: 'w12m-33',
      sql: "copy (select 'ポ' as a, name, email from users) to stdout with csv delimiter '|' encoding 'Shift_JIS'",
      why: 'the same in the pre-9.0 option syntax, under an alias of the encoding',
    },
  ];

  test('w12m-30: control — ソ and ポ in SJIS end in a backslash and a |, and the columns copied hold the value', async () => {
    await direct(adv, async (client) => {
      const text = await directText(client, "select encode(convert_to('ソ', 'SJIS'), 'hex'), encode(convert_to('ポ', 'SJIS'), 'hex'), split_part(email, '@', 1) from users where id = 1");
      assert.equal(text, JSON.stringify([['835c', '837c', LOCAL1]]));
    });
  });

  for (const a of ENCODED) {
    test(`${a.id}: ${a.sql} — ${a.why}: the rows are withheld, COPY 0`, () =>
      withClient(async ({ c, bytes }) => {
        const msgs = await simple(c, a.sql);
        assert.deepEqual(errorsOf(msgs), [], describeMsgs(msgs));
        assert.equal(copyBytes(msgs).length, 0, `no row: ${copyBytes(msgs).toString('latin1')}`);
        assert.deepEqual(tagsOf(msgs), ['COPY 0'], describeMsgs(msgs));
        assertNoFragments(bytes(), a.id);
        assertAbsent(bytes(), LOCAL1, a.id);
      }));
  }

  test('w12m-34: the notice says why, and what to do', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, ENCODED[0]!.sql);
      assert.ok(
        noticesOf(msgs).some((n) => n.includes('ENCODING') && n.includes('leave the ENCODING option out')),
        describeMsgs(msgs),
      );
    }));

  test("w12m-35: [no false denial] ENCODING 'UTF8', 'utf-8' and 'Unicode' copy as without it, masked", () =>
    withClient(async ({ c }) => {
      for (const enc of ['UTF8', 'utf-8', 'Unicode']) {
        const msgs = await simple(c, `copy (select name, email from users order by id) to stdout (format csv, encoding '${enc}')`);
        assert.deepEqual(tagsOf(msgs), ['COPY 2'], describeMsgs(msgs));
        assert.equal(copyBytes(msgs).toString('utf8'), 'Alpha,****@victim.example\nBravo,****@victim.example\n', enc);
      }
    }));
});
