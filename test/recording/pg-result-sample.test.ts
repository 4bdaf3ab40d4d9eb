/**
 * `recording: { results: N }` on a Postgres target: the first N rows of each statement's
 * result, as the client got them (masked), in the statement's `query` event — so in the
 * chain — and in the timeline and `agentgate replay`. Real psql (text, simple protocol) and
 * node-postgres (binary results, extended protocol) through the broker to PostgreSQL.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import pg from 'pg';
import { startPgStack, TARGET, type PgStack } from '../postgres/stack.js';
import { eventually } from '../helpers/eventually.js';
import { verifyChain, type AuditRecord } from '../../src/shared/audit-hash.js';
import type { TimelineEntry } from '../../src/shared/recording.js';
import { runAgentgate, type CliResult } from './agentgate-cli.js';


describe('SQL result samples', () => {
  let stack: PgStack;
  before(async () => {
    stack = await startPgStack({
      target: { recording: { enabled: true, maxBytes: 1 << 20, results: 2, input: false } },
      config: { masking: { [TARGET]: { columns: ['people.email'], detectors: [], style: 'full' } } },
    });
    await stack.pg.psql(
      "CREATE TABLE people (name text, email text, n int); INSERT INTO people VALUES ('ann', 'ann@example.com', 7), ('bob', NULL, 8), ('cy', 'cy@example.com', 9); GRANT ALL ON people TO app;",
      { database: 'app' },
    );
  });
  after(async () => {
    await stack?.close();
  });

  const agentgate = (args: string[]): Promise<CliResult> =>
    runAgentgate({ home: stack.tmp.path, brokerUrl: stack.broker.url, fingerprint: stack.broker.fingerprint, token: stack.token }, args);

  const sessionEnd = (events: AuditRecord[], skip: Set<string>): AuditRecord | undefined =>
    events.find((e) => e.type === 'session.end' && e.target === TARGET && !skip.has(e.session!));

  test('psql: the first 2 rows as psql printed them, the masked column masked; then replay shows them', async () => {
    const psqlOut = await new Promise<string>((resolve, reject) => {
      execFile('psql', ['-X', '-At', '-F', ',', '-c', 'SELECT name, email, n FROM people ORDER BY name', '-c', 'SELECT 1 AS one'], { env: stack.env }, (err, stdout) => (err ? reject(err) : resolve(String(stdout))));
    });
    const printed = psqlOut.trim().split('\n').map((l) => l.split(','));
    assert.deepEqual(printed.slice(0, 3).map((r) => r[0]), ['ann', 'bob', 'cy']);
    assert.ok(!psqlOut.includes('ann@example.com'), 'psql got the email masked');

    const end = await eventually('session.end of the psql session', async () => sessionEnd(await stack.events(), new Set()));
    const events = await stack.events();
    assert.equal(verifyChain(events).ok, true);
    const queries = events.filter((e) => e.session === end.session && e.type === 'query');
    assert.equal(queries.length, 2);
    const sample = queries[0]!.detail['result_sample'] as { columns: string[]; rows: (string | null)[][]; truncated: boolean };
    // psql -A prints NULL as an empty string.
    assert.deepEqual(sample, { columns: ['name', 'email', 'n'], rows: printed.slice(0, 2).map((r) => r.map((v, i) => (i === 1 && v === '' ? null : v))), truncated: true });
    assert.equal(sample.rows[1]![1], null);
    assert.notEqual(sample.rows[0]![1], 'ann@example.com');
    assert.deepEqual(queries[1]!.detail['result_sample'], { columns: ['one'], rows: [['1']], truncated: false });

    const json = await agentgate(['replay', end.session!, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const entries = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as TimelineEntry);
    assert.deepEqual(entries[0]!.result_sample, sample);
    const human = await agentgate(['replay', end.session!]);
    assert.equal(human.code, 0, human.stderr);
    assert.ok(human.stdout.includes(`| name | email | n |\n          | ann | ${sample.rows[0]![1]} | 7 |\n          | bob | NULL | 8 |\n          | … |`), human.stdout);
    assert.ok(!human.stdout.includes('ann@example.com'));
  });

  test('node-postgres with binary results: values as hex, what the client decoded', async () => {
    const before = new Set((await stack.events()).filter((e) => e.type === 'session.end').map((e) => e.session!));
    const client = new pg.Client({ connectionString: stack.url });
    await client.connect();
    // `binary` (all results in binary format) is a node-postgres query option its types omit.
    const query: pg.QueryConfig<number[]> = Object.assign({ text: 'SELECT n FROM people WHERE n < $1 ORDER BY n', values: [9] }, { binary: true });
    const r = await client.query<{ n: number }, number[]>(query);
    await client.end();
    assert.deepEqual(r.rows, [{ n: 7 }, { n: 8 }]);
    const end = await eventually('session.end of the pg session', async () => sessionEnd(await stack.events(), before));
    const q = (await stack.events()).find((e) => e.session === end.session && e.type === 'query' && String(e.detail['sql']).includes('FROM people'));
    assert.deepEqual(q?.detail['result_sample'], { columns: ['n'], rows: [['\\x00000007'], ['\\x00000008']], truncated: false });
  });
});
