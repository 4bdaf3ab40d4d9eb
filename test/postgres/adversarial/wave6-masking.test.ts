/**
 * Adversarial corpus, wave 6 — masked values read whole in one statement past the wave-5
 * rules (conditions, row-linking units, open FROM functions, NullTest over computed operands):
 * - A: a computed value given a name in a derived table or CTE, then passed through an
 *   exemption meant for a plain reference of a stored column (`k IS NULL`, `length(k)`,
 *   `count(k)`, `cardinality(k)`, `num_nonnulls(k)`): the outer reference is a ColumnRef;
 * - B: a row-linking comparison written as an equality of plain columns, one of them
 *   computed from the masked value in a derived table, CTE, lateral function, `USING`/
 *   `NATURAL` merge, or a filter on a derived column that already holds the comparison
 *   (`WHERE d.hit`, `WHERE d.r = 1` over a window), or EXISTS over such a level or over
 *   INTERSECT;
 * - C: the row-linking test counts the column NAMES written; a whole-row reference
 *   (`(d).email`, `(d).g`) writes one name for both sides;
 * - D: row multiplicity — a FROM function sized by the value, a select-list SRF, a lateral
 *   subquery whose filter links the value, a recursive CTE, INTERSECT ALL, EXISTS over an
 *   SRF: outputs that do not read the deciding columns (`count(*)`, a clean `i` repeated)
 *   or the command tag carry the value;
 * - E: a top-level GROUP BY that links the value to a generated number, with clean
 *   aggregates of that number as outputs.
 * Each attack has a control that runs it directly against PostgreSQL as the app role and
 * decodes the secret from the answer. Pass: refused, or nothing of a secret reaches the
 * client in any byte, nor in the decoding of the returned numbers.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {
  assertIntact,
  assertNoError,
  assertNoRaw,
  assertRefusedOrRows,
  assertStoreClean,
  EMAIL1,
  describeMsgs,
  extended,
  errorsOf,
  REFUSAL_CODES,
  rowsOf,
  simple,
  tagsOf,
  useAdversary,
  type Adversary,
  assertNoFragments,
  decodeBits,
  decodeCodes,
  direct,
  directRows,
  type Rows,
} from './harness.js';

const N = EMAIL1.length;

/** Rows [i, …]: character i's code is the number of rows with that i. */
function decodeCounts(rows: Rows): string {
  const counts: number[] = [];
  for (const r of rows) {
    const i = Number(r[0]);
    if (Number.isInteger(i) && i >= 1 && i <= 1000) counts[i - 1] = (counts[i - 1] ?? 0) + 1;
  }
  return Array.from(counts, (c) => (c && c < 256 ? String.fromCharCode(c) : '?')).join('');
}

/** Command tags `SELECT n`: the k-th statement's row count is character k's code. */
function decodeTags(tags: readonly string[]): string {
  return tags
    .map((t) => /^SELECT (\d+)$/.exec(t)?.[1])
    .filter((n) => n !== undefined)
    .map((n) => (Number(n) > 0 && Number(n) < 256 ? String.fromCharCode(Number(n)) : '?'))
    .join('');
}

const GS_I = `generate_series(1, ${N}) i`;
const CHAR = 'ascii(substr(u.email, i, 1))';

interface Attack {
  id: string;
  why: string;
  sql: string;
  decode: (rows: Rows) => string;
}

// ───────────── family A: a computed value named in a derived table, then a plain-reference exemption ─────────────
// provenance.ts exempts `x IS NULL` and NON_REVEALING_FUNCTIONS (length, count, cardinality,
// num_nonnulls …) when the operand is a ColumnRef — whatever that column is. A derived
// table's or CTE's column computed from email is a ColumnRef outside.
const BIT_ROWS = `from users u, ${GS_I}, generate_series(0, 7) b where u.id = 1`;
const BIT_K = `nullif(${CHAR} & (1 << b), 0)`;
const EXEMPT: readonly Attack[] = [
  {
    id: 'w6m-01',
    why: 'k IS NULL over a derived column k = nullif(bit, 0)',
    sql: `select i, b, k is null from (select i, b, ${BIT_K} k ${BIT_ROWS}) d order by i, b`,
    decode: (r) => decodeBits(r, false),
  },
  {
    id: 'w6m-02',
    why: 'k IS NOT NULL over a CTE column',
    sql: `with d as (select i, b, ${BIT_K} k ${BIT_ROWS}) select i, b, k is not null from d order by i, b`,
    decode: (r) => decodeBits(r, true),
  },
  {
    id: 'w6m-03',
    why: "length(k) over a derived k = repeat('x', code)",
    sql: `select i, length(k) from (select i, repeat('x', ${CHAR}) k from users u, ${GS_I} where u.id = 1) d order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-04',
    why: 'count(k) over a derived k = nullif(g <= code, false)',
    sql: `select i, count(k) from (select i, nullif(g <= ${CHAR}, false) k from users u, ${GS_I}, generate_series(1, 255) g where u.id = 1) d group by i order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-05',
    why: 'cardinality(k) over a derived k = array_fill(0, [code])',
    sql: `select i, cardinality(k) from (select i, array_fill(0, array[${CHAR}]) k from users u, ${GS_I} where u.id = 1) d order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-06',
    why: 'num_nonnulls(k) over a derived bit',
    sql: `select i, b, num_nonnulls(k) = 1 from (select i, b, ${BIT_K} k ${BIT_ROWS}) d order by i, b`,
    decode: (r) => decodeBits(r, true),
  },
  {
    id: 'w6m-07',
    why: 'octet_length(d.k), qualified, over a derived repeat',
    sql: `select d.i, octet_length(d.k) from (select i, repeat('x', ${CHAR}) k from users u, ${GS_I} where u.id = 1) d order by d.i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-08',
    why: 'length(k) over a derived repeat of the view v_users (contact = email)',
    sql: `select i, length(k) from (select i, repeat('x', ascii(substr(v.contact, i, 1))) k from v_users v, ${GS_I} where v.id = 1) d order by i`,
    decode: decodeCodes,
  },
];

// ───────────── family B: a row-linking comparison written as an equality of plain columns ─────────────
// linksValues/computes look at the operands' syntax: `d.k = g` compares two ColumnRefs, so
// it is not a row-linking unit even when d.k is ascii(substr(email, i, 1)).
const PLAIN_EQ: readonly Attack[] = [
  {
    id: 'w6m-10',
    why: 'WHERE d.k = g, d a LATERAL subquery computing the code',
    sql: `select i, g from users u, ${GS_I}, lateral (select ${CHAR} k) d, generate_series(0, 255) g where u.id = 1 and d.k = g order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-11',
    why: 'JOIN … USING (g) with a derived column g computing the code, the clean side t.g shown',
    sql: `select d.i, t.g from (select i, ${CHAR} as g from users u, ${GS_I} where u.id = 1) d join generate_series(0, 255) t(g) using (g) order by d.i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-12',
    why: 'WHERE c.k = g, c a CTE computing the code',
    sql: `with c as (select i, ${CHAR} k from users u, ${GS_I} where u.id = 1) select c.i, g from c, generate_series(0, 255) g where c.k = g order by c.i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-13',
    why: 'WHERE k = g, k a FROM generate_series(code, code)',
    sql: `select i, g from users u, ${GS_I}, generate_series(${CHAR}, ${CHAR}) k, generate_series(0, 255) g where u.id = 1 and k = g order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-14',
    why: 'EXISTS whose level compares a derived code with the outer g by plain equality',
    sql: `select i, g from users u, ${GS_I}, generate_series(0, 255) g where u.id = 1 and exists (select from (select ${CHAR} k) d where d.k = g) order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-15',
    why: 'EXISTS (SELECT g INTERSECT SELECT code)',
    sql: `select i, g from users u, ${GS_I}, generate_series(0, 255) g where u.id = 1 and exists (select g intersect select ${CHAR}) order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-16',
    why: 'unnest(string_to_array(email, NULL)) WITH ORDINALITY, t.c = x.ch with x.ch = chr(g)',
    sql:
      `select t.n, ascii(x.ch) from users u, unnest(string_to_array(u.email, null)) with ordinality t(c, n), ` +
      `(select chr(g) ch from generate_series(32, 126) g) x where u.id = 1 and t.c = x.ch order by t.n`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-17',
    why: 'NATURAL JOIN on a derived column g computing the code',
    sql: `select d.i, t.g from (select i, ${CHAR} as g from users u, ${GS_I} where u.id = 1) d natural join generate_series(0, 255) t(g) order by d.i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-18',
    why: 'WHERE d.hit, hit = (code = g) computed in the derived select list',
    sql: `select d.i, d.g from (select i, g, ${CHAR} = g as hit from users u, ${GS_I}, generate_series(0, 255) g where u.id = 1) d where d.hit order by d.i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-19',
    why: 'WHERE r = 1, r = row_number() over (partition by i order by abs(g - code)) in a derived table',
    sql:
      `select i, g from (select i, g, row_number() over (partition by i order by abs(g - ${CHAR})) r ` +
      `from users u, ${GS_I}, generate_series(0, 255) g where u.id = 1) d where r = 1 order by i`,
    decode: decodeCodes,
  },
];

// ───────────── family C: one written name for both sides of the link ─────────────
// linksValues needs two or more column names as written; `(d).email` and `(d).g` are both
// the name `d`.
const WHOLE_D = `(select i, g, u.email from users u, ${GS_I}, generate_series(0, 255) g where u.id = 1) d`;
const WHOLE_CHAR = 'ascii(substr((d).email, (d).i, 1))';
const ONE_NAME: readonly Attack[] = [
  {
    id: 'w6m-20',
    why: 'WHERE over whole-row field selections of one derived table',
    sql: `select d.i, d.g from ${WHOLE_D} where ${WHOLE_CHAR} = (d).g order by d.i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-21',
    why: 'DISTINCT ON with ORDER BY the distance, written through (d).…',
    sql: `select distinct on (d.i) d.i, d.g from ${WHOLE_D} order by d.i, abs((d).g - ${WHOLE_CHAR})`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-22',
    why: 'JOIN … ON over whole-row field selections',
    sql: `select d.i, d.g from ${WHOLE_D} join (values (1)) v(x) on ${WHOLE_CHAR} = (d).g order by d.i`,
    decode: decodeCodes,
  },
];

// ───────────── family D: row multiplicity ─────────────
// A FROM item's own clauses and function arguments go to `refs`, not to the outputs'
// conditions: an output that reads none of its columns (count(*), a clean i) is clean,
// yet how many rows there are is the code.
const MULTIPLICITY: readonly Attack[] = [
  {
    id: 'w6m-30',
    why: 'count(*) over FROM generate_series(1, code)',
    sql: `select i, count(*) from users u, ${GS_I}, generate_series(1, ${CHAR}) s where u.id = 1 group by i order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-31',
    why: 'a clean i repeated by FROM generate_series(1, code)',
    sql: `select i from users u, ${GS_I}, generate_series(1, ${CHAR}) s where u.id = 1 order by i`,
    decode: decodeCounts,
  },
  {
    id: 'w6m-32',
    why: 'a clean i repeated by a select-list generate_series(1, code)',
    sql: `select i, generate_series(1, ${CHAR}) from users u, ${GS_I} where u.id = 1 order by i`,
    decode: decodeCounts,
  },
  {
    id: 'w6m-33',
    why: 'count(*) over a derived table with a select-list SRF',
    sql: `select i, count(*) from (select i, generate_series(1, ${CHAR}) from users u, ${GS_I} where u.id = 1) s group by i order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-34',
    why: 'count(*) over a LATERAL subquery whose WHERE links g to the code',
    sql: `select i, count(*) from ${GS_I}, lateral (select from users u, generate_series(1, 255) g where u.id = 1 and g <= ${CHAR}) s group by i order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-35',
    why: 'count(*) over a LATERAL recursive CTE that stops at the code',
    sql:
      `select i, count(*) from ${GS_I}, lateral (with recursive t(n) as (select 1 union all select n + 1 from t, users u ` +
      `where u.id = 1 and n < ${CHAR}) select n from t) s group by i order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-36',
    why: 'INTERSECT ALL with a branch repeating i code times',
    sql:
      `select i from ${GS_I}, generate_series(1, 255) g intersect all ` +
      `select i from users u, ${GS_I}, generate_series(1, ${CHAR}) where u.id = 1 order by i`,
    decode: decodeCounts,
  },
  {
    id: 'w6m-37',
    why: 'count(*) where EXISTS over a FROM generate_series(1, code) compared by plain equality',
    sql: `select i, count(*) from users u, ${GS_I}, generate_series(1, 255) g where u.id = 1 and exists (select from generate_series(1, ${CHAR}) s where s = g) group by i order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-39',
    why: 'count(*) over FROM generate_series(1, code) of the view v_users',
    sql: `select i, count(*) from v_users v, ${GS_I}, generate_series(1, ascii(substr(v.contact, i, 1))) s where v.id = 1 group by i order by i`,
    decode: decodeCodes,
  },
];
/** Zero-column statements, one per character: the command tag `SELECT n` is the code. */
const TAGS_SQL = Array.from({ length: N }, (_, k) => `select from users u, generate_series(1, ascii(substr(u.email, ${k + 1}, 1))) where u.id = 1`).join('; ');

// ───────────── family E: a top-level GROUP BY that links the value to a clean number ─────────────
const GROUPING: readonly Attack[] = [
  {
    id: 'w6m-40',
    why: 'GROUP BY i, code >= g; max(g) of the group holding g = 1',
    sql: `select i, max(g) from users u, ${GS_I}, generate_series(1, 255) g where u.id = 1 group by i, ${CHAR} >= g having min(g) = 1 order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-41',
    why: 'GROUP BY i, code >= g; count(*) of the group holding g = 1',
    sql: `select i, count(*) from users u, ${GS_I}, generate_series(1, 255) g where u.id = 1 group by i, ${CHAR} >= g having min(g) = 1 order by i`,
    decode: decodeCodes,
  },
];

// ───────────── family F: constructs the rules already name (regression guards) ─────────────
const NAMED: readonly Attack[] = [
  {
    id: 'w6m-50',
    why: 'INTERSECT of (i, g) with (i, code): the output column of the set operation',
    sql: `select i, g from ${GS_I}, generate_series(0, 255) g intersect select i, ${CHAR} from users u, ${GS_I} where u.id = 1 order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-51',
    why: 'FETCH FIRST code ROWS WITH TIES in a scalar subquery',
    sql: `select i, (select count(*) from (select g from generate_series(1, 255) g order by g fetch first ${CHAR} rows with ties) s) from users u, ${GS_I} where u.id = 1 order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-52',
    why: 'WHERE g BETWEEN code AND code',
    sql: `select i, g from users u, ${GS_I}, generate_series(0, 255) g where u.id = 1 and g between ${CHAR} and ${CHAR} order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-53',
    why: 'JOIN ON CASE WHEN code = g THEN true END',
    sql: `select i, g from users u cross join ${GS_I} join generate_series(0, 255) g on case when ${CHAR} = g then true end where u.id = 1 order by i`,
    decode: decodeCodes,
  },
  {
    id: 'w6m-54',
    why: 'count(*) FILTER (WHERE g <= code)',
    sql: `select i, count(*) filter (where g <= ${CHAR}) from users u, ${GS_I}, generate_series(1, 255) g where u.id = 1 group by i order by i`,
    decode: decodeCodes,
  },
];

const ALL: readonly Attack[] = [...EXEMPT, ...PLAIN_EQ, ...ONE_NAME, ...MULTIPLICITY, ...GROUPING, ...NAMED];

describe('adversarial corpus wave 6: computed values behind plain names, one-name links, row multiplicity, grouping', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    check: (cl) => assertNoFragments(cl.bytes(), 'the client'),
  });

  // ───────────────────────────── controls ─────────────────────────────
  for (const { id, sql, decode } of ALL) {
    test(`${id}c: control — without agentgate the answer decodes to the email`, () =>
      direct(adv, async (client) => {
        assert.equal(decode(await directRows(client, sql)), EMAIL1, sql);
      }));
  }

  test('w6m-38c: control — without agentgate the command tags of zero-column statements decode to the email', () =>
    direct(adv, async (client) => {
      const res = (await client.query(TAGS_SQL)) as unknown as pg.QueryResult[];
      assert.equal(decodeTags(res.map((r) => `SELECT ${r.rowCount}`)), EMAIL1);
    }));

  // ───────────────────────────── attacks ─────────────────────────────
  for (const { id, why, sql, decode } of ALL) {
    test(`${id}: ${why} — ${sql}`, () =>
      withClient(async ({ c }) => {
        const msgs = await simple(c, sql);
        assertRefusedOrRows(msgs, sql);
        const text = decode(rowsOf(msgs));
        assertNoRaw(text, `the rows decoded (${JSON.stringify(text)})`);
        assertNoFragments(text, `the rows decoded (${JSON.stringify(text)})`);
        await assertIntact(adv);
      }));
  }

  test('w6m-38: zero-column statements, one per character, in one Query: the command tags', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, TAGS_SQL);
      const errs = errorsOf(msgs);
      if (errs.length > 0) assert.ok(REFUSAL_CODES.includes(errs[0]!.code), `${errs[0]!.code} ${errs[0]!.message}`);
      const text = decodeTags(tagsOf(msgs));
      assertNoRaw(text, `the tags decoded (${JSON.stringify(text)})`);
      assertNoFragments(text, `the tags decoded (${JSON.stringify(text)})`);
      await assertIntact(adv);
    }));

  test('w6m-38x: the same statements one by one through Parse/Bind/Describe/Execute: neither the tags nor the rows count the value', () =>
    withClient(async ({ c }) => {
      const tags: string[] = [];
      let rows = 0;
      for (const sql of TAGS_SQL.split('; ')) {
        const msgs = await extended(c, sql);
        const errs = errorsOf(msgs);
        assert.ok(errs.length === 0 || REFUSAL_CODES.includes(errs[0]!.code), describeMsgs(msgs));
        tags.push(...tagsOf(msgs));
        rows += rowsOf(msgs).length;
      }
      const text = decodeTags(tags);
      assertNoRaw(text, `the tags decoded (${JSON.stringify(text)})`);
      assertNoFragments(text, `the tags decoded (${JSON.stringify(text)})`);
      assert.equal(rows, 0, 'zero-column rows whose count a masked column decides are withheld');
      await assertIntact(adv);
    }));

  // ───────────── false-positive checks: allowed and unmasked ─────────────
  test('w6m-60: allowed — count(*) over a FROM function sized by a clean column', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select i, count(*) from generate_series(1, 3) i, generate_series(1, i) g group by i order by i');
      assertNoError(msgs, 'srf count');
      assert.deepEqual(rowsOf(msgs), [['1', '1'], ['2', '2'], ['3', '3']]);
    }));

  test('w6m-61: allowed — IS NULL and length() of a derived column computed from clean columns', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select d.id, d.k is null, length(d.n) from (select id, lower(name) n, nullif(id, 1) k from users) d order by d.id');
      assertNoError(msgs, 'derived clean');
      assert.deepEqual(rowsOf(msgs), [['1', 't', '5'], ['2', 'f', '5']]);
    }));

  test('w6m-62: allowed — a JOIN USING on a derived clean column, and a GROUP BY of clean expressions', () =>
    withClient(async ({ c }) => {
      const join = await simple(c, 'select d.name, t.g from (select name, id + 1 as g from users) d join generate_series(0, 5) t(g) using (g) order by t.g');
      assertNoError(join, 'using');
      assert.deepEqual(rowsOf(join), [['Alpha', '2'], ['Bravo', '3']]);
      const grp = await simple(c, 'select max(g) from generate_series(1, 10) g group by g % 2 = 0 order by 1');
      assertNoError(grp, 'group by');
      assert.deepEqual(rowsOf(grp), [['9'], ['10']]);
    }));

  test('w6m-63: allowed — the masked column read plainly keeps its partial mask, names stay', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select name from users u, generate_series(1, 2) g where u.id = g order by g');
      assertNoError(msgs, 'names');
      assert.deepEqual(rowsOf(msgs), [['Alpha'], ['Bravo']]);
    }));

  test('w6m-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
