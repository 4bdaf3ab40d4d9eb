/**
 * Adversarial corpus, wave 4 — the Parse gate and the pipeline tracker.
 *
 * A protocol Parse is now judged before the server sees it: one the gate needs the catalog
 * for waits (with everything the client sends behind it) and is replayed later; one whose
 * statement runs code the policy does not allow is refused, and the rest of its batch is
 * swallowed up to the client's Sync. These cases attack that machinery at the wire level:
 * a refused Parse followed by Bind/Execute of the same name (new or already prepared), a
 * Parse whose name already exists at the server (42P05), a deferred Parse with Bind,
 * Execute, Sync, Query, Close, Describe and Terminate in the same TCP write, many Parses
 * where only the last is bad, declared parameter types (more than the placeholders, 0 mixed
 * with a domain, composites/arrays/ranges/multiranges over the domain), two statements in
 * one Parse, EXECUTE/DECLARE/PREPARE/EXPLAIN texts, explicit and failed transactions, a
 * refused Parse answered only at Flush, and Describe of a statement without Bind. Each
 * hidden effect is pg_stat_reset() (the snapshot's stats_reset). Each case checks the
 * database is intact, the client was refused (or got the server's own error), and the
 * session still answers `select 1` afterwards. A few harmless pipelines must still work.
 *
 * Functions named f_fresh_NN / f_okfresh_NN / d_fresh_NN are used by one case only, so the
 * gate has not resolved them yet when that case's Parse arrives: the Parse waits for a
 * catalog lookup and what follows it in the same write queues behind it.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertIntact,
  assertNoError,
  assertRefused,
  assertSomeRefusal,
  assertStoreClean,
  BackendType,
  describeMsgs,
  drain,
  errorsOf,
  exchange,
  fe,
  REFUSAL_CODES,
  rowsOf,
  simple,
  tagsOf,
  useResetCorpus,
  type Adversary,
  type Msg,
  type RawPg,
  type ResetAttack,
  RESET_SEED,
} from './harness.js';

const FRESH = Array.from({ length: 80 }, (_, i) => String(i + 10).padStart(2, '0'));

const EXTRA_SEED = `
${RESET_SEED}
CREATE TYPE comp AS (x d_reset);
CREATE TYPE r_reset AS RANGE (subtype = d_reset);
-- A function labelled IMMUTABLE that is not: the planner folds it while planning (at Bind).
CREATE FUNCTION f_imm_reset() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN 1; END $$;
${FRESH.map(
  (n) => `
CREATE FUNCTION f_fresh_${n}() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN 1; END $$;
CREATE FUNCTION f_freshchk_${n}(int) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN true; END $$;
CREATE DOMAIN d_fresh_${n} AS int CHECK (f_freshchk_${n}(VALUE));
CREATE TYPE comp_fresh_${n} AS (x d_fresh_${n});
CREATE FUNCTION f_okfresh_${n}() RETURNS int LANGUAGE sql STABLE AS $$ SELECT ${Number(n)} $$;`,
).join('\n')}
`;

const RESETS: ResetAttack[] = [
  { id: 'w4p-01', sql: 'select f_reset()', why: 'a volatile function that resets statistics', regression: true },
  { id: 'w4p-02', sql: "select '(1)'::comp", why: 'a composite literal whose domain member checks with a resetting function', regression: true },
  { id: 'w4p-03', sql: 'select f_imm_reset()', why: 'a resetting function labelled IMMUTABLE', regression: true },
];

const ALLOWED = [{ id: 'w4p-04', sql: 'select 1', rows: 1 }];

const OK_CODES = REFUSAL_CODES;

/** Read until `readies` ReadyForQuery, then whatever else arrives within `ms`. */
async function settle(c: RawPg, bufs: Buffer[], readies: number, ms = 800): Promise<Msg[]> {
  const first = await exchange(c, bufs, readies);
  return [...first, ...(await drain(c, ms))];
}

/** The session still answers a simple query, in order, with nothing stale in front. */
async function assertAlive(c: RawPg, what: string): Promise<void> {
  const msgs = await exchange(c, [fe.query('select 4242')], 1, 10_000);
  assertNoError(msgs, `${what}: select 4242 afterwards`);
  assert.deepEqual(rowsOf(msgs), [['4242']], `${what}: select 4242 afterwards answered ${describeMsgs(msgs)}`);
}

/** An extended select of one value, then its rows. */
async function assertExtendedAlive(c: RawPg, what: string): Promise<void> {
  const msgs = await exchange(c, [fe.parse('', 'select 4343'), fe.bind('', '', []), fe.describe('P', ''), fe.execute('', 0), fe.SYNC], 1, 10_000);
  assertNoError(msgs, `${what}: extended select afterwards`);
  assert.deepEqual(rowsOf(msgs), [['4343']], `${what}: extended select afterwards answered ${describeMsgs(msgs)}`);
}

describe('adversarial corpus wave 4: Parse gating and the pipeline tracker', () => {
  const corpus = useResetCorpus({ seed: EXTRA_SEED, prefix: 'w4p', resets: RESETS, allowed: ALLOWED });
  const { withClient } = corpus;
  let adv!: Adversary;
  const oid = async (expr: string): Promise<number> => Number((await adv.stack.pg.psql(`SELECT (${expr})::oid`, { database: 'app' })).trim());
  before(() => {
    adv = corpus.adv();
  });

  // ───────────── refused Parse and the names it used ─────────────

  test('w4p-10: a refused named Parse followed by Bind/Execute of that name in the same batch runs nothing; the name stays unknown', () =>
    withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('p10', 'select f_imm_reset()'), fe.bind('', 'p10', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'refused Parse p10 + Bind/Execute');
      assertRefused(msgs, 'refused Parse p10');
      const again = await settle(c, [fe.bind('', 'p10', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'Bind p10 in a later batch');
      assertRefused(again, 'Bind of the refused p10 later', ['26000']);
      await assertAlive(c, 'w4p-10');
    }));

  test('w4p-11: a good p11 prepared earlier, then a refused Parse p11 (bad text) + Bind p11/Execute: refused, and p11 still means the old text', () =>
    withClient(async ({ c }) => {
      assertNoError(await exchange(c, [fe.parse('p11', 'select 11'), fe.SYNC]), 'Parse p11');
      const msgs = await settle(c, [fe.parse('p11', 'select f_imm_reset()'), fe.bind('', 'p11', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'refused re-Parse of p11');
      assertRefused(msgs, 'refused re-Parse of p11', ['42P05']);
      const again = await exchange(c, [fe.bind('', 'p11', []), fe.describe('P', ''), fe.execute('', 0), fe.SYNC]);
      await assertIntact(adv, 'Bind p11 afterwards');
      assertNoError(again, 'Bind p11 afterwards');
      assert.deepEqual(rowsOf(again), [['11']], `p11 should still be select 11: ${describeMsgs(again)}`);
      await assertAlive(c, 'w4p-11');
    }));

  test('w4p-12: unnamed: a good Parse, then a refused unnamed Parse, Bind/Execute of the unnamed statement: refused, nothing runs', () =>
    withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', 'select 12'), fe.parse('', 'select f_imm_reset()'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'refused unnamed Parse');
      assertRefused(msgs, 'refused unnamed Parse');
      assert.deepEqual(rowsOf(msgs), [], `no rows: ${describeMsgs(msgs)}`);
      const again = await settle(c, [fe.bind('', '', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'Bind of the unnamed statement afterwards');
      // The unnamed statement is either gone (refused as unknown / 26000) or is the proxy's raise (refused).
      assert.ok(!rowsOf(again).some((r) => r[0] === '12'), `the old unnamed text ran: ${describeMsgs(again)}`);
      await assertAlive(c, 'w4p-12');
    }));

  test('w4p-13: p13 prepared as a DELETE (forwarded, judged at Execute); Parse p13 again with select (42P05) + Bind/Execute: nothing deletes, p13 is still the DELETE', () =>
    withClient(async ({ c }) => {
      const prep = await exchange(c, [fe.parse('p13', 'delete from users'), fe.SYNC]);
      assert.ok(!tagsOf(prep).some((t) => t.startsWith('DELETE')), describeMsgs(prep));
      const msgs = await settle(c, [fe.parse('p13', 'select 13'), fe.bind('', 'p13', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'duplicate Parse p13');
      const errs = errorsOf(msgs);
      assert.ok(errs.length > 0 && ['42P05', ...OK_CODES].includes(errs[0]!.code), `expected 42P05 or a refusal: ${describeMsgs(msgs)}`);
      assert.ok(!tagsOf(msgs).some((t) => t.startsWith('DELETE')), `a DELETE ran: ${describeMsgs(msgs)}`);
      const again = await settle(c, [fe.bind('', 'p13', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'Bind p13 afterwards');
      assertRefused(again, 'p13 (still the DELETE) at Execute');
      await assertAlive(c, 'w4p-13');
    }));

  test('w4p-14: p14 exists; a bad Parse p14 (would be 42P05 at the server) + Bind/Execute: refused, nothing runs', () =>
    withClient(async ({ c }) => {
      assertNoError(await exchange(c, [fe.parse('p14', 'select 14'), fe.SYNC]), 'Parse p14');
      const msgs = await settle(c, [fe.parse('p14', "select '(1)'::comp"), fe.bind('', 'p14', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'bad duplicate Parse p14');
      assertRefused(msgs, 'bad duplicate Parse p14', ['42P05']);
      await assertAlive(c, 'w4p-14');
    }));

  test('w4p-15: Close S p15 then a refused Parse p15 + Bind p15 in one batch: refused, p15 ends up gone (both for server and tracker)', () =>
    withClient(async ({ c }) => {
      assertNoError(await exchange(c, [fe.parse('p15', 'select 15'), fe.SYNC]), 'Parse p15');
      const msgs = await settle(c, [fe.close('S', 'p15'), fe.parse('p15', 'select f_imm_reset()'), fe.bind('', 'p15', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'Close + refused Parse p15');
      assertRefused(msgs, 'Close + refused Parse p15');
      const again = await settle(c, [fe.bind('', 'p15', []), fe.execute('', 0), fe.SYNC], 1);
      assertRefused(again, 'p15 after its Close', ['26000']);
      await assertAlive(c, 'w4p-15');
    }));

  // ───────────── a Parse deferred for a catalog lookup ─────────────

  test('w4p-20: harmless deferred Parse with Bind/Execute/Sync, Query, Parse/Bind/Describe/Execute, Close, Sync in ONE write: all answered in order', () =>
    withClient(async ({ c }) => {
      const msgs = await settle(
        c,
        [
          fe.parse('', 'select f_okfresh_20()'),
          fe.bind('', '', []),
          fe.describe('P', ''),
          fe.execute('', 0),
          fe.SYNC,
          fe.query('select 2'),
          fe.parse('s20', 'select 3'),
          fe.bind('', 's20', []),
          fe.describe('P', ''),
          fe.execute('', 0),
          fe.close('S', 's20'),
          fe.SYNC,
        ],
        3,
      );
      assertNoError(msgs, 'deferred pipeline');
      // f_okfresh_20's value itself may be masked (null): the order is what matters here.
      assert.deepEqual(rowsOf(msgs).slice(1), [['2'], ['3']], `out of order or missing: ${describeMsgs(msgs)}`);
      assert.equal(rowsOf(msgs).length, 3, describeMsgs(msgs));
      const z = msgs.map((m, i) => (m.type === BackendType.readyForQuery ? i : -1)).filter((i) => i >= 0);
      const d = msgs.map((m, i) => (m.type === BackendType.dataRow ? i : -1)).filter((i) => i >= 0);
      assert.ok(d[0]! < z[0]! && z[0]! < d[1]! && d[1]! < z[1]! && z[1]! < d[2]!, `order: ${describeMsgs(msgs)}`);
      await assertIntact(adv, 'harmless deferred pipeline');
      await assertAlive(c, 'w4p-20');
    }));

  test('w4p-21: bad deferred Parse (lookup) with Bind/Execute/Sync then a Query in ONE write: refusal, then the Query answers; ordering holds', () =>
    withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', 'select f_fresh_21()'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC, fe.query('select 21')], 2);
      await assertIntact(adv, 'deferred bad Parse + Query');
      assertRefused(msgs, 'deferred bad Parse');
      const firstReady = msgs.findIndex((m) => m.type === BackendType.readyForQuery);
      const firstError = msgs.findIndex((m) => m.type === BackendType.errorResponse);
      const row = msgs.findIndex((m) => m.type === BackendType.dataRow);
      assert.ok(firstError >= 0 && firstError < firstReady && firstReady < row, `order: ${describeMsgs(msgs)}`);
      assert.deepEqual(rowsOf(msgs), [['21']], describeMsgs(msgs));
      await assertAlive(c, 'w4p-21');
    }));

  test('w4p-22: bad deferred Parse, Bind, a simple Query interleaved BEFORE Sync, Execute, Sync: nothing runs, session usable', () =>
    withClient(async ({ c }) => {
      c.send(fe.parse('', 'select f_fresh_22()'), fe.bind('', '', []), fe.query('select f_fresh_22()'), fe.execute('', 0), fe.SYNC);
      const msgs = [...(await exchange(c, [], 1)), ...(await drain(c, 1500))];
      await assertIntact(adv, 'bad deferred Parse + interleaved Query');
      assertSomeRefusal(msgs, 'bad deferred Parse + interleaved Query');
      await assertAlive(c, 'w4p-22');
    }));

  test('w4p-23: a good Parse deferred (lookup) then, in the same write, a bad Query before Sync: the Query is refused, nothing runs', () =>
    withClient(async ({ c }) => {
      c.send(fe.parse('', 'select f_okfresh_23()'), fe.bind('', '', []), fe.query('select f_imm_reset()'), fe.execute('', 0), fe.SYNC);
      const msgs = [...(await exchange(c, [], 1)), ...(await drain(c, 1500))];
      await assertIntact(adv, 'good deferred Parse + bad interleaved Query');
      assertSomeRefusal(msgs, 'bad interleaved Query');
      await assertAlive(c, 'w4p-23');
    }));

  test('w4p-24: deferred bad Parse, Describe S, Close S, Sync in one write: refused; the name does not exist afterwards', () =>
    withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('p24', 'select f_fresh_24()'), fe.describe('S', 'p24'), fe.close('S', 'p24'), fe.SYNC], 1);
      await assertIntact(adv, 'deferred bad Parse + Describe + Close');
      assertRefused(msgs, 'deferred bad Parse + Describe + Close');
      const again = await settle(c, [fe.bind('', 'p24', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'Bind p24 later');
      assertRefused(again, 'Bind p24 later', ['26000']);
      await assertAlive(c, 'w4p-24');
    }));

  test('w4p-25: deferred bad Parse then Terminate in the same write (no Sync): nothing runs, the connection ends', () =>
    withClient(async ({ c }) => {
      c.send(fe.parse('', 'select f_fresh_25()'), fe.bind('', '', []), fe.execute('', 0), fe.TERMINATE);
      const msgs = await drain(c, 2000);
      await assertIntact(adv, 'deferred bad Parse + Terminate');
      assert.ok(!rowsOf(msgs).length, describeMsgs(msgs));
    }));

  test('w4p-26: deferred bad Parse + Bind/Execute/Sync + Terminate in one write: refused (or closed), nothing runs', () =>
    withClient(async ({ c }) => {
      c.send(fe.parse('', 'select f_fresh_26()'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC, fe.TERMINATE);
      const msgs = await drain(c, 2000);
      await assertIntact(adv, 'deferred bad Parse + Sync + Terminate');
      assert.ok(!rowsOf(msgs).length, describeMsgs(msgs));
    }));

  test('w4p-27: a declared parameter type needing a lookup (fresh domain) deferred, with a harmless Query behind it in one write', async () => {
    const d = await oid("'d_fresh_27'::regtype");
    await withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', 'select $1', [d]), fe.bind('', '', ['1']), fe.execute('', 0), fe.SYNC, fe.query('select 27')], 2);
      await assertIntact(adv, 'deferred domain-typed Parse');
      assertRefused(msgs, 'deferred domain-typed Parse');
      assert.deepEqual(rowsOf(msgs), [['27']], describeMsgs(msgs));
      await assertAlive(c, 'w4p-27');
    });
  });

  test('w4p-28: two deferred Parses back to back (two lookups), the second bad, Bind/Execute of the first, one Sync', () =>
    withClient(async ({ c }) => {
      const msgs = await settle(
        c,
        [fe.parse('a28', 'select f_okfresh_28()'), fe.parse('b28', 'select f_fresh_28()'), fe.bind('', 'a28', []), fe.execute('', 0), fe.SYNC],
        1,
      );
      await assertIntact(adv, 'two deferred Parses');
      assertRefused(msgs, 'two deferred Parses, second bad');
      assert.deepEqual(rowsOf(msgs), [], `the Execute after the refused Parse ran: ${describeMsgs(msgs)}`);
      // a28 was forwarded before the refusal: it exists and is harmless.
      const again = await exchange(c, [fe.bind('', 'a28', []), fe.describe('P', ''), fe.execute('', 0), fe.SYNC]);
      assertNoError(again, 'a28 afterwards');
      assert.equal(rowsOf(again).length, 1, describeMsgs(again));
      await assertAlive(c, 'w4p-28');
    }));

  // ───────────── many Parses, only the last bad ─────────────

  test('w4p-30: five good named Parses, Bind/Execute of two, then a bad Parse, more Executes, one Sync: refused, the bad one never runs; the good names exist', () =>
    withClient(async ({ c }) => {
      const goods = [1, 2, 3, 4, 5].map((i) => fe.parse(`g30_${i}`, `select ${i}`));
      const msgs = await settle(
        c,
        [
          ...goods,
          fe.bind('a', 'g30_1', []),
          fe.execute('a', 0),
          fe.bind('b', 'g30_2', []),
          fe.execute('b', 0),
          fe.parse('bad30', 'select f_imm_reset()'),
          fe.bind('c', 'bad30', []),
          fe.execute('c', 0),
          fe.bind('d', 'g30_3', []),
          fe.execute('d', 0),
          fe.SYNC,
        ],
        1,
      );
      await assertIntact(adv, 'many Parses, last bad');
      assertSomeRefusal(msgs, 'many Parses, last bad');
      assert.ok(!rowsOf(msgs).some((r) => r[0] === '3'), `an Execute after the refused Parse ran: ${describeMsgs(msgs)}`);
      const again = await exchange(c, [fe.bind('', 'g30_4', []), fe.describe('P', ''), fe.execute('', 0), fe.SYNC]);
      assertNoError(again, 'g30_4 afterwards');
      assert.deepEqual(rowsOf(again), [['4']], describeMsgs(again));
      await assertAlive(c, 'w4p-30');
    }));

  test('w4p-31: a Parse refused after an Execute in the same batch: the earlier rows arrive, then the refusal; the read-only txn is not left open', () =>
    withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', 'select 31'), fe.bind('', '', []), fe.execute('', 0), fe.parse('x31', "select '(1)'::comp"), fe.SYNC], 1);
      await assertIntact(adv, 'Execute then refused Parse');
      assertRefused(msgs, 'Execute then refused Parse');
      const ready = msgs.find((m) => m.type === BackendType.readyForQuery)!;
      assert.equal(String.fromCharCode(ready.body[0]!), 'I', `status after refusal: ${describeMsgs(msgs)}`);
      await assertAlive(c, 'w4p-31');
    }));

  // ───────────── declared parameter types ─────────────

  test('w4p-40: more declared types than placeholders, the extra one the domain: refused (Bind reads every declared parameter)', async () => {
    const d = await oid("'d_reset'::regtype");
    await withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', 'select 1', [23, d]), fe.bind('', '', ['1', '1']), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'extra declared domain parameter');
      assertRefused(msgs, 'extra declared domain parameter');
      await assertAlive(c, 'w4p-40');
    });
  });

  test('w4p-41: declared types [0, d_reset] on select $1::int, $2', async () => {
    const d = await oid("'d_reset'::regtype");
    await withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', 'select $1::int, $2', [0, d]), fe.bind('', '', ['1', '1']), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'types 0 then the domain');
      assertRefused(msgs, 'types 0 then the domain');
      await assertAlive(c, 'w4p-41');
    });
  });

  test('w4p-42: declared types [d_reset, 0, 0] on select $3 (the domain parameter unused in the text)', async () => {
    const d = await oid("'d_reset'::regtype");
    await withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', 'select $3::int', [d, 0, 0]), fe.bind('', '', ['1', '1', '1']), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'unused domain parameter first');
      assertRefused(msgs, 'unused domain parameter first');
      await assertAlive(c, 'w4p-42');
    });
  });

  for (const [id, label, expr, value] of [
    ['w4p-43', 'the composite over the domain', "'comp'::regtype", '(1)'],
    ['w4p-44', 'the array of that composite', "'comp[]'::regtype", '{"(1)"}'],
    ['w4p-45', 'the array of the domain', "'d_reset[]'::regtype", '{1}'],
    ['w4p-46', 'a range over the domain', "'r_reset'::regtype", '[1,2)'],
    ['w4p-47', 'the multirange of that range', "(SELECT rngmultitypid FROM pg_range WHERE rngtypid = 'r_reset'::regtype)", '{[1,2)}'],
    ['w4p-48', 'a fresh composite over a fresh domain (lookup)', "'comp_fresh_48'::regtype", '(1)'],
  ] as const) {
    test(`${id}: a Parse declaring a parameter of ${label} (select 1 with $1 unused, Bind a value) is refused`, async () => {
      const t = await oid(expr);
      await withClient(async ({ c }) => {
        const msgs = await settle(c, [fe.parse('', 'select 1', [t]), fe.bind('', '', [value]), fe.execute('', 0), fe.SYNC], 1);
        await assertIntact(adv, `a parameter of ${label}`);
        assertRefused(msgs, `a parameter of ${label}`);
        await assertAlive(c, id);
      });
    });
  }

  test('w4p-49: a Parse declaring the domain with a Bind of NULL (domain_in still runs the CHECK for NULL? no — but refuse anyway)', async () => {
    const d = await oid("'d_reset'::regtype");
    await withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', 'select $1', [d]), fe.bind('', '', [null]), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'domain parameter bound to NULL');
      assertRefused(msgs, 'domain parameter bound to NULL');
      await assertAlive(c, 'w4p-49');
    });
  });

  // ───────────── texts ─────────────

  test('w4p-50: a Parse holding two statements (select 1; select f_imm_reset()): refused, or 42601 from the server; nothing runs', () =>
    withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', 'select 1; select f_imm_reset()'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'two statements in a Parse');
      assertRefused(msgs, 'two statements in a Parse', ['42601']);
      await assertAlive(c, 'w4p-50');
    }));

  test("w4p-51: a Parse holding two statements, the second a composite literal (read at parse analysis): select 1; select '(1)'::comp", () =>
    withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', "select 1; select '(1)'::comp"), fe.SYNC], 1);
      await assertIntact(adv, 'two statements, composite literal');
      assertRefused(msgs, 'two statements, composite literal', ['42601']);
      await assertAlive(c, 'w4p-51');
    }));

  test('w4p-52: Parse of EXECUTE p52 where p52 is a protocol-prepared DELETE: refused at Parse or Execute, nothing deletes', () =>
    withClient(async ({ c }) => {
      await exchange(c, [fe.parse('p52', 'delete from users'), fe.SYNC]);
      const msgs = await settle(c, [fe.parse('', 'execute p52'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'EXECUTE p52 via Parse');
      assertRefused(msgs, 'EXECUTE p52 via Parse');
      await assertAlive(c, 'w4p-52');
    }));

  test('w4p-53: Parse of EXECUTE p53 where p53 is Parsed bad in the same batch (refused): nothing runs', () =>
    withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('p53', 'select f_imm_reset()'), fe.parse('', 'execute p53'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'EXECUTE of a refused name');
      assertRefused(msgs, 'EXECUTE of a refused name');
      await assertAlive(c, 'w4p-53');
    }));

  test("w4p-54: Parse of DECLARE c54 CURSOR FOR select '(1)'::comp inside BEGIN (DECLARE's query is analysed at Parse)", () =>
    withClient(async ({ c }) => {
      assertNoError(await simple(c, 'begin'), 'begin');
      const msgs = await settle(c, [fe.parse('', "declare c54 cursor for select '(1)'::comp"), fe.SYNC], 1);
      await assertIntact(adv, 'DECLARE of a composite literal');
      assertRefused(msgs, 'DECLARE of a composite literal');
      await simple(c, 'rollback');
      await assertAlive(c, 'w4p-54');
    }));

  test('w4p-55: Parse of DECLARE c55 CURSOR FOR select f_imm_reset(), Bind (plans the cursor query?), Execute, Sync inside BEGIN', () =>
    withClient(async ({ c }) => {
      assertNoError(await simple(c, 'begin'), 'begin');
      const msgs = await settle(c, [fe.parse('', 'declare c55 cursor for select f_imm_reset()'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'DECLARE of an IMMUTABLE liar');
      assertRefused(msgs, 'DECLARE of an IMMUTABLE liar');
      await simple(c, 'rollback');
      await assertAlive(c, 'w4p-55');
    }));

  test("w4p-56: Parse of PREPARE q56 AS select '(1)'::comp, Bind, Execute: refused, nothing runs", () =>
    withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', "prepare q56 as select '(1)'::comp"), fe.bind('', '', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'PREPARE of a composite literal');
      assertRefused(msgs, 'PREPARE of a composite literal');
      await assertAlive(c, 'w4p-56');
    }));

  test('w4p-57: Parse of PREPARE q57(d_reset) AS select 1 then Parse EXECUTE q57(1) in the same batch', () =>
    withClient(async ({ c }) => {
      const msgs = await settle(
        c,
        [fe.parse('', 'prepare q57(d_reset) as select 1'), fe.bind('', '', []), fe.execute('', 0), fe.parse('', 'execute q57(1)'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC],
        1,
      );
      await assertIntact(adv, 'PREPARE with a domain parameter, then EXECUTE');
      assertSomeRefusal(msgs, 'PREPARE with a domain parameter, then EXECUTE');
      await assertAlive(c, 'w4p-57');
    }));

  test("w4p-58: Parse of EXPLAIN select '(1)'::comp (EXPLAIN's query is analysed at Parse) is refused", () =>
    withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', "explain select '(1)'::comp"), fe.SYNC], 1);
      await assertIntact(adv, 'EXPLAIN of a composite literal');
      assertRefused(msgs, 'EXPLAIN of a composite literal');
      await assertAlive(c, 'w4p-58');
    }));

  test('w4p-59: Parse of EXPLAIN select f_imm_reset() + Bind + Execute (planning folds the IMMUTABLE liar) is refused', () =>
    withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', 'explain select f_imm_reset()'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'EXPLAIN of an IMMUTABLE liar');
      assertRefused(msgs, 'EXPLAIN of an IMMUTABLE liar');
      await assertAlive(c, 'w4p-59');
    }));

  // ───────────── transactions ─────────────

  test('w4p-60: a refused Parse inside an explicit transaction: refused; the transaction is failed (25P02) until ROLLBACK; then usable', () =>
    withClient(async ({ c }) => {
      assertNoError(await simple(c, 'begin'), 'begin');
      const msgs = await settle(c, [fe.parse('', 'select f_imm_reset()'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'refused Parse in a transaction');
      assertRefused(msgs, 'refused Parse in a transaction');
      const ready = msgs.find((m) => m.type === BackendType.readyForQuery)!;
      assert.ok(['E', 'T'].includes(String.fromCharCode(ready.body[0]!)), describeMsgs(msgs));
      await simple(c, 'rollback');
      await assertAlive(c, 'w4p-60');
      await assertExtendedAlive(c, 'w4p-60');
    }));

  test('w4p-61: a refused Parse inside an already failed transaction: the client gets the refusal or 25P02, not a desync', () =>
    withClient(async ({ c }) => {
      assertNoError(await simple(c, 'begin'), 'begin');
      const failed = await simple(c, 'select 1/0');
      assert.equal(errorsOf(failed)[0]?.code, '22012', describeMsgs(failed));
      const msgs = await settle(c, [fe.parse('', 'select f_imm_reset()'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'refused Parse in a failed transaction');
      assertRefused(msgs, 'refused Parse in a failed transaction', ['25P02']);
      assert.equal(msgs.filter((m) => m.type === BackendType.readyForQuery).length, 1, describeMsgs(msgs));
      await simple(c, 'rollback');
      await assertAlive(c, 'w4p-61');
      await assertExtendedAlive(c, 'w4p-61');
    }));

  test('w4p-62: a deferred (lookup) bad Parse inside a failed transaction, with the ROLLBACK query in the same write', () =>
    withClient(async ({ c }) => {
      assertNoError(await simple(c, 'begin'), 'begin');
      await simple(c, 'select 1/0');
      const msgs = await settle(c, [fe.parse('', 'select f_fresh_62()'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC, fe.query('rollback')], 2);
      await assertIntact(adv, 'deferred bad Parse in a failed transaction');
      assertRefused(msgs, 'deferred bad Parse in a failed transaction', ['25P02']);
      assert.ok(tagsOf(msgs).includes('ROLLBACK'), describeMsgs(msgs));
      await assertAlive(c, 'w4p-62');
    }));

  // ───────────── Flush instead of Sync; Describe without Bind ─────────────

  test('w4p-70: a refused Parse followed by Flush (no Sync) is answered within 3 s, as the server answers an error at Flush', () =>
    withClient(async ({ c }) => {
      c.send(fe.parse('', 'select f_imm_reset()'), fe.bind('', '', []), fe.execute('', 0), fe.FLUSH);
      const flushed = await drain(c, 3000);
      await assertIntact(adv, 'refused Parse + Flush');
      const rest = await exchange(c, [fe.SYNC]);
      assertRefused([...flushed, ...rest], 'refused Parse + Flush');
      assert.ok(flushed.some((m) => m.type === BackendType.errorResponse), `nothing answered the Flush within 3 s (a client waiting for it hangs): flushed=${describeMsgs(flushed)} after Sync=${describeMsgs(rest)}`);
      await assertAlive(c, 'w4p-70');
    }));

  test('w4p-71: a refused Parse followed by Flush, then a later Sync: refused exactly once, one ReadyForQuery, session not corrupted', () =>
    withClient(async ({ c }) => {
      c.send(fe.parse('', 'select f_imm_reset()'), fe.FLUSH);
      const flushed = await drain(c, 1500);
      const rest = await settle(c, [fe.SYNC], 1);
      const msgs = [...flushed, ...rest];
      await assertIntact(adv, 'refused Parse + Flush + Sync');
      assertRefused(msgs, 'refused Parse + Flush + Sync');
      assert.equal(msgs.filter((m) => m.type === BackendType.readyForQuery).length, 1, describeMsgs(msgs));
      assert.equal(errorsOf(msgs).length, 1, describeMsgs(msgs));
      await assertAlive(c, 'w4p-71');
      await assertExtendedAlive(c, 'w4p-71');
    }));

  test('w4p-72: a good Parse + Flush answers ParseComplete at once (the gate does not hold a harmless Parse back from a Flush)', () =>
    withClient(async ({ c }) => {
      c.send(fe.parse('p72', 'select f_okfresh_72()'), fe.FLUSH);
      const flushed = await drain(c, 3000);
      assert.ok(flushed.some((m) => m.type === BackendType.parseComplete), `no ParseComplete at Flush: ${describeMsgs(flushed)}`);
      const rest = await exchange(c, [fe.bind('', 'p72', []), fe.describe('P', ''), fe.execute('', 0), fe.SYNC]);
      assertNoError(rest, 'p72');
      assert.equal(rowsOf(rest).length, 1, describeMsgs(rest));
      await assertAlive(c, 'w4p-72');
    }));

  test('w4p-73: a refused Parse, then Describe S of it without Bind, then Sync: refused, no ParameterDescription/RowDescription', () =>
    withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('p73', "select '(1)'::comp"), fe.describe('S', 'p73'), fe.SYNC], 1);
      await assertIntact(adv, 'refused Parse + Describe S');
      assertRefused(msgs, 'refused Parse + Describe S');
      assert.ok(!msgs.some((m) => m.type === BackendType.rowDescription), describeMsgs(msgs));
      await assertAlive(c, 'w4p-73');
    }));

  test('w4p-74: Parse with declared built-in types then Describe S without Bind: ParameterDescription and RowDescription answered', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('p74', 'select $1::int + 1, $2::text', [23, 25]), fe.describe('S', 'p74'), fe.SYNC]);
      assertNoError(msgs, 'Describe S p74');
      assert.ok(msgs.some((m) => m.type === BackendType.parameterDescription), describeMsgs(msgs));
      assert.ok(msgs.some((m) => m.type === BackendType.rowDescription), describeMsgs(msgs));
      await assertIntact(adv, 'Describe S p74');
      await assertAlive(c, 'w4p-74');
    }));

  // ───────────── harmless pipelines ─────────────

  test('w4p-80: several good Parses with declared built-in types, then Binds and Executes, one Sync', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [
        fe.parse('h1', 'select $1::int + 1', [23]),
        fe.parse('h2', 'select lower($1)', [25]),
        fe.parse('h3', 'select $1::numeric * 2', [1700]),
        fe.parse('h4', 'select not $1', [16]),
        fe.parse('h5', 'select count(*) from users where id > $1', [20]),
        fe.bind('p1', 'h1', ['41']),
        fe.bind('p2', 'h2', ['ABC']),
        fe.bind('p3', 'h3', ['1.5']),
        fe.bind('p4', 'h4', ['false']),
        fe.bind('p5', 'h5', ['0']),
        fe.describe('P', 'p1'),
        fe.execute('p1', 0),
        fe.describe('P', 'p2'),
        fe.execute('p2', 0),
        fe.describe('P', 'p3'),
        fe.execute('p3', 0),
        fe.describe('P', 'p4'),
        fe.execute('p4', 0),
        fe.describe('P', 'p5'),
        fe.execute('p5', 0),
        fe.SYNC,
      ]);
      assertNoError(msgs, 'harmless pipeline');
      assert.deepEqual(rowsOf(msgs), [['42'], ['abc'], ['3.0'], ['t'], ['2']], describeMsgs(msgs));
      await assertIntact(adv, 'harmless pipeline');
    }));

  test('w4p-81: good pipelines across several Syncs in one write, with a deferred (lookup) Parse in the middle', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(
        c,
        [
          fe.parse('', 'select $1::int', [23]),
          fe.bind('', '', ['1']),
          fe.describe('P', ''),
          fe.execute('', 0),
          fe.SYNC,
          fe.parse('', 'select f_okfresh_81() + $1', [23]),
          fe.bind('', '', ['1']),
          fe.describe('P', ''),
          fe.execute('', 0),
          fe.SYNC,
          fe.parse('', 'select $1::text', [25]),
          fe.bind('', '', ['three']),
          fe.describe('P', ''),
          fe.execute('', 0),
          fe.SYNC,
        ],
        3,
      );
      assertNoError(msgs, 'three batches');
      assert.equal(rowsOf(msgs).length, 3, describeMsgs(msgs));
      assert.deepEqual([rowsOf(msgs)[0], rowsOf(msgs)[2]], [['1'], ['three']], describeMsgs(msgs));
      await assertIntact(adv, 'three batches');
    }));

  test('w4p-82: a declared harmless domain-free composite-free type list with zeros (types [0, 25]) works', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'select $1::int, $2', [0, 25]), fe.bind('', '', ['7', 'x']), fe.describe('P', ''), fe.execute('', 0), fe.SYNC]);
      assertNoError(msgs, 'types [0, 25]');
      assert.deepEqual(rowsOf(msgs), [['7', 'x']], describeMsgs(msgs));
    }));

  test('w4p-83: a lone Parse with a declared built-in type calling a function not yet resolved (lookup) works: select f_okfresh_83() + $1, types [int4]', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'select f_okfresh_83() + $1', [23]), fe.bind('', '', ['1']), fe.describe('P', ''), fe.execute('', 0), fe.SYNC]);
      assertNoError(msgs, 'select f_okfresh_83() + $1 [int4]');
      assert.equal(rowsOf(msgs).length, 1, describeMsgs(msgs));
    }));

  test('w4p-84: the same without declared types works: select f_okfresh_84() + $1::int', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'select f_okfresh_84() + $1::int'), fe.bind('', '', ['1']), fe.describe('P', ''), fe.execute('', 0), fe.SYNC]);
      assertNoError(msgs, 'select f_okfresh_84() + $1::int');
      assert.equal(rowsOf(msgs).length, 1, describeMsgs(msgs));
    }));

  test('w4p-85: a Parse calling a not-yet-resolved harmless function right after an unconfirmed batch in the same write works', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'select 1'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC, fe.parse('', 'select f_okfresh_85()'), fe.bind('', '', []), fe.describe('P', ''), fe.execute('', 0), fe.SYNC], 2);
      assertNoError(msgs, 'select f_okfresh_85() after a batch');
      assert.equal(rowsOf(msgs).length, 2, describeMsgs(msgs));
    }));

  test('w4p-86: a lone Parse with a declared built-in type calling an already-resolved function works: select f_okfresh_86() + $1 after a plain select f_okfresh_86()', () =>
    withClient(async ({ c }) => {
      assertNoError(await simple(c, 'select f_okfresh_86()'), 'select f_okfresh_86()');
      const msgs = await exchange(c, [fe.parse('', 'select f_okfresh_86() + $1', [23]), fe.bind('', '', ['1']), fe.describe('P', ''), fe.execute('', 0), fe.SYNC]);
      assertNoError(msgs, 'select f_okfresh_86() + $1 [int4]');
      assert.equal(rowsOf(msgs).length, 1, describeMsgs(msgs));
    }));

  // ───────────── refusal bookkeeping when the server fails first ─────────────

  test('w4p-90: an Execute that fails at the server (1/0), then a refused Parse, one Sync; the NEXT refusal the client gets names its own statement, not the stale one', () =>
    withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', 'select 1/0'), fe.bind('', '', []), fe.execute('', 0), fe.parse('x90', 'select f_imm_reset()'), fe.SYNC], 1);
      await assertIntact(adv, 'failed Execute + refused Parse');
      assert.equal(errorsOf(msgs)[0]?.code, '22012', describeMsgs(msgs));
      assert.equal(msgs.filter((m) => m.type === BackendType.readyForQuery).length, 1, describeMsgs(msgs));
      const next = await simple(c, 'delete from users');
      await assertIntact(adv, 'delete after');
      assertRefused(next, 'delete after');
      const e = errorsOf(next)[0]!;
      assert.ok(!/f_imm_reset/.test(e.message), `the refusal of DELETE carries the stale refusal of the earlier Parse: ${e.message}`);
      await assertAlive(c, 'w4p-90');
    }));

  test('w4p-91: a Parse that fails at the server (42P01), then a refused Parse, one Sync; the next refusal is the DELETE\'s own', () =>
    withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', 'select 1 from no_such_table_91'), fe.parse('x91', "select '(1)'::comp"), fe.SYNC], 1);
      await assertIntact(adv, 'failed Parse + refused Parse');
      assert.equal(errorsOf(msgs)[0]?.code, '42P01', describeMsgs(msgs));
      const next = await exchange(c, [fe.parse('', 'delete from users'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC]);
      await assertIntact(adv, 'extended delete after');
      assertRefused(next, 'extended delete after');
      const e = errorsOf(next)[0]!;
      assert.ok(!/comp|effectful/.test(e.message), `the refusal of DELETE carries the stale refusal of the earlier Parse: ${e.message}`);
      await assertAlive(c, 'w4p-91');
    }));

  test('w4p-92: a refused Parse in a failed transaction (the raise meets 25P02), ROLLBACK, then a denied DELETE: its refusal is its own', () =>
    withClient(async ({ c }) => {
      assertNoError(await simple(c, 'begin'), 'begin');
      await simple(c, 'select 1/0');
      const msgs = await settle(c, [fe.parse('', 'select 1/0'), fe.bind('', '', []), fe.execute('', 0), fe.parse('x92', 'select f_imm_reset()'), fe.SYNC], 1);
      await assertIntact(adv, 'refused Parse in failed transaction after a failing Execute');
      assert.ok(errorsOf(msgs).length >= 1, describeMsgs(msgs));
      await simple(c, 'rollback');
      const next = await simple(c, 'delete from users');
      assertRefused(next, 'delete after');
      assert.ok(!/f_imm_reset/.test(errorsOf(next)[0]!.message), `stale refusal: ${errorsOf(next)[0]!.message}`);
      await assertIntact(adv, 'w4p-92');
      await assertAlive(c, 'w4p-92');
    }));

  test('w4p-93: p93 confirmed; Bind/Execute p93, then a refused Parse, then Bind/Execute p93 again, one Sync: the first rows arrive, the second Execute does not run', () =>
    withClient(async ({ c }) => {
      assertNoError(await exchange(c, [fe.parse('p93', 'select 93'), fe.SYNC]), 'Parse p93');
      const msgs = await settle(
        c,
        [fe.bind('a', 'p93', []), fe.describe('P', 'a'), fe.execute('a', 0), fe.parse('', 'select f_imm_reset()'), fe.bind('b', 'p93', []), fe.describe('P', 'b'), fe.execute('b', 0), fe.SYNC],
        1,
      );
      await assertIntact(adv, 'rows then refused Parse');
      assertRefused(msgs, 'rows then refused Parse');
      assert.deepEqual(rowsOf(msgs), [['93']], describeMsgs(msgs));
      await assertAlive(c, 'w4p-93');
    }));

  test('w4p-94: the same with an Execute refusal instead of a Parse refusal: 1/0 fails, then Execute of a DELETE is refused, Sync; the next refusal is its own', () =>
    withClient(async ({ c }) => {
      const msgs = await settle(c, [fe.parse('', 'select 1/0'), fe.bind('', '', []), fe.execute('', 0), fe.parse('d94', 'delete from cards'), fe.bind('', 'd94', []), fe.execute('', 0), fe.SYNC], 1);
      await assertIntact(adv, 'failed Execute + refused Execute');
      assert.equal(errorsOf(msgs)[0]?.code, '22012', describeMsgs(msgs));
      const next = await simple(c, 'select f_reset()');
      await assertIntact(adv, 'select f_reset() after');
      assertRefused(next, 'select f_reset() after');
      assert.ok(!/cards|delete/i.test(errorsOf(next)[0]!.message), `stale refusal: ${errorsOf(next)[0]!.message}`);
      await assertAlive(c, 'w4p-94');
    }));

  test('w4p-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
