/**
 * `ssh_exec` of `agentgate mcp`, driven by the MCP SDK's own client over stdio, against a
 * real broker whose SSH target is a real sshd; the reviewer and the auditor use the real CLI.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CallToolResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { runCli } from '../cli/fixture.js';
import { eventually, type McpChild } from './stack.js';
import { BAD_SSH, SSH, startMcpSshStack, type McpSshStack } from './ssh-stack.js';

const POLICIES: PolicyConfig[] = [
  {
    name: 'agents-ssh',
    subjects: { groups: ['ai-agents'] },
    targets: [SSH, BAD_SSH],
    rules: [
      { name: 'read-only-commands', ssh: { commands: ['uptime', 'uname', 'uname *', 'echo *', 'cat *'] }, effect: 'allow', extra: {} },
      { name: 'touch-reviewed', ssh: { commands: ['touch *'] }, effect: 'review', approvers: { groups: ['sre'], count: 1 }, extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';
const GH_TOKEN = 'ghp_' + 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8';

function text(r: CallToolResult): string {
  return r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

interface ExecResult {
  target: string;
  exit_code: number | null;
  signal?: string;
  stdout: string;
  stderr: string;
  truncated: boolean;
  approval?: string;
}

function progressWatch(): { onprogress: (p: Progress) => void; first: Promise<Progress> } {
  let resolve: (p: Progress) => void = () => {};
  const first = new Promise<Progress>((r) => (resolve = r));
  return { first, onprogress: (p) => resolve(p) };
}

describe('agentgate mcp: ssh_exec', () => {
  let stack: McpSshStack;
  let agent: McpChild;
  const exec = async (args: Record<string, unknown>): Promise<CallToolResult> => (await agent.client.callTool({ name: 'ssh_exec', arguments: { target: SSH, ...args } })) as CallToolResult;

  before(async () => {
    stack = await startMcpSshStack(POLICIES);
    agent = await stack.connect('agent-7');
  });

  after(async () => {
    await stack?.close();
  });

  test('tools/list offers ssh_exec with its schema; list_targets shows the ssh target open', async () => {
    const { tools } = await agent.client.listTools();
    assert.deepEqual(tools.map((t) => t.name).sort(), ['kubernetes_request', 'list_targets', 'request_status', 'sql_query', 'ssh_exec']);
    const ssh = tools.find((t) => t.name === 'ssh_exec');
    assert.deepEqual(Object.keys(ssh?.inputSchema.properties ?? {}).sort(), ['command', 'max_bytes', 'reason', 'target']);
    assert.deepEqual(ssh?.inputSchema.required?.slice().sort(), ['command', 'target']);
    assert.deepEqual(Object.keys(ssh?.outputSchema?.properties ?? {}).sort(), ['approval', 'exit_code', 'signal', 'stderr', 'stdout', 'target', 'truncated']);
    const listed = (await agent.client.callTool({ name: 'list_targets', arguments: {} })) as CallToolResult;
    const { targets } = listed.structuredContent as { targets: { name: string; type: string; open: boolean }[] };
    assert.deepEqual(targets.map((t) => [t.name, t.type, t.open]).sort(), [[SSH, 'ssh', true], [BAD_SSH, 'ssh', true]].sort());
  });

  test('an allowed echo and uname run on the target: exit 0 and their stdout', async () => {
    const r = await exec({ command: 'echo hello-from-mcp' });
    assert.equal(r.isError, undefined, text(r));
    const s = r.structuredContent as unknown as ExecResult;
    assert.deepEqual(s, { target: SSH, exit_code: 0, stdout: 'hello-from-mcp\n', stderr: '', truncated: false });
    assert.equal(text(r), 'exit 0\nhello-from-mcp');

    const u = await exec({ command: 'uname -s' });
    assert.equal(u.isError, undefined, text(u));
    assert.equal((u.structuredContent as unknown as ExecResult).stdout, execFileSync('uname', ['-s'], { encoding: 'utf8' }));
  });

  test('a non-zero exit status is a result, not a tool error; stderr comes back', async () => {
    const r = await exec({ command: `cat ${join(stack.tmp.path, 'no-such-file')}` });
    assert.equal(r.isError, undefined, text(r));
    const s = r.structuredContent as unknown as ExecResult;
    assert.equal(s.exit_code, 1);
    assert.equal(s.stdout, '');
    assert.match(s.stderr, /No such file or directory/);
    assert.match(text(r), /^exit 1\nstderr:\n.*No such file or directory/);
  });

  test('a chained command is a tool error with the broker\'s message, and nothing of it ran', async () => {
    const victim = join(stack.tmp.path, 'x');
    mkdirSync(victim);
    const r = await exec({ command: `uptime; rm -rf ${victim}` });
    assert.equal(r.isError, true);
    assert.match(text(r), /^refused: agentgate: rule rest denies command `uptime; rm -rf .*` \(compound: operator ;\); nothing was run$/);
    assert.equal(existsSync(victim), true, 'the directory is still there');
    const events = await stack.events();
    const denied = events.find((e) => e.type === 'ssh.command' && String(e.detail['command']).startsWith('uptime; rm -rf'));
    assert.equal(denied?.decision?.effect, 'deny');
    assert.equal(denied?.decision?.rule, 'rest');
  });

  test('secrets printed by the command arrive masked', async () => {
    const file = join(stack.tmp.path, 'app.env');
    writeFileSync(file, `AWS_ACCESS_KEY_ID=${AWS_KEY}\nGITHUB_TOKEN=${GH_TOKEN}\nPLAIN=visible\n`);
    const r = await exec({ command: `cat ${file}` });
    assert.equal(r.isError, undefined, text(r));
    const s = r.structuredContent as unknown as ExecResult;
    assert.equal(s.exit_code, 0);
    assert.match(s.stdout, /PLAIN=visible/);
    assert.ok(!JSON.stringify(r).includes(AWS_KEY), 'the aws key is nowhere in the answer');
    assert.ok(!JSON.stringify(r).includes(GH_TOKEN), 'the github token is nowhere in the answer');
  });

  test('max_bytes caps the output and says so', async () => {
    const file = join(stack.tmp.path, 'long.txt');
    writeFileSync(file, 'abcdefghijklmnopqrstuvwxyz\n'.repeat(100));
    const r = await exec({ command: `cat ${file}`, max_bytes: 10 });
    assert.equal(r.isError, undefined, text(r));
    const s = r.structuredContent as unknown as ExecResult;
    assert.equal(s.stdout, 'abcdefghij');
    assert.equal(s.truncated, true);
    assert.equal(s.exit_code, 0, 'the command ran to its end');
    assert.match(text(r), /^exit 0 \(output cut at 10 bytes\)\nabcdefghij$/);
  });

  test('an unknown target is a tool error naming the open ones', async () => {
    const r = (await agent.client.callTool({ name: 'ssh_exec', arguments: { target: 'nope', command: 'uptime' } })) as CallToolResult;
    assert.equal(r.isError, true);
    assert.equal(text(r), `no ssh target "nope" in this session; open: ${SSH}, ${BAD_SSH}; call list_targets to see what you may use`);
  });

  test('a target the broker cannot reach safely (its host key is not the pinned one) is a tool error with the broker\'s words', async () => {
    const r = (await agent.client.callTool({ name: 'ssh_exec', arguments: { target: BAD_SSH, command: 'uptime' } })) as CallToolResult;
    assert.equal(r.isError, true);
    assert.match(text(r), /^failed: agentgate: the host key of ssh-wrong-key \(127\.0\.0\.1:\d+\) is SHA256:\S+, not the one pinned in the broker config .*; nothing was sent\nhint: if the host key changed on purpose, the broker operator updates host_key of ssh-wrong-key/);
  });

  test('a held command waits inside the call with progress, and returns its result once approved with the real CLI', async () => {
    const marker = join(stack.tmp.path, 'approved-marker');
    const progress = progressWatch();
    const call = agent.client.callTool({ name: 'ssh_exec', arguments: { target: SSH, command: `touch ${marker}` } }, undefined, { onprogress: progress.onprogress, timeout: 60_000 });
    const first = await progress.first;
    const id = /\b(apr_[a-z0-9]+)\b/.exec(first.message ?? '')?.[1];
    assert.ok(id, `the progress names the request: ${first.message}`);
    assert.match(first.message ?? '', new RegExp(`^ssh-test: rule touch-reviewed .*; held for approval by 1 of sre: ${id} — an approver runs: agentgate approve ${id}$`));
    assert.equal(existsSync(marker), false, 'nothing ran while held');
    const approve = await runCli(['approve', id, '--approve'], stack.home('bob').env);
    assert.equal(approve.code, 0, approve.stderr);
    const r = (await call) as CallToolResult;
    assert.equal(r.isError, undefined, text(r));
    assert.deepEqual(r.structuredContent, { target: SSH, exit_code: 0, stdout: '', stderr: '', truncated: false, approval: id });
    assert.equal(existsSync(marker), true, 'it ran once approved');
  });

  test('a held command a reviewer denies is a tool error naming the request; nothing ran', async () => {
    const marker = join(stack.tmp.path, 'denied-marker');
    const progress = progressWatch();
    const call = agent.client.callTool({ name: 'ssh_exec', arguments: { target: SSH, command: `touch ${marker}` } }, undefined, { onprogress: progress.onprogress, timeout: 60_000 });
    const id = /\b(apr_[a-z0-9]+)\b/.exec((await progress.first).message ?? '')?.[1] as string;
    const deny = await runCli(['approve', id, '--deny', '--reason', 'not today'], stack.home('bob').env);
    assert.equal(deny.code, 0, deny.stderr);
    const r = (await call) as CallToolResult;
    assert.equal(r.isError, true);
    assert.equal(text(r), `refused: agentgate: approval ${id} was denied: not today; nothing was run\napproval request: ${id} (request_status shows who decided and why)`);
    assert.equal(existsSync(marker), false);
  });

  test('cancelling a held call closes the connection and the broker withdraws the request', async () => {
    const marker = join(stack.tmp.path, 'cancelled-marker');
    const progress = progressWatch();
    const abort = new AbortController();
    const call = agent.client.callTool({ name: 'ssh_exec', arguments: { target: SSH, command: `touch ${marker}` } }, undefined, {
      onprogress: progress.onprogress,
      signal: abort.signal,
      timeout: 60_000,
    });
    const id = /\b(apr_[a-z0-9]+)\b/.exec((await progress.first).message ?? '')?.[1] as string;
    assert.equal(stack.broker.approvals.get(id)?.status, 'pending');
    abort.abort(new Error('the agent changed its mind'));
    await assert.rejects(call, /changed its mind/);
    await eventually('the request withdrawn', () => stack.broker.approvals.get(id)?.status === 'withdrawn');
    const late = await runCli(['approve', id, '--approve'], stack.home('bob').env);
    assert.notEqual(late.code, 0, 'a withdrawn request can no longer be approved');
    assert.equal(existsSync(marker), false);
  });

  test('the session reason and a call\'s own reason are on record in the audit export', async () => {
    const SESSION_REASON = 'INC-9: check the web hosts';
    const why = await stack.connect('agent-7', [], { AGENTGATE_REASON: SESSION_REASON });
    const r = (await why.client.callTool({ name: 'ssh_exec', arguments: { target: SSH, command: 'echo with-a-reason', reason: 'per call' } })) as CallToolResult;
    assert.equal(r.isError, undefined, text(r));
    assert.equal(text(r), 'exit 0\nwith-a-reason');
    await why.close();

    const out = join(stack.tmp.path, 'audit.jsonl');
    const exported = await runCli(['audit', 'export', '--out', out], stack.home('sam').env);
    assert.equal(exported.code, 0, exported.stderr);
    const events = readFileSync(out, 'utf8').split('\n').filter((l) => l.startsWith('{"')).map((l) => JSON.parse(l) as { type: string; session: string; detail: Record<string, unknown> });
    const cmd = events.find((e) => e.type === 'ssh.command' && e.detail['command'] === 'echo with-a-reason');
    assert.ok(cmd, 'the command is exported');
    assert.equal(cmd.detail['reason'], 'per call');
    assert.equal(events.find((e) => e.type === 'ssh.command.intent' && e.detail['command'] === 'echo with-a-reason')?.detail['reason'], 'per call', 'the intent carries it too');
    assert.equal(events.find((e) => e.type === 'session.start' && e.session === cmd.session)?.detail['reason'], SESSION_REASON);
    const verify = await runCli(['audit', 'verify', out], stack.home('sam').env);
    assert.equal(verify.code, 0, verify.stderr);
  });
});
