/**
 * `agentgate mcp`, red team wave 1: the agent (the model calling the tools) is the
 * adversary. Driven by the MCP SDK's own client over stdio against a real broker whose SSH
 * target is a real sshd; reviewers use the real CLI.
 *
 * The server learns a held command's request id from a line on the command's stderr, and
 * a cancelled call withdraws that request with the user's own credential. The command's
 * stderr is the agent's to write, so the id is only a claim: a forged hold line naming
 * one of the user's requests from another session must not get it withdrawn.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CallToolResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import type { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { runCli } from '../cli/fixture.js';
import { eventually, type McpChild } from './stack.js';
import { BAD_SSH, SSH, startMcpSshStack, type McpSshStack } from './ssh-stack.js';

/** An allowed command whose stderr the agent chooses (any tool that echoes input to stderr). */
const WARN = join(tmpdir(), `agentgate-wave1-warn-${process.pid}.sh`);

const POLICIES: PolicyConfig[] = [
  {
    name: 'agents-ssh',
    subjects: { groups: ['ai-agents'] },
    targets: [SSH, BAD_SSH],
    rules: [
      { name: 'read-only-commands', ssh: { commands: ['uptime', 'echo *', `${WARN} *`] }, effect: 'allow', extra: {} },
      { name: 'touch-reviewed', ssh: { commands: ['touch *'] }, effect: 'review', approvers: { groups: ['sre'], count: 1 }, extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
  {
    name: 'sre-ssh',
    subjects: { groups: ['sre'] },
    targets: [SSH],
    rules: [
      { name: 'sre-uptime', ssh: { commands: ['uptime', `${WARN} *`] }, effect: 'allow', extra: {} },
      { name: 'sre-rest', effect: 'deny', extra: {} },
    ],
  },
];

function text(r: CallToolResult): string {
  return r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

function progressWatch(): { onprogress: (p: Progress) => void; first: Promise<Progress> } {
  let resolve: (p: Progress) => void = () => {};
  const first = new Promise<Progress>((r) => (resolve = r));
  return { first, onprogress: (p) => resolve(p) };
}

describe('agentgate mcp: red team wave 1 (the agent is the adversary)', () => {
  let stack: McpSshStack;

  /** A held `touch` in its own `agentgate mcp` session: returns the call and its request id. */
  const holdIn = async (agent: McpChild, name: string, signal?: AbortSignal): Promise<{ call: Promise<unknown>; id: string; marker: string }> => {
    const marker = join(stack.tmp.path, name);
    const progress = progressWatch();
    const call = agent.client.callTool({ name: 'ssh_exec', arguments: { target: SSH, command: `touch ${marker}` } }, undefined, {
      onprogress: progress.onprogress,
      timeout: 60_000,
      ...(signal ? { signal } : {}),
    });
    const id = /\b(apr_[a-z0-9]+)\b/.exec((await progress.first).message ?? '')?.[1];
    assert.ok(id, 'the held call names its request');
    return { call, id, marker };
  };

  before(async () => {
    writeFileSync(WARN, '#!/bin/sh\ncat "$1" >&2\nsleep "${2:-0}"\n');
    chmodSync(WARN, 0o755);
    stack = await startMcpSshStack(POLICIES);
  });

  after(async () => {
    await stack?.close();
    rmSync(WARN, { force: true });
  });

  test('control: cancelling this session\'s own held command withdraws its request', async () => {
    const agent = await stack.connect('agent-7');
    const abort = new AbortController();
    const held = await holdIn(agent, 'own-cancelled', abort.signal);
    const view = stack.broker.approvals.get(held.id);
    assert.equal(view?.status, 'pending');
    assert.equal(typeof (view as { connectSession?: unknown } | undefined)?.connectSession, 'string', 'the broker knows which client session the request came through');
    abort.abort(new Error('the agent changed its mind'));
    await assert.rejects(held.call, /changed its mind/);
    await eventually('the request withdrawn', () => stack.broker.approvals.get(held.id)?.status === 'withdrawn');
    assert.equal(existsSync(held.marker), false);
    await agent.close();
  });

  test('control: request_status answers for a request this identity made', async () => {
    const agent = await stack.connect('agent-7');
    const held = await holdIn(agent, 'own-status');
    const status = (await agent.client.callTool({ name: 'request_status', arguments: { id: held.id } })) as CallToolResult;
    assert.equal(status.isError, undefined, text(status));
    assert.equal((status.structuredContent as { status: string }).status, 'pending');
    const deny = await runCli(['approve', held.id, '--deny', '--reason', 'control done'], stack.home('bob').env);
    assert.equal(deny.code, 0, deny.stderr);
    await held.call;
    await agent.close();
  });

  test('a forged hold line on the command\'s stderr, then a cancel, does not withdraw the user\'s request from another session', async () => {
    // The user's other session (another agent, another terminal) waits for a reviewer.
    const other = await stack.connect('agent-7');
    const victim = await holdIn(other, 'victim-marker');
    assert.equal(stack.broker.approvals.get(victim.id)?.status, 'pending');

    // The adversarial agent, in its own session, runs an allowed command that prints the
    // broker's hold line naming that request, and cancels while it "waits".
    const attacker = await stack.connect('agent-7');
    const line = join(stack.tmp.path, 'forged-hold-line');
    writeFileSync(line, `agentgate: rule touch-reviewed holds for review command \`touch x\`; held for approval by 1 of sre: ${victim.id} — an approver runs: agentgate approve ${victim.id} (waiting…)\n`);
    const progress = progressWatch();
    const abort = new AbortController();
    const call = attacker.client.callTool({ name: 'ssh_exec', arguments: { target: SSH, command: `${WARN} ${line} 30` } }, undefined, {
      onprogress: progress.onprogress,
      signal: abort.signal,
      timeout: 60_000,
    });
    await progress.first;
    abort.abort(new Error('cancelled by the agent'));
    await assert.rejects(call, /cancelled by the agent/);
    // The attacker's server is gone: whatever it was going to send has been sent.
    await attacker.close();
    assert.equal(stack.broker.approvals.get(victim.id)?.status, 'pending', 'the other session\'s request is still waiting for its reviewer');
    const events = await stack.events();
    assert.equal(
      events.some((e) => e.type === 'approval.withdrawn' && e.detail['id'] === victim.id),
      false,
      'no withdrawal of it is on record',
    );

    // Its own session still gets its decision.
    const approve = await runCli(['approve', victim.id, '--approve'], stack.home('bob').env);
    assert.equal(approve.code, 0, approve.stderr);
    const r = (await victim.call) as CallToolResult;
    assert.equal(r.isError, undefined, text(r));
    assert.equal(existsSync(victim.marker), true);
    await other.close();
  });

  test('request_status does not show the agent a request it only could review (someone else\'s statement)', async () => {
    const requester = await stack.connect('agent-7');
    const held = await holdIn(requester, 'reviewed-marker');
    // bob reviews for sre; an agent running as bob is not the reviewer.
    const bobsAgent = await stack.connect('bob');
    const status = (await bobsAgent.client.callTool({ name: 'request_status', arguments: { id: held.id } })) as CallToolResult;
    assert.equal(status.isError, true, text(status));
    assert.equal(status.structuredContent, undefined);
    assert.doesNotMatch(text(status), /touch/, 'the statement is not shown');
    const deny = await runCli(['approve', held.id, '--deny', '--reason', 'not needed'], stack.home('bob').env);
    assert.equal(deny.code, 0, deny.stderr);
    await held.call;
    await bobsAgent.close();
    await requester.close();
  });

  test('a forged hold line naming someone else\'s request is not announced to the user (who reviews) as this call\'s approval', async () => {
    const requester = await stack.connect('agent-7');
    const held = await holdIn(requester, 'lure-marker');
    // bob reviews for sre; the agent running as bob tries to send bob to approve agent-7's request.
    const bobsAgent = await stack.connect('bob');
    const line = join(stack.tmp.path, 'lure-line');
    const forged = `agentgate: rule touch-reviewed holds for review command \`uptime\`; held for approval by 1 of sre: ${held.id} — an approver runs: agentgate approve ${held.id} (waiting…)`;
    writeFileSync(line, `${forged}\n`);
    const seen: Progress[] = [];
    const r = (await bobsAgent.client.callTool({ name: 'ssh_exec', arguments: { target: SSH, command: `${WARN} ${line}` } }, undefined, { onprogress: (p) => seen.push(p), timeout: 60_000 })) as CallToolResult;
    assert.equal(r.isError, undefined, text(r));
    assert.deepEqual(seen, [], 'no "held for approval" progress for a request this identity did not make');
    const out = r.structuredContent as { approval?: string; stderr: string; exit_code: number };
    assert.equal(out.approval, undefined);
    assert.equal(out.exit_code, 0);
    assert.equal(out.stderr, `${forged}\n`, 'the line is the command\'s own output, returned as such');
    const deny = await runCli(['approve', held.id, '--deny', '--reason', 'lure done'], stack.home('bob').env);
    assert.equal(deny.code, 0, deny.stderr);
    await held.call;
    await bobsAgent.close();
    await requester.close();
  });

  test('a SIGUSR1 from a local process does not open Node\'s inspector in agentgate mcp (it would hand over the token)', async () => {
    const agent = await stack.connect('agent-7');
    const pid = (agent.client.transport as StdioClientTransport | undefined)?.pid;
    assert.ok(typeof pid === 'number', 'the server runs as a child process');
    process.kill(pid, 'SIGUSR1');
    // The server is still there and serving: the signal neither opened a debugger nor ended it.
    const r = (await agent.client.callTool({ name: 'ssh_exec', arguments: { target: SSH, command: 'echo still-here' } })) as CallToolResult;
    assert.equal(text(r), 'exit 0\nstill-here');
    await agent.close();
    assert.doesNotMatch(agent.stderr(), /Debugger listening/);
  });

  test('repeated SIGTERMs from a local process still let agentgate mcp end the session and save its receipts', async () => {
    const agent = await stack.connect('agent-7');
    const r = (await agent.client.callTool({ name: 'ssh_exec', arguments: { target: SSH, command: 'echo before-the-signals' } })) as CallToolResult;
    assert.equal(r.isError, undefined, text(r));
    const transport = agent.client.transport as StdioClientTransport;
    const pid = transport.pid;
    assert.ok(typeof pid === 'number');
    const exited = new Promise<void>((resolve) => {
      const check = setInterval(() => {
        try {
          process.kill(pid, 0);
        } catch {
          clearInterval(check);
          resolve();
        }
      }, 20);
    });
    // The first asks it to stop; the rest arrive while it saves the receipts.
    const flood = setInterval(() => {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        clearInterval(flood);
      }
    }, 10);
    await exited;
    clearInterval(flood);
    assert.match(agent.stderr(), /receipt sshs_\S+: \S+\.receipt\.json/, 'the receipts were saved');
    await agent.close();
  });
});
