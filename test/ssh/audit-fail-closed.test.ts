/**
 * Fail closed, for SSH as for Postgres and Kubernetes: once the audit store cannot write, a
 * command whose intent could not be made durable never runs on the host, and later commands
 * are refused with the reason. The failure is real: the audit journal's segment is made
 * immutable (chattr +i), so the broker's next write gets EPERM from the kernel. What runs is
 * judged by its effect on the host: `touch` of a marker file that must not appear.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { freezeAuditJournal } from '../helpers/audit-faults.js';
import { TARGET, startSshStack, type SshStack } from './stack.js';

const POLICIES: PolicyConfig[] = [
  { name: 'agents-ssh', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: [{ name: 'touch', ssh: { commands: ['touch *', 'echo *'] }, effect: 'allow', extra: {} }] },
];

describe('ssh: audit store failure', () => {
  let stack: SshStack;
  let thaw: (() => void) | undefined;
  before(async () => {
    stack = await startSshStack(POLICIES);
  });
  after(async () => {
    thaw?.(); // before the broker closes: it deletes the journal
    await stack?.close();
  });

  test('the unrecorded command never runs on the host, and later commands are refused with the reason', async () => {
    // Control: the same command, recorded, does create its marker.
    const control = join(stack.tmp.path, 'control-marker');
    const ok = await stack.run('ssh', ['-F', stack.sshConfig, TARGET, `touch ${control}`]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(existsSync(control), true, 'the recorded command ran');

    const path = stack.config.store.kind === 'sqlite' ? stack.config.store.path : '';
    thaw = freezeAuditJournal(path);

    const first = join(stack.tmp.path, 'first-marker');
    const unrecorded = await stack.run('ssh', ['-F', stack.sshConfig, TARGET, `touch ${first}`], { timeoutMs: 20_000 });
    assert.notEqual(unrecorded.code, 0);
    assert.ok(stack.broker.audit.failed, 'the store is marked failed');
    assert.equal(existsSync(first), false, 'the unrecorded command did not run');

    const second = join(stack.tmp.path, 'second-marker');
    const refused = await stack.run('ssh', ['-F', stack.sshConfig, TARGET, `touch ${second}`], { timeoutMs: 20_000 });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /audit log is unavailable/);
    assert.equal(existsSync(second), false, 'nothing ran after the failure');
  });
});
