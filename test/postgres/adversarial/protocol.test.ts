/**
 * Adversarial corpus — protocol tricks: the extended protocol's statement and portal
 * bookkeeping, error-skip mode, pipelines, multi-statement queries and prepared statements
 * shared between SQL and the protocol. The agent's policy is read-only; every write the
 * tricks smuggle must be refused and the data left intact.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertIntact,
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
  rowsOf,
  simple,
  useAdversary,
  tagsOf,
  type Adversary,
} from './harness.js';
import { eventually } from '../stack.js';

describe('adversarial corpus: protocol tricks', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a));

  test('proto-01: the Close/Sync skip trick does not run a named DELETE', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(
        c,
        [
          fe.parse('d', 'delete from users'),
          fe.SYNC,
          fe.bind('', 'no_such_statement', []), // fails: the server skips to the next Sync
          fe.close('S', 'd'), // skipped by the server, not by a naive tracker
          fe.SYNC,
          fe.bind('', 'd', []),
          fe.execute('', 0),
          fe.SYNC,
        ],
        3,
      );
      assert.ok(!tagsOf(msgs).some((t) => t.startsWith('DELETE')), `a DELETE ran: ${describeMsgs(msgs)}`);
      assertSomeRefusal(msgs, 'the named DELETE');
      await assertIntact(adv);
    }));

  test('proto-02: a failing re-Parse of an existing name cannot relabel it (Bind runs the original)', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(
        c,
        [
          fe.parse('x', 'delete from users'),
          fe.SYNC,
          fe.parse('x', 'select 1'), // 42P05 at the server: the name still means the DELETE
          fe.SYNC,
          fe.bind('', 'x', []),
          fe.execute('', 0),
          fe.SYNC,
        ],
        3,
      );
      assert.ok(!tagsOf(msgs).some((t) => t.startsWith('DELETE')), `a DELETE ran: ${describeMsgs(msgs)}`);
      assertSomeRefusal(msgs, 'the relabelled DELETE');
      await assertIntact(adv);
    }));

  test('proto-03: Bind naming an unknown statement is an error and the session stays usable', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.bind('', 'never_parsed', []), fe.execute('', 0), fe.SYNC]);
      // The server's own answer (26000) is safe too.
      assertRefused(msgs, 'Bind of an unknown statement', ['26000']);
      const after = await simple(c, 'select 1');
      assert.deepEqual(errorsOf(after), [], describeMsgs(after));
      await assertIntact(adv);
    }));

  test('proto-04: Execute naming an unknown portal is an error', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.execute('never_bound', 0), fe.SYNC]);
      assertRefused(msgs, 'Execute of an unknown portal', ['34000']);
      await assertIntact(adv);
    }));

  test('proto-05: Describe naming an unknown statement and portal is an error', () =>
    withClient(async ({ c }) => {
      const s = await exchange(c, [fe.describe('S', 'never_parsed'), fe.SYNC]);
      assertRefused(s, 'Describe S of an unknown statement', ['26000']);
      const p = await exchange(c, [fe.describe('P', 'never_bound'), fe.SYNC]);
      assertRefused(p, 'Describe P of an unknown portal', ['34000']);
      await assertIntact(adv);
    }));

  test('proto-06: the unnamed statement is not reusable after its Execute was refused', () =>
    withClient(async ({ c }) => {
      const first = await exchange(c, [fe.parse('', 'delete from users'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC]);
      assertRefused(first, 'the unnamed DELETE');
      const second = await exchange(c, [fe.bind('', '', []), fe.execute('', 0), fe.SYNC]);
      assert.ok(!tagsOf(second).some((t) => t.startsWith('DELETE')), `the reused statement ran: ${describeMsgs(second)}`);
      assertRefused(second, 'Bind of the unnamed statement again', ['26000']);
      await assertIntact(adv);
    }));

  test('proto-07: Execute of a portal created by SQL DECLARE runs no side effect', () =>
    withClient(async ({ c }) => {
      const msgs = [
        ...(await simple(c, 'begin')),
        ...(await simple(c, 'declare c cursor for select f_del()')),
        ...(await exchange(c, [fe.execute('c', 0), fe.SYNC])),
      ];
      assertSomeRefusal(msgs, 'the cursor over f_del()');
      await assertIntact(adv);
    }));

  test('proto-08: Execute of a DECLAREd cursor over the masked column returns no raw value', () =>
    withClient(async ({ c }) => {
      const msgs = [
        ...(await simple(c, 'begin')),
        ...(await simple(c, 'declare c2 cursor for select id, email, note from users order by id')),
        ...(await exchange(c, [fe.execute('c2', 0), fe.SYNC])),
      ];
      assertRefusedOrRows(msgs, 'the cursor over users');
      await assertIntact(adv);
    }));

  test('proto-09: a pipelined Parse/Bind/Execute of DELETE without Sync, then Flush, does not run', () =>
    withClient(async ({ c }) => {
      c.send(fe.parse('', 'delete from users'), fe.bind('', '', []), fe.execute('', 0), fe.FLUSH);
      const flushed = await drain(c, 1500);
      const rest = await exchange(c, [fe.SYNC]);
      const msgs = [...flushed, ...rest];
      assert.ok(!tagsOf(msgs).some((t) => t.startsWith('DELETE')), `a DELETE ran: ${describeMsgs(msgs)}`);
      assertRefused(msgs, 'the flushed DELETE');
      await assertIntact(adv);
    }));

  test('proto-10: Execute with a row limit, then a second Execute, stays masked', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [
        fe.parse('', 'select email, note from users order by id'),
        fe.bind('', '', []),
        fe.execute('', 1),
        fe.execute('', 0),
        fe.SYNC,
      ]);
      assertRefusedOrRows(msgs, 'the row-limited portal');
      await assertIntact(adv);
    }));

  test('proto-11: a row-limited Execute of DELETE … RETURNING does not run', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'delete from users returning id'), fe.bind('', '', []), fe.execute('', 1), fe.execute('', 1), fe.SYNC]);
      assertRefused(msgs, 'the row-limited DELETE');
      await assertIntact(adv);
    }));

  test('proto-12: a simple Query with several statements (select 1; delete from users) is refused whole', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, 'select 1; delete from users');
      assertRefused(msgs, 'the multi-statement Query');
      await assertIntact(adv);
    }));

  test('proto-13: inside a failed transaction, ROLLBACK; DELETE in one Query is refused', () =>
    withClient(async ({ c }) => {
      await simple(c, 'begin');
      const failed = await simple(c, 'select 1/0');
      assert.equal(errorsOf(failed)[0]?.code, '22012', describeMsgs(failed));
      const msgs = await simple(c, 'rollback; delete from users');
      assertRefused(msgs, 'the DELETE after ROLLBACK');
      await assertIntact(adv);
    }));

  test('proto-14: a Parse holding two statements is refused', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', 'select 1; delete from users'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC]);
      // The server itself refuses a prepared statement of two commands (42601) before anything runs.
      assertRefused(msgs, 'the two-statement Parse', ['42601']);
      await assertIntact(adv);
    }));

  test('proto-15: messages after Terminate are never executed', () =>
    withClient(async ({ c }) => {
      // The upstream backend of this session, to see it end below.
      const pid = rowsOf(await simple(c, 'select pg_backend_pid()'))[0]?.[0];
      assert.match(pid ?? '', /^\d+$/);
      c.send(fe.TERMINATE, fe.query('delete from users'), fe.parse('', 'delete from users'), fe.bind('', '', []), fe.execute('', 0), fe.SYNC);
      const msgs = await exchange(c, [], 1, 5000);
      assert.ok(c.closed, 'the session ended at Terminate');
      assert.ok(!msgs.some((m) => m.type === BackendType.commandComplete), `something ran after Terminate: ${describeMsgs(msgs)}`);
      // The broker ends the upstream session asynchronously: once its backend is gone,
      // whatever it was sent has run or never will.
      await eventually('the upstream session to end', async () => (await adv.stack.pg.psql(`SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`)).trim() === '0');
      await assertIntact(adv);
    }));

  test('proto-16: PREPARE p AS DELETE … then EXECUTE p is refused', () =>
    withClient(async ({ c }) => {
      const msgs = [...(await simple(c, 'prepare p as delete from users')), ...(await simple(c, 'execute p'))];
      assertRefused(msgs, 'PREPARE of a DELETE');
      assertRefused(msgs.slice(msgs.findIndex((m) => m.type === BackendType.readyForQuery) + 1), 'EXECUTE p', ['26000']);
      await assertIntact(adv);
    }));

  test('proto-17: a protocol-level Parse of DELETE cannot be run by SQL EXECUTE', () =>
    withClient(async ({ c }) => {
      const parsed = await exchange(c, [fe.parse('pd', 'delete from users'), fe.SYNC]);
      const msgs = await simple(c, 'execute pd');
      assert.ok(!tagsOf(msgs).some((t) => t.startsWith('DELETE')), `EXECUTE pd ran the DELETE: ${describeMsgs(msgs)}`);
      assertSomeRefusal([...parsed, ...msgs], 'the DELETE parsed by protocol, executed by SQL');
      await assertIntact(adv);
    }));

  test('proto-18: a SQL PREPARE of select f_del() cannot be run by protocol Bind/Execute', () =>
    withClient(async ({ c }) => {
      const prepared = await simple(c, 'prepare p2 as select f_del()');
      const msgs = await exchange(c, [fe.bind('', 'p2', []), fe.execute('', 0), fe.SYNC]);
      assertSomeRefusal([...prepared, ...msgs], 'the f_del() prepared by SQL, executed by protocol');
      await assertIntact(adv);
    }));

  test('proto-19: Describe of a refused statement does not make it executable later in the pipeline', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(
        c,
        [fe.parse('q', 'delete from users'), fe.describe('S', 'q'), fe.SYNC, fe.bind('qp', 'q', []), fe.execute('qp', 0), fe.SYNC],
        2,
      );
      assert.ok(!tagsOf(msgs).some((t) => t.startsWith('DELETE')), `a DELETE ran: ${describeMsgs(msgs)}`);
      assertSomeRefusal(msgs, 'the described DELETE');
      await assertIntact(adv);
    }));

  test('proto-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
