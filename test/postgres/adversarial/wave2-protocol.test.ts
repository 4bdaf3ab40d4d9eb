/**
 * Adversarial corpus, wave 2 — protocol tricks the first corpus does not try: a simple
 * Query interleaved in an unsynced extended batch, Close of the unnamed portal before its
 * Execute, statement names differing only in case, names longer than an identifier (the
 * server truncates SQL identifiers to 63 bytes, not protocol names), a portal whose
 * statement is closed and re-Parsed under the same name in the same batch, and FunctionCall
 * messages with binary arguments to set_config, query_to_xml, advisory locks, statistics
 * resets and a user function labelled IMMUTABLE that is not.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertIntact,
  assertNoRaw,
  assertRefused,
  assertRefusedOrRows,
  assertSomeRefusal,
  assertStoreClean,
  BackendType,
  describeMsgs,
  drain,
  errorsOf,
  exchange,
  fe,
  functionCall,
  REFUSAL_CODES,
  rowsOf,
  simple,
  useAdversary,
  tagsOf,
  type Adversary,
  type Msg,
  SHORT_FRAGMENTS,
} from './harness.js';

const SHORT = SHORT_FRAGMENTS;

const EXTRA_SEED = `
CREATE FUNCTION f_liar() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM pg_stat_reset(); RETURN 1; END $$;
CREATE FUNCTION f_liar_email(int) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT reverse(email) FROM users WHERE id = $1 $$;
`;

interface Oids {
  set_config: number;
  query_to_xml: number;
  pg_stat_reset: number;
  pg_advisory_lock: number;
  f_liar: number;
  f_liar_email: number;
  pg_terminate_backend: number;
}

/** The first error (if any) is a refusal or one of `alsoAccept`. */
function assertNoOtherError(msgs: Msg[], what: string, alsoAccept: readonly string[] = []): void {
  const errs = errorsOf(msgs);
  if (errs.length > 0) assert.ok([...REFUSAL_CODES, ...alsoAccept].includes(errs[0]!.code), `${what}: ${errs[0]!.code} ${errs[0]!.message}`);
}

describe('adversarial corpus wave 2: protocol tricks', () => {
  let adv!: Adversary;
  let oids: Oids;
  const withClient = useAdversary((a) => (adv = a), {
    setup: async (adv) => {
      await adv.stack.pg.psql(EXTRA_SEED + 'SELECT pg_stat_reset();', { database: 'app' });
      const line = (
        await adv.stack.pg.psql(
          `SELECT concat_ws(',', 'set_config(text,text,boolean)'::regprocedure::oid, 'query_to_xml(text,boolean,boolean,text)'::regprocedure::oid,
             'pg_stat_reset()'::regprocedure::oid, 'pg_advisory_lock(bigint)'::regprocedure::oid, 'f_liar()'::regprocedure::oid,
             'f_liar_email(int)'::regprocedure::oid, 'pg_terminate_backend(int, bigint)'::regprocedure::oid);`,
          { database: 'app' },
        )
      ).trim();
      const [a, b, c2, d, e, f, g] = line.split(',').map(Number) as number[];
      oids = { set_config: a!, query_to_xml: b!, pg_stat_reset: c2!, pg_advisory_lock: d!, f_liar: e!, f_liar_email: f!, pg_terminate_backend: g! };
    },
    check: (cl) => {
      const low = cl.bytes().toString('latin1').toLowerCase();
      for (const f of SHORT) assert.ok(!low.includes(f), `the client received ${f}`);
    },
  });

  const bool = (v: boolean): Buffer => Buffer.from([v ? 1 : 0]);
  const int8 = (v: number): Buffer => {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(BigInt(v));
    return b;
  };

  test('w2p-01: a simple Query inside an unsynced extended batch cannot carry a write', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'select 1'), fe.bind('', '', []), fe.query('select f_del()'), fe.execute('', 0), fe.SYNC], 2);
      assertSomeRefusal(msgs, 'Query in a batch');
      await assertIntact(adv);
    }));

  test('w2p-02: a simple Query between Bind and Execute of a masked read; the portal stays masked', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'select reverse(email), email from users'), fe.bind('', '', []), fe.query('select 1'), fe.execute('', 0), fe.SYNC], 2);
      assertNoOtherError(msgs, 'interleaved Query', ['34000']);
      await assertIntact(adv);
    }));

  test('w2p-03: a named portal Bound, a simple Query that DECLAREs a cursor of the same name, then Execute', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.query('begin')], 1);
      msgs.push(...(await exchange(c, [fe.parse('s', 'select 1'), fe.bind('c', 's', []), fe.query('declare c cursor for select reverse(email) from users'), fe.execute('c', 0), fe.SYNC], 2)));
      msgs.push(...(await exchange(c, [fe.query('rollback')])));
      assertNoOtherError(msgs, 'portal vs cursor', ['42P03', '25P02', '34000']);
      await assertIntact(adv);
    }));

  test('w2p-04: Close of the unnamed portal, then Execute of it', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'select reverse(email) from users'), fe.bind('', '', []), fe.close('P', ''), fe.execute('', 0), fe.SYNC]);
      assert.ok(errorsOf(msgs).length > 0, `Execute of a closed portal answered: ${describeMsgs(msgs)}`);
      assert.equal(rowsOf(msgs).length, 0, 'rows came from a closed portal');
      assertNoOtherError(msgs, 'closed portal', ['34000']);
      await assertIntact(adv);
    }));

  test('w2p-05: a statement name differing only in case from a refused DELETE', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('Del', 'delete from users'), fe.SYNC]);
      msgs.push(...(await exchange(c, [fe.parse('del', 'select 1'), fe.SYNC])));
      msgs.push(...(await exchange(c, [fe.bind('', 'Del', []), fe.execute('', 0), fe.SYNC])));
      msgs.push(...(await exchange(c, [fe.bind('', 'DEL', []), fe.execute('', 0), fe.SYNC])));
      assertRefused(msgs, 'Parse Del');
      assert.ok(!tagsOf(msgs).some((t) => t.startsWith('DELETE')), `a DELETE ran: ${describeMsgs(msgs)}`);
      await assertIntact(adv);
    }));

  test('w2p-06: SQL EXECUTE of a name the server folds to lower case, when the protocol made a masked statement under that case', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('p', 'select reverse(email) from users'), fe.parse('P', "select 'harmless'::text"), fe.SYNC]);
      msgs.push(...(await simple(c, 'execute P')));
      msgs.push(...(await simple(c, 'execute "P"')));
      assertNoOtherError(msgs, 'case folding');
      await assertIntact(adv);
    }));

  test('w2p-07: protocol names longer than 63 bytes vs SQL EXECUTE (truncated by the server)', () =>
    withClient(async ({ c }) => {
      const base = 'n'.repeat(63);
      // The protocol does not truncate: two statements, `base` (masked read) and `base + 'x'` (harmless).
      const msgs = await exchange(c, [fe.parse(base, 'select reverse(email), email from users'), fe.parse(base + 'x', "select 'harmless'::text, 'x'::text"), fe.SYNC]);
      // SQL truncates the identifier: the server runs `base`; a tracker keyed by the text would think `base + 'x'`.
      msgs.push(...(await simple(c, `execute ${base}x`)));
      msgs.push(...(await simple(c, `explain execute ${base}x`)));
      // A server error here (name clash, unknown name) carries no data; what matters is what the rows held.
      assertNoOtherError(msgs, 'long names', ['42P05', '26000']);
      await assertIntact(adv);
    }));

  test('w2p-08: a long SQL PREPARE name truncated onto a protocol statement, then Bind by the long name', () =>
    withClient(async ({ c }) => {
      const base = 'm'.repeat(63);
      const msgs = await simple(c, `prepare ${base}zz as select reverse(email) from users`);
      msgs.push(...(await exchange(c, [fe.bind('', base + 'zz', []), fe.execute('', 0), fe.SYNC])));
      msgs.push(...(await exchange(c, [fe.bind('', base, []), fe.execute('', 0), fe.SYNC])));
      assertNoOtherError(msgs, 'truncated PREPARE', ['26000']);
      await assertIntact(adv);
    }));

  test('w2p-09: a very long statement and portal name (10 000 bytes) of a DELETE is refused', () =>
    withClient(async ({ c }) => {
      const n = 'L'.repeat(10_000);
      const msgs = await exchange(c, [fe.parse(n, 'delete from users'), fe.bind(n, n, []), fe.execute(n, 0), fe.SYNC]);
      assertRefused(msgs, 'long-named DELETE');
      await assertIntact(adv);
    }));

  test('w2p-10: a portal bound from a masked statement, the statement closed and re-Parsed harmless, then Execute', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [
        fe.parse('a', 'select reverse(email), email from users'),
        fe.bind('pa', 'a', []),
        fe.close('S', 'a'),
        fe.parse('a', "select 'x'::text, 'y'::text"),
        fe.execute('pa', 0),
        fe.SYNC,
      ]);
      assertNoOtherError(msgs, 're-Parse under a bound portal');
      await assertIntact(adv);
    }));

  /** The rows of `msgs` hold neither the value nor a fragment (message names what arrived). */
  function assertRowsClean(msgs: Msg[], what: string): void {
    const shown = JSON.stringify(rowsOf(msgs));
    assertNoRaw(shown, `${what}: rows ${shown}`);
    for (const f of SHORT) assert.ok(!shown.toLowerCase().includes(f), `${what}: rows ${shown}`);
  }

  test("w2p-10b: as w2p-10 with translate(email, '@', '#') (no detector sees it)", () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [
        fe.parse('a', "select translate(email, '@', '#') from users"),
        fe.bind('pa', 'a', []),
        fe.close('S', 'a'),
        fe.parse('a', "select 'x'::text"),
        fe.execute('pa', 0),
        fe.SYNC,
      ]);
      assertNoOtherError(msgs, 're-Parse under a bound portal');
      assertRowsClean(msgs, 'Execute pa');
    }));

  test("w2p-12b: as w2p-12 with translate(email, '@', '#'), in one batch without Flush", () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', "select translate(email, '@', '#') from users"), fe.bind('', '', []), fe.parse('', 'select 1'), fe.execute('', 0), fe.SYNC]);
      assertNoOtherError(msgs, 'unnamed re-Parse', ['34000']);
      assertRowsClean(msgs, 'Execute of the unnamed portal');
    }));

  test("w2p-06b: protocol Parse 'p' of translate(email), SQL EXECUTE P (folded to p)", () =>
    withClient(async ({ c }) => {
      assertNoOtherError(await exchange(c, [fe.parse('p', "select translate(email, '@', '#') from users"), fe.parse('P', "select 'harmless'::text"), fe.SYNC]), 'parse');
      const msgs = await simple(c, 'execute P');
      assertNoOtherError(msgs, 'execute P');
      assertRowsClean(msgs, 'EXECUTE P');
    }));

  test('w2p-11: a portal of a harmless statement; the name re-Parsed as DELETE in the same batch; then Execute and Bind again', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [
        fe.parse('b', 'select 1'),
        fe.bind('pb', 'b', []),
        fe.close('S', 'b'),
        fe.parse('b', 'delete from users'),
        fe.execute('pb', 0),
        fe.bind('pb2', 'b', []),
        fe.execute('pb2', 0),
        fe.SYNC,
      ]);
      assertSomeRefusal(msgs, 're-Parse as DELETE');
      assert.ok(!tagsOf(msgs).some((t) => t.startsWith('DELETE')), `a DELETE ran: ${describeMsgs(msgs)}`);
      await assertIntact(adv);
    }));

  test('w2p-12: the unnamed statement re-Parsed between Bind and Execute of the unnamed portal, with Flush', () =>
    withClient(async ({ c }) => {
      c.send(fe.parse('', 'select reverse(email) from users'), fe.bind('', '', []), fe.FLUSH);
      const first = await drain(c, 500);
      const msgs = [...first, ...(await exchange(c, [fe.parse('', 'select 1'), fe.execute('', 0), fe.SYNC]))];
      assertNoOtherError(msgs, 'unnamed re-Parse', ['34000']);
      await assertIntact(adv);
    }));

  // ───────────── FunctionCall ─────────────
  test("w2p-13: FunctionCall set_config('default_transaction_read_only','off',false) with binary args, then select f_del()", () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [functionCall(oids.set_config, [Buffer.from('default_transaction_read_only'), Buffer.from('off'), bool(false)], [1, 1, 1])]);
      assertRefused(msgs, 'FunctionCall set_config');
      const del = await simple(c, 'select f_del()');
      assertRefused(del, 'select f_del() after set_config');
      await assertIntact(adv);
    }));

  test("w2p-14: FunctionCall set_config('transaction_read_only','off',true) inside BEGIN, then f_del()", () =>
    withClient(async ({ c }) => {
      const msgs = [...(await simple(c, 'begin'))];
      msgs.push(...(await exchange(c, [functionCall(oids.set_config, ['TRANSACTION_READ_ONLY', 'off', 'true'], [0])])));
      const del = await simple(c, 'select f_del()');
      await simple(c, 'commit');
      assertSomeRefusal(msgs, 'FunctionCall set_config in BEGIN');
      assertRefused(del, 'f_del after', ['25P02']);
      await assertIntact(adv);
    }));

  test("w2p-15: FunctionCall set_config('role', 'admin_role', false) with binary args is refused; the vault stays unreadable", () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [functionCall(oids.set_config, [Buffer.from('role'), Buffer.from('admin_role'), bool(false)], [1])]);
      assertRefused(msgs, 'FunctionCall set_config(role)');
      const v = await simple(c, 'select secret from priv.vault');
      assertRefused(v, 'vault after set_config(role)');
      await assertIntact(adv);
    }));

  test("w2p-16: FunctionCall query_to_xml('select email from users') returns no raw value", () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [functionCall(oids.query_to_xml, [Buffer.from('select email, reverse(email) from users'), bool(true), bool(false), Buffer.from('')], [1])]);
      assert.ok(msgs.some((m) => m.type === BackendType.readyForQuery), describeMsgs(msgs));
      await assertIntact(adv);
    }));

  test("w2p-17: FunctionCall query_to_xml('delete from users returning 1') is refused", () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [functionCall(oids.query_to_xml, ['delete from users returning 1', 'true', 'false', ''])]);
      assertRefused(msgs, 'FunctionCall query_to_xml(delete)');
      await assertIntact(adv);
    }));

  test('w2p-18: FunctionCall pg_stat_reset() is refused', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [functionCall(oids.pg_stat_reset, [])]);
      assertRefused(msgs, 'FunctionCall pg_stat_reset');
      await assertIntact(adv);
    }));

  test('w2p-19: FunctionCall pg_advisory_lock(int8, binary) is refused and no lock is held', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [functionCall(oids.pg_advisory_lock, [int8(7)], [1])]);
      assertRefused(msgs, 'FunctionCall pg_advisory_lock');
      const held = (await adv.stack.pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'", { database: 'app' })).trim();
      assert.equal(held, '0', 'an advisory lock is held');
      await assertIntact(adv);
    }));

  test('w2p-20: FunctionCall of an IMMUTABLE-labelled user function that resets statistics is refused', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [functionCall(oids.f_liar, [])]);
      await assertIntact(adv, 'FunctionCall f_liar()');
      assertRefused(msgs, 'FunctionCall f_liar');
    }));

  test('w2p-21: FunctionCall of an IMMUTABLE-labelled SQL function returning reverse(email) withholds it', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [functionCall(oids.f_liar_email, ['1'])]);
      assert.ok(msgs.some((m) => m.type === BackendType.readyForQuery), describeMsgs(msgs));
      assertNoOtherError(msgs, 'f_liar_email');
      await assertIntact(adv);
    }));

  test('w2p-22: select f_liar_email(id) (SQL) is masked', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select f_liar_email(id) from users');
      assertRefusedOrRows(msgs, 'f_liar_email');
      await assertIntact(adv);
    }));

  test('w2p-23: FunctionCall pg_terminate_backend(own pid, 0) is refused', () =>
    withClient(async ({ c }) => {
      const pid = rowsOf(await simple(c, 'select pg_backend_pid()'))[0]![0]!;
      const msgs = await exchange(c, [functionCall(oids.pg_terminate_backend, [pid, '0'])]);
      assertRefused(msgs, 'FunctionCall pg_terminate_backend');
      await assertIntact(adv);
    }));

  test('w2p-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
