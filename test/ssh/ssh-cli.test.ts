/**
 * The real bin/agentgate with an SSH target: `run --target` hands the child
 * AGENTGATE_SSH_CONFIG and GIT_SSH_COMMAND, so plain `ssh -F "$AGENTGATE_SSH_CONFIG"` and
 * plain `git clone <target>:repo.git` go through the broker; `connect --json` names the
 * session's ssh config.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { BAD_TARGET, TARGET, eventually, startSshStack, type SshStack } from './stack.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));
const git = promisify(execFile);

const POLICIES: PolicyConfig[] = [
  {
    name: 'agents-ssh',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET, BAD_TARGET],
    rules: [
      { name: 'reads', ssh: { commands: ['echo *', 'git-upload-pack *'] }, effect: 'allow', extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

describe('agentgate run / connect with an ssh target', () => {
  let stack: SshStack;
  before(async () => {
    stack = await startSshStack(POLICIES);
  });
  after(async () => {
    await stack?.close();
  });

  const env = (): NodeJS.ProcessEnv => ({
    PATH: process.env['PATH'],
    HOME: stack.tmp.path,
    XDG_CONFIG_HOME: join(stack.tmp.path, 'xdg-config'),
    XDG_STATE_HOME: join(stack.tmp.path, 'xdg-state'),
    AGENTGATE_BROKER: stack.broker.url,
    AGENTGATE_FINGERPRINT: stack.broker.fingerprint,
    AGENTGATE_KEYCHAIN: 'off',
    AGENTGATE_TOKEN: stack.token,
  });

  const agentgate = (args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [BIN, ...args], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });

  test('run --target: ssh -F "$AGENTGATE_SSH_CONFIG" and git clone through GIT_SSH_COMMAND', async () => {
    const bare = join(stack.tmp.path, 'cli-repo.git');
    const seed = join(stack.tmp.path, 'cli-seed');
    await git('git', ['init', '-q', '--bare', '-b', 'main', bare]);
    await git('git', ['init', '-q', '-b', 'main', seed]);
    await writeFile(join(seed, 'README'), 'hello\n');
    const genv = stack.env();
    await git('git', ['-C', seed, 'add', 'README'], { env: genv });
    await git('git', ['-C', seed, 'commit', '-q', '-m', 'first'], { env: genv });
    await git('git', ['-C', seed, 'push', '-q', bare, 'main'], { env: genv });
    const clone = join(stack.tmp.path, 'cli-clone');
    const script = `ssh -F "$AGENTGATE_SSH_CONFIG" ${TARGET} echo via-run && GIT_AUTHOR_NAME=a git clone -q ${TARGET}:${bare} ${clone} && test -n "$GIT_SSH_COMMAND"`;
    const r = await agentgate(['run', '--target', TARGET, '--', 'sh', '-c', script]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /via-run/);
    assert.ok(existsSync(join(clone, 'README')));
    // One receipt per ssh connection (the echo, the clone).
    assert.match(r.stderr, /receipt/);
  });

  test('connect --json names the session ssh config; the printed command works', async () => {
    const child = spawn(process.execPath, [BIN, 'connect', TARGET, '--json'], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const info = await eventually('connect --json output', () => {
      try {
        return JSON.parse(stdout) as { ssh_config?: string; ssh?: string; type?: string };
      } catch {
        return undefined;
      }
    }, 20_000);
    assert.equal(info.type, 'ssh');
    assert.ok(info.ssh_config && existsSync(info.ssh_config));
    assert.equal(info.ssh, `ssh -F ${info.ssh_config} ${TARGET}`);
    const r = await stack.run('ssh', ['-F', info.ssh_config, TARGET, 'echo', 'via-connect']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'via-connect\n');
    child.kill('SIGINT');
    await closed;
    assert.equal(existsSync(info.ssh_config), false, 'the session ssh config is removed at the end');
  });
});
