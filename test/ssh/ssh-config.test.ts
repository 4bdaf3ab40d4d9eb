/**
 * `type: ssh` targets and `ssh:` rule blocks in the broker config.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBrokerConfig } from '../../src/broker/config/load.js';
import { ConfigError } from '../../src/errors.js';

const IDENTITY = `identity:
  issuer: https://login.example.com/
  audience: agentgate
  client_id: agentgate-cli
`;

const target = (hostKey: string | undefined): string => `targets:
  ssh-prod:
    type: ssh
    host: app-1.internal
    user: deploy
    private_key: \${env:SSH_KEY}
${hostKey === undefined ? '' : `    host_key: "${hostKey}"\n`}`;

const POLICY = `policies:
  - name: agents-ssh
    subjects: { groups: [ai-agents] }
    targets: [ssh-prod]
    rules:
      - ssh: { commands: ["uptime", "git-upload-pack *"] }
        effect: allow
      - ssh: { commands: ["git-receive-pack *"] }
        effect: review
        approvers: { groups: [sre] }
      - ssh: { shell: true, subsystems: [sftp], forwarding: false }
        effect: deny
      - effect: deny
`;

const ENV = { SSH_KEY: '-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----' };

function problems(yaml: string): string[] {
  try {
    parseBrokerConfig(yaml, '/etc/agentgate/agentgate.yaml', { env: ENV });
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems;
  }
  assert.fail('accepted');
}

test('an ssh target with a pinned host key (fingerprint or key line) and ssh rules loads', () => {
  for (const pin of ['SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB8+K3s4XcdJ5Y0T7v0oS1G8jxwrM3H6g3m1PqB0Zl9x']) {
    const c = parseBrokerConfig(IDENTITY + target(pin) + POLICY, '/etc/agentgate/agentgate.yaml', { env: ENV });
    const t = c.targets['ssh-prod'];
    assert.equal(t?.type, 'ssh');
    assert.equal(t.hostKey, pin);
    assert.equal(t.port, 22);
    const rules = c.policies[0]?.rules ?? [];
    assert.deepEqual(rules[0]?.ssh, { commands: ['uptime', 'git-upload-pack *'] });
    assert.deepEqual(rules[2]?.ssh, { shell: true, subsystems: ['sftp'], forwarding: false });
  }
});

test('host_key is required: no trust on first use', () => {
  assert.deepEqual(problems(IDENTITY + target(undefined)), ['targets.ssh-prod.host_key: required, missing']);
  assert.equal(problems(IDENTITY + target('not a key')).length, 1);
});

test('an ssh block is strict and about ssh only', () => {
  const bad = `${IDENTITY}${target('SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s')}policies:
  - name: p
    subjects: { groups: [a] }
    targets: [ssh-prod]
    rules:
      - ssh: { comands: [ls] }
        effect: allow
      - ssh: { commands: [ls] }
        sql: [select]
        effect: allow
`;
  const p = problems(bad);
  assert.ok(p.includes('policies.0.rules.0.ssh.comands: unknown key (did you mean "commands"?)'), p.join('\n'));
  assert.ok(p.some((l) => l.includes('ssh cannot be combined with sql')), p.join('\n'));
});
