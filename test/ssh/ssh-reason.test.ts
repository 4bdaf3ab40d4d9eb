/**
 * `require_reason` on a policy for an SSH target: without a reason nothing it allows
 * runs; with one, the reason is on record (session.start, the approval request).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { TARGET, startSshStack } from './stack.js';

const POLICIES: PolicyConfig[] = [
  {
    name: 'agents-ssh',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    requireReason: true,
    rules: [{ name: 'echo', ssh: { commands: ['echo *'] }, effect: 'allow', extra: {} }],
  },
];

test('no reason: an allowed command is refused and nothing runs', async () => {
  const stack = await startSshStack(POLICIES);
  try {
    const r = await stack.run('ssh', ['-F', stack.sshConfig, TARGET, 'echo', 'hi']);
    assert.equal(r.code, 126);
    assert.match(r.stderr, /policy agents-ssh requires a reason and none was given/);
    assert.equal(r.stdout, '');
    // The same command with its own reason (the AGENTGATE_REASON env request, as plain ssh sends it).
    const given = await stack.run('ssh', ['-F', stack.sshConfig, '-o', 'SetEnv=AGENTGATE_REASON="INC-7 one-off check"', TARGET, 'echo', 'ok']);
    assert.equal(given.code, 0, given.stderr);
    assert.equal(given.stdout, 'ok\n');
    const cmd = (await stack.events()).find((e) => e.type === 'ssh.command' && e.detail['command'] === 'echo ok');
    assert.equal(cmd?.detail['reason'], 'INC-7 one-off check');
  } finally {
    await stack.close();
  }
});

test('with a reason: the command runs and the reason is in session.start', async () => {
  const stack = await startSshStack(POLICIES, undefined, { reason: 'INC-42 disk check' });
  try {
    const r = await stack.run('ssh', ['-F', stack.sshConfig, TARGET, 'echo', 'hi']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hi\n');
    const start = (await stack.events()).find((e) => e.type === 'session.start' && (e.detail as { protocol?: string }).protocol === 'ssh');
    assert.equal((start?.detail as { reason?: string }).reason, 'INC-42 disk check');
  } finally {
    await stack.close();
  }
});
