/**
 * Adversarial corpus — session-state tricks: change who the session is (SET ROLE, SESSION
 * AUTHORIZATION, set_config('role')), what names resolve to (search_path shadowing), or
 * undo the broker's session settings (DISCARD ALL, startup `options`), then read what the
 * agent may not or write. `app` is a member of `admin_role`, which alone may read
 * priv.vault, so without agentgate each escalation would work.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertIntact,
  assertNoRaw,
  assertRefused,
  assertSomeRefusal,
  assertStoreClean,
  describeMsgs,
  loginWith,
  simple,
  simpleEach,
  useAdversary,
  type Adversary,
  type Msg,
} from './harness.js';

describe('adversarial corpus: session-state tricks', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a), {
    setup: async (adv) => {
      // Sanity: without agentgate, app can escalate and read the vault.
      const direct = await adv.stack.pg.psql(
        "SET ROLE app; SELECT has_schema_privilege('priv', 'USAGE'); SET ROLE admin_role; SELECT count(*) FROM priv.vault;",
        { database: 'app' },
      );
      assert.equal(direct.trim(), 'f\n1', 'app reaches the vault only through SET ROLE');
    },
  });

  /** Run the trick, then read the vault: the trick is refused and the vault read fails. */
  function escalateThenRead(id: string, title: string, trick: string[]): void {
    test(`${id}: ${title}, then read priv.vault`, () =>
      withClient(async ({ c }) => {
        const msgs = await simpleEach(c, [...trick, 'select secret from priv.vault']);
        assertRefused(msgs, title);
        await assertIntact(adv);
      }));
  }

  escalateThenRead('sess-01', 'SET ROLE admin_role', ['set role admin_role']);
  // The server refuses this for a non-superuser too (42501); the vault read must fail either way.
  escalateThenRead('sess-02', 'SET SESSION AUTHORIZATION admin_role', ['set session authorization admin_role']);
  escalateThenRead('sess-03', "select set_config('role', 'admin_role', false)", ["select set_config('role', 'admin_role', false)"]);
  escalateThenRead('sess-04', 'BEGIN; SET LOCAL ROLE admin_role', ['begin', 'set local role admin_role']);
  escalateThenRead('sess-05', "BEGIN; select set_config('role', 'admin_role', true)", ['begin', "select set_config('role', 'admin_role', true)"]);

  test('sess-06: SET search_path to a schema shadowing upper(), then a plain SELECT, runs no shadow function', () =>
    withClient(async ({ c }) => {
      const msgs = await simpleEach(c, ['set search_path = shadow, pg_catalog, public', 'select upper(name) from users']);
      assertSomeRefusal(msgs, 'search_path shadowing');
      await assertIntact(adv);
    }));

  test("sess-07: set_config('search_path') to a shadowing schema, then a plain SELECT, runs no shadow function", () =>
    withClient(async ({ c }) => {
      const msgs = await simpleEach(c, ["select set_config('search_path', 'shadow, pg_catalog, public', false)", 'select upper(name) from users']);
      assertSomeRefusal(msgs, 'search_path shadowing via set_config');
      await assertIntact(adv);
    }));

  test('sess-08: DISCARD ALL, then select f_del(), is refused', () =>
    withClient(async ({ c }) => {
      await simple(c, 'discard all');
      const msgs = await simple(c, 'select f_del()');
      assertRefused(msgs, 'select f_del() after DISCARD ALL');
      await assertIntact(adv);
    }));

  test('sess-09: RESET ALL, then select f_del(), is refused', () =>
    withClient(async ({ c }) => {
      await simple(c, 'reset all');
      const msgs = await simple(c, 'select f_del()');
      assertRefused(msgs, 'select f_del() after RESET ALL');
      await assertIntact(adv);
    }));

  /** Log in with startup parameters, then run `sql`: refused at startup or at the statement. */
  async function startupThen(params: Record<string, string>, sql: string): Promise<Msg[]> {
    const s = await loginWith(adv, params);
    try {
      const msgs = [...s.startup];
      if (s.ready) msgs.push(...(await simple(s.c, sql)));
      assertNoRaw(s.bytes());
      return msgs;
    } finally {
      s.close();
    }
  }

  test('sess-10: startup options=-c default_transaction_read_only=off, then select f_del(), is refused', async () => {
    const msgs = await startupThen({ options: '-c default_transaction_read_only=off' }, 'select f_del()');
    assertSomeRefusal(msgs, 'options=-c default_transaction_read_only=off');
    await assertIntact(adv);
  });

  test('sess-11: startup options=-c role=admin_role, then read priv.vault, is refused', async () => {
    const msgs = await startupThen({ options: '-c role=admin_role' }, 'select secret from priv.vault');
    assertSomeRefusal(msgs, 'options=-c role=admin_role');
    await assertIntact(adv);
  });

  test('sess-12: startup options=-c search_path=shadow,pg_catalog,public, then a plain SELECT, runs no shadow function', async () => {
    const msgs = await startupThen({ options: '-c search_path=shadow,pg_catalog,public' }, 'select upper(name) from users');
    assertSomeRefusal(msgs, 'options=-c search_path');
    await assertIntact(adv);
  });

  test('sess-13: a startup parameter role=admin_role (not in options), then read priv.vault, is refused', async () => {
    const msgs = await startupThen({ role: 'admin_role' }, 'select secret from priv.vault');
    assertSomeRefusal(msgs, 'startup role=admin_role');
    await assertIntact(adv);
  });

  test('sess-14: startup default_transaction_read_only=off as its own parameter, then select f_del(), is refused', async () => {
    const msgs = await startupThen({ default_transaction_read_only: 'off' }, 'select f_del()');
    assertSomeRefusal(msgs, 'startup default_transaction_read_only=off');
    await assertIntact(adv);
  });

  test('sess-15: after SET ROLE is refused, the session still is app (current_user unchanged)', () =>
    withClient(async ({ c }) => {
      await simple(c, 'set role admin_role');
      await simple(c, "select set_config('role', 'admin_role', false)");
      const who = await simple(c, 'select current_user');
      const rows = who.filter((m) => m.type === 0x44);
      // Either the read is refused or it answers app.
      const text = Buffer.concat(rows.map((m) => m.body)).toString('latin1');
      assert.ok(!text.includes('admin_role'), `the session became admin_role: ${describeMsgs(who)}`);
      await assertIntact(adv);
    }));

  test('sess-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
