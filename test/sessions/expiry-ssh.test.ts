/**
 * An SSH session dies with its credential, like a Postgres or Kubernetes one: a running
 * command on a tunnel whose token expires is cut (session.end `credential_expired`), and a
 * new ssh on the same tunnel is refused before sshd runs anything. Real ssh and sshd, the
 * real broker and tunnel.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { TARGET, eventually, startSshStack, type SshStack } from '../ssh/stack.js';

const POLICIES: PolicyConfig[] = [
  { name: 'agents-ssh', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: [{ name: 'any', ssh: { commands: ['*'] }, effect: 'allow', extra: {} }] },
];

describe('ssh sessions end with their credential', () => {
  let stack: SshStack;
  before(async () => {
    stack = await startSshStack(POLICIES, undefined, { tokenExpiresIn: 12, sessions: { expiryLeewaySeconds: 0 } });
  });
  after(async () => {
    await stack?.close();
  });

  test('at expiry a running command is cut, and a new one is refused unrun', async () => {
    const child = stack.spawn('ssh', ['-F', stack.sshConfig, TARGET, 'sleep 60']);
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    const started = Date.now();
    await eventually('the command is running', async () => (await stack.events()).find((e) => e.type === 'ssh.command.intent' && e.detail['command'] === 'sleep 60'), 15_000);

    const end = await eventually(
      'the ssh session to end for expiry',
      async () => (await stack.events()).find((e) => e.type === 'session.end' && e.actor?.sub === 'agent-7' && e.detail['reason'] === 'credential_expired'),
      20_000,
    );
    assert.match(String(end.detail['message']), /credential of agent-7 expired/);
    const code = await exited;
    assert.notEqual(code, 0);
    assert.ok(Date.now() - started < 45_000, 'ssh ended with the credential, not with sleep 60');

    const commandsBefore = (await stack.events()).filter((e) => e.type === 'ssh.command.intent').length;
    const again = await stack.run('ssh', ['-F', stack.sshConfig, TARGET, 'echo again'], { timeoutMs: 20_000 });
    assert.notEqual(again.code, 0);
    assert.ok(!again.stdout.includes('again'), again.stdout);
    const events = await stack.events();
    assert.equal(events.filter((e) => e.type === 'ssh.command.intent').length, commandsBefore, 'no command intent after expiry');
  });
});
