/**
 * Other sessions' statement text as a channel for masked values. Everyone agentgate connects
 * for a target shares one database role, and PostgreSQL shows a role every session of that
 * role: the statement it runs or, idle, the last one it ran. A person's
 * `UPDATE users SET ssn = '…'` is then readable by the agent through pg_stat_activity and
 * its functions, though the agent may only ever see `ssn` masked.
 *
 * Each attack runs on a direct connection first (the control: the value is there to be
 * read), then through agentgate, where no byte of it may arrive.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { type PgStack } from '../stack.js';
import { startSsnStack } from '../ssn-stack.js';

const SECRET = '955-44-7123';
/** The value, reversed, or without its dashes. */
const carries = (text: string): boolean => [SECRET, [...SECRET].reverse().join(''), SECRET.replaceAll('-', '')].some((v) => text.includes(v));

const ATTACKS: readonly [string, string][] = [
  ['pg_stat_activity.query', 'SELECT query FROM pg_stat_activity'],
  ['the whole pg_stat_activity row', 'SELECT * FROM pg_stat_activity'],
  ['pg_stat_get_activity() directly', 'SELECT a.query FROM pg_stat_get_activity(NULL) a'],
  ['a renamed column of pg_stat_get_activity()', 'SELECT a.q FROM pg_stat_get_activity(NULL) AS a(d, p, u, app, st, q)'],
  ['pg_stat_get_backend_activity()', 'SELECT pg_stat_get_backend_activity(b) FROM pg_stat_get_backend_idset() b'],
  ['a transform of the text', "SELECT reverse(query), replace(query, '-', '') FROM pg_stat_activity"],
  ['the function in the select list, a field of its row', 'SELECT (pg_stat_get_activity(NULL)).query'],
  ['the whole row of the function, as text', 'SELECT a::text FROM pg_stat_get_activity(NULL) a'],
  ['the whole row of the function, as json', 'SELECT row_to_json(a) FROM pg_stat_get_activity(NULL) a'],
];

describe('statement text of other sessions', () => {
  let stack: PgStack;
  let person: pg.Client;
  let agent: pg.Client;

  before(async () => {
    stack = await startSsnStack();
    // Another user of the same role (a person, another tool): its last statement stays visible while it idles.
    person = new pg.Client({ connectionString: stack.pg.url() });
    await person.connect();
    await person.query(`UPDATE users SET ssn = '${SECRET}' WHERE id = 1`);
    agent = new pg.Client({ connectionString: stack.url });
    await agent.connect();
  });

  after(async () => {
    await agent?.end().catch(() => {});
    await person?.end().catch(() => {});
    await stack?.close();
  });

  for (const [name, sql] of ATTACKS) {
    test(name, async () => {
      const control = new pg.Client({ connectionString: stack.pg.url() });
      await control.connect();
      try {
        const seen = JSON.stringify((await control.query({ text: sql, rowMode: 'array' })).rows);
        assert.equal(carries(seen), true, `control: the channel carries the value directly (${name})`);
      } finally {
        await control.end();
      }
      const got = JSON.stringify((await agent.query({ text: sql, rowMode: 'array' })).rows);
      assert.equal(carries(got), false, `${name}: ${got.slice(0, 400)}`);
    });
  }

  test('how many sessions there are stays readable; their columns are masked whole', async () => {
    const count = (await agent.query({ text: 'SELECT count(*) FROM pg_stat_get_activity(NULL) a WHERE a.pid IS NOT NULL', rowMode: 'array' })).rows as [string][];
    assert.match(String(count[0]?.[0]), /^[0-9]+$/);
    // Which row shows which text is decided by the other columns, so none of them passes.
    const states = (await agent.query({ text: 'SELECT a.state FROM pg_stat_get_activity(NULL) a WHERE a.state IS NOT NULL', rowMode: 'array' })).rows as [string][];
    assert.ok(states.length > 0);
    assert.deepEqual([...new Set(states.map((r) => r[0]))], ['********']);
  });
});
