/**
 * Adversarial corpus, wave 8 — the row count a masked column decides, and where an error
 * stops a result, read through COPY … TO STDOUT instead of SELECT; and prepared statements
 * that PostgreSQL re-plans after the session changes what their names resolve to.
 * - A: COPY (SELECT …) TO STDOUT in text, CSV and binary format, under a policy that
 *   allows COPY out: the `COPY n` tag, the number of CopyData messages and the rows in
 *   them count the rows a masked value decides (one statement per character);
 * - B: an output computed over the value that raises at the row the value chooses
 *   (`1/(code - g)`): how many rows (with a clean g beside) arrive before the error;
 * - C: a statement parsed (protocol Parse, or SQL PREPARE) while its table name resolves
 *   to a clean table, executed again after `SET search_path` makes the same name a view
 *   over the masked column (and the reverse), and a temporary table shadowing a name.
 * Pass: refused, or neither the raw value nor a fragment of its local part in any byte
 * the client received, nor in the decoding of the counts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertIntact,
  assertNoError,
  assertNoRaw,
  BackendType,
  direct,
  EMAIL1,
  errorsOf,
  noticesOf,
  exchange,
  fe,
  REFUSAL_CODES,
  simple,
  tagsOf,
  useAdversary,
  type Adversary,
  type Msg,
  type RawPg,
  SHORT_FRAGMENTS,
  assertAbsent,
} from './harness.js';
import { TARGET } from '../stack.js';
import type { PolicyConfig } from '../../../src/broker/config/types.js';

/** The read-only policy of the harness, with COPY allowed (COPY … TO STDOUT is a read). */
const COPY_POLICY: PolicyConfig[] = [
  {
    name: 'ro-copy',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'ro-copy#1', sql: ['select', 'copy', 'show', 'explain', 'transaction'], effect: 'allow', extra: {} },
      { name: 'ro-copy#2', effect: 'deny', extra: {} },
    ],
  },
];

const K = 5;
const PREFIX = EMAIL1.slice(0, K);
const CODE = (k: number): string => `ascii(substr(u.email, ${k}, 1))`;

/** Statements whose row count is character k's code. */
const COUNTED = {
  srf: (k: number) => `select 1 from users u, generate_series(1, ${CODE(k)}) where u.id = 1`,
  linked: (k: number) => `select 1 as one from users u, generate_series(0, 255) g where u.id = 1 and ${CODE(k)} > g`,
  zero: (k: number) => `select from users u, generate_series(1, ${CODE(k)}) where u.id = 1`,
} as const;

/** Statements that raise at row `code` (g runs from 0): the rows before the error are the code. */
const STOPPED = {
  computed: (k: number) => `select g, 1 / (${CODE(k)} - g) from users u, generate_series(0, 255) g where u.id = 1`,
  filtered: (k: number) => `select g from users u, generate_series(0, 255) g where u.id = 1 and 1 / (${CODE(k)} - g) >= 0`,
} as const;

type Format = 'text' | 'csv' | 'binary';
const FORMATS: readonly Format[] = ['text', 'csv', 'binary'];
const copyOf = (sql: string, format: Format): string => `copy (${sql}) to stdout${format === 'text' ? '' : ` with (format ${format})`}`;

function decodeCounts(counts: readonly number[]): string {
  return counts.map((n) => (n > 0 && n < 256 ? String.fromCharCode(n) : '?')).join('');
}

function assertNotRevealed(counts: readonly number[], what: string): void {
  const text = decodeCounts(counts);
  assert.notEqual(text, PREFIX, `${what}: the counts spell the value`);
  assertNoRaw(text, `${what}: the counts decoded`);
  for (const f of SHORT_FRAGMENTS) assertAbsent(text, f, `${what}: the counts decoded (${JSON.stringify(text)})`);
}

/** The first error (if any) is a refusal, or (`alsoAccept`) the error the statement raises itself. */
function assertRefusedOrAnswered(msgs: Msg[], what: string, alsoAccept: readonly string[] = []): void {
  const errs = errorsOf(msgs);
  if (errs.length > 0) assert.ok([...REFUSAL_CODES, ...alsoAccept].includes(errs[0]!.code), `${what}: ${errs[0]!.code} ${errs[0]!.message}`);
}

/** The count of the `COPY n` tag; -1 when none. */
function copyTag(msgs: Msg[]): number {
  for (const t of tagsOf(msgs)) {
    const m = /^COPY (\d+)$/.exec(t);
    if (m) return Number(m[1]);
  }
  return -1;
}

const copyDatas = (msgs: Msg[]): Buffer[] => msgs.filter((m) => m.type === BackendType.copyData).map((m) => m.body);

/** Rows in the COPY data: lines (text, CSV), or tuples (binary). */
function copyRows(msgs: Msg[], format: Format): number {
  const data = Buffer.concat(copyDatas(msgs));
  if (format !== 'binary') return data.filter((b) => b === 0x0a).length;
  if (data.length < 19) return 0;
  let p = 19 + data.readInt32BE(15);
  let rows = 0;
  while (p + 2 <= data.length) {
    const n = data.readInt16BE(p);
    p += 2;
    if (n < 0) break;
    let complete = true;
    for (let i = 0; i < n; i++) {
      if (p + 4 > data.length) {
        complete = false;
        break;
      }
      const len = data.readInt32BE(p);
      p += 4 + Math.max(len, 0);
    }
    if (!complete || p > data.length) break;
    rows++;
  }
  return rows;
}

describe('adversarial corpus wave 8: COPY out and re-planned prepared statements', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    policies: COPY_POLICY,
    setup: async (a) => {
      await a.stack.pg.psql(
        `CREATE TABLE t8 (id int, note text); INSERT INTO t8 VALUES (1, 'plain words here');
         CREATE SCHEMA s8; CREATE VIEW s8.t8 AS SELECT id, email AS note FROM users;
         GRANT USAGE ON SCHEMA s8 TO app; GRANT SELECT ON t8, s8.t8 TO app;`,
        { database: 'app' },
      );
    },
  });

  // ───────────────────────────── controls ─────────────────────────────
  test('w8m-00: control — without agentgate the row counts of the COPY statements, and the rows before the error, spell the value', () =>
    direct(adv, async (client) => {
      const counts: number[] = [];
      const stops: number[] = [];
      for (let k = 1; k <= K; k++) {
        counts.push((await client.query(COUNTED.srf(k))).rowCount ?? -1);
        // The rows a COPY sends before `1/(code - g)` raises: those with g < code.
        stops.push((await client.query(`select g from users u, generate_series(0, 255) g where u.id = 1 and g < ${CODE(k)}`)).rowCount ?? -1);
      }
      assert.equal(decodeCounts(counts), PREFIX);
      assert.equal(decodeCounts(stops), PREFIX);
    }));

  // ───────────── family A: the count of a COPY ─────────────
  for (const [n, name] of [
    ['1', 'srf'],
    ['2', 'linked'],
    ['3', 'zero'],
  ] as const) {
    for (const format of FORMATS) {
      const id = `w8m-0${n}${format[0]}`;
      test(`${id}: COPY (the ${name} statement) TO STDOUT in ${format}: the COPY tag, the CopyData messages and the rows`, () =>
        withClient(async ({ c }) => {
          const tags: number[] = [];
          const messages: number[] = [];
          const rows: number[] = [];
          for (let k = 1; k <= K; k++) {
            const sql = copyOf(COUNTED[name](k), format);
            const msgs = await simple(c, sql);
            assertRefusedOrAnswered(msgs, sql);
            tags.push(copyTag(msgs));
            messages.push(copyDatas(msgs).length);
            rows.push(copyRows(msgs, format));
          }
          assertNotRevealed(tags, 'COPY tags');
          assertNotRevealed(messages, 'CopyData messages');
          assertNotRevealed(rows, 'rows');
          await assertIntact(adv);
        }));
    }
  }

  test('w8m-04: all five COPYs in one Query: the tags and the rows', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, Array.from({ length: K }, (_, i) => copyOf(COUNTED.srf(i + 1), 'text')).join('; '));
      assertRefusedOrAnswered(msgs, 'five COPYs');
      const tags = tagsOf(msgs).map((t) => Number(/^COPY (\d+)$/.exec(t)?.[1] ?? -1));
      assertNotRevealed(tags, 'tags');
      assert.ok(copyRows(msgs, 'text') <= K, 'at most one row per COPY');
    }));

  test('w8m-05: COPY through Parse/Bind/Execute (no Describe): the tags and the CopyData messages', () =>
    withClient(async ({ c }) => {
      const tags: number[] = [];
      const messages: number[] = [];
      for (let k = 1; k <= K; k++) {
        const msgs = await exchange(c, [fe.parse('', copyOf(COUNTED.linked(k), 'text')), fe.bind('', '', []), fe.execute('', 0), fe.SYNC]);
        assertRefusedOrAnswered(msgs, 'extended COPY');
        tags.push(copyTag(msgs));
        messages.push(copyDatas(msgs).length);
      }
      assertNotRevealed(tags, 'tags');
      assertNotRevealed(messages, 'CopyData messages');
    }));

  for (const format of FORMATS) {
    test(`w8m-06${format[0]}: [no false denial] COPY users, and COPY (a join over clean columns), in ${format}: every row, the real COPY count, the email masked`, () =>
      withClient(async ({ c }) => {
        for (const sql of ['copy users to stdout', 'copy (select u.id, u.name, c.id from users u join cards c on c.id = u.id order by u.id) to stdout']) {
          const full = format === 'text' ? sql : `${sql} with (format ${format})`;
          const msgs = await simple(c, full);
          assertNoError(msgs, full);
          assert.equal(copyTag(msgs), 2, full);
          assert.equal(copyRows(msgs, format), 2, full);
        }
      }));
  }

  // ───────────── family B: where an error stops a COPY ─────────────
  for (const [n, name] of [
    ['1', 'computed'],
    ['2', 'filtered'],
  ] as const) {
    for (const format of FORMATS) {
      const id = `w8m-1${n}${format[0]}`;
      test(`${id}: COPY (the ${name} statement that raises at row code) TO STDOUT in ${format}: the rows and messages before the error`, () =>
        withClient(async ({ c }) => {
          const rows: number[] = [];
          const messages: number[] = [];
          for (let k = 1; k <= K; k++) {
            const sql = copyOf(STOPPED[name](k), format);
            const msgs = await simple(c, sql);
            assertRefusedOrAnswered(msgs, sql, ['22012']);
            rows.push(copyRows(msgs, format));
            messages.push(copyDatas(msgs).length);
          }
          assertNotRevealed(rows, 'rows before the error');
          assertNotRevealed(messages, 'CopyData messages before the error');
        }));
    }
  }

  test('w8m-13: a COPY with an output computed over the value beside a clean 1 KB column, 20 MB in all, outgrows the 16 MiB hold: its rows are withheld, COPY 0, with a notice', () =>
    withClient(async ({ c }) => {
      const sql = `copy (select md5(u.email), repeat('x', 1000) from users u, generate_series(1, 20000) where u.id = 1) to stdout`;
      const msgs = await simple(c, sql);
      assertNoError(msgs, sql);
      assert.equal(copyTag(msgs), 0);
      assert.equal(copyRows(msgs, 'text'), 0);
      assert.ok(noticesOf(msgs).some((n) => n.includes('outgrew')), 'a notice says the rows were withheld');
    }));

  // ───────────── family C: re-planned prepared statements ─────────────
  const NOTE = 'select note from t8 where id = 1';
  const NOTE_COUNT = (k: number): string => `select 1 from t8 x, generate_series(1, ascii(substr(x.note, ${k}, 1))) where x.id = 1`;
  const dataRows = (msgs: Msg[]): number => msgs.filter((m) => m.type === BackendType.dataRow).length;

  for (const [id, first, second] of [
    ['w8m-20', 'public', 's8, public'],
    ['w8m-21', 's8, public', 'public'],
  ] as const) {
    test(`${id}: Parse/Describe once under search_path ${first}, SET search_path ${second}, Bind/Execute again: the note column`, () =>
      withClient(async ({ c }) => {
        const msgs = await simple(c, `set search_path = ${first}`);
        msgs.push(...(await exchange(c, [fe.parse('s', NOTE), fe.describe('S', 's'), fe.bind('', 's', []), fe.execute('', 0), fe.SYNC])));
        msgs.push(...(await simple(c, `set search_path = ${second}`)));
        for (const fmt of [0, 1]) msgs.push(...(await exchange(c, [fe.bind('', 's', [], { resultFormats: [fmt] }), fe.execute('', 0), fe.SYNC])));
        assertNoError(msgs, 're-planned');
      }));
  }

  test('w8m-22: PREPARE under search_path public, SET search_path s8, EXECUTE: the note column', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, `set search_path = public`);
      msgs.push(...(await simple(c, `prepare q as ${NOTE}`)), ...(await simple(c, 'execute q')));
      msgs.push(...(await simple(c, 'set search_path = s8, public')), ...(await simple(c, 'execute q')));
      assertNoError(msgs, 're-planned PREPARE');
    }));

  /** Prepare the count statement for character k under search_path public (clean t8); run it under s8 (the masked view). */
  const REPLANNED: readonly [string, string, (c: RawPg, k: number) => Promise<Msg[]>, (c: RawPg, k: number) => Promise<Msg[]>][] = [
    ['w8m-23', 'Parse/Describe, then Bind/Execute', (c, k) => exchange(c, [fe.parse(`n${k}`, NOTE_COUNT(k)), fe.describe('S', `n${k}`), fe.SYNC]), (c, k) => exchange(c, [fe.bind('', `n${k}`, []), fe.execute('', 0), fe.SYNC])],
    ['w8m-24', 'SQL PREPARE, then EXECUTE', (c, k) => simple(c, `prepare m${k} as ${NOTE_COUNT(k)}`), (c, k) => simple(c, `execute m${k}`)],
  ];
  for (const [id, how, prepare, run] of REPLANNED) {
    test(`${id}: a count statement prepared against the clean t8 (${how}), run after SET search_path makes t8 the masked view: the rows and tags`, () =>
      withClient(async ({ c }) => {
        const tags: number[] = [];
        const rows: number[] = [];
        for (let k = 1; k <= K; k++) {
          const msgs = [...(await simple(c, 'set search_path = public')), ...(await prepare(c, k)), ...(await simple(c, 'set search_path = s8, public'))];
          const out = await run(c, k);
          assertNoError([...msgs, ...out], 're-planned count');
          tags.push(Number(tagsOf(out).map((t) => /^SELECT (\d+)$/.exec(t)?.[1]).find((x) => x !== undefined) ?? -1));
          rows.push(dataRows(out));
        }
        assertNotRevealed(tags, 'tags');
        assertNotRevealed(rows, 'rows');
      }));
  }

  test('w8m-25: COPY of a prepared-looking name after SET search_path: COPY t8 TO STDOUT reads the view', () =>
    withClient(async ({ c }) => {
      const msgs = [...(await simple(c, 'set search_path = s8, public')), ...(await simple(c, 'copy (select * from t8) to stdout')), ...(await simple(c, 'copy (select note from t8) to stdout with (format binary)'))];
      assertNoError(msgs, 'COPY after search_path');
    }));

  test('w8m-26: a temporary table shadowing t8 (pg_temp first in search_path) cannot be created', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'create temp table t8 as select id, email as note from users');
      assert.ok(errorsOf(msgs).length > 0 && REFUSAL_CODES.includes(errorsOf(msgs)[0]!.code), 'refused');
      await assertIntact(adv);
    }));

  test('w8m-28: a statement parsed before SET ROLE admin_role, executed after it: the vault table', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('r', 'select secret from priv.vault'), fe.SYNC]);
      const role = await simple(c, 'set role admin_role');
      assertRefusedOrAnswered(role, 'SET ROLE');
      msgs.push(...role, ...(await exchange(c, [fe.bind('', 'r', []), fe.execute('', 0), fe.SYNC])));
      msgs.push(...(await simple(c, 'prepare v as select secret from priv.vault')), ...(await simple(c, 'execute v')));
      assertRefusedOrAnswered(msgs, 'vault after SET ROLE');
    }));

  test('w8m-27: a statement parsed, DISCARD ALL (refused by this policy, or run), and another parsed under another search_path: the note column', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('d', NOTE), fe.bind('', 'd', []), fe.execute('', 0), fe.SYNC]);
      const discard = await simple(c, 'discard all');
      assertRefusedOrAnswered(discard, 'DISCARD ALL');
      msgs.push(...(await simple(c, 'set search_path = s8')));
      // DISCARD ALL dropped 'd' when it ran; a new name either way.
      msgs.push(...(await exchange(c, [fe.parse('d2', NOTE), fe.bind('', 'd2', []), fe.execute('', 0), fe.SYNC])));
      assertNoError(msgs, 'parsed again');
    }));
});
