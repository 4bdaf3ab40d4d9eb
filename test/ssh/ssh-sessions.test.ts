/**
 * SSH sessions and the rest of the broker: the live-session lease (an operator's revoke
 * ends a running shell), a policy that can only deny grants no access, and what
 * `agentgate run` hands the child for an SSH target.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { endpointEnv } from '../../src/client/run.js';
import { BAD_TARGET, TARGET, eventually, startSshStack, type SshStack } from './stack.js';

const POLICIES: PolicyConfig[] = [
  { name: 'agents-ssh', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: [{ name: 'shell', ssh: { shell: true }, effect: 'allow', extra: {} }] },
  // Deny-only: no access at all to the other target.
  { name: 'deny-only', subjects: { groups: ['ai-agents'] }, targets: [BAD_TARGET], rules: [{ name: 'nothing', effect: 'deny', extra: {} }] },
];

describe('ssh sessions', () => {
  let stack: SshStack;
  before(async () => {
    stack = await startSshStack(POLICIES);
  });
  after(async () => {
    await stack?.close();
  });

  test('an operator revoke ends a live shell; session.end says why', async () => {
    const child = stack.spawn('ssh', ['-F', stack.sshConfig, '-tt', TARGET]);
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    child.stdin.write('echo ready-$((40+2))\n');
    await eventually('the shell is up', () => out.includes('ready-42'));
    const live = await eventually('the ssh session is live', () => stack.broker.live.list().find((s) => s.protocol === 'ssh'));
    assert.deepEqual(stack.broker.live.revoke({ session: live.id }, 'op-1'), [live.id]);
    assert.notEqual(await exited, 0);
    const end = await eventually('session.end', async () => (await stack.events()).find((e) => e.type === 'session.end' && e.session === live.id));
    assert.equal((end.detail as { reason?: string }).reason, 'revoked');
  });

  test('a policy that can only deny grants no access: nothing is sent to the target', async () => {
    const r = await stack.run('ssh', ['-F', stack.badSshConfig, BAD_TARGET, 'uptime']);
    assert.equal(r.code, 126);
    assert.match(r.stderr, /agentgate: agent-7 may not use target "ssh-wrong-key": no policy matches this identity and target/);
    // Had anything been sent, the wrong pinned host key would have been reported instead.
    assert.doesNotMatch(r.stderr, /host key/);
  });

  test('agentgate run hands the child AGENTGATE_SSH_CONFIG and GIT_SSH_COMMAND', () => {
    const env = endpointEnv(
      [{ target: { name: 'ssh-prod', type: 'ssh', policies: [], allows: [] }, host: '127.0.0.1', port: 2222, url: undefined, kubeconfig: undefined, sshConfig: "/tmp/it's/config" }],
      { id: 'ags_1', secret: 's' },
      {},
    );
    assert.equal(env['AGENTGATE_SSH_CONFIG'], "/tmp/it's/config");
    assert.equal(env['AGENTGATE_SSH_PROD_SSH_CONFIG'], "/tmp/it's/config");
    assert.equal(env['GIT_SSH_COMMAND'], `ssh -F '/tmp/it'\\''s/config'`);
  });
});
