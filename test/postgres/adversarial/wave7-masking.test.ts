/**
 * Adversarial corpus, wave 7 — the row count a masked column decides, read past the
 * zero-column rule of wave 6 (w6m-38), and masked values through binary formats, catalog
 * views and EXPLAIN:
 * - A: the count itself, with output columns: a constant column beside a FROM function
 *   sized by the value, or beside a WHERE that links the value to a clean number. Every
 *   output is masked whole, but one statement per character still spells the value in
 *   its command tag or in how many (masked) rows arrive;
 * - B: the extended protocol around the withheld count — an Execute nothing Described
 *   (text or binary results, a statement parsed in an earlier batch), and an Execute with
 *   a row limit, whose PortalSuspended answers count the rows whatever the rows show;
 * - C: names that carry a query to a later statement: a cursor (DECLARE; MOVE's tag, FETCH
 *   ALL's tag and rows, FETCH ABSOLUTE k as a test of "at least k rows", WITH HOLD, a
 *   cursor declared through Parse/Execute, a name re-declared) and a prepared statement
 *   (PREPARE; EXECUTE);
 * - D: EXPLAIN ANALYZE, which runs the statement and reports every node's actual row count
 *   (text and JSON formats);
 * - E: regression guards for exits that hold: masked columns of every type seeded here
 *   (bytea, text[], jsonb, a composite, a domain, a range) in binary and text results;
 *   hashes, hex, format(), regexp functions and JSON/XML builders over the value; the
 *   statistics views that hold column values (pg_stats, pg_stats_ext, pg_stats_ext_exprs,
 *   pg_statistic) over a masked column whose values no detector recognises.
 * - F: where an error stops a result: an output computed over the value that raises at
 *   the row the value chooses (`1/(code - g)`): the clean column beside it, or how many
 *   masked rows arrive before the error, is the code. Rows of a result with an output
 *   computed over a masked value are held until it completes, and dropped with an error:
 *   an error shows one bit per statement (or per Execute), not a position.
 * Each count attack has a control that runs it directly against PostgreSQL as the app
 * role and reads the value back from the counts. Pass: refused, or neither the raw value
 * nor a fragment of its local part in any byte the client received, nor in the decoding
 * of the counts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertAbsent,
  assertIntact,
  assertNoError,
  assertNoRaw,
  assertRefusedOrRows,
  assertStoreClean,
  BackendType,
  describeMsgs,
  EMAIL1,
  errorsOf,
  exchange,
  fe,
  REFUSAL_CODES,
  rowsOf,
  simple,
  tagsOf,
  useAdversary,
  type Adversary,
  type Msg,
  SHORT_FRAGMENTS,
  direct,
} from './harness.js';

/** The first characters of EMAIL1's local part: what the count attacks spell (one statement per character). */
const K = 5;
const PREFIX = EMAIL1.slice(0, K);

/** A value of a masked column that no detector recognises (only the column rule `*.email` hides it). */
const TOKEN = 'zqhunterplmx';
const TOKEN_ROWS = 30;

function assertNoFragments(text: Buffer | string, where: string): void {
  for (const f of SHORT_FRAGMENTS) assertAbsent(text, f, where);
  assertAbsent(text, TOKEN, where);
}

/** The counts as character codes. */
function decodeCounts(counts: readonly number[]): string {
  return counts.map((n) => (n > 0 && n < 256 ? String.fromCharCode(n) : '?')).join('');
}

/** The count of a tag `SELECT n`, `FETCH n` or `MOVE n`; -1 when none. */
function tagCount(msgs: Msg[]): number {
  for (const t of tagsOf(msgs)) {
    const m = /^(?:SELECT|FETCH|MOVE) (\d+)$/.exec(t);
    if (m) return Number(m[1]);
  }
  return -1;
}

function assertNotRevealed(counts: readonly number[], what: string): void {
  const text = decodeCounts(counts);
  assert.notEqual(text, PREFIX, `${what}: the counts spell the value`);
  assertNoRaw(text, `${what}: the counts decoded (${JSON.stringify(text)})`);
  assertNoFragments(text, `${what}: the counts decoded (${JSON.stringify(text)})`);
}

/** First error (if any) is a refusal; no other error. */
function assertRefusedOrAnswered(msgs: Msg[], what: string): void {
  const errs = errorsOf(msgs);
  if (errs.length > 0) assert.ok(REFUSAL_CODES.includes(errs[0]!.code), `${what}: ${errs[0]!.code} ${errs[0]!.message}`);
}

const CODE = (k: number): string => `ascii(substr(u.email, ${k}, 1))`;

/** Statements whose row count is character k's code. */
const COUNTED = {
  srf: (k: number) => `select 1 from users u, generate_series(1, ${CODE(k)}) where u.id = 1`,
  linked: (k: number) => `select 1 as one from users u, generate_series(0, 255) g where u.id = 1 and ${CODE(k)} > g`,
  zero: (k: number) => `select from users u, generate_series(1, ${CODE(k)}) where u.id = 1`,
  named: (k: number) => `select g, 'x' from users u, generate_series(1, 255) g where u.id = 1 and g <= ${CODE(k)}`,
} as const;

const count = (msgs: Msg[], type: number): number => msgs.filter((m) => m.type === type).length;

describe('adversarial corpus wave 7: the withheld row count, cursors, prepared statements, EXPLAIN ANALYZE, binary formats, statistics', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    setup: async (a) => {
      await a.stack.pg.psql(
        `CREATE TABLE t7 (id int, email text);
         INSERT INTO t7 SELECT g, '${TOKEN}' || (g % 3) FROM generate_series(1, ${TOKEN_ROWS}) g;
         CREATE STATISTICS t7_expr ON (lower(email)) FROM t7;
         CREATE STATISTICS t7_mcv (mcv) ON id, email FROM t7;
         CREATE TABLE t7b (email bytea); INSERT INTO t7b VALUES (convert_to('${EMAIL1}', 'UTF8'));
         CREATE TABLE t7a (email text[]); INSERT INTO t7a VALUES (ARRAY['${EMAIL1}', 'x']);
         CREATE TABLE t7j (email jsonb); INSERT INTO t7j VALUES (jsonb_build_object('a', '${EMAIL1}'));
         CREATE TYPE c7 AS (a text, b int); CREATE TABLE t7c (email c7); INSERT INTO t7c VALUES (ROW('${EMAIL1}', 1));
         CREATE DOMAIN d7 AS text CHECK (VALUE <> ''); CREATE TABLE t7d (email d7); INSERT INTO t7d VALUES ('${EMAIL1}');
         CREATE TABLE t7r (email int4range); INSERT INTO t7r VALUES ('[113,120)');
         GRANT SELECT ON t7, t7b, t7a, t7j, t7c, t7d, t7r TO app;
         ANALYZE users; ANALYZE t7;`,
        { database: 'app' },
      );
    },
    check: (cl) => assertNoFragments(cl.bytes(), 'the client'),
  });

  async function directCounts(sqlOf: (k: number) => string): Promise<number[]> {
    return direct(adv, async (client) => {
      const out: number[] = [];
      for (let k = 1; k <= K; k++) out.push((await client.query(sqlOf(k))).rowCount ?? -1);
      return out;
    });
  }

  // ───────────────────────────── controls ─────────────────────────────
  for (const [name, sqlOf] of Object.entries(COUNTED)) {
    test(`w7m-00${name}: control — without agentgate the row counts of the ${name} statements spell the value`, async () => {
      assert.equal(decodeCounts(await directCounts(sqlOf)), PREFIX);
    });
  }

  test('w7m-00cursor: control — without agentgate MOVE ALL of a cursor, and EXPLAIN ANALYZE, count the rows', () =>
    direct(adv, async (client) => {
      const moves: number[] = [];
      const plans: number[] = [];
      for (let k = 1; k <= K; k++) {
        await client.query('begin');
        await client.query(`declare c cursor for ${COUNTED.zero(k)}`);
        moves.push((await client.query('move all in c')).rowCount ?? -1);
        await client.query('rollback');
        const plan = (await client.query(`explain (analyze, costs off, timing off, summary off) ${COUNTED.zero(k)}`)).rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n');
        plans.push(Number(/actual rows=(\d+)/.exec(plan)?.[1] ?? -1));
      }
      assert.equal(decodeCounts(moves), PREFIX);
      assert.equal(decodeCounts(plans), PREFIX);
    }));

  // ───────────── family A: the count with output columns ─────────────
  for (const [id, why, sqlOf] of [
    ['w7m-01', 'a constant column beside FROM generate_series(1, code)', COUNTED.srf],
    ['w7m-02', 'a constant column, WHERE code > g', COUNTED.linked],
  ] as const) {
    test(`${id}: ${why}: the tags and the number of rows (at most one row, all masked, passes)`, () =>
      withClient(async ({ c }) => {
        const tags: number[] = [];
        const rows: number[] = [];
        for (let k = 1; k <= K; k++) {
          const msgs = await simple(c, sqlOf(k));
          assertRefusedOrAnswered(msgs, sqlOf(k));
          tags.push(tagCount(msgs));
          rows.push(rowsOf(msgs).length);
        }
        assertNotRevealed(tags, 'tags');
        assertNotRevealed(rows, 'rows');
        await assertIntact(adv);
      }));
  }

  test('w7m-03: all five statements in one Query, a clean g and a constant beside a linking WHERE', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, Array.from({ length: K }, (_, i) => COUNTED.named(i + 1)).join('; '));
      assertRefusedOrAnswered(msgs, 'named');
      const tags = tagsOf(msgs).map((t) => Number(/^SELECT (\d+)$/.exec(t)?.[1] ?? -1));
      assertNotRevealed(tags, 'tags');
      const rows = rowsOf(msgs);
      // The rows' clean g runs 1..code per statement: the largest of each run is the code.
      const maxima: number[] = [];
      let prev = 0;
      for (const r of rows) {
        const g = Number(r[0]);
        if (!(g > prev)) maxima.push(prev);
        prev = Number.isInteger(g) ? g : 0;
      }
      maxima.push(prev);
      assertNotRevealed(maxima.filter((m) => m > 0), 'the clean g');
    }));

  // ───────────── family B: the extended protocol ─────────────
  test('w7m-10: zero-column statements, Parse/Bind/Execute with no Describe: the rows and the tags', () =>
    withClient(async ({ c }) => {
      const tags: number[] = [];
      const rows: number[] = [];
      for (let k = 1; k <= K; k++) {
        const msgs = await exchange(c, [fe.parse('', COUNTED.zero(k)), fe.bind('', '', []), fe.execute('', 0), fe.SYNC]);
        assertRefusedOrAnswered(msgs, 'no describe');
        tags.push(tagCount(msgs));
        rows.push(count(msgs, BackendType.dataRow));
      }
      assertNotRevealed(tags, 'tags');
      assertNotRevealed(rows, 'rows');
    }));

  test('w7m-11: a named statement parsed in an earlier batch, then Bind (binary results) and Execute with no Describe', () =>
    withClient(async ({ c }) => {
      const tags: number[] = [];
      const rows: number[] = [];
      for (let k = 1; k <= K; k++) {
        const first = await exchange(c, [fe.parse(`s${k}`, COUNTED.srf(k)), fe.SYNC]);
        assertRefusedOrAnswered(first, 'parse');
        const msgs = await exchange(c, [fe.bind('', `s${k}`, [], { resultFormats: [1] }), fe.execute('', 0), fe.SYNC]);
        assertRefusedOrAnswered(msgs, 'execute');
        tags.push(tagCount(msgs));
        rows.push(count(msgs, BackendType.dataRow));
      }
      assertNotRevealed(tags, 'tags');
      assertNotRevealed(rows, 'rows');
    }));

  for (const described of [true, false]) {
    test(`w7m-1${described ? 2 : 3}: a named portal executed one row at a time${described ? ', Described' : ', not Described'}: the PortalSuspended answers count the rows`, () =>
      withClient(async ({ c }) => {
        const counts: number[] = [];
        for (let k = 1; k <= K; k++) {
          const bufs = [fe.parse('', COUNTED.zero(k)), fe.bind('p', '', []), ...(described ? [fe.describe('P', 'p')] : [])];
          for (let i = 0; i < 130; i++) bufs.push(fe.execute('p', 1));
          bufs.push(fe.SYNC);
          const msgs = await exchange(c, bufs);
          assertRefusedOrAnswered(msgs, 'portal');
          counts.push(count(msgs, BackendType.portalSuspended));
          assert.equal(count(msgs, BackendType.dataRow), 0, describeMsgs(msgs).slice(0, 200));
        }
        assertNotRevealed(counts, 'PortalSuspended');
      }));
  }

  // ───────────── family C: cursors and prepared statements ─────────────
  async function perChar(c: Parameters<Parameters<typeof withClient>[0]>[0]['c'], steps: (k: number) => string[], pick: (msgs: Msg[]) => number): Promise<number[]> {
    const out: number[] = [];
    for (let k = 1; k <= K; k++) {
      const msgs: Msg[] = [];
      for (const s of steps(k)) msgs.push(...(await simple(c, s)));
      assertRefusedOrAnswered(msgs, steps(k).join('; '));
      out.push(pick(msgs));
    }
    return out;
  }

  const moveTag = (msgs: Msg[]): number => Number(tagsOf(msgs).map((t) => /^MOVE (\d+)$/.exec(t)?.[1]).find((x) => x !== undefined) ?? -1);
  const fetchTag = (msgs: Msg[]): number => Number(tagsOf(msgs).map((t) => /^FETCH (\d+)$/.exec(t)?.[1]).find((x) => x !== undefined) ?? -1);

  test('w7m-20: DECLARE c CURSOR FOR a zero-column statement; MOVE ALL IN c: the MOVE tag', () =>
    withClient(async ({ c }) => {
      assertNotRevealed(await perChar(c, (k) => ['begin', `declare c cursor for ${COUNTED.zero(k)}`, 'move all in c', 'rollback'], moveTag), 'MOVE');
      await assertIntact(adv);
    }));

  test('w7m-21: DECLARE c CURSOR FOR a one-column statement; FETCH ALL: the FETCH tag and the rows', () =>
    withClient(async ({ c }) => {
      const steps = (k: number): string[] => ['begin', `declare c cursor for ${COUNTED.srf(k)}`, 'fetch all in c', 'rollback'];
      assertNotRevealed(await perChar(c, steps, fetchTag), 'FETCH');
      assertNotRevealed(await perChar(c, steps, (m) => rowsOf(m).length), 'rows');
    }));

  test('w7m-22: DECLARE SCROLL; FETCH ABSOLUTE n in a binary search: whether a row comes back', () =>
    withClient(async ({ c }) => {
      // The largest n that still returns a row is the code: 8 FETCHes per character.
      const codes: number[] = [];
      for (let k = 1; k <= K; k++) {
        const msgs = [...(await simple(c, 'begin')), ...(await simple(c, `declare c scroll cursor for ${COUNTED.srf(k)}`))];
        let lo = 0;
        let hi = 255;
        while (lo < hi) {
          const mid = Math.ceil((lo + hi) / 2);
          const got = await simple(c, `fetch absolute ${mid} in c`);
          msgs.push(...got);
          if (rowsOf(got).length > 0 || tagsOf(got).includes('FETCH 1')) lo = mid;
          else hi = mid - 1;
        }
        msgs.push(...(await simple(c, 'rollback')));
        assertRefusedOrAnswered(msgs, 'fetch absolute');
        codes.push(lo);
      }
      assertNotRevealed(codes, 'FETCH ABSOLUTE');
    }));

  test('w7m-23: DECLARE … WITH HOLD outside a transaction, MOVE ALL, CLOSE', () =>
    withClient(async ({ c }) => {
      assertNotRevealed(await perChar(c, (k) => [`declare h${k} cursor with hold for ${COUNTED.linked(k)}`, `move all in h${k}`, `close h${k}`], moveTag), 'MOVE');
    }));

  test('w7m-24: the cursor declared through Parse/Bind/Execute, then MOVE ALL as a simple Query', () =>
    withClient(async ({ c }) => {
      const out: number[] = [];
      for (let k = 1; k <= K; k++) {
        const msgs = await simple(c, 'begin');
        msgs.push(...(await exchange(c, [fe.parse('', `declare c cursor for ${COUNTED.zero(k)}`), fe.bind('', '', []), fe.execute('', 0), fe.SYNC])));
        msgs.push(...(await simple(c, 'move all in c')), ...(await simple(c, 'rollback')));
        assertRefusedOrAnswered(msgs, 'declare via Parse');
        out.push(moveTag(msgs));
      }
      assertNotRevealed(out, 'MOVE');
    }));

  test('w7m-25: a cursor name declared clean, closed, and declared again over the value: MOVE follows the latest declaration', () =>
    withClient(async ({ c }) => {
      assertNotRevealed(
        await perChar(c, (k) => ['begin', 'declare c cursor for select name from users', 'move all in c', 'close c', `declare c cursor for ${COUNTED.zero(k)}`, 'move all in c', 'rollback'], (msgs) => {
          const moves = tagsOf(msgs).filter((t) => t.startsWith('MOVE '));
          return Number(/^MOVE (\d+)$/.exec(moves[1] ?? '')?.[1] ?? -1);
        }),
        'MOVE',
      );
    }));

  test('w7m-26: PREPARE q AS a zero-column statement; EXECUTE q: the rows and the tag', () =>
    withClient(async ({ c }) => {
      const steps = (k: number): string[] => [`prepare q${k} as ${COUNTED.zero(k)}`, `execute q${k}`];
      assertNotRevealed(await perChar(c, steps, tagCount), 'EXECUTE tag');
      const rows = await perChar(c, (k) => [`execute q${k}`], (m) => count(m, BackendType.dataRow));
      assertNotRevealed(rows, 'EXECUTE rows');
    }));

  test('w7m-27: PREPARE q AS a one-column statement, then EXPLAIN ANALYZE EXECUTE q', () =>
    withClient(async ({ c }) => {
      const out = await perChar(c, (k) => [`prepare e${k} as ${COUNTED.srf(k)}`, `explain (analyze, costs off, timing off, summary off) execute e${k}`], (msgs) =>
        Number(/actual rows=(\d+)/.exec(rowsOf(msgs).map((r) => r[0] ?? '').join('\n'))?.[1] ?? -1),
      );
      assertNotRevealed(out, 'EXPLAIN ANALYZE EXECUTE');
    }));

  // ───────────── family D: EXPLAIN ANALYZE ─────────────
  for (const [id, opts, re] of [
    ['w7m-30', 'analyze, costs off, timing off, summary off', /actual rows=(\d+)/],
    ['w7m-31', 'analyze, format json', /"Actual Rows": (\d+)/],
    ['w7m-32', 'analyze, verbose, format yaml', /Actual Rows: (\d+)/],
  ] as const) {
    test(`${id}: EXPLAIN (${opts}) of the zero-column statement: the actual row counts`, () =>
      withClient(async ({ c }) => {
        const out = await perChar(c, (k) => [`explain (${opts}) ${COUNTED.zero(k)}`], (msgs) => Number(re.exec(rowsOf(msgs).map((r) => r[0] ?? '').join('\n'))?.[1] ?? -1));
        assertNotRevealed(out, 'EXPLAIN ANALYZE');
      }));
  }

  test('w7m-33: EXPLAIN ANALYZE of a linking WHERE: Rows Removed by Join Filter', () =>
    withClient(async ({ c }) => {
      const out = await perChar(c, (k) => [`explain (analyze, costs off, timing off, summary off) ${COUNTED.linked(k)}`], (msgs) =>
        Number(/Rows Removed by (?:Join )?Filter: (\d+)/.exec(rowsOf(msgs).map((r) => r[0] ?? '').join('\n'))?.[1] ?? 1000),
      );
      // 256 candidates, `code` kept: removed = 256 - code.
      assertNotRevealed(out.map((n) => 256 - n), 'Rows Removed');
    }));

  // ───────────── family E: regression guards ─────────────
  const READS: readonly [string, string, number[]][] = [
    ['w7m-40', 'select email from t7b', [1]],
    ['w7m-41', 'select email, email[1], array_to_string(email, \',\') from t7a', [1, 1, 1]],
    ['w7m-42', "select email, email->>'a', email #>> '{}' from t7j", [1, 1, 1]],
    ['w7m-43', 'select email, (email).a, t from t7c t', [1, 1, 1]],
    ['w7m-44', 'select email, email::text, email::varchar(8) from t7d', [1, 1, 1]],
    ['w7m-45', 'select email, lower(email), upper(email) from t7r', [1, 1, 1]],
    ['w7m-46', "select md5(email), sha256(convert_to(email, 'UTF8')), encode(sha256(email::bytea), 'hex'), to_hex(get_byte(email::bytea, 0)) from users", [0, 1, 0, 0]],
    ['w7m-47', "select format('%s|%I|%L', email, email, email), quote_literal(email), regexp_replace(email, '(.)', '\\1-', 'g'), regexp_split_to_array(email, '') from users", [0, 0, 0, 0]],
    ['w7m-48', "select to_jsonb(u), row_to_json(u), xmlelement(name a, u.email), xmlforest(u.email), jsonb_build_object('e', u.email) from users u", [1, 1, 0, 0, 1]],
    ['w7m-49', "select string_agg(substr(email, 1, 3), ',' order by id), array_agg(overlay(email placing '' from 1 for 0)) from users", [1, 1]],
  ];
  for (const [id, sql, formats] of READS) {
    for (const fmt of ['text', 'binary'] as const) {
      test(`${id}${fmt === 'binary' ? 'b' : 't'}: [regression] ${sql} in ${fmt} format`, () =>
        withClient(async ({ c }) => {
          const msgs = await exchange(c, [fe.parse('', sql), fe.bind('', '', [], { resultFormats: fmt === 'binary' ? formats : [] }), fe.describe('P', ''), fe.execute('', 0), fe.SYNC]);
          assertRefusedOrRows(msgs, sql);
        }));
    }
  }

  test('w7m-50: [regression] the statistics views over a masked column whose values no detector knows', () =>
    withClient(async ({ c }) => {
      for (const sql of [
        "select most_common_vals::text, histogram_bounds::text from pg_stats where tablename = 't7'",
        "select most_common_vals::text from pg_stats_ext where tablename = 't7'",
        "select most_common_vals::text from pg_stats_ext_exprs where tablename = 't7'",
        "select stavalues1::text from pg_statistic where starelid = 't7'::regclass",
        "select * from pg_stats where tablename = 'users'",
      ]) {
        const msgs = await simple(c, sql);
        assertRefusedOrAnswered(msgs, sql);
      }
      // The detectors do not know the token: only its column rule hides it, read plainly.
      const plain = await simple(c, 'select email from t7 order by id limit 1');
      assertNoError(plain, 'plain read');
      assert.equal(rowsOf(plain).length, 1);
    }));

  // ───────────── family F: where an error stops a result ─────────────
  // An output computed over the value that raises at the row the value chooses: the clean
  // column beside it, or just how many rows came before the error, is the code.
  const RAISING = (k: number): string => `select g, 1/(${CODE(k)} - g) from generate_series(0, 255) g, users u where u.id = 1`;
  const RAISING_ONLY = (k: number): string => `select 1/(${CODE(k)} - g) as q from generate_series(0, 255) g cross join users u where u.id = 1`;

  test('w7m-00raise: control — without agentgate the rows before the division by zero count the code', () =>
    direct(adv, async (client) => {
      const out: number[] = [];
      for (let k = 1; k <= K; k++) {
        await client.query('begin');
        await client.query(`declare c cursor for ${RAISING(k)}`);
        let n = 0;
        try {
          for (;;) {
            await client.query('fetch 1 from c');
            n++;
          }
        } catch {
          await client.query('rollback');
        }
        out.push(n);
      }
      assert.equal(decodeCounts(out), PREFIX);
    }));

  test('w7m-70: a clean g beside 1/(code - g): the last g before the error', () =>
    withClient(async ({ c }) => {
      const out: number[] = [];
      for (let k = 1; k <= K; k++) {
        const msgs = await simple(c, RAISING(k));
        const gs = rowsOf(msgs).map((r) => Number(r[0]));
        out.push(gs.length === 0 ? 0 : Math.max(...gs) + 1);
      }
      assertNotRevealed(out, 'the last g');
    }));

  test('w7m-71: only 1/(code - g), masked: how many rows arrive before the error', () =>
    withClient(async ({ c }) => {
      const out: number[] = [];
      for (let k = 1; k <= K; k++) out.push(rowsOf(await simple(c, RAISING_ONLY(k))).length);
      assertNotRevealed(out, 'rows before the error');
    }));

  test('w7m-72: the same through Parse/Bind/Describe/Execute with binary results', () =>
    withClient(async ({ c }) => {
      const out: number[] = [];
      for (let k = 1; k <= K; k++) {
        const msgs = await exchange(c, [fe.parse('', RAISING(k)), fe.bind('', '', [], { resultFormats: [1] }), fe.describe('P', ''), fe.execute('', 0), fe.SYNC]);
        out.push(count(msgs, BackendType.dataRow));
      }
      assertNotRevealed(out, 'rows before the error');
    }));

  test('w7m-73: the same through Parse/Bind/Execute with no Describe', () =>
    withClient(async ({ c }) => {
      const out: number[] = [];
      for (let k = 1; k <= K; k++) {
        const msgs = await exchange(c, [fe.parse('', RAISING_ONLY(k)), fe.bind('', '', []), fe.execute('', 0), fe.SYNC]);
        out.push(count(msgs, BackendType.dataRow));
      }
      assertNotRevealed(out, 'rows before the error');
    }));

  // ───────────── allowed: counts that no masked column decides ─────────────
  test('w7m-60: allowed — a clean cursor: FETCH and MOVE keep their counts; a clean PREPARE/EXECUTE keeps its rows', () =>
    withClient(async ({ c }) => {
      const msgs: Msg[] = [];
      for (const s of ['begin', 'declare c scroll cursor for select name from users order by id', 'fetch all in c', 'move backward all in c', 'rollback', 'prepare clean as select name from users order by id', 'execute clean']) {
        msgs.push(...(await simple(c, s)));
      }
      assertNoError(msgs, 'clean cursor');
      assert.deepEqual(tagsOf(msgs), ['BEGIN', 'DECLARE CURSOR', 'FETCH 2', 'MOVE 2', 'ROLLBACK', 'PREPARE', 'SELECT 2']);
      assert.deepEqual(rowsOf(msgs), [['Alpha'], ['Bravo'], ['Alpha'], ['Bravo']]);
    }));

  test('w7m-61: allowed — a clean portal executed one row at a time is suspended and completes with its rows', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'select g from generate_series(1, 3) g'), fe.bind('p', '', []), fe.describe('P', 'p'), fe.execute('p', 2), fe.execute('p', 2), fe.SYNC]);
      assertNoError(msgs, 'clean portal');
      assert.equal(count(msgs, BackendType.portalSuspended), 1);
      assert.deepEqual(rowsOf(msgs), [['1'], ['2'], ['3']]);
      assert.deepEqual(tagsOf(msgs), ['SELECT 1']);
    }));

  test('w7m-62: allowed — EXPLAIN ANALYZE of a statement that reads no masked column shows its plan; plain EXPLAIN too', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'explain (analyze, costs off, timing off, summary off) select name from users');
      assertNoError(msgs, 'explain analyze');
      assert.match(rowsOf(msgs).map((r) => r[0]).join('\n'), /Seq Scan on users \(actual rows=2 loops=1\)/);
      const plain = await simple(c, 'explain (costs off) select email from users where id = 1');
      assertNoError(plain, 'explain');
      assert.match(rowsOf(plain).map((r) => r[0]).join('\n'), /users/);
    }));

  test('w7m-63: allowed — the masked column read plainly with a clean count: rows and tag stay', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select name, email from users order by id');
      assertNoError(msgs, 'plain');
      assert.deepEqual(tagsOf(msgs), ['SELECT 2']);
      assert.equal(rowsOf(msgs).length, 2);
    }));

  test('w7m-64: allowed — a computed output over the masked column arrives, masked, with its clean columns, when the statement completes', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select id, lower(email), name from users order by id');
      assertNoError(msgs, 'computed');
      assert.deepEqual(rowsOf(msgs), [['1', '********', 'Alpha'], ['2', '********', 'Bravo']]);
      assert.deepEqual(tagsOf(msgs), ['SELECT 2']);
      const ext = await exchange(c, [fe.parse('', 'select id, lower(email) from users order by id'), fe.bind('p', '', []), fe.describe('P', 'p'), fe.execute('p', 1), fe.execute('p', 1), fe.execute('p', 1), fe.SYNC]);
      assertNoError(ext, 'computed, one row at a time');
      assert.deepEqual(rowsOf(ext), [['1', '********'], ['2', '********']]);
      assert.equal(count(ext, BackendType.portalSuspended), 2);
    }));

  test('w7m-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
