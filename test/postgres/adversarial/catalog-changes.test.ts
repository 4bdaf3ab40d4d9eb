/**
 * Adversarial corpus: a schema change made by ANOTHER session. The gate and masking resolve
 * names in the live catalog and cache what they learn; a session that changes the schema
 * drops its own caches and the target's when the server confirms the change. Here the
 * change comes from a second session of the agent (a pool, a second psql): the first
 * session, which read the old definition, must not go on judging by it. The agent has a
 * scratch schema it may change and reads everywhere (the wide write policy of wave 11), and
 * reads the local part of a masked email, which no detector recognises: only following the
 * view's current definition can hide it.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  EMAIL1,
  assertAbsent,
  assertNoFragments,
  connect,
  describeMsgs,
  direct,
  directRows,
  errorsOf,
  exchange,
  fe,
  rowsOf,
  simple,
  superQuery,
  useAdversary,
  type Adversary,
} from './harness.js';
import { TARGET } from '../stack.js';
import type { PolicyConfig } from '../../../src/broker/config/types.js';
import { setTimeout as sleep } from 'node:timers/promises';

const LOCAL1 = EMAIL1.split('@')[0]!;
const LOCAL = "split_part(email, '@', 1)";

const POLICY: PolicyConfig[] = [
  {
    name: 'cc',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'cc#1', sql: ['select', 'show', 'explain', 'transaction'], effect: 'allow', extra: {} },
      { name: 'cc#2', sql: ['ddl', 'insert', 'update', 'delete', 'select', 'transaction'], relations: ['pg_temp.*', 'scratch.*', 'public.*'], effect: 'allow', extra: {} },
      { name: 'cc#3', effect: 'deny', extra: {} },
    ],
  },
];

const SCRATCH = 'DROP SCHEMA IF EXISTS scratch CASCADE; CREATE SCHEMA scratch; GRANT ALL ON SCHEMA scratch TO app;';

interface Change {
  id: string;
  why: string;
  /** Run by the first session: makes the clean object and reads it (the read is cached). */
  before: string[];
  /** Run by the second session: the schema change. */
  change: string[];
  /** Run by the first session again; without agentgate it returns the local part. */
  read: string;
}

const CHANGES: Change[] = [
  {
    id: 'cc-01',
    why: 'a view replaced (CREATE OR REPLACE VIEW) to select the masked column under the old name',
    before: ['create view scratch.v as select id, name as x from users', 'select x from scratch.v order by id'],
    change: [`create or replace view scratch.v as select id, ${LOCAL} as x from users`],
    read: 'select x from scratch.v order by id',
  },
  {
    id: 'cc-02',
    why: 'a view renamed away and another made under its name',
    before: ['create view scratch.v as select id, name as x from users', 'select x from scratch.v order by id'],
    change: ['alter view scratch.v rename to v_old', `create view scratch.v as select id, ${LOCAL} as x from users`],
    read: 'select x from scratch.v order by id',
  },
  {
    id: 'cc-03',
    why: 'a clean table dropped and a view of the masked column made under its name',
    before: ["create table scratch.t (id int, x text)", "insert into scratch.t values (1, 'plain')", 'select x from scratch.t order by id'],
    change: ['drop table scratch.t', `create view scratch.t as select id, ${LOCAL} as x from users`],
    read: 'select x from scratch.t order by id',
  },
  {
    id: 'cc-04',
    why: 'a view over a clean view: the inner view replaced',
    before: ['create view scratch.inner_v as select id, name as x from users', 'create view scratch.outer_v as select id, x from scratch.inner_v', 'select x from scratch.outer_v order by id'],
    change: [`create or replace view scratch.inner_v as select id, ${LOCAL} as x from users`],
    read: 'select x from scratch.outer_v order by id',
  },
];

function assertClean(bytes: Buffer, where: string): void {
  assertNoFragments(bytes, where);
  assertAbsent(bytes, LOCAL1, where);
}

describe('adversarial corpus: a schema change made by another session of the agent', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    policies: POLICY,
    setup: async (a) => {
      await superQuery(a, SCRATCH);
    },
  });

  test('cc-00: control — without agentgate, each read after the change returns the local part', async () => {
    for (const c of CHANGES) {
      await superQuery(adv, SCRATCH);
      const rows = await direct(adv, async (first) => {
        for (const s of c.before) await first.query(s);
        await direct(adv, async (second) => {
          for (const s of c.change) await second.query(s);
        });
        return directRows(first, c.read);
      });
      assert.ok(JSON.stringify(rows).includes(LOCAL1), `${c.id}: ${JSON.stringify(rows)}`);
    }
    await superQuery(adv, SCRATCH);
  });

  for (const c of CHANGES) {
    test(`${c.id}: ${c.why}: the first session reads it masked`, async () => {
      await superQuery(adv, SCRATCH);
      await withClient(async (first) => {
        for (const s of c.before) assert.deepEqual(errorsOf(await simple(first.c, s)), [], `${c.id}: ${s}`);
        const second = await connect(adv);
        try {
          for (const s of c.change) {
            const msgs = await simple(second.c, s);
            assert.deepEqual(errorsOf(msgs), [], `${c.id}: the change runs (the policy allows it): ${s}: ${describeMsgs(msgs)}`);
          }
        } finally {
          second.close();
        }
        const msgs = await simple(first.c, c.read);
        assert.deepEqual(errorsOf(msgs), [], `${c.id}: ${describeMsgs(msgs)}`);
        assert.equal(rowsOf(msgs).length, 2, `${c.id}: two rows: ${describeMsgs(msgs)}`);
        assertClean(first.bytes(), c.id);
      });
    });
  }

  test('cc-05: a statement prepared (Parse, Describe) before the view was replaced, bound and executed after: masked', async () => {
    await superQuery(adv, SCRATCH);
    await withClient(async (first) => {
      for (const s of ['create view scratch.v as select id, name as x from users', 'select x from scratch.v order by id']) assert.deepEqual(errorsOf(await simple(first.c, s)), [], s);
      const prepared = await exchange(first.c, [fe.parse('s5', 'select x from scratch.v order by id'), fe.describe('S', 's5'), fe.SYNC]);
      assert.deepEqual(errorsOf(prepared), [], describeMsgs(prepared));
      const second = await connect(adv);
      try {
        assert.deepEqual(errorsOf(await simple(second.c, `create or replace view scratch.v as select id, ${LOCAL} as x from users`)), []);
      } finally {
        second.close();
      }
      const msgs = await exchange(first.c, [fe.bind('', 's5', []), fe.execute('', 0), fe.SYNC]);
      assert.deepEqual(errorsOf(msgs), [], describeMsgs(msgs));
      assert.equal(rowsOf(msgs).length, 2, describeMsgs(msgs));
      assertClean(first.bytes(), 'cc-05');
    });
  });

  test("cc-06: a read sent while another session's view replacement is not committed waits for the commit, then reads masked", async () => {
    await superQuery(adv, SCRATCH);
    await withClient(async (first) => {
      for (const s of ['create view scratch.v as select id, name as x from users', 'select x from scratch.v order by id']) assert.deepEqual(errorsOf(await simple(first.c, s)), [], s);
      const second = await connect(adv);
      try {
        for (const s of ['begin', `create or replace view scratch.v as select id, ${LOCAL} as x from users`]) assert.deepEqual(errorsOf(await simple(second.c, s)), [], s);
        let answered = false;
        const read = simple(first.c, 'select x from scratch.v order by id').then((m) => {
          answered = true;
          return m;
        });
        // Without agentgate holding it, the read reaches PostgreSQL and waits there on the
        // view's lock (then runs the new body after the commit): wait to see that, at most 2 s.
        const blocked = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'select x from scratch.v%'";
        for (const until = Date.now() + 2000; Date.now() < until && (await superQuery(adv, blocked)).trim() === '0'; ) await sleep(100);
        assert.equal(answered, false, 'the read is not answered while the change is in flight');
        assert.deepEqual(errorsOf(await simple(second.c, 'commit')), []);
        const msgs = await read;
        assert.deepEqual(errorsOf(msgs), [], describeMsgs(msgs));
        assert.equal(rowsOf(msgs).length, 2, describeMsgs(msgs));
        assertClean(first.bytes(), 'cc-06');
      } finally {
        second.close();
      }
    });
  });

  test("cc-07: a session in a transaction may still COMMIT while another session's schema change waits in flight (no stall), and its reads go on once that ends", async () => {
    await superQuery(adv, SCRATCH);
    await withClient(async (first) => {
      for (const s of ['create table scratch.t (id int, x text)', "insert into scratch.t values (1, 'a')", 'begin', 'select x from scratch.t']) assert.deepEqual(errorsOf(await simple(first.c, s)), [], s);
      const second = await connect(adv);
      try {
        // The ALTER waits in PostgreSQL for the first session's lock on the table.
        const alter = simple(second.c, 'alter table scratch.t add column y int');
        const blocked = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'alter table scratch.t%'";
        for (let i = 0; i < 100 && (await superQuery(adv, blocked)).trim() === '0'; i++) await sleep(100);
        assert.equal((await superQuery(adv, blocked)).trim(), '1', 'the ALTER waits on the lock');
        assert.deepEqual(errorsOf(await simple(first.c, 'commit')), [], 'COMMIT is not held behind the change');
        assert.deepEqual(errorsOf(await alter), []);
        const msgs = await simple(first.c, 'select id, x, y from scratch.t');
        assert.deepEqual(rowsOf(msgs), [['1', 'a', null]], describeMsgs(msgs));
      } finally {
        second.close();
      }
    });
  });

  test('cc-08: a view replaced outside agentgate (an administrator, another broker): the session reads it masked once its cache is 30 s old', async () => {
    await superQuery(adv, SCRATCH);
    await withClient(async (first) => {
      for (const s of ['create view scratch.v as select id, name as x from users', 'select x from scratch.v order by id']) assert.deepEqual(errorsOf(await simple(first.c, s)), [], s);
      await superQuery(adv, `create or replace view scratch.v as select id, ${LOCAL} as x from users`);
      // Past the cache's time (CATALOG_TTL_MS in proxy-session.ts): the session reads the catalog again.
      await sleep(31_000);
      const msgs = await simple(first.c, 'select x from scratch.v order by id');
      assert.deepEqual(errorsOf(msgs), [], describeMsgs(msgs));
      assert.equal(rowsOf(msgs).length, 2, describeMsgs(msgs));
      assertClean(first.bytes(), 'cc-08');
    });
  });
});
