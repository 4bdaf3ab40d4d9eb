/**
 * SSH policy on parsed commands: what is a plain simple command, what each kind of rule
 * matches, and what goes to the target.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCommand } from '../../src/broker/policy/ssh-command.js';
import { decideSsh, ruleMatchesSsh, type SshRequest } from '../../src/broker/policy/ssh-rules.js';
import type { PolicyConfig, RuleConfig } from '../../src/broker/config/types.js';
import type { Identity } from '../../src/broker/identity/types.js';
import { describeRule } from '../../src/broker/access.js';

const exec = (raw: string): SshRequest => ({ kind: 'exec', command: parseCommand(raw) });
const rule = (r: Partial<RuleConfig>): RuleConfig => ({ name: 'r', effect: 'allow', extra: {}, ...r });

test('plain words are a simple command, re-quoted for the target', () => {
  const c = parseCommand(`git-upload-pack '/srv/repo.git'`);
  assert.equal(c.simple, true);
  assert.equal(c.text, 'git-upload-pack /srv/repo.git');
  assert.equal(c.forwarded, 'git-upload-pack /srv/repo.git');
  const spaced = parseCommand(`ls -l 'a b'`);
  assert.equal(spaced.simple, true);
  assert.equal(spaced.forwarded, `ls -l 'a b'`);
});

test('operators, substitutions, redirections, assignments, globs and line breaks are not simple', () => {
  const cases: [string, string][] = [
    ['uptime; rm -rf /', 'operator ;'],
    ['uptime && rm -rf /', 'operator &&'],
    ['uptime | sh', 'operator |'],
    ['echo $(id)', 'substitution $'],
    ['echo `id`', 'substitution `'],
    ['echo $HOME', 'substitution $'],
    ['echo x > /etc/passwd', 'operator >'],
    ['cat < /etc/shadow', 'operator <'],
    ['PATH=/tmp uptime', 'assignment'],
    ['ls *', 'glob'],
    ['uptime\nrm -rf /', 'line break'],
    ['uptime # hi', 'comment'],
    ['uptime &', 'operator &'],
    ['echo a\\;b', 'backslash'],
    ['', 'empty'],
  ];
  for (const [raw, feature] of cases) {
    const c = parseCommand(raw);
    assert.equal(c.simple, false, raw);
    assert.ok(c.features.includes(feature), `${raw}: ${c.features.join(', ')}`);
    assert.equal(c.forwarded, raw);
  }
});

test('an allow glob never matches a compound command unless the rule says compound', () => {
  const allow = rule({ ssh: { commands: ['uptime*'] } });
  assert.equal(ruleMatchesSsh(allow, exec('uptime')), true);
  assert.equal(ruleMatchesSsh(allow, exec('uptime; rm -rf /')), false);
  assert.equal(ruleMatchesSsh(allow, exec('uptime $(rm -rf /)')), false);
  assert.equal(ruleMatchesSsh(rule({ ssh: { commands: ['uptime*'], compound: true } }), exec('uptime; rm -rf /')), true);
});

test('deny and review rules match when any simple command in it does', () => {
  const deny = rule({ effect: 'deny', ssh: { commands: ['rm *'] } });
  assert.equal(ruleMatchesSsh(deny, exec('uptime; rm -rf /')), true);
  assert.equal(ruleMatchesSsh(deny, exec('uptime')), false);
});

test('shell, subsystems and forwarding need a rule that names them; a bare rule matches exec and shell only', () => {
  const bare = rule({});
  assert.equal(ruleMatchesSsh(bare, exec('anything at all')), true);
  assert.equal(ruleMatchesSsh(bare, { kind: 'shell' }), true);
  assert.equal(ruleMatchesSsh(bare, { kind: 'subsystem', name: 'sftp' }), false);
  assert.equal(ruleMatchesSsh(bare, { kind: 'forwarding', what: 'tcpip', destination: 'db:5432' }), false);
  assert.equal(ruleMatchesSsh(rule({ ssh: { commands: ['ls'] } }), { kind: 'shell' }), false);
  assert.equal(ruleMatchesSsh(rule({ ssh: { subsystems: ['sftp'] } }), { kind: 'subsystem', name: 'sftp' }), true);
  assert.equal(ruleMatchesSsh(rule({ ssh: { forwarding: true } }), { kind: 'forwarding', what: 'tcpip', destination: 'db:5432' }), true);
  // Rules about other protocols never match.
  assert.equal(ruleMatchesSsh(rule({ sql: ['select'] }), exec('ls')), false);
  assert.equal(ruleMatchesSsh(rule({ k8s: { verbs: ['get'] } }), { kind: 'shell' }), false);
});

test('decideSsh: the first matching rule, default deny with a reason', () => {
  const identity: Identity = { sub: 'agent-7', groups: ['ai-agents'], kind: 'agent', issuer: 'https://idp', expiresAt: 0 };
  const policies: PolicyConfig[] = [
    { name: 'p', subjects: { groups: ['ai-agents'] }, targets: ['box'], masking: { mode: 'inherit' }, rules: [rule({ name: 'p#1', ssh: { commands: ['uptime'] } })] },
  ];
  assert.equal(decideSsh(identity, 'box', policies, exec('uptime')).effect, 'allow');
  const d = decideSsh(identity, 'box', policies, exec('uptime; id'));
  assert.equal(d.effect, 'deny');
  assert.match(d.reason, /no rule of policy p allows command `uptime; id` \(compound: operator ;\)/);
  assert.equal(decideSsh(identity, 'other', policies, exec('uptime')).effect, 'deny');
});

test('describeRule names ssh criteria', () => {
  assert.equal(describeRule(rule({ ssh: { commands: ['git-upload-pack *'], shell: true } })), 'ssh commands git-upload-pack *, ssh shell: allow');
});
