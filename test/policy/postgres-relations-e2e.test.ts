/**
 * Relation rules against the server's own name resolution: an unqualified name resolves by
 * the session's search_path, which the agent may change (SET search_path is a harmless
 * setting) and which already puts pg_catalog and a schema named like the role before
 * public. The gate must judge such a name as every relation it could be, on a real server.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startPgStack, TARGET, type PgStack } from '../postgres/stack.js';
import { RawPg, errorCodes, errorMessages, type Msg } from '../postgres/raw-client.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';
import { rowsOf as rows, simple as simpleQuery } from '../postgres/adversarial/harness.js';

const HR_SECRET = 'salary-band-7f3k';

describe('relation rules and unqualified names, through the broker', () => {
  let stack: PgStack;
  let c: RawPg;

  before(async () => {
    stack = await startPgStack({
      policies: [
        {
          name: 'public-only',
          subjects: { groups: ['ai-agents'] },
          targets: [TARGET],
          rules: [
            { name: 'no-hr', relations: ['hr.*'], effect: 'deny', extra: {} },
            { name: 'public-reads', sql: ['select', 'show', 'transaction', 'create'], relations: ['public.*'], effect: 'allow', extra: {} },
            { name: 'rest', effect: 'deny', extra: {} },
          ],
        },
      ],
    });
    await stack.pg.psql(
      `CREATE TABLE public.users (id int, name text);
       INSERT INTO public.users VALUES (1, 'Alpha');
       CREATE SCHEMA hr;
       CREATE TABLE hr.salaries (id int, band text);
       INSERT INTO hr.salaries VALUES (1, '${HR_SECRET}');
       GRANT USAGE, CREATE ON SCHEMA hr TO app;
       GRANT SELECT ON hr.salaries, public.users TO app;
       -- A schema named like the role comes first in the default search_path ("$user", public).
       CREATE SCHEMA app AUTHORIZATION app;
       CREATE TABLE app.users (id int, name text);
       INSERT INTO app.users VALUES (1, '${HR_SECRET}');
       ALTER TABLE app.users OWNER TO app;`,
      { database: 'app' },
    );
    c = await RawPg.login(stack.port, stack.session.secret);
  });
  after(async () => {
    c?.close();
    await stack?.close();
  });

  const simple = (sql: string): Promise<Msg[]> => simpleQuery(c, sql);

  test('control: without agentgate, app reads hr.salaries by its bare name after SET search_path, and app.users before public.users', async () => {
    const direct = new pg.Client({ connectionString: stack.pg.url() });
    await direct.connect();
    try {
      assert.equal((await direct.query('SELECT name FROM users')).rows[0].name, HR_SECRET, '"$user" schema first');
      await direct.query('SET search_path = hr');
      assert.equal((await direct.query('SELECT band FROM salaries')).rows[0].band, HR_SECRET);
    } finally {
      await direct.end();
    }
  });

  test('SET search_path = hr is allowed, but a bare name then is judged as hr.salaries too, and refused', async () => {
    assert.deepEqual(errorCodes(await simple('SET search_path = hr')), []);
    const msgs = await simple('SELECT band FROM salaries');
    assert.deepEqual(errorCodes(msgs), ['42501'], 'refused by agentgate');
    assert.match(errorMessages(msgs)[0] ?? '', /no-hr/);
    assert.ok(!Buffer.concat(msgs.map((m) => m.body)).includes(HR_SECRET));
    // The extended protocol, with a binary result, is judged the same way.
    c.send(fe.parse('', 'SELECT band FROM salaries'), fe.bind('', '', [], { resultFormats: [1] }), fe.execute(), fe.SYNC);
    const ext = await c.untilReady();
    assert.deepEqual(errorCodes(ext), ['42501'], 'Parse/Bind/Execute refused');
    assert.ok(!Buffer.concat(ext.map((m) => m.body)).includes(HR_SECRET));
    assert.deepEqual(errorCodes(await simple('RESET search_path')), []);
  });

  test("set_config('search_path') then a bare name: refused the same way", async () => {
    assert.deepEqual(errorCodes(await simple("SELECT set_config('search_path', 'hr, public', false)")), []);
    assert.deepEqual(errorCodes(await simple('SELECT count(*) FROM salaries')), ['42501']);
    await simple('RESET search_path');
  });

  test('a bare name two schemas hold is judged as both: users is public.users and app.users, and app.* is not allowed', async () => {
    const msgs = await simple('SELECT name FROM users');
    assert.deepEqual(errorCodes(msgs), ['42501']);
    assert.ok(!Buffer.concat(msgs.map((m) => m.body)).includes(HR_SECRET));
    // Qualified, it is exactly the relation named: allowed.
    assert.deepEqual(rows(await simple('SELECT name FROM public.users')), [['Alpha']]);
  });

  test('CREATE TABLE public.x AS EXECUTE p is judged as p too: a protocol-prepared read of hr.salaries is not copied out', async () => {
    c.send(fe.parse('hr_all', 'SELECT band FROM hr.salaries'), fe.SYNC);
    await c.untilReady();
    for (const sql of ['CREATE TABLE public.copied AS EXECUTE hr_all', 'EXPLAIN ANALYZE CREATE TABLE public.copied AS EXECUTE hr_all']) {
      assert.deepEqual(errorCodes(await simple(sql)), ['42501'], sql);
    }
    assert.equal((await stack.pg.psql("SELECT count(*) FROM pg_class WHERE relname = 'copied'", { database: 'app' })).trim(), '0', 'no copy made');
    // A create of its own is allowed in public, not in hr, whatever the prepared statement reads.
    assert.deepEqual(errorCodes(await simple('CREATE TABLE public.mine AS SELECT 1 AS one')), []);
    c.send(fe.parse('one', 'SELECT 1 AS one'), fe.SYNC);
    await c.untilReady();
    assert.deepEqual(errorCodes(await simple('CREATE TABLE hr.planted AS EXECUTE one')), ['42501']);
    assert.equal((await stack.pg.psql("SELECT count(*) FROM pg_class WHERE relname = 'planted'", { database: 'app' })).trim(), '0', 'nothing created in hr');
  });

  test('a bare name only public holds stays allowed; a bare catalog name is pg_catalog, not public', async () => {
    await stack.pg.psql('CREATE TABLE public.only_here (v int); INSERT INTO public.only_here VALUES (7); GRANT SELECT ON public.only_here TO app;', { database: 'app' });
    assert.deepEqual(rows(await simple('SELECT v FROM only_here')), [['7']]);
    assert.deepEqual(errorCodes(await simple('SELECT count(*) FROM pg_class')), ['42501']);
  });
});
