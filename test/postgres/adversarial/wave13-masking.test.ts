/**
 * Adversarial corpus, wave 13 — a COPY NULL marker of the agent's choosing, and values
 * written through code the statement's text does not show.
 *
 * 1. COPY … TO STDOUT (NULL '<s>') in text format: PostgreSQL writes a value equal to the
 *    NULL string as those same bytes, and the masker took every field reading as the marker
 *    for a NULL and passed it unmasked. A computed output masked whole (`CASE WHEN
 *    substr(ssn, k, 1) = g THEN 'hit' …` beside a clean `g` over every candidate) then showed
 *    `hit` on exactly the row whose `g` is the character: a whole value read in one statement
 *    per character, not a bit. In text format only `\N` cannot be data (CSV quotes a value
 *    equal to its NULL string): under another marker such a field is masked like a value.
 * 2. The audit log's statement text: a literal given to a user function (or procedure)
 *    whose body writes it into a masked column (`SELECT set_ssn(1, '…')`, `CALL …`, named
 *    arguments, through a VALUES list, an operator over such a function) or compares it
 *    with one was recorded raw; so was a
 *    literal inside a code body (DO, CREATE FUNCTION … AS). The arguments of a call the
 *    catalog does not vouch for (built in, created with the cluster, running no SQL text)
 *    are now masked, and so are the literals inside a code body. A COPY's NULL string,
 *    compared with every output field (a guess at a value), is masked like a literal
 *    compared with the columns they read.
 * 3. Bind values shown to a reviewer (and kept with the approval request): `UPDATE users
 *    SET ssn = $1` held for review showed and stored $1 raw, where the same statement with
 *    the literal in its text was masked. A parameter is now tied to a masked column as a
 *    literal is (the approval still binds to the exact bytes).
 *
 * The stack: `users.ssn` masked (full), detectors off, so only the column analysis hides it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { startPgStack, TARGET, type PgStack } from '../stack.js';
import { startSsnStack } from '../ssn-stack.js';
import { APPROVAL_POLICIES, failure, pgApprovalHelpers } from '../../approvals/pg-helpers.js';
import type { Identity } from '../../../src/broker/identity/types.js';

const run = promisify(execFile);
const PSQL = '/usr/lib/postgresql/15/bin/psql';

/** users.ssn of row 1 (the seed's value is replaced in `before`). */
const SSN = '955-44-7123';
const CANDIDATES = '0123456789-';
const K = 4;

/** One statement per character `k`: row `g` says hit where g is the k-th character. */
const oracle = (k: number, hit: string, options: string): string =>
  `COPY (SELECT g, CASE WHEN substr(ssn, ${k}, 1) = g THEN '${hit}' ELSE 'miss' END FROM users, unnest(string_to_array('${CANDIDATES}', NULL)) g WHERE id = 1) TO STDOUT (${options})`;

/** The character a COPY's output marks with `hit` (undefined when none or several rows do). */
function spelled(out: string, hit: string): string | undefined {
  const rows = out.split('\n').filter((l) => l !== '').map((l) => l.split(/[\t,]/));
  const hits = rows.filter((r) => r[1] === hit);
  return hits.length === 1 ? hits[0]![0] : undefined;
}

/** Function-written values: each case a statement carrying its own value, which the audit log must not hold. */
interface WriteCase {
  id: string;
  what: string;
  sql: (v: string) => string;
  /** The value lands in users.ssn (checked directly: the premise of the attack). */
  writes: boolean;
}

const WRITES: WriteCase[] = [
  { id: 'w13m-10', what: 'a SQL function that writes its argument to users.ssn', sql: (v) => `SELECT set_ssn(1, '${v}')`, writes: true },
  { id: 'w13m-11', what: 'a PL/pgSQL function that writes its argument', sql: (v) => `SELECT set_ssn_pl(1, '${v}')`, writes: true },
  { id: 'w13m-12', what: 'a procedure (CALL)', sql: (v) => `CALL set_ssn_proc(1, '${v}')`, writes: true },
  { id: 'w13m-13', what: 'named arguments', sql: (v) => `SELECT set_ssn(v => '${v}', i => 1)`, writes: true },
  { id: 'w13m-14', what: 'schema-qualified, the value through a VALUES list', sql: (v) => `SELECT public.set_ssn(1, x.v) FROM (VALUES ('${v}')) x(v)`, writes: true },
  { id: 'w13m-15', what: 'a function that compares its argument with users.ssn', sql: (v) => `SELECT find_ssn('${v}')`, writes: false },
  { id: 'w13m-15b', what: 'an operator whose function writes its right operand', sql: (v) => `SELECT 1 ### '${v}'`, writes: true },
  { id: 'w13m-16', what: 'a DO block that writes the value', sql: (v) => `DO $$ BEGIN UPDATE users SET ssn = '${v}' WHERE id = 1; END $$`, writes: true },
  { id: 'w13m-17', what: 'a DO block that calls the writing function', sql: (v) => `DO $b$ BEGIN PERFORM set_ssn(1, '${v}'); END $b$`, writes: true },
  {
    id: 'w13m-18',
    what: 'CREATE FUNCTION with the value in its dollar-quoted body',
    sql: (v) => `CREATE OR REPLACE FUNCTION w13_body() RETURNS void LANGUAGE sql AS $x$ UPDATE users SET ssn = '${v}' WHERE id = 1 $x$`,
    writes: false,
  },
  {
    id: 'w13m-19',
    what: 'CREATE FUNCTION with the value in its single-quoted body',
    sql: (v) => `CREATE OR REPLACE FUNCTION w13_body2() RETURNS void LANGUAGE sql AS 'UPDATE users SET ssn = ''${v}'' WHERE id = 1'`,
    writes: false,
  },
];

describe('adversarial corpus wave 13: COPY NULL markers, values written through code', () => {
  let stack: PgStack;
  let agent: pg.Client;
  let owner: pg.Client;

  /** COPY through agentgate, as psql prints it. */
  const copy = async (sql: string): Promise<string> => (await run(PSQL, [stack.url, '-XAtc', sql])).stdout;

  before(async () => {
    stack = await startSsnStack();
    await stack.pg.psql(`
      UPDATE users SET ssn = '${SSN}' WHERE id = 1;
      INSERT INTO users VALUES (2, NULL, NULL);
      CREATE FUNCTION set_ssn(i int, v text) RETURNS void LANGUAGE sql AS $$ UPDATE users SET ssn = v WHERE id = i $$;
      CREATE FUNCTION set_ssn_pl(i int, v text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN UPDATE users SET ssn = v WHERE id = i; END $$;
      CREATE PROCEDURE set_ssn_proc(i int, v text) LANGUAGE sql AS $$ UPDATE users SET ssn = v WHERE id = i $$;
      CREATE OPERATOR ### (LEFTARG = int, RIGHTARG = text, FUNCTION = set_ssn);
      CREATE FUNCTION find_ssn(v text) RETURNS int LANGUAGE sql STABLE AS $$ SELECT id FROM users WHERE ssn = v $$;
      GRANT CREATE ON SCHEMA public TO app;`);
    agent = new pg.Client({ connectionString: stack.url });
    await agent.connect();
    owner = new pg.Client({ connectionString: stack.pg.url() });
    await owner.connect();
  });

  after(async () => {
    await agent?.end().catch(() => {});
    await owner?.end().catch(() => {});
    await stack?.close();
  });

  test('w13m-00: control — without agentgate, a COPY whose NULL string is the hit mark spells the value', async () => {
    const direct = async (sql: string): Promise<string> => (await run(PSQL, [stack.pg.url(), '-XAtc', sql])).stdout;
    let word = '';
    for (let k = 1; k <= K; k++) word += spelled(await direct(oracle(k, 'hit', "NULL 'hit'")), 'hit') ?? '?';
    assert.equal(word, SSN.slice(0, K));
  });

  test("w13m-01: COPY (NULL 'hit') in text format: the masked output reads as the NULL marker nowhere", async () => {
    for (let k = 1; k <= K; k++) {
      const out = await copy(oracle(k, 'hit', "NULL 'hit'"));
      assert.equal(out.split('\n').filter((l) => l !== '').length, CANDIDATES.length, out);
      assert.equal(spelled(out, 'hit'), undefined, `k=${k}: ${out}`);
      assert.deepEqual([...new Set(out.split('\n').filter((l) => l !== '').map((l) => l.split('\t')[1]))], ['********'], out);
    }
  });

  test("w13m-02: the same with an empty NULL string (NULL '')", async () => {
    for (let k = 1; k <= K; k++) {
      const empty = await copy(oracle(k, '', "NULL ''"));
      assert.equal(empty.split('\n').filter((l) => l !== '').length, CANDIDATES.length, empty);
      assert.equal(spelled(empty, ''), undefined, `k=${k}: ${empty}`);
    }
  });

  test('w13m-03: [no false denial] NULLs keep their marker where no value can read the same: default text, CSV, and clean columns', async () => {
    // Default text marker: a value's backslash is doubled, so \N is only ever NULL.
    assert.equal(await copy('COPY (SELECT id, ssn FROM users ORDER BY id) TO STDOUT'), '1\t********\n2\t\\N\n');
    // CSV quotes a value equal to its NULL string: an unquoted marker is a NULL.
    assert.equal(await copy("COPY (SELECT id, ssn FROM users ORDER BY id) TO STDOUT (FORMAT csv, NULL 'nil')"), '1,********\n2,nil\n');
    // A clean column under a custom marker passes as it is, NULL included.
    assert.equal(await copy("COPY (SELECT id, name FROM users ORDER BY id) TO STDOUT (NULL 'nil')"), '1\tada\n2\tnil\n');
  });

  test("w13m-04: audit text — a COPY's NULL string is a guess compared with every output: recorded masked when an output reads ssn", async () => {
    const out = await copy(`COPY (SELECT id, ssn FROM users ORDER BY id) TO STDOUT (NULL '${SSN}')`);
    assert.equal(out, `1\t********\n2\t********\n`);
    await copy("COPY (SELECT id, name FROM users ORDER BY id) TO STDOUT (NULL 'nil-marker')");
    const sqls = (await stack.events()).filter((e) => e.type === 'query').map((e) => String(e.detail['sql']));
    assert.ok(!JSON.stringify(await stack.events()).includes(SSN), JSON.stringify(sqls.filter((q) => q.startsWith('COPY'))));
    assert.ok(sqls.includes("COPY (SELECT id, name FROM users ORDER BY id) TO STDOUT (NULL 'nil-marker')"), JSON.stringify(sqls));
  });

  WRITES.forEach((w, n) => {
    test(`${w.id}: audit text — ${w.what}: the value is not recorded raw`, async () => {
      const value = `955-13-${String(1000 + n)}`;
      const sql = w.sql(value);
      const queries = async (): Promise<number> => (await stack.events()).filter((e) => e.type === 'query').length;
      const before = await queries();
      await agent.query(sql);
      if (w.writes) {
        const r = await owner.query<{ ssn: string }>('SELECT ssn FROM users WHERE id = 1');
        assert.equal(r.rows[0]?.ssn, value, 'the premise: the statement wrote the value to users.ssn');
      }
      const events = await stack.events();
      assert.equal(events.filter((e) => e.type === 'query').length, before + 1, "the statement's outcome is recorded");
      const last = events.filter((e) => e.type === 'query').at(-1)!;
      assert.ok(!JSON.stringify(events).includes(value), String(last.detail['sql']));
    });
  });

  test('w13m-20: [no false masking] literals given to built-in functions, and the code of a body, stay readable', async () => {
    await agent.query("SELECT lower('Plain-Label'), date_trunc('day', now()), position('b' in 'abc'), 'Plain' || '-op'");
    await agent.query("DO $$ BEGIN PERFORM set_ssn(1, 'dollar-body'); END $$");
    const sqls = (await stack.events()).filter((e) => e.type === 'query').map((e) => e.detail['sql']);
    assert.ok(sqls.includes("SELECT lower('Plain-Label'), date_trunc('day', now()), position('b' in 'abc'), 'Plain' || '-op'"), JSON.stringify(sqls));
    // Inside a body every literal is masked (which one reaches a column is not known); the code stays.
    assert.ok(sqls.includes("DO $$ BEGIN PERFORM set_ssn(********, '********'); END $$"), JSON.stringify(sqls));
  });
});

describe('adversarial corpus wave 13: Bind values shown to reviewers', () => {
  let stack: PgStack;
  const auditor: Identity = { sub: 'auditor', groups: ['dba'], kind: 'human', issuer: 'test', expiresAt: Math.floor(Date.now() / 1000) + 3600 };
  const { held } = pgApprovalHelpers(() => stack, auditor);

  before(async () => {
    stack = await startPgStack({ policies: APPROVAL_POLICIES, config: { masking: { [TARGET]: { columns: ['users.ssn'], detectors: [], style: 'full' } } } });
    await stack.pg.psql(`CREATE TABLE users (id int PRIMARY KEY, name text, ssn text); INSERT INTO users VALUES (1, 'ada', '000-00-0001'); GRANT ALL ON users TO app;`);
  });
  after(async () => {
    await stack?.close();
  });

  /** Send `sql` with `params` through agentgate; it is held: the pending request, then the client is let go. */
  async function hold(sql: string, params: string[]): Promise<string[] | undefined> {
    const c = new pg.Client({ connectionString: stack.url });
    await c.connect();
    const outcome = failure(c.query(sql, params));
    try {
      return (await held(sql)).parameters;
    } finally {
      await c.end().catch(() => {});
      await outcome;
    }
  }

  test('w13m-30: UPDATE … SET ssn = $1 held for review: $1 is shown (and kept) masked, the clean $2 as it is', async () => {
    const value = '955-13-3001';
    assert.deepEqual(await hold('UPDATE users SET ssn = $1 WHERE id = $2', [value, '1']), ["'********'", "'1'"]);
    assert.ok(!JSON.stringify(await stack.events()).includes(value));
  });

  test('w13m-31: a parameter compared with ssn (WHERE ssn = $2) is masked; the value assigned to a clean column is not', async () => {
    const value = '955-13-3002';
    assert.deepEqual(await hold('UPDATE users SET name = $1 WHERE ssn = $2', ['bob', value]), ["'bob'", "'********'"]);
    assert.ok(!JSON.stringify(await stack.events()).includes(value));
  });
});
