/**
 * Per-statement policy and approvals on the real path: real PostgreSQL, the broker, the
 * tunnel, real psql and node-postgres, and reviewers using the real `agentgate approve`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { eventually, startPgStack, TARGET, type PgStack } from '../postgres/stack.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import type { ApprovalRequest } from '../../src/broker/approvals/types.js';
import type { Identity } from '../../src/broker/identity/types.js';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

const POLICIES: PolicyConfig[] = [
  {
    name: 'agents',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'reads', sql: ['select', 'explain', 'show', 'set', 'transaction'], effect: 'allow', extra: {} },
      { name: 'grant-box', sql: ['update'], relations: ['public.boxed'], effect: 'review', approvers: { groups: ['dba'], count: 1 }, grantSeconds: 3600, extra: {} },
      { name: 'two-eyes', sql: ['update'], relations: ['public.pairs'], effect: 'review', approvers: { groups: ['dba'], count: 2 }, extra: {} },
      { name: 'writes', sql: ['insert', 'update', 'delete'], effect: 'review', approvers: { groups: ['dba'], count: 1 }, extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
  { name: 'dba', subjects: { groups: ['dba'] }, targets: [TARGET], rules: [{ name: 'dba#1', effect: 'allow', extra: {} }] },
];

function reviewer(sub: string, groups = ['dba']): Identity {
  return { sub, groups, kind: 'human', issuer: 'test', expiresAt: Math.floor(Date.now() / 1000) + 3600 };
}

interface Psql {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exit: Promise<number | null>;
}

function psql(env: NodeJS.ProcessEnv, sql: string): Psql {
  const child = spawn('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=0', '-f', '-'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  const p: Psql = { child, stdout: '', stderr: '', exit: new Promise((resolve) => child.on('close', resolve)) };
  child.stdout?.on('data', (d: Buffer) => (p.stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (p.stderr += d.toString()));
  child.stdin?.end(sql);
  return p;
}

/** Read the truth directly from the server, as the superuser. */
async function direct(stack: PgStack, sql: string): Promise<string> {
  return (await stack.pg.psql(sql, { database: 'app' })).trim();
}

describe('SQL policy and approvals through the broker', () => {
  let stack: PgStack;
  let dbaToken: string;
  let dba2Token: string;

  function pending(): ApprovalRequest[] {
    return stack.broker.approvals.list(reviewer('auditor', ['dba']), {}).requests.filter((r) => r.status === 'pending');
  }

  async function heldRequest(sqlFragment: string): Promise<ApprovalRequest> {
    return eventually(`a pending request for ${sqlFragment}`, () => pending().find((r) => r.statement.includes(sqlFragment)));
  }

  function cli(token: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [BIN, ...args],
        {
          env: {
            PATH: process.env['PATH'],
            HOME: stack.tmp.path,
            XDG_CONFIG_HOME: `${stack.tmp.path}/xdg`,
            AGENTGATE_BROKER: stack.broker.url,
            AGENTGATE_FINGERPRINT: stack.broker.fingerprint,
            AGENTGATE_TOKEN: token,
            AGENTGATE_KEYCHAIN: 'off',
          },
        },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  }

  before(async () => {
    stack = await startPgStack({ policies: POLICIES });
    dbaToken = await stack.issuer.sign({ sub: 'dba-1', groups: ['dba'] }, { expiresIn: 3600 });
    dba2Token = await stack.issuer.sign({ sub: 'dba-2', groups: ['dba'] }, { expiresIn: 3600 });
    await stack.pg.psql(
      'CREATE TABLE items (id int PRIMARY KEY, qty int); INSERT INTO items VALUES (1, 1), (2, 2);' +
        'CREATE TABLE boxed (id int PRIMARY KEY, v int); INSERT INTO boxed VALUES (1, 0), (2, 0);' +
        'CREATE TABLE pairs (id int PRIMARY KEY, v int); INSERT INTO pairs VALUES (1, 0);' +
        'GRANT ALL ON items, boxed, pairs TO app;',
      { database: 'app' },
    );
  });
  after(async () => {
    await stack?.close();
  });

  test('a denied statement gets 42501 naming the rule, and the session stays usable', async () => {
    const p = psql(stack.env, "SELECT 'before';\nDROP TABLE items;\nSELECT 'after';\n");
    assert.equal(await p.exit, 0);
    assert.match(p.stdout, /before[\s\S]*after/);
    assert.match(p.stderr, /ERROR: {2}agentgate: rule rest denies drop/);
    assert.equal(await direct(stack, 'SELECT count(*) FROM items'), '2', 'the table is still there');
    const events = await stack.events();
    const drop = events.find((e) => e.type === 'query' && String(e.detail['sql']).startsWith('DROP TABLE items'));
    assert.equal(drop?.decision?.effect, 'deny');
    assert.equal(drop?.decision?.rule, 'rest');
    assert.equal(drop?.outcome?.sqlstate, '42501');
  });

  test('a multi-statement string is denied whole when one part is', async () => {
    // One Query message (psql -c); psql -f would split it into three.
    const r = await run('psql', ['-X', '-c', 'SELECT 1; DELETE FROM items; DROP TABLE items;'], { env: stack.env }).catch((e: { stderr: string; code: number }) => e);
    assert.equal((r as { code?: number }).code, 1);
    assert.match(r.stderr, /ERROR: {2}agentgate: rule rest denies drop on public\.items/);
    assert.equal(await direct(stack, 'SELECT count(*) FROM items'), '2');
  });

  test('unparseable SQL is denied with the parser message', async () => {
    const p = psql(stack.env, 'SELEKT * FROM items;\n');
    await p.exit;
    assert.match(p.stderr, /cannot parse SQL: .*syntax error/);
  });

  test('a held UPDATE runs once a reviewer approves it with `agentgate approve ID --approve`', async () => {
    const p = psql(stack.env, 'UPDATE items SET qty = 10 WHERE id = 1;\n');
    const req = await heldRequest('SET qty = 10');
    await eventually('the hold notice', () => /NOTICE:  waiting for 1 approval from \S+ \(apr_\w+\); a reviewer runs: agentgate approve apr_/.test(p.stderr));
    assert.equal(req.requester.sub, 'agent-7');
    assert.equal(req.rule, 'writes');
    const r = await cli(dbaToken, ['approve', req.id, '--approve', '--reason', 'looks fine']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await p.exit, 0);
    assert.match(p.stderr, new RegExp(`\\(${req.id}\\); a reviewer runs: agentgate approve ${req.id}`));
    assert.equal(await direct(stack, 'SELECT qty FROM items WHERE id = 1'), '10');
    const events = await stack.events();
    const types = events.filter((e) => e.detail['id'] === req.id || e.decision?.approval === req.id).map((e) => e.type);
    // The intent is on record before the approved statement is forwarded; its outcome after.
    assert.deepEqual(types, ['approval.requested', 'approval.decided', 'query.intent', 'query']);
    const q = events.find((e) => e.type === 'query' && e.decision?.approval === req.id);
    assert.equal(q?.decision?.effect, 'allow');
    assert.equal(q?.outcome?.status, 'ok');
  });

  test('a denied request returns 42501 with the reviewer and reason; nothing ran', async () => {
    const p = psql(stack.env, 'DELETE FROM items WHERE id = 2;\nSELECT count(*) AS n FROM items;\n');
    const req = await heldRequest('DELETE FROM items WHERE id = 2');
    const r = await cli(dbaToken, ['approve', req.id, '--deny', '--reason', 'not during the freeze']);
    assert.equal(r.code, 0, r.stderr);
    await p.exit;
    assert.match(p.stderr, /ERROR: {2}agentgate: apr_\S+ denied by dba-1: not during the freeze/);
    assert.match(p.stdout, /\b2\b/, 'the session went on to the next statement');
    assert.equal(await direct(stack, 'SELECT count(*) FROM items'), '2');
  });

  test('a requester cannot approve their own request', async () => {
    const both = await stack.connectAs('agent-dba', ['ai-agents', 'dba']);
    const env = { ...stack.env, PGPORT: String(both.port), PGPASSWORD: both.session.secret };
    const p = psql(env, 'UPDATE items SET qty = 3 WHERE id = 2;\n');
    const req = await heldRequest('SET qty = 3');
    const own = await stack.issuer.sign({ sub: 'agent-dba', groups: ['ai-agents', 'dba'] }, { expiresIn: 3600 });
    const r = await cli(own, ['approve', req.id, '--approve']);
    assert.equal(r.code, 4, `${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /made request apr_\S+ and cannot decide it/);
    assert.equal(stack.broker.approvals.get(req.id)?.status, 'pending');
    await stack.broker.approvals.decide(req.id, reviewer('dba-1'), 'approve', null);
    assert.equal(await p.exit, 0);
    assert.equal(await direct(stack, 'SELECT qty FROM items WHERE id = 2'), '3');
  });

  test('a rule with count 2 needs two distinct reviewers', async () => {
    const p = psql(stack.env, 'UPDATE pairs SET v = 7 WHERE id = 1;\n');
    const req = await heldRequest('UPDATE pairs SET v = 7');
    assert.equal((await cli(dbaToken, ['approve', req.id, '--approve'])).code, 0);
    assert.equal(stack.broker.approvals.get(req.id)?.status, 'pending', 'one approval of two');
    const again = await cli(dbaToken, ['approve', req.id, '--approve']);
    assert.notEqual(again.code, 0, 'the same reviewer cannot count twice');
    assert.equal(await direct(stack, 'SELECT v FROM pairs'), '0');
    assert.equal((await cli(dba2Token, ['approve', req.id, '--approve'])).code, 0);
    assert.equal(await p.exit, 0);
    assert.equal(await direct(stack, 'SELECT v FROM pairs'), '7');
  });

  test('a time-boxed grant lets the same statement run again without a new request', async () => {
    const first = psql(stack.env, 'UPDATE boxed SET v = v + 1 WHERE id = 1;\n');
    const req = await heldRequest('UPDATE boxed SET v = v + 1 WHERE id = 1');
    await stack.broker.approvals.decide(req.id, reviewer('dba-1'), 'approve', 'for the migration');
    assert.equal(await first.exit, 0);
    const before = pending().length;
    const again = await run('psql', ['-X', '-q', '-c', 'UPDATE boxed SET v = v + 1 WHERE id = 1'], { env: stack.env });
    assert.equal(again.stderr, '', 'no hold notice the second time');
    assert.equal(pending().length, before);
    assert.equal(await direct(stack, 'SELECT v FROM boxed WHERE id = 1'), '2');
    const events = await stack.events();
    assert.equal(events.filter((e) => e.type === 'query' && e.decision?.approval === req.id).length, 2);
    // A different statement is not covered by the grant.
    const other = psql(stack.env, 'UPDATE boxed SET v = 9 WHERE id = 2;\n');
    const req2 = await heldRequest('UPDATE boxed SET v = 9');
    assert.notEqual(req2.id, req.id);
    await stack.broker.approvals.decide(req2.id, reviewer('dba-1'), 'deny', 'no');
    await other.exit;
  });

  test('extended protocol: held at Execute, approved; denied inside a transaction aborts it as the server would', async () => {
    const client = new pg.Client({ connectionString: stack.url });
    await client.connect();
    try {
      const running = client.query('UPDATE items SET qty = $1 WHERE id = $2', [42, 1]);
      const req = await heldRequest('UPDATE items SET qty = $1 WHERE id = $2');
      await stack.broker.approvals.decide(req.id, reviewer('dba-2'), 'approve', null);
      assert.equal((await running).rowCount, 1);

      await client.query('BEGIN');
      await assert.rejects(client.query('TRUNCATE items'), (err: { code?: string; message: string }) => err.code === '42501' && /denies truncate/.test(err.message));
      await assert.rejects(client.query('SELECT 1'), (err: { code?: string }) => err.code === '25P02');
      await client.query('ROLLBACK');
      assert.equal((await client.query('SELECT qty FROM items WHERE id = 1')).rows[0].qty, 42);
      // Denied with parameters, outside a transaction: the next statement works.
      await assert.rejects(client.query('DROP TABLE items'), (err: { code?: string }) => err.code === '42501');
      assert.equal((await client.query('SELECT $1::int AS n', [5])).rows[0].n, 5);
    } finally {
      await client.end();
    }
  });

  test('a client that disconnects while held withdraws its request', async () => {
    const p = psql(stack.env, 'INSERT INTO items VALUES (3, 3);\n');
    const req = await heldRequest('INSERT INTO items VALUES (3, 3)');
    p.child.kill('SIGKILL');
    await p.exit;
    await eventually('the request withdrawn', () => stack.broker.approvals.get(req.id)?.status === 'withdrawn');
    assert.equal(await direct(stack, 'SELECT count(*) FROM items WHERE id = 3'), '0');
  });

  test('cancelling a held statement (Ctrl-C in psql) withdraws it with 57014', async () => {
    const client = new pg.Client({ connectionString: stack.url });
    await client.connect();
    try {
      const running = client.query('INSERT INTO items VALUES (4, 4)');
      const req = await heldRequest('INSERT INTO items VALUES (4, 4)');
      // Send a CancelRequest with the key the broker gave this client, as psql does on Ctrl-C.
      const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
      await sendCancel(stack.port, processID, secretKey);
      await assert.rejects(running, (err: { code?: string }) => err.code === '57014');
      assert.equal(stack.broker.approvals.get(req.id)?.status, 'withdrawn');
      assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1);
    } finally {
      await client.end();
    }
  });
});

describe('approval timeout', () => {
  let stack: PgStack;
  before(async () => {
    stack = await startPgStack({ policies: POLICIES, config: { approvals: { timeoutSeconds: 1, webhooks: [] } } });
    await stack.pg.psql('CREATE TABLE items (id int PRIMARY KEY, qty int); GRANT ALL ON items TO app;', { database: 'app' });
  });
  after(async () => {
    await stack?.close();
  });

  test('a request nobody decides times out with 57014 and nothing runs', async () => {
    const p = psql(stack.env, 'INSERT INTO items VALUES (1, 1);\n');
    await p.exit;
    assert.match(p.stderr, /ERROR: {2}agentgate: approval request apr_\S+ timed out: nothing ran/);
    assert.equal(await direct(stack, 'SELECT count(*) FROM items'), '0');
    const events = await stack.events();
    assert.ok(events.some((e) => e.type === 'approval.expired'));
    const q = events.find((e) => e.type === 'query');
    assert.equal(q?.outcome?.sqlstate, '57014');
  });
});

/** A CancelRequest on a fresh connection, as libpq sends on Ctrl-C. */
async function sendCancel(port: number, processId: number, secretKey: number): Promise<void> {
  const { connect } = await import('node:net');
  const buf = Buffer.alloc(16);
  buf.writeInt32BE(16, 0);
  buf.writeInt32BE(80877102, 4);
  buf.writeInt32BE(processId, 8);
  buf.writeInt32BE(secretKey, 12);
  await new Promise<void>((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.end(buf));
    s.on('close', () => resolve());
    s.on('error', reject);
  });
}
