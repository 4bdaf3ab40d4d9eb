/**
 * Adversarial corpus, wave 11 — masked values laundered through what the session WRITES.
 * Earlier waves ran under a read-only policy, where every copy of a masked value into a
 * relation was refused by the gate. Here the agent has a scratch area (temporary tables and
 * a `scratch` schema) it may create, fill and change, and reads the masked tables: a value
 * copied there (renamed, transformed, inside JSON or an array, through MERGE, a writable
 * CTE, a generated column, a rename or a change of schema) must not come back unmasked
 * when the copy is read — in the same session, another session, or through a statement
 * described before the copy was made.
 *
 * Two policies, one stack each:
 * - SCRATCH_POLICY (reads everywhere; ddl/insert/update/delete/select on pg_temp.* and
 *   scratch.*): a statement that reads `users` and writes scratch matches no allow rule,
 *   so the gate refuses every copy (kept as regressions), while the scratch area itself
 *   works unmasked for what the agent writes from its own values;
 * - WIDE_POLICY (writes allowed on public.* too, as an analytics deployment that copies
 *   from the tables it reads needs): the copies run, and masking must follow the data.
 *
 * The values are the local part of a seeded email (or a transform of it): the email
 * detector does not recognise them, only following the data into the copy can hide them.
 * Each case first shows the attack WORKS as `app` directly (the value comes back).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BackendType,
  EMAIL1,
  assertAbsent,
  assertNoFragments,
  assertNoRaw,
  assertStoreClean,
  connect,
  describeMsgs,
  direct,
  errorsOf,
  exchange,
  fe,
  REFUSAL_CODES,
  rowsOf,
  SHORT_FRAGMENTS,
  simple,
  simpleEach,
  superQuery,
  useAdversary,
  type Adversary,
  type Msg,
} from './harness.js';
import { TARGET } from '../stack.js';
import type { PolicyConfig } from '../../../src/broker/config/types.js';

const LOCAL1 = EMAIL1.split('@')[0]!;

/** Whether text holds a copied value (a fragment of a local part, either way round, or its base64/hex). */
function holdsValue(text: string): boolean {
  const t = text.toLowerCase();
  if (SHORT_FRAGMENTS.some((f) => t.includes(f))) return true;
  const b64 = Buffer.from(LOCAL1).toString('base64').toLowerCase();
  const hex = Buffer.from(LOCAL1).toString('hex');
  return t.includes(b64.slice(0, 8)) || t.includes(hex);
}

function assertClean(bytes: Buffer | string, where: string): void {
  assertNoRaw(bytes, where);
  assertNoFragments(bytes, where);
  assertAbsent(bytes, LOCAL1, where);
}

const READS = { name: 'w11#1', sql: ['select', 'show', 'explain', 'transaction'], effect: 'allow' as const, extra: {} };
const DENY = { name: 'w11#3', effect: 'deny' as const, extra: {} };

const SCRATCH_POLICY: PolicyConfig[] = [
  {
    name: 'w11',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [READS, { name: 'w11#2', sql: ['ddl', 'insert', 'update', 'delete', 'select'], relations: ['pg_temp.*', 'scratch.*'], effect: 'allow', extra: {} }, DENY],
  },
];

const WIDE_POLICY: PolicyConfig[] = [
  {
    name: 'w11',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      READS,
      {
        name: 'w11#2',
        sql: ['ddl', 'insert', 'update', 'delete', 'merge', 'select', 'copy', 'refresh', 'transaction'],
        relations: ['pg_temp.*', 'scratch.*', 'public.*'],
        effect: 'allow',
        extra: {},
      },
      DENY,
    ],
  },
];

const SCRATCH = `DROP SCHEMA IF EXISTS scratch CASCADE; CREATE SCHEMA scratch; GRANT ALL ON SCHEMA scratch TO app; GRANT CREATE ON SCHEMA public TO app;
DROP TABLE IF EXISTS public.w11_16;`;

/** The local part of a seeded email: what every copy below holds, in some form. */
const LOCAL = "split_part(email, '@', 1)";

interface Attack {
  id: string;
  why: string;
  /** Statements that make the copy (each a simple Query). */
  write: string[];
  /** Statements that read it back; their answer holds the value without agentgate. */
  read: string[];
  /** Read on a new connection (another session of the agent). */
  fresh?: boolean;
}

/** Copies the wide policy lets run: masking must follow the value into them. */
const LAUNDERING: Attack[] = [
  { id: 'w11m-01', why: 'CREATE TEMP TABLE AS, the column renamed', write: [`create temp table w11_01 as select id, ${LOCAL} as x from users`], read: ['select x from w11_01 order by id'] },
  { id: 'w11m-02', why: 'SELECT INTO a temporary table', write: [`select ${LOCAL} as x into temp w11_02 from users`], read: ['select * from w11_02'] },
  {
    id: 'w11m-03',
    why: 'CREATE TABLE scratch.t AS, read from another session (scratch persists)',
    write: [`create table scratch.w11_03 as select id, ${LOCAL} as x from users`],
    read: ['select x from scratch.w11_03'],
    fresh: true,
  },
  {
    id: 'w11m-04',
    why: 'a materialized view in scratch WITH NO DATA, then REFRESH',
    write: [`create materialized view scratch.w11_04 as select ${LOCAL} as x from users with no data`, 'refresh materialized view scratch.w11_04'],
    read: ['select x from scratch.w11_04'],
  },
  {
    id: 'w11m-05',
    why: 'INSERT … SELECT into a scratch table',
    write: ['create table scratch.w11_05 (id int, x text)', `insert into scratch.w11_05 select id, ${LOCAL} from users`],
    read: ['select x from scratch.w11_05'],
  },
  {
    id: 'w11m-06',
    why: 'INSERT … VALUES ((SELECT lower(…))): a scalar subquery, transformed',
    write: ['create temp table w11_06 (x text)', `insert into pg_temp.w11_06 values ((select lower(${LOCAL}) from users where id = 1))`],
    read: ['select x from w11_06'],
  },
  {
    id: 'w11m-07',
    why: 'UPDATE … SET x = (SELECT … correlated)',
    write: ['create table scratch.w11_07 (id int, x text)', 'insert into scratch.w11_07 values (1, null), (2, null)', `update scratch.w11_07 t set x = (select ${LOCAL} || '' from users u where u.id = t.id)`],
    read: ['select x from scratch.w11_07'],
  },
  {
    id: 'w11m-08',
    why: 'MERGE … USING users: WHEN NOT MATCHED THEN INSERT the value',
    write: ['create table scratch.w11_08 (id int, x text)', `merge into scratch.w11_08 t using users u on t.id = u.id when not matched then insert values (u.id, substring(split_part(u.email, '@', 1) from 1))`],
    read: ['select x from scratch.w11_08'],
  },
  {
    id: 'w11m-09',
    why: 'a writable CTE (WITH w AS (INSERT … RETURNING)), then a read of the table',
    write: ['create table scratch.w11_09 (x text)', `with w as (insert into scratch.w11_09 select ${LOCAL} from users returning 1) select count(*) from w`],
    read: ['select x from scratch.w11_09'],
  },
  {
    id: 'w11m-10',
    why: 'INSERT … RETURNING the copied value',
    write: ['create table scratch.w11_10 (x text)'],
    read: [`insert into scratch.w11_10 select ${LOCAL} from users returning x`],
  },
  {
    id: 'w11m-11',
    why: 'stored as base64 (encode(convert_to(…)))',
    write: [`create table scratch.w11_11 as select encode(convert_to(${LOCAL}, 'UTF8'), 'base64') as b from users`],
    read: ["select convert_from(decode(b, 'base64'), 'UTF8') from scratch.w11_11"],
  },
  {
    id: 'w11m-12',
    why: 'stored as bytea, read back as text',
    write: [`create table scratch.w11_12 as select convert_to(${LOCAL}, 'UTF8') as b from users`],
    read: ["select encode(b, 'escape') from scratch.w11_12"],
  },
  {
    id: 'w11m-13',
    why: 'a value stored under a jsonb key',
    write: ['create table scratch.w11_13 (j jsonb)', `insert into scratch.w11_13 select jsonb_build_object('k', ${LOCAL}) from users`],
    read: ["select j->>'k' from scratch.w11_13"],
  },
  {
    id: 'w11m-14',
    why: 'to_jsonb(users): the whole row stored, a key read back',
    write: ['create table scratch.w11_14 as select to_jsonb(u) as j from users u'],
    read: ["select split_part(j->>'email', '@', 1) from scratch.w11_14"],
  },
  {
    id: 'w11m-15',
    why: 'string_agg and array_agg into one stored value',
    write: [`create table scratch.w11_15 as select string_agg(${LOCAL}, ',') as s, array_agg(reverse(${LOCAL})) as a from users`],
    read: ['select s, a from scratch.w11_15'],
  },
  {
    id: 'w11m-16',
    why: 'ALTER TABLE … SET SCHEMA public after the copy',
    write: [`create table scratch.w11_16 as select ${LOCAL} as x from users`, 'alter table scratch.w11_16 set schema public'],
    read: ['select x from public.w11_16'],
    fresh: true,
  },
  {
    id: 'w11m-17',
    why: 'ALTER TABLE … RENAME after the copy, read under the new name in another session',
    write: [`create table scratch.w11_17 as select ${LOCAL} as x from users`, 'alter table scratch.w11_17 rename to w11_17_renamed'],
    read: ['select x from scratch.w11_17_renamed'],
    fresh: true,
  },
  {
    id: 'w11m-18',
    why: 'ALTER COLUMN TYPE bytea USING convert_to(…), read back decoded',
    write: [`create table scratch.w11_18 as select ${LOCAL} as x from users`, "alter table scratch.w11_18 alter column x type bytea using convert_to(x, 'UTF8')"],
    read: ["select convert_from(x, 'UTF8') from scratch.w11_18"],
  },
  {
    id: 'w11m-19',
    why: 'a generated column in scratch over the copied one',
    write: ['create table scratch.w11_19 (x text, y text generated always as (reverse(x)) stored)', `insert into scratch.w11_19 (x) select ${LOCAL} from users`],
    read: ['select y from scratch.w11_19'],
  },
  {
    id: 'w11m-20',
    why: 'a copy of the copy (transitive), then the second one read',
    write: [`create table scratch.w11_20a as select ${LOCAL} as x from users`, 'create table scratch.w11_20b as select x as y from scratch.w11_20a'],
    read: ['select y from scratch.w11_20b'],
    fresh: true,
  },
  {
    id: 'w11m-21',
    why: 'the copy made a child of a clean parent (INHERIT): read through the parent',
    write: ['create table scratch.w11_21p (x text)', `create table scratch.w11_21c as select ${LOCAL} as x from users`, 'alter table scratch.w11_21c inherit scratch.w11_21p'],
    read: ['select x from scratch.w11_21p'],
  },
  {
    id: 'w11m-22',
    why: 'COPY (SELECT … FROM the copy) TO STDOUT',
    write: [`create table scratch.w11_22 as select ${LOCAL} as x from users`],
    read: ['copy (select x from scratch.w11_22) to stdout'],
  },
  {
    id: 'w11m-23',
    why: 'a WITH HOLD cursor over the copy, fetched after COMMIT',
    write: [`create table scratch.w11_23 as select ${LOCAL} as x from users`],
    read: ['begin', 'declare c23 cursor with hold for select x from scratch.w11_23', 'commit', 'fetch all from c23'],
  },
  {
    id: 'w11m-24',
    why: 'a temporary view over users (analysed by its definition)',
    write: [`create temp view w11_24 as select ${LOCAL} as x from users`],
    read: ['select x from w11_24'],
  },
  {
    id: 'w11m-25',
    why: 'a view in scratch over a scratch copy',
    write: [`create table scratch.w11_25 as select ${LOCAL} as x from users`, 'create view scratch.w11_25v as select x as y from scratch.w11_25'],
    read: ['select y from scratch.w11_25v'],
    fresh: true,
  },
  {
    id: 'w11m-26',
    why: 'a copy whose data is chosen by a WHERE on the value (the rows, not the values, carry it)',
    write: ['create table scratch.w11_26 (id int)', `insert into scratch.w11_26 select id from users where ${LOCAL} like 'qxz%'`],
    read: ["select 'row ' || id || case when id = 1 then ' qxzjv' else '' end from scratch.w11_26"],
  },
];

/** Answer text of a direct run (rows and errors), for the control. */
async function directText(adv: Adversary, attack: Attack): Promise<string> {
  return direct(adv, async (client) => {
    let out = '';
    for (const s of attack.write) await client.query(s);
    const reader = attack.fresh ? undefined : client;
    const run = async (c: typeof client): Promise<void> => {
      for (const s of attack.read) {
        if (s.startsWith('copy ')) {
          // node-postgres has no COPY TO here: the same query as a SELECT shows what COPY sends.
          const q = s.slice(6, s.lastIndexOf(')'));
          out += JSON.stringify((await c.query({ text: q, rowMode: 'array' })).rows);
        } else out += JSON.stringify((await c.query({ text: s, rowMode: 'array' })).rows);
      }
    };
    if (reader) await run(reader);
    else await direct(adv, run);
    return out;
  });
}

/** The read's answer shows rows (or COPY data) and no error. */
function assertAnswered(msgs: Msg[], what: string): void {
  assert.deepEqual(errorsOf(msgs), [], `${what}: ${describeMsgs(msgs)}`);
  assert.ok(
    msgs.some((m) => m.type === BackendType.dataRow || m.type === BackendType.copyData),
    `${what}: the read returned no rows: ${describeMsgs(msgs)}`,
  );
}

describe('adversarial corpus wave 11: laundering through what the session writes (wide write policy)', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    policies: WIDE_POLICY,
    setup: async (a) => {
      await superQuery(a, SCRATCH);
    },
    check: ({ bytes }) => assertClean(bytes(), 'the client'),
  });

  test('w11m-00: control — without agentgate, every copy reads the value back', async () => {
    for (const attack of LAUNDERING) {
      await superQuery(adv, SCRATCH);
      const text = await directText(adv, attack);
      assert.ok(holdsValue(text), `${attack.id}: the direct read did not return the value: ${text.slice(0, 200)}`);
    }
    await superQuery(adv, SCRATCH);
  });

  for (const attack of LAUNDERING) {
    test(`${attack.id}: ${attack.why}`, async () => {
      await superQuery(adv, SCRATCH);
      await withClient(async ({ c }) => {
        for (const s of attack.write) {
          const msgs = await simple(c, s);
          assert.deepEqual(errorsOf(msgs), [], `${attack.id}: the write must run (the policy allows it): ${s}: ${describeMsgs(msgs)}`);
        }
        if (!attack.fresh) {
          assertAnswered(await simpleEach(c, attack.read), attack.id);
          return;
        }
        const other = await connect(adv);
        try {
          const msgs = await simpleEach(other.c, attack.read);
          assertAnswered(msgs, `${attack.id} (another session)`);
          assertClean(other.bytes(), `${attack.id}: another session`);
        } finally {
          other.close();
        }
      });
    });
  }

  test('w11m-27: a statement described BEFORE the copy was made, executed after it (same session)', async () => {
    await superQuery(adv, SCRATCH);
    await withClient(async ({ c }) => {
      assert.deepEqual(errorsOf(await simple(c, 'create table scratch.w11_27 (x text)')), []);
      const described = await exchange(c, [fe.parse('s27', 'select x from scratch.w11_27'), fe.describe('S', 's27'), fe.SYNC]);
      assert.deepEqual(errorsOf(described), [], describeMsgs(described));
      assert.deepEqual(errorsOf(await simple(c, `insert into scratch.w11_27 select ${LOCAL} from users`)), []);
      const run = await exchange(c, [fe.bind('', 's27', []), fe.execute('', 0), fe.SYNC]);
      assertAnswered(run, 'w11m-27');
      assert.equal(rowsOf(run).length, 2);
    });
    const control = await direct(adv, async (client) => (await client.query({ text: 'select x from scratch.w11_27', rowMode: 'array' })).rows);
    assert.ok(holdsValue(JSON.stringify(control)), 'w11m-27: the copy holds the value');
  });

  test('w11m-28: a statement described in one session, the copy made by another, then executed', async () => {
    await superQuery(adv, SCRATCH);
    await withClient(async ({ c }) => {
      assert.deepEqual(errorsOf(await simple(c, 'create table scratch.w11_28 (x text)')), []);
      const described = await exchange(c, [fe.parse('s28', 'select x from scratch.w11_28'), fe.describe('S', 's28'), fe.SYNC]);
      assert.deepEqual(errorsOf(described), [], describeMsgs(described));
      const other = await connect(adv);
      try {
        assert.deepEqual(errorsOf(await simple(other.c, `insert into scratch.w11_28 select ${LOCAL} from users`)), []);
      } finally {
        other.close();
      }
      const run = await exchange(c, [fe.bind('', 's28', []), fe.execute('', 0), fe.SYNC]);
      assertAnswered(run, 'w11m-28');
      assert.equal(rowsOf(run).length, 2);
    });
  });

  test('w11m-29: an int copy of a masked value (ascii of each character) is masked too', async () => {
    await superQuery(adv, SCRATCH);
    const q = `create table scratch.w11_29 as select id, i, ascii(substr(${LOCAL}, i, 1)) as c from users, generate_series(1, 10) i`;
    const read = 'select c from scratch.w11_29 where id = 1 order by i';
    const control = await direct(adv, async (client) => {
      await client.query(q);
      return (await client.query({ text: read, rowMode: 'array' })).rows.map((r: unknown[]) => String.fromCharCode(Number(r[0]))).join('');
    });
    assert.equal(control, LOCAL1, 'w11m-29: the codes spell the value directly');
    await superQuery(adv, SCRATCH);
    await withClient(async ({ c }) => {
      assert.deepEqual(errorsOf(await simple(c, q)), []);
      const msgs = await simple(c, read);
      assertAnswered(msgs, 'w11m-29');
      const codes = rowsOf(msgs).map((r) => r[0]);
      assert.equal(codes.length, 10);
      assert.ok(codes.every((v) => v === null), `w11m-29: the codes are withheld (NULL): ${JSON.stringify(codes)}`);
    });
  });

  // The gate refuses a statement that follows a schema change in the same text (it would be
  // judged on the schema before the change ran: wave 10), so the copy never happens here; the
  // write taint would mask the read otherwise (w11m-34 is the same through the extended protocol).
  test('w11m-33: the copy and its read in ONE simple Query: refused, nothing of the value comes back', async () => {
    await superQuery(adv, SCRATCH);
    const sql = `create temp table w11_33 as select ${LOCAL} as x from users; select x from w11_33`;
    const control = await direct(adv, async (client) => {
      const r = (await client.query(sql)) as unknown as { rows: unknown[] }[];
      return JSON.stringify(r[1]!.rows);
    });
    assert.ok(holdsValue(control), `w11m-33: the direct read returns the value: ${control}`);
    await withClient(async ({ c }) => {
      const msgs = await simple(c, sql.replace(/w11_33/g, 'w11_33b'));
      assert.deepEqual(
        errorsOf(msgs).map((e) => e.code),
        ['42501'],
      );
      assert.match(errorsOf(msgs)[0]!.message, /follows CREATE TABLE AS in the same text/);
      assert.ok(!holdsValue(JSON.stringify(msgs.map((m) => m.body.toString('latin1')))), 'no value in any message');
    });
  });

  test('w11m-34: the copy made through the extended protocol (Parse/Bind/Execute), pipelined with the read', async () => {
    await superQuery(adv, SCRATCH);
    await withClient(async ({ c }) => {
      assert.deepEqual(errorsOf(await simple(c, 'create table scratch.w11_34 (x text)')), []);
      const msgs = await exchange(c, [
        fe.parse('', `insert into scratch.w11_34 select ${LOCAL} from users`),
        fe.bind('', '', []),
        fe.execute('', 0),
        fe.parse('', 'select x from scratch.w11_34'),
        fe.bind('', '', []),
        fe.describe('P', ''),
        fe.execute('', 0),
        fe.SYNC,
      ]);
      assertAnswered(msgs, 'w11m-34');
      assert.equal(rowsOf(msgs).length, 2);
    });
    const control = await superQuery(adv, 'SELECT string_agg(x, \',\') FROM scratch.w11_34');
    assert.ok(holdsValue(control), `w11m-34: the copy holds the value: ${control}`);
  });

  test('w11m-35: a cursor over users itself (no copy), fetched after COMMIT — masked before this wave, kept', async () => {
    await withClient(async ({ c }) => {
      const msgs = await simpleEach(c, ['begin', `declare c35 cursor with hold for select ${LOCAL} from users`, 'commit', 'fetch all from c35']);
      assertAnswered(msgs, 'w11m-35');
    });
  });

  test('w11m-36: a function in pg_temp returning the value, its result stored — refused (the gate does not know the function)', async () => {
    await superQuery(adv, SCRATCH);
    await withClient(async ({ c }) => {
      const made = await simple(c, `create function pg_temp.w11_36() returns text language sql as $$ select ${LOCAL} from users limit 1 $$`);
      assert.deepEqual(errorsOf(made), [], describeMsgs(made));
      const msgs = await simple(c, 'create temp table w11_36 as select pg_temp.w11_36() as x');
      const errs = errorsOf(msgs);
      assert.ok(errs.length > 0 && REFUSAL_CODES.includes(errs[0]!.code), describeMsgs(msgs));
      assert.match(errs[0]!.message, /unknown function pg_temp\.w11_36/);
    });
  });

  // ─────────────── what must keep working: copies of clean data, and the tables read ───────────────

  test('w11m-30: a copy of clean columns (id, name, a count) reads back unmasked', async () => {
    await superQuery(adv, SCRATCH);
    await withClient(async ({ c }) => {
      assert.deepEqual(errorsOf(await simple(c, 'create temp table w11_30 as select id, name from users')), []);
      assert.deepEqual(errorsOf(await simple(c, 'create table scratch.w11_30 (n int)')), []);
      assert.deepEqual(errorsOf(await simple(c, 'insert into scratch.w11_30 select count(*) from users')), []);
      assert.deepEqual(rowsOf(await simple(c, 'select id, name from w11_30 order by id')), [
        ['1', 'Alpha'],
        ['2', 'Bravo'],
      ]);
      assert.deepEqual(rowsOf(await simple(c, 'select n from scratch.w11_30')), [['2']]);
    });
  });

  test('w11m-31: after every copy above, users itself is not masked beyond its rule (name and id as they are)', async () => {
    await withClient(async ({ c }) => {
      const rows = rowsOf(await simple(c, 'select id, name from users order by id'));
      assert.deepEqual(rows, [
        ['1', 'Alpha'],
        ['2', 'Bravo'],
      ]);
    });
  });

  test('w11m-32: the audit store and the broker state hold no copied value', async () => {
    await assertStoreClean(adv);
    const events = JSON.stringify(await adv.stack.events());
    assertAbsent(events, LOCAL1, 'the audit store');
  });
});

/** Copies the scratch policy refuses at the gate (a statement reading users may not write): regressions. `read`: how the control reads the copy. */
const REFUSED: { id: string; sql: string; why: string; read: string[] }[] = [
  { id: 'w11m-40', sql: `create temp table w11_40 as select ${LOCAL} as x from users`, why: 'CREATE TEMP TABLE AS over users', read: ['select x from w11_40'] },
  { id: 'w11m-41', sql: `select ${LOCAL} as x into temp w11_41 from users`, why: 'SELECT INTO over users', read: ['select x from w11_41'] },
  { id: 'w11m-42', sql: `create table scratch.w11_42 as select ${LOCAL} as x from users`, why: 'CREATE TABLE scratch.t AS over users', read: ['select x from scratch.w11_42'] },
  { id: 'w11m-43', sql: `insert into scratch.t select ${LOCAL} from users`, why: 'INSERT … SELECT from users into scratch', read: ['select x from scratch.t'] },
  { id: 'w11m-44', sql: `update scratch.t set x = (select ${LOCAL} from users limit 1)`, why: 'UPDATE scratch … SET = (SELECT from users)', read: ["insert into scratch.t values ('a')", `update scratch.t set x = (select ${LOCAL} from users limit 1)`, 'select x from scratch.t'] },
  { id: 'w11m-45', sql: `with w as (select ${LOCAL} as x from users) insert into scratch.t select x from w`, why: 'a CTE over users feeding an INSERT', read: ['select x from scratch.t'] },
  { id: 'w11m-46', sql: `create temp view w11_46 as select ${LOCAL} as x from users`, why: 'a temporary view over users', read: ['select x from w11_46'] },
  { id: 'w11m-47', sql: `create materialized view scratch.w11_47 as select ${LOCAL} as x from users`, why: 'a materialized view in scratch over users', read: ['select x from scratch.w11_47'] },
  {
    id: 'w11m-48',
    sql: `create rule w11_48 as on insert to scratch.t do also insert into scratch.u select ${LOCAL} from users`,
    why: 'a rule on a scratch table that copies from users',
    read: ["insert into scratch.t values ('a')", 'select x from scratch.u'],
  },
  {
    id: 'w11m-49',
    sql: "merge into scratch.t t using users u on false when not matched then insert values (split_part(u.email, '@', 1))",
    why: 'MERGE into scratch USING users',
    read: ['select x from scratch.t'],
  },
];

describe('adversarial corpus wave 11: laundering under the scratch policy (reads everywhere, writes in pg_temp and scratch)', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    policies: SCRATCH_POLICY,
    setup: async (a) => {
      await superQuery(a, SCRATCH);
    },
    check: ({ bytes }) => assertClean(bytes(), 'the client'),
  });
  const resetScratch = (): Promise<string> => superQuery(adv, `${SCRATCH} CREATE TABLE scratch.t (x text); CREATE TABLE scratch.u (x text); ALTER TABLE scratch.t OWNER TO app; ALTER TABLE scratch.u OWNER TO app;`);

  test('w11m-39: control — without agentgate, each refused copy below runs and reads the value back', async () => {
    for (const { id, sql, read } of REFUSED) {
      await resetScratch();
      const text = await direct(adv, async (client) => {
        await client.query(sql);
        let out = '';
        for (const r of read) out += JSON.stringify((await client.query({ text: r, rowMode: 'array' })).rows);
        return out;
      });
      assert.ok(holdsValue(text), `${id}: the copy holds the value (${text.slice(0, 200)})`);
    }
    await resetScratch();
  });

  for (const { id, sql, why } of REFUSED) {
    test(`${id}: ${why} — refused by the gate (the statement reads users and writes scratch)`, async () => {
      await resetScratch();
      await withClient(async ({ c }) => {
        const msgs = await simple(c, sql);
        const errs = errorsOf(msgs);
        assert.ok(errs.length > 0 && REFUSAL_CODES.includes(errs[0]!.code), `${id}: ${describeMsgs(msgs)}`);
        assert.match(errs[0]!.message, /agentgate: rule w11#3 denies/);
      });
      assert.equal(await superQuery(adv, 'SELECT count(*) FROM scratch.t'), '0', `${id}: nothing was copied`);
    });
  }

  test('w11m-50: the scratch area works, unmasked, for what the agent writes from its own values', async () => {
    await resetScratch();
    await withClient(async ({ c }) => {
      assert.deepEqual(errorsOf(await simple(c, 'create table scratch.w11_50 (id int, label text)')), []);
      assert.deepEqual(errorsOf(await simple(c, "insert into scratch.w11_50 values (1, 'first'), (2, 'second')")), []);
      assert.deepEqual(errorsOf(await simple(c, "update scratch.w11_50 set label = label || '!' where id = 2")), []);
      assert.deepEqual(rowsOf(await simple(c, 'select id, label from scratch.w11_50 order by id')), [
        ['1', 'first'],
        ['2', 'second!'],
      ]);
    });
  });
});
