/**
 * Adversarial corpus, wave 10 — masked values that leave OUTSIDE result rows, put there by
 * code an administrator wrote (never the agent): a trigger's or a function's pg_notify
 * (NotificationResponse), RAISE and errors in a function the agent calls (NoticeResponse,
 * ErrorResponse: message, detail, hint, CONTEXT quoting dynamic SQL), set_config of a
 * reported setting (ParameterStatus) and of a custom one, read back later (SHOW,
 * current_setting, pg_settings, pg_stat_activity), a FunctionCall ('F') of such a
 * function, and the session's own introspection (pg_prepared_statements, pg_cursors)
 * holding text an administrator's function built from a masked value. PL/pgSQL functions
 * the agent calls are refused by the gate today (kept as regressions); SQL-language ones
 * run.
 * The values are the local part of a seeded email reversed: no detector recognises them,
 * only provenance (or masking what cannot be analysed whole) can hide them.
 * Pass: refused, or neither the value nor a fragment of it in any byte the client received.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BackendType,
  EMAIL1,
  assertAbsent,
  assertNoFragments,
  direct,
  drain,
  errorsOf,
  exchange,
  functionCall,
  REFUSAL_CODES,
  SHORT_FRAGMENTS,
  simple,
  superQuery,
  useAdversary,
  describeMsgs,
  type Adversary,
  READ_ONLY_POLICY,
  type Msg,
} from './harness.js';
import type { PolicyConfig } from '../../../src/broker/config/types.js';

/** What the administrator's code computes: the local part of a seeded email, reversed. */
const LOCAL1 = EMAIL1.split('@')[0]!;
const REV1 = [...LOCAL1].reverse().join('');

function assertClean(bytes: Buffer | string, where: string): void {
  assertNoFragments(bytes, where);
  assertAbsent(bytes, REV1, where);
  assertAbsent(bytes, LOCAL1, where);
}

/** Whether a direct answer holds the value (a fragment of the local part, either way round). */
function holdsValue(text: string): boolean {
  const t = text.toLowerCase();
  return SHORT_FRAGMENTS.some((f) => t.includes(f));
}

/** The first error, if any, is a refusal or one of `alsoAccept`. */
function assertRefusedOrAnswered(msgs: Msg[], what: string, alsoAccept: readonly string[] = []): void {
  const errs = errorsOf(msgs);
  if (errs.length > 0) assert.ok([...REFUSAL_CODES, ...alsoAccept].includes(errs[0]!.code), `${what}: ${errs[0]!.code} ${errs[0]!.message}`);
}

/** What a later statement of an attack may answer once an earlier one was refused: the transaction is aborted, the setting never set. */
const AFTER_REFUSAL = ['25P02', '42704'];

/** The harness's read-only policy with LISTEN allowed too (it reads nothing; the notifications are what is tested). */
const LISTEN_POLICY: PolicyConfig[] = READ_ONLY_POLICY.map((p) => ({ ...p, rules: p.rules.map((r) => (r.sql ? { ...r, sql: [...r.sql, 'listen'] } : r)) }));

const SEED = `
CREATE FUNCTION w10_val(int) RETURNS text LANGUAGE sql STABLE AS $$ SELECT reverse(split_part(email, '@', 1)) FROM users WHERE id = $1 $$;
CREATE FUNCTION w10_notify(int) RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN PERFORM pg_notify('w10', (SELECT reverse(split_part(email, '@', 1)) FROM users WHERE id = $1)); RETURN 1; END $$;
CREATE FUNCTION w10_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('w10', reverse(split_part(NEW.email, '@', 1))); RETURN NEW; END $$;
CREATE TRIGGER w10_trg AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION w10_trg();
CREATE FUNCTION w10_notice(int) RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN RAISE NOTICE '%', (SELECT reverse(split_part(email, '@', 1)) FROM users WHERE id = $1); RETURN 1; END $$;
CREATE FUNCTION w10_raise(int) RETURNS int LANGUAGE plpgsql STABLE AS $$
DECLARE v text := (SELECT reverse(split_part(email, '@', 1)) FROM users WHERE id = $1);
BEGIN RAISE EXCEPTION 'lookup failed' USING DETAIL = v, HINT = v; END $$;
CREATE FUNCTION w10_exec(int) RETURNS int LANGUAGE plpgsql STABLE AS $$
DECLARE v text := (SELECT reverse(split_part(email, '@', 1)) FROM users WHERE id = $1); r int;
BEGIN EXECUTE format('SELECT %L::int', v) INTO r; RETURN r; END $$;
CREATE FUNCTION w10_cast(int) RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN RETURN (SELECT reverse(split_part(email, '@', 1)) FROM users WHERE id = $1)::int; END $$;
CREATE FUNCTION w10_setapp_sql(int) RETURNS text LANGUAGE sql STABLE AS $$ SELECT set_config('application_name', reverse(split_part(email, '@', 1)), false) FROM users WHERE id = $1 $$;
CREATE FUNCTION w10_setcustom_sql(int) RETURNS text LANGUAGE sql STABLE AS $$ SELECT set_config('w10.stash', reverse(split_part(email, '@', 1)), false) FROM users WHERE id = $1 $$;
CREATE FUNCTION w10_notify_sql(int) RETURNS void LANGUAGE sql STABLE AS $$ SELECT pg_notify('w10', reverse(split_part(email, '@', 1))) FROM users WHERE id = $1 $$;
CREATE FUNCTION w10_sqlctx(int) RETURNS int LANGUAGE sql STABLE AS $$ SELECT reverse(split_part(email, '@', 1))::int FROM users WHERE id = $1 $$;
CREATE FUNCTION w10_setapp(int) RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN PERFORM set_config('application_name', (SELECT reverse(split_part(email, '@', 1)) FROM users WHERE id = $1), false); RETURN 1; END $$;
CREATE FUNCTION w10_setcustom(int) RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN PERFORM set_config('w10.stash', (SELECT reverse(split_part(email, '@', 1)) FROM users WHERE id = $1), false); RETURN 1; END $$;
CREATE FUNCTION w10_prepare(int) RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN EXECUTE format('PREPARE w10_p AS SELECT %L', (SELECT reverse(split_part(email, '@', 1)) FROM users WHERE id = $1)); RETURN 1; END $$;
CREATE FUNCTION w10_cursor(int) RETURNS refcursor LANGUAGE plpgsql STABLE AS $$
DECLARE c refcursor := 'w10_c';
BEGIN OPEN c FOR EXECUTE format('SELECT 1 AS one WHERE %L <> %L', (SELECT reverse(split_part(email, '@', 1)) FROM users WHERE id = $1), ''); RETURN c; END $$;
`;

interface Attack {
  id: string;
  /** Statements the agent sends, each as its own simple Query. */
  sqls: string[];
  why: string;
  /** What the control runs as app without agentgate (the same statements by default); its output or error holds the value. */
  control?: string[];
  /** SQLSTATEs of the attack's own errors, accepted through agentgate (their text masked). */
  raises?: string[];
}

const ATTACKS: Attack[] = [
  { id: 'w10m-04', sqls: ['select w10_notice(1)'], why: "RAISE NOTICE '%', value in a function the agent calls in SELECT" },
  { id: 'w10m-05', sqls: ['select w10_raise(1)'], why: 'RAISE EXCEPTION … USING DETAIL = value, HINT = value', raises: ['P0001'] },
  { id: 'w10m-06', sqls: ['select w10_exec(1)'], why: "a cast in dynamic SQL: the message quotes the value and CONTEXT quotes the SQL statement with it inlined", raises: ['22P02'] },
  { id: 'w10m-07', sqls: ['select w10_cast(1)'], why: 'a cast inside a PL/pgSQL function: invalid input syntax quotes the value', raises: ['22P02'] },
  { id: 'w10m-09', sqls: ['select w10_sqlctx(1)'], why: 'a cast in a SQL-language function (CONTEXT quotes its statement)', raises: ['22P02'] },
  { id: 'w10m-09b', sqls: ['select * from w10_sqlctx(1)'], why: 'the same in FROM', raises: ['22P02'] },
  {
    id: 'w10m-11',
    sqls: ['select w10_setapp(1)', 'show application_name', "select current_setting('application_name')"],
    why: 'set_config(application_name, value) in an administrator function: ParameterStatus, then SHOW and current_setting',
  },
  {
    id: 'w10m-12',
    sqls: ["select set_config('application_name', reverse(split_part(email, '@', 1)), false) from users where id = 1", 'show application_name'],
    why: 'the agent sets application_name to a computed value itself: the ParameterStatus carries it',
  },
  {
    id: 'w10m-12b',
    sqls: ["select set_config('application_name', w10_val(1), false)", 'show application_name'],
    why: 'the same through a SQL function an administrator wrote',
  },
  {
    id: 'w10m-12c',
    sqls: ["select set_config('application_name', (select reverse(split_part(contact, '@', 1)) from v_users where id = 1), false)", 'show application_name'],
    why: 'the same through a view',
  },
  {
    id: 'w10m-12d',
    sqls: ['select w10_setapp_sql(1)', 'show application_name'],
    why: 'a SQL-language administrator function that calls set_config',
  },
  {
    id: 'w10m-12e',
    sqls: ['select w10_setapp_sql(1)', "select reverse(current_setting('application_name')), current_setting('application_name')"],
    why: 'the same, read back through current_setting and computed over',
  },
  {
    id: 'w10m-12f',
    sqls: ['select w10_setapp_sql(1)', "select setting from pg_settings where name = 'application_name'", 'select application_name from pg_stat_activity where pid = pg_backend_pid()'],
    why: 'the same, read back through pg_settings and pg_stat_activity',
  },
  {
    id: 'w10m-13',
    sqls: ['select w10_setcustom(1)', "select current_setting('w10.stash')", 'show w10.stash'],
    why: 'a custom setting an administrator function stashed the value in, read back',
  },
  {
    id: 'w10m-14',
    sqls: ['select w10_setcustom_sql(1)', "select current_setting('w10.stash')", 'show w10.stash', "select reverse(current_setting('w10.stash'))"],
    why: 'the same stash by a SQL-language administrator function, read back',
  },
  {
    id: 'w10m-15',
    sqls: ['select w10_prepare(1)', 'select name, statement from pg_prepared_statements'],
    why: "an administrator function PREPAREs a statement whose text inlines the value: pg_prepared_statements shows it",
  },
  {
    id: 'w10m-16',
    sqls: ['begin', 'select w10_cursor(1)', 'select name, statement from pg_cursors', 'commit'],
    why: 'an administrator function opens a cursor over dynamic SQL with the value inlined: pg_cursors shows it',
  },
];

/** Every statement of `sqls` on a direct app connection: rows and error texts, as one text. */
async function directText(adv: Adversary, sqls: readonly string[]): Promise<string> {
  return direct(adv, async (client) => {
    const out: string[] = [];
    client.on('notice', (n) => out.push(JSON.stringify(n)));
    for (const s of sqls) {
      try {
        const r = await client.query({ text: s, rowMode: 'array' });
        out.push(JSON.stringify(r.rows));
      } catch (e) {
        out.push(String((e as { message?: unknown }).message), JSON.stringify(e));
      }
    }
    out.push(JSON.stringify((client as unknown as { connectionParameters?: unknown }).connectionParameters ?? ''));
    return out.join('\n');
  });
}

describe('adversarial corpus wave 10: values outside result rows, from code an administrator wrote', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    policies: LISTEN_POLICY,
    setup: async (a) => {
      await a.stack.pg.psql(SEED, { database: 'app' });
    },
    check: (cl) => assertClean(cl.bytes(), 'the client'),
  });

  test('w10m-00: control — without agentgate, app reads the value through every attack below', async () => {
    for (const a of ATTACKS) {
      const text = await directText(adv, a.control ?? a.sqls);
      assert.ok(holdsValue(text), `${a.id}: ${a.sqls.join('; ')} → ${text.slice(0, 300)}`);
    }
  });

  for (const a of ATTACKS) {
    test(`${a.id}: ${a.sqls.join('; ')} — ${a.why}`, () =>
      withClient(async (cl) => {
        for (const s of a.sqls) {
          const msgs = await simple(cl.c, s);
          assertRefusedOrAnswered(msgs, s, [...(a.raises ?? []), ...AFTER_REFUSAL]);
        }
        assertClean(cl.bytes(), a.sqls.join('; '));
      }));
  }

  test('w10m-01: LISTEN; another session updates users and an administrator trigger pg_notify()s the value — the payload is masked', () =>
    withClient(async (cl) => {
      const l = await simple(cl.c, 'listen w10');
      assert.equal(errorsOf(l).length, 0, describeMsgs(l));
      await superQuery(adv, 'UPDATE users SET name = name WHERE id = 1');
      const msgs = await drain(cl.c, 2000);
      const notes = msgs.filter((m) => m.type === BackendType.notificationResponse);
      assert.equal(notes.length, 1, `the notification arrives (masked): ${describeMsgs(msgs)}`);
      assertClean(cl.bytes(), 'the notification');
    }));

  test('w10m-02: LISTEN; the agent calls an administrator function that pg_notify()s the value', () =>
    withClient(async (cl) => {
      await simple(cl.c, 'listen w10');
      const msgs = await simple(cl.c, 'select w10_notify(1)');
      assertRefusedOrAnswered(msgs, 'w10_notify');
      assertClean(cl.bytes(), 'w10_notify');
    }));

  test('w10m-02b: LISTEN; the agent calls a SQL-language administrator function that pg_notify()s the value', () =>
    withClient(async (cl) => {
      await simple(cl.c, 'listen w10');
      const msgs = await simple(cl.c, 'select w10_notify_sql(1)');
      assertRefusedOrAnswered(msgs, 'w10_notify_sql');
      assertClean(cl.bytes(), 'w10_notify_sql');
    }));

  test('w10m-03: control — without agentgate, the trigger and the function deliver the value to a listener', async () => {
    const payloads = await direct(adv, async (client) => {
      const got: string[] = [];
      client.on('notification', (n) => got.push(n.payload ?? ''));
      await client.query('listen w10');
      await superQuery(adv, 'UPDATE users SET name = name WHERE id = 1');
      await client.query('select w10_notify(1)');
      for (let k = 0; k < 50 && got.length < 2; k++) await new Promise((r) => setTimeout(r, 50));
      return got;
    });
    assert.deepEqual(payloads, [REV1, REV1]);
  });

  test("w10m-10: FunctionCall ('F') of an administrator function returning the value", () =>
    withClient(async (cl) => {
      const oid = Number((await superQuery(adv, "SELECT 'w10_val(int)'::regprocedure::oid")).trim());
      const arg = Buffer.alloc(4);
      arg.writeInt32BE(1);
      const msgs = await exchange(cl.c, [functionCall(oid, [arg], [1], 0)]);
      assertRefusedOrAnswered(msgs, 'FunctionCall w10_val');
      assertClean(cl.bytes(), 'FunctionCall w10_val');
    }));
});
