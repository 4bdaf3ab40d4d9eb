/**
 * `agentgate mcp` driven by the MCP SDK's own client over stdio, against a real broker,
 * a real PostgreSQL and the stand-in Kubernetes API server; the reviewer uses the real CLI.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { CallToolResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../cli/fixture.js';
import { eventually, K8S, PG, startMcpStack, type McpChild, type McpStack } from './stack.js';

const EMAIL = 'ada.lovelace@example.org';

function text(r: CallToolResult): string {
  return r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

/** Resolves with the first progress notification of a call; keeps every one in `all`. */
function progressWatch(): { onprogress: (p: Progress) => void; first: Promise<Progress>; all: Progress[] } {
  const all: Progress[] = [];
  let resolve: (p: Progress) => void = () => {};
  const first = new Promise<Progress>((r) => (resolve = r));
  return {
    all,
    first,
    onprogress: (p) => {
      all.push(p);
      resolve(p);
    },
  };
}

describe('agentgate mcp', () => {
  let stack: McpStack;
  let agent: McpChild;

  const upstream = async (sql: string): Promise<string> => (await stack.pg.psql(sql, { database: 'app' })).trim();

  before(async () => {
    stack = await startMcpStack();
    await stack.pg.psql(
      `CREATE TABLE customers (id int PRIMARY KEY, name text, email text);
       INSERT INTO customers VALUES (1, 'Ada', '${EMAIL}'), (2, 'Bob', 'bob@example.org'), (3, 'Cy', NULL);
       CREATE TABLE orders (id int PRIMARY KEY, status text);
       INSERT INTO orders VALUES (1, 'new'), (2, 'new'), (3, 'new');
       GRANT ALL ON customers, orders TO app;`,
      { database: 'app' },
    );
    stack.api.put('pods', { metadata: { name: 'web-1', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx' }] } });
    agent = await stack.connect('agent-7');
  });

  after(async () => {
    await stack?.close();
  });

  test('tools/list offers the five tools with their schemas', async () => {
    const { tools } = await agent.client.listTools();
    assert.deepEqual(tools.map((t) => t.name).sort(), ['kubernetes_request', 'list_targets', 'request_status', 'sql_query', 'ssh_exec']);
    const sql = tools.find((t) => t.name === 'sql_query');
    assert.deepEqual(Object.keys(sql?.inputSchema.properties ?? {}).sort(), ['max_rows', 'reason', 'sql', 'target']);
    assert.deepEqual(sql?.inputSchema.required?.slice().sort(), ['sql', 'target']);
    assert.ok(sql?.outputSchema, 'sql_query declares its structured output');
  });

  test('list_targets: the targets this identity may use, with what policy allows', async () => {
    const r = (await agent.client.callTool({ name: 'list_targets', arguments: {} })) as CallToolResult;
    assert.equal(r.isError, undefined);
    const { targets } = r.structuredContent as { targets: { name: string; type: string; open: boolean; allows: string[] }[] };
    assert.deepEqual(targets.map((t) => [t.name, t.type, t.open]).sort(), [[K8S, 'kubernetes', true], [PG, 'postgres', true]]);
    const pg = targets.find((t) => t.name === PG);
    assert.match(pg?.allows.join('; ') ?? '', /select/);
    assert.match(text(r), new RegExp(`${PG} \\(postgres\\)`));
  });

  test('sql_query: a read comes back masked, as structured rows and a text table; max_rows truncates', async () => {
    const r = (await agent.client.callTool({ name: 'sql_query', arguments: { target: PG, sql: 'SELECT id, name, email FROM customers ORDER BY id' } })) as CallToolResult;
    assert.equal(r.isError, undefined, text(r));
    const s = r.structuredContent as { columns: { name: string }[]; rows: (string | null)[][]; row_count: number; truncated: boolean; command: string };
    assert.deepEqual(s.columns.map((c) => c.name), ['id', 'name', 'email']);
    assert.equal(s.row_count, 3);
    assert.equal(s.truncated, false);
    assert.equal(s.command, 'SELECT 3');
    assert.deepEqual(s.rows.map((row) => row.slice(0, 2)), [['1', 'Ada'], ['2', 'Bob'], ['3', 'Cy']]);
    assert.equal(s.rows[2]?.[2], null);
    assert.match(s.rows[0]?.[2] ?? '', /^\*+@example\.org$/, 'the email column arrives masked (partial)');
    assert.ok(!JSON.stringify(r).includes(EMAIL), 'the raw email is nowhere in the answer');
    assert.match(text(r), /^id \| name \| email/);
    assert.match(text(r), /\(SELECT 3\)$/);

    const cut = (await agent.client.callTool({ name: 'sql_query', arguments: { target: PG, sql: 'SELECT id FROM customers ORDER BY id', max_rows: 2 } })) as CallToolResult;
    const c = cut.structuredContent as { rows: string[][]; row_count: number; truncated: boolean };
    assert.deepEqual(c.rows, [['1'], ['2']]);
    assert.equal(c.row_count, 3);
    assert.equal(c.truncated, true);
    assert.match(text(cut), /showing the first 2 of 3 rows — max_rows is 2/);
  });

  test('sql_query: a denied write is a tool error naming the rule; nothing changed upstream', async () => {
    const r = (await agent.client.callTool({ name: 'sql_query', arguments: { target: PG, sql: 'DELETE FROM orders' } })) as CallToolResult;
    assert.equal(r.isError, true);
    assert.match(text(r), /^refused \(SQLSTATE 42501\): agentgate: rule no-writes denies/);
    assert.match(text(r), /HINT: policy agents-pg rule no-writes/);
    assert.equal(await upstream('SELECT count(*) FROM orders'), '3');
  });

  test('sql_query: an unknown target is a tool error listing the open ones', async () => {
    const r = (await agent.client.callTool({ name: 'sql_query', arguments: { target: 'pg-nope', sql: 'SELECT 1' } })) as CallToolResult;
    assert.equal(r.isError, true);
    assert.match(text(r), /no postgres target "pg-nope" in this session; open: pg-test/);
  });

  test('a held UPDATE waits inside the call with progress notifications, and returns once a reviewer approves with the real CLI', async () => {
    const progress = progressWatch();
    const call = agent.client.callTool({ name: 'sql_query', arguments: { target: PG, sql: "UPDATE orders SET status = 'refunded' WHERE id = 2" } }, undefined, {
      onprogress: progress.onprogress,
      timeout: 60_000,
    });
    const first = await progress.first;
    const id = /\b(apr_[a-z0-9]+)\b/i.exec(first.message ?? '')?.[1];
    assert.ok(id, `the progress names the request: ${first.message}`);
    assert.match(first.message ?? '', /^pg-test: waiting for 1 approval from dba \(apr_/);
    assert.equal(await upstream('SELECT status FROM orders WHERE id = 2'), 'new', 'nothing ran while held');

    const status = (await agent.client.callTool({ name: 'request_status', arguments: { id } })) as CallToolResult;
    assert.equal((status.structuredContent as { status: string }).status, 'pending');
    assert.equal((status.structuredContent as { rule: string }).rule, 'updates-reviewed');

    const approve = await runCli(['approve', id, '--approve'], stack.home('bob').env);
    assert.equal(approve.code, 0, approve.stderr);
    const r = (await call) as CallToolResult;
    assert.equal(r.isError, undefined, text(r));
    const s = r.structuredContent as { command: string; approval: string };
    assert.equal(s.command, 'UPDATE 1');
    assert.equal(s.approval, id);
    assert.equal(await upstream('SELECT status FROM orders WHERE id = 2'), 'refunded');

    const after = (await agent.client.callTool({ name: 'request_status', arguments: { id } })) as CallToolResult;
    const view = after.structuredContent as { status: string; decisions: { approver: string; decision: string }[] };
    assert.equal(view.status, 'approved');
    assert.deepEqual(view.decisions.map((d) => [d.approver, d.decision]), [['bob', 'approve']]);
  });

  test('a held statement a reviewer denies returns a tool error with the reviewer and the reason; nothing ran', async () => {
    const progress = progressWatch();
    const call = agent.client.callTool({ name: 'sql_query', arguments: { target: PG, sql: "UPDATE orders SET status = 'void' WHERE id = 3" } }, undefined, {
      onprogress: progress.onprogress,
      timeout: 60_000,
    });
    const id = /\b(apr_[a-z0-9]+)\b/i.exec((await progress.first).message ?? '')?.[1] as string;
    const deny = await runCli(['approve', id, '--deny', '--reason', 'use a migration'], stack.home('bob').env);
    assert.equal(deny.code, 0, deny.stderr);
    const r = (await call) as CallToolResult;
    assert.equal(r.isError, true);
    assert.match(text(r), new RegExp(`^refused \\(SQLSTATE 42501\\): agentgate: ${id} denied by bob: use a migration`));
    assert.match(text(r), new RegExp(`approval request: ${id}`));
    assert.equal(await upstream('SELECT status FROM orders WHERE id = 3'), 'new');
  });

  test('cancelling a held call withdraws its request; nothing runs upstream', async () => {
    const progress = progressWatch();
    const abort = new AbortController();
    const call = agent.client.callTool({ name: 'sql_query', arguments: { target: PG, sql: "UPDATE orders SET status = 'lost' WHERE id = 3" } }, undefined, {
      onprogress: progress.onprogress,
      signal: abort.signal,
      timeout: 60_000,
    });
    const first = await progress.first;
    const id = /\b(apr_[a-z0-9]+)\b/i.exec(first.message ?? '')?.[1] as string;
    assert.equal(stack.broker.approvals.get(id)?.status, 'pending');
    abort.abort(new Error('the agent changed its mind'));
    await assert.rejects(call, /changed its mind/);
    await eventually('the request withdrawn', () => stack.broker.approvals.get(id)?.status === 'withdrawn');
    const withdrawn = await eventually('the withdrawal on record', async () => (await stack.events()).find((e) => e.type === 'approval.withdrawn' && e.detail['id'] === id));
    assert.match(String(withdrawn.detail['reason']), /disconnected while the statement was held/);
    const late = await runCli(['approve', id, '--approve'], stack.home('bob').env);
    assert.notEqual(late.code, 0, 'a withdrawn request can no longer be approved');
    assert.equal(await upstream('SELECT status FROM orders WHERE id = 3'), 'new');
  });

  test('kubernetes_request: a read through the Kubernetes proxy; a refused write is a tool error', async () => {
    const r = (await agent.client.callTool({ name: 'kubernetes_request', arguments: { target: K8S, verb: 'list', resource: 'pods', namespace: 'default' } })) as CallToolResult;
    assert.equal(r.isError, undefined, text(r));
    const s = r.structuredContent as { status: number; body: { kind: string; items: { metadata: { name: string } }[] } };
    assert.equal(s.status, 200);
    assert.deepEqual(s.body.items.map((i) => i.metadata.name), ['web-1']);
    assert.ok(stack.api.requests.some((q) => q.method === 'GET' && q.url.startsWith('/api/v1/namespaces/default/pods')), 'the API server saw the read');

    const create = (await agent.client.callTool({
      name: 'kubernetes_request',
      arguments: { target: K8S, verb: 'create', resource: 'configmaps', namespace: 'default', body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } } },
    })) as CallToolResult;
    assert.equal(create.isError, true);
    assert.match(text(create), /^refused: HTTP 403/);
    assert.match(text(create), /k8s-rest/);
    assert.equal(stack.api.get('configmaps', 'default', 'x'), undefined, 'nothing was created');

    const watch = (await agent.client.callTool({ name: 'kubernetes_request', arguments: { target: K8S, verb: 'list', path: '/api/v1/namespaces/default/pods?watch=true' } })) as CallToolResult;
    assert.equal(watch.isError, true);
    assert.match(text(watch), /watch and follow requests stream without end/);
  });

  test('kubernetes_request: a held delete waits in the call, is sent once approved, and a cancelled one is withdrawn', async () => {
    stack.api.put('pods', { metadata: { name: 'web-2', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx' }] } });
    const progress = progressWatch();
    const call = agent.client.callTool({ name: 'kubernetes_request', arguments: { target: K8S, verb: 'delete', resource: 'pods', namespace: 'default', name: 'web-2' } }, undefined, {
      onprogress: progress.onprogress,
      timeout: 60_000,
    });
    const first = await progress.first;
    assert.match(first.message ?? '', /^k8s-test: waiting for 1 approval from dba \(apr_/);
    const id = /\b(apr_[a-z0-9]+)\b/i.exec(first.message ?? '')?.[1] as string;
    assert.ok(stack.api.get('pods', 'default', 'web-2'), 'not deleted while held');
    const approve = await runCli(['approve', id, '--approve'], stack.home('bob').env);
    assert.equal(approve.code, 0, approve.stderr);
    const r = (await call) as CallToolResult;
    assert.equal(r.isError, undefined, text(r));
    assert.equal((r.structuredContent as { status: number; approval: string }).status, 200);
    assert.equal((r.structuredContent as { approval: string }).approval, id);
    assert.equal(stack.api.get('pods', 'default', 'web-2'), undefined, 'deleted once approved');

    stack.api.put('pods', { metadata: { name: 'web-3', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx' }] } });
    const again = progressWatch();
    const abort = new AbortController();
    const cancelled = agent.client.callTool({ name: 'kubernetes_request', arguments: { target: K8S, verb: 'delete', resource: 'pods', namespace: 'default', name: 'web-3' } }, undefined, {
      onprogress: again.onprogress,
      signal: abort.signal,
      timeout: 60_000,
    });
    const held = /\b(apr_[a-z0-9]+)\b/i.exec((await again.first).message ?? '')?.[1] as string;
    abort.abort(new Error('not needed after all'));
    await assert.rejects(cancelled, /not needed after all/);
    await eventually('the request withdrawn', () => stack.broker.approvals.get(held)?.status === 'withdrawn');
    const withdrawn = await eventually('the withdrawal on record', async () => (await stack.events()).find((e) => e.type === 'approval.withdrawn' && e.detail['id'] === held));
    assert.equal(withdrawn.actor?.sub, 'agent-7');
    assert.equal(withdrawn.detail['reason'], 'withdrawn by the requester');
    assert.ok(stack.api.get('pods', 'default', 'web-3'), 'the pod is still there');
  });

  test('require_reason: a policy that requires one refuses the call without it, saying so; with one it runs', async () => {
    const careful = await stack.connect('agent-r');
    const listed = (await careful.client.callTool({ name: 'list_targets', arguments: {} })) as CallToolResult;
    const allows = (listed.structuredContent as { targets: { name: string; allows: string[] }[] }).targets.find((t) => t.name === PG)?.allows ?? [];
    assert.equal(allows.at(-1), "a reason is required (--reason, or a tool call's reason)");
    const none = (await careful.client.callTool({ name: 'sql_query', arguments: { target: PG, sql: 'SELECT id FROM orders ORDER BY id' } })) as CallToolResult;
    assert.equal(none.isError, true);
    assert.match(text(none), /^refused \(SQLSTATE 42501\): agentgate: policy careful requires a reason and none was given: give one with --reason or AGENTGATE_REASON \(agentgate mcp: the tool call's "reason"\)/);
    assert.match(text(none), /HINT: policy careful rule require_reason/);
    const given = (await careful.client.callTool({ name: 'sql_query', arguments: { target: PG, sql: 'SELECT id FROM orders ORDER BY id', reason: 'INC-7: count orders' } })) as CallToolResult;
    assert.equal(given.isError, undefined, text(given));
    assert.equal((given.structuredContent as { row_count: number }).row_count, 3);
    await careful.close();
  });

  test('reasons on record: in session.start, the statement events, the approval request (approve screen, requests), the audit export and the receipt', async () => {
    const SESSION_REASON = 'standing reason: nightly cleanup';
    const CALL_REASON = 'ticket OPS-42: refund order 1 (customer ada.lovelace@example.org)';
    const why = await stack.connect('agent-7', [], { AGENTGATE_REASON: SESSION_REASON });
    const plain = (await why.client.callTool({ name: 'sql_query', arguments: { target: PG, sql: 'SELECT 1 AS one' } })) as CallToolResult;
    assert.equal(plain.isError, undefined, text(plain));

    const progress = progressWatch();
    const call = why.client.callTool({ name: 'sql_query', arguments: { target: PG, sql: "UPDATE orders SET status = 'refunded' WHERE id = 1", reason: CALL_REASON } }, undefined, {
      onprogress: progress.onprogress,
      timeout: 60_000,
    });
    const id = /\b(apr_[a-z0-9]+)\b/i.exec((await progress.first).message ?? '')?.[1] as string;
    // The reviewer sees the reason (masked like everything else: the email is not shown raw).
    const shown = await runCli(['approve', id], stack.home('bob').env);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /Reason given\s+ticket OPS-42: refund order 1 \(customer \*+@example\.org\)/);
    const listed = await runCli(['requests'], stack.home('bob').env);
    assert.match(listed.stdout, /REASON/);
    assert.match(listed.stdout, new RegExp(`${id}.*ticket OPS-42`));
    const approve = await runCli(['approve', id, '--approve'], stack.home('bob').env);
    assert.equal(approve.code, 0, approve.stderr);
    assert.equal(((await call) as CallToolResult).isError, undefined);
    await why.close();

    // The audit export, as an auditor exports it with the real CLI.
    const out = join(stack.tmp.path, 'audit.jsonl');
    const exported = await runCli(['audit', 'export', '--out', out], stack.home('sam').env);
    assert.equal(exported.code, 0, exported.stderr);
    const events = readFileSync(out, 'utf8').split('\n').filter((l) => l.startsWith('{"')).map((l) => JSON.parse(l) as { type: string; session: string; detail: Record<string, unknown> });
    const held = events.find((e) => e.type === 'approval.requested' && e.detail['id'] === id);
    assert.ok(held, 'the approval request is exported');
    const shownReason = 'ticket OPS-42: refund order 1 (customer ****@example.org)';
    assert.equal(held.detail['requester_reason'], shownReason);
    const inSession = events.filter((e) => e.session === held.session);
    assert.equal(inSession.find((e) => e.type === 'session.start')?.detail['reason'], shownReason);
    assert.deepEqual(inSession.filter((e) => e.type === 'query.intent' || e.type === 'query').map((e) => [e.type, e.detail['reason']]), [['query.intent', shownReason], ['query', shownReason]]);
    const plainQuery = events.find((e) => e.type === 'query' && e.detail['sql'] === 'SELECT 1 AS one' && e.detail['reason'] === SESSION_REASON);
    assert.ok(plainQuery, 'a call without its own reason carries the session one');
    assert.ok(!readFileSync(out, 'utf8').includes(EMAIL), 'the raw email is nowhere in the log');
    const verify = await runCli(['audit', 'verify', out], stack.home('sam').env);
    assert.equal(verify.code, 0, verify.stderr);

    // The receipts `agentgate mcp` saved when its client went away: one per call, each with its reason.
    const dir = join(stack.home('agent-7').dir, 'receipts');
    const files = await eventually('the receipts written', () => {
      const found = readdirSync(dir).filter((f) => f.endsWith('.receipt.json'));
      return found.length >= 2 ? found : undefined;
    });
    const reasons = files.map((f) => {
      const env = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { payload: string };
      return [f.replace('.receipt.json', ''), (JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8')) as { predicate: { reason: string | null; session: string } }).predicate] as const;
    });
    assert.equal(reasons.find(([, p]) => p.session === held.session)?.[1].reason, shownReason);
    assert.ok(reasons.some(([, p]) => p.reason === SESSION_REASON));
    const file = files.find((f) => f.startsWith(held.session)) ?? '';
    const checked = await runCli(['receipt', 'verify', join(dir, file)], stack.home('agent-7').env);
    assert.equal(checked.code, 0, checked.stderr + checked.stdout);
    assert.match(checked.stdout, /^ {2}reason: {4}ticket OPS-42: refund order 1 \(customer \*+@example\.org\)$/m);
  });

  test('run --reason and connect --reason: the session reason travels on the tunnel and is on record', async () => {
    const r = await runCli(['run', '--target', PG, '--reason', 'nightly report', '--receipt-dir', join(stack.tmp.path, 'run-receipts'), '--', 'psql', '-X', '-At', '-c', 'SELECT 41 + 1'], stack.home('agent-7').env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '42');
    const events = await stack.events();
    const q = events.find((e) => e.type === 'query' && e.detail['sql'] === 'SELECT 41 + 1');
    assert.equal(q?.detail['reason'], 'nightly report');
    assert.equal(events.find((e) => e.type === 'session.start' && e.session === q?.session)?.detail['reason'], 'nightly report');
    const help = await runCli(['connect', '--help'], stack.home('agent-7').env);
    assert.match(help.stdout, /--reason <text>\s+why this session is needed/);
  });
});
