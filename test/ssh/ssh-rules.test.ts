/**
 * SSH policy on parsed commands: what is a plain simple command, what each kind of rule
 * matches, and what goes to the target.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { answerWithin } from '../helpers/hang-guard.js';
import { parseCommand } from '../../src/broker/policy/ssh-command.js';
import { decideSsh, ruleMatchesSsh, sshExecTty, type SshRequest } from '../../src/broker/policy/ssh-rules.js';
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

test('allow globs match word by word: `*` stays inside its word and never stands for `..`', () => {
  const srv = rule({ ssh: { commands: ['ls -l /srv/*'] } });
  assert.equal(ruleMatchesSsh(srv, exec('ls -l /srv/app')), true);
  assert.equal(ruleMatchesSsh(srv, exec('ls -l /srv/app/logs')), true, '`*` may cross `/` inside the word');
  assert.equal(ruleMatchesSsh(srv, exec(`ls -l '/srv/a b'`)), true, 'one argument with a space is one word');
  // The red team's case: joined by spaces, `*` also matched the space and `..`.
  assert.equal(ruleMatchesSsh(srv, exec('ls -l /srv/../etc /root')), false);
  assert.equal(ruleMatchesSsh(srv, exec('ls -l /srv/app /root')), false, 'a second argument is a second word');
  for (const dots of ['/srv/..', '/srv/../etc', '/srv/a/../../etc', '/srv/app/..']) assert.equal(ruleMatchesSsh(srv, exec(`ls -l ${dots}`)), false, dots);
  assert.equal(ruleMatchesSsh(srv, exec('ls -l /srv/..hidden')), true, '`..` only as a whole path segment');
  assert.equal(ruleMatchesSsh(srv, exec('ls -l /srv/')), true, '`*` may match nothing');
  assert.equal(ruleMatchesSsh(srv, exec('ls -l')), false);
  assert.equal(ruleMatchesSsh(srv, exec('ls -la /srv/app')), false);
  // A word matched literally may hold `..`: the author wrote it.
  assert.equal(ruleMatchesSsh(rule({ ssh: { commands: ['cat ../notes'] } }), exec('cat ../notes')), true);
  // A `*` word that is not last: exactly one word.
  const cp = rule({ ssh: { commands: ['cp * /tmp/out'] } });
  assert.equal(ruleMatchesSsh(cp, exec('cp a /tmp/out')), true);
  assert.equal(ruleMatchesSsh(cp, exec('cp a b /tmp/out')), false);
  assert.equal(ruleMatchesSsh(cp, exec('cp ../a /tmp/out')), false);
  // Runs of spaces in a pattern are one separator.
  assert.equal(ruleMatchesSsh(rule({ ssh: { commands: ['  df   -h '] } }), exec('df -h')), true);
});

test('a last pattern word `*` matches one or more remaining words of any kind', () => {
  const status = rule({ ssh: { commands: ['systemctl status *'] } });
  assert.equal(ruleMatchesSsh(status, exec('systemctl status nginx')), true);
  assert.equal(ruleMatchesSsh(status, exec('systemctl status nginx sshd --no-pager')), true);
  assert.equal(ruleMatchesSsh(status, exec('systemctl status ../x')), true, 'any arguments, as written');
  assert.equal(ruleMatchesSsh(status, exec('systemctl status')), false, 'one or more: not none');
  assert.equal(ruleMatchesSsh(status, exec('systemctl restart nginx')), false);
  const pack = rule({ ssh: { commands: ['git-upload-pack *'] } });
  assert.equal(ruleMatchesSsh(pack, exec(`git-upload-pack '/srv/repo.git'`)), true);
  assert.equal(ruleMatchesSsh(pack, exec('git-upload-pack')), false);
  const any = rule({ ssh: { commands: ['*'] } });
  assert.equal(ruleMatchesSsh(any, exec('uptime')), true);
  assert.equal(ruleMatchesSsh(any, exec('ls -l /srv/../etc')), true);
  assert.equal(ruleMatchesSsh(any, exec('uptime; id')), false, 'still only a plain simple command');
});

test('compound: true globs keep matching the raw text, `*` across everything', () => {
  const c = rule({ ssh: { commands: ['ls -l /srv/*'], compound: true } });
  assert.equal(ruleMatchesSsh(c, exec('ls -l /srv/x; id')), true);
  // A plain command under a compound rule is matched word by word like any allow rule.
  assert.equal(ruleMatchesSsh(c, exec('ls -l /srv/../etc /root')), false);
});

test('deny and review rules match when any simple command in it does', () => {
  const deny = rule({ effect: 'deny', ssh: { commands: ['rm *'] } });
  assert.equal(ruleMatchesSsh(deny, exec('uptime; rm -rf /')), true);
  assert.equal(ruleMatchesSsh(deny, exec('uptime')), false);
  // On the joined words, `*` across words: word boundaries never narrow a deny rule.
  const etc = rule({ effect: 'deny', ssh: { commands: ['cat /etc/*'] } });
  assert.equal(ruleMatchesSsh(etc, exec('cat /etc/shadow /tmp/x')), true);
  assert.equal(ruleMatchesSsh(rule({ effect: 'review', ssh: { commands: ['rm -rf *'] } }), exec('rm -rf /srv/a /srv/b')), true);
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
  assert.equal(describeRule(rule({ ssh: { commands: ['journalctl *'], tty: true } })), 'ssh commands journalctl * (with a terminal): allow');
});

test('sshExecTty: the first matching rule says whether an exec keeps its terminal', () => {
  const identity: Identity = { sub: 'agent-7', groups: ['ai-agents'], kind: 'agent', issuer: 'https://idp', expiresAt: 0 };
  const policies: PolicyConfig[] = [
    {
      name: 'p',
      subjects: { groups: ['ai-agents'] },
      targets: ['box'],
      masking: { mode: 'inherit' },
      rules: [
        rule({ name: 'no-rm', effect: 'deny', ssh: { commands: ['rm *'] } }),
        rule({ name: 'pager', ssh: { commands: ['journalctl *'], tty: true } }),
        rule({ name: 'docs', ssh: { commands: ['man *'] } }),
        rule({ name: 'edit', effect: 'review', approvers: { groups: ['sre'], count: 1 }, ssh: { commands: ['vim *'], tty: true } }),
      ],
    },
  ];
  const tty = (raw: string) => sshExecTty(identity, 'box', policies, { kind: 'exec', command: parseCommand(raw) });
  assert.deepEqual(tty('journalctl -u nginx'), { rule: 'pager', effect: 'allow', tty: true });
  assert.deepEqual(tty('man ls'), { rule: 'docs', effect: 'allow', tty: false });
  assert.deepEqual(tty('vim /etc/hosts'), { rule: 'edit', effect: 'review', tty: true });
  assert.deepEqual(tty('rm -rf /'), { rule: 'no-rm', effect: 'deny', tty: false });
  assert.deepEqual(tty('id'), { rule: null, effect: 'deny', tty: false });
  assert.deepEqual(sshExecTty({ ...identity, groups: [] }, 'box', policies, { kind: 'exec', command: parseCommand('journalctl') }), { rule: null, effect: 'deny', tty: false });
});

test('deny and review rules see what interpreters and wrappers run (ssh-command-runs.ts); allow rules are unchanged', () => {
  const deny = rule({ effect: 'deny', ssh: { commands: ['rm *'] } });
  const review = rule({ effect: 'review', ssh: { commands: ['rm *'] } });
  // Programs found behind wrappers (any later word), -c strings, find -exec/-delete, xargs input.
  for (const raw of [
    `sh -c 'rm f'`, `bash -lc 'true; rm f'`, `dash -ec 'rm f'`, `sudo -E rm f`, `doas -u root rm f`, `busybox rm f`, `taskset -c 0 rm f`,
    `strace -f -o /dev/null rm f`, `chroot / rm f`, `env -S'rm f'`, `env --split-string='rm f'`, `watch -n 1 rm f`, `eval rm f`,
    `su -c 'rm f' root`, `flock /tmp/l -c 'rm f'`, `script -qc 'rm f' /dev/null`, `find . -exec rm f ';'`, `find . -execdir rm f +`,
    `find /srv -delete`, `xargs rm`, `xargs -0 rm`, `nohup nice -n 5 timeout 5 sh -c 'env rm f'`, `trap 'rm f' EXIT`,
  ]) {
    assert.equal(ruleMatchesSsh(deny, exec(raw)), true, raw);
    assert.equal(ruleMatchesSsh(review, exec(raw)), true, raw);
  }
  // Code agentgate cannot read: under a generic allow (`*`) the policy's deny or review rule about commands decides.
  const id: Identity = { sub: 'a', groups: ['g'], kind: 'agent', issuer: 'x', expiresAt: 0 };
  const p: PolicyConfig[] = [{ name: 'p', subjects: { groups: ['g'] }, targets: ['t'], rules: [{ ...deny, name: 'no-rm' }, rule({ name: 'any', ssh: { commands: ['*'] } })] }];
  for (const raw of [
    `python3 -c 'print(1)'`, `perl -e 1`, `node -e 1`, `ruby -e 1`, `awk 'BEGIN{system("id")}'`, `awk -f prog.awk`, `vim -c '!id'`, `sh`, `bash script.sh`,
    `bash -s`, `sudo -s`, `sudo -i`, `git -c core.pager=id log`, `git ls-remote --upload-pack=id x`, `git config core.fsmonitor id`, `git rebase --exec id main`, `tar --to-command=id -xf a`,
    `tar -I id -cf a b`, `sed -n '1e id' f`, `sed 's/a/id/e' f`, `sed -e p -e 'w /tmp/x' f`, `sed -f script.sed f`, `rsync -e id a b:c`, `ssh -o ProxyCommand=id h`, `man -P id ls`, `make -f /dev/stdin`, `at now`, `su root`, `sh -c 'ls $(id)'`,
  ]) {
    assert.ok(parseCommand(raw).runs.opaque.length > 0, raw);
    const d = decideSsh(id, 't', p, exec(raw));
    assert.equal(d.rule, 'no-rm', `${raw}: ${d.reason}`);
  }
  // Ordinary commands stay out of the rule's way.
  for (const raw of ['ls -l /srv', `sh -c 'ls /srv'`, 'git status', 'git log -n 5', 'git log -u', 'git -C /srv/repo status', 'git config --get user.name', 'git rebase main', 'python3 --version', `awk -F: NR==1 /etc/passwd`, 'find /srv -name x', 'xargs ls', 'tar -tf a.tar', `sed -n '1,5p' f`, `sed 's/a/b/g' f`, `sed -e 's|/x|/y|2' -e '/^#/d' f`, `sed -n '/start/,/end/p' f`, 'systemctl status nginx', 'uptime']) {
    assert.equal(ruleMatchesSsh(deny, exec(raw)), false, raw);
    assert.equal(decideSsh(id, 't', p, exec(raw)).rule, 'any', raw);
  }
  // An allow rule naming the program decides as written, before or after the deny rule; so does a review rule naming it.
  const named: PolicyConfig[] = [{ ...p[0]!, rules: [{ ...deny, name: 'no-rm' }, rule({ name: 'py', ssh: { commands: ['python3 *'] } }), rule({ name: 'any', ssh: { commands: ['*'] } })] }];
  assert.equal(decideSsh(id, 't', named, exec(`python3 -c 'print(1)'`)).rule, 'py');
  assert.equal(decideSsh(id, 't', named, exec(`perl -e 1`)).rule, 'no-rm');
  // Without a deny or review rule about commands, an allow list decides as before.
  const allowOnly: PolicyConfig[] = [{ ...p[0]!, rules: [rule({ name: 'any', ssh: { commands: ['*'] } })] }];
  assert.equal(decideSsh(id, 't', allowOnly, exec(`perl -e 1`)).rule, 'any');
  // A decision names what could not be read.
  const d = decideSsh(id, 't', p, exec(`perl -e 'unlink "f"'`));
  assert.equal(d.effect, 'deny');
  assert.match(d.reason, /perl \(runs code agentgate cannot read\)/);
});

test('sed scripts: addresses, `!` and blanks around them read as sed does; e and w stay opaque', () => {
  for (const raw of [`sed -n '  1 , 5 p  ' f`, `sed '2!N' f`, `sed '1 ! d' f`, `sed -n '/a/, /b/ p' f`, `sed 's/a b/c/g ; 2q' f`, `sed 'y/abc/xyz/' f`]) {
    assert.deepEqual(parseCommand(raw).runs.opaque, [], raw);
  }
  for (const raw of [`sed '1 ! e id' f`, `sed '  w /tmp/x' f`, `sed '1,2 !w x' f`, `sed '! p' f`, `sed 's/a/b/ e' f`]) {
    assert.ok(parseCommand(raw).runs.opaque.length > 0, raw);
  }
});

// The one-pattern sed reader backtracked cubically on blanks (5,000 held the broker's event
// loop 31 s; these would take days).
test('sed scripts of long blank runs are read in linear time', async () => {
  const out = await answerWithin<boolean[]>(
    `import(workerData.parse).then(({ parseCommand }) => {
      const blanks = ' '.repeat(100_000);
      parentPort.postMessage([\`sed '\${blanks}\\u0001' f\`, \`sed '1\${blanks}!\${blanks}e id' f\`, \`sed '\${blanks}p\${blanks}' f\`].map((raw) => parseCommand(raw).runs.opaque.length > 0));
    });`,
    { parse: new URL('../../src/broker/policy/ssh-command.js', import.meta.url).href },
  );
  assert.deepEqual(out, [true, true, false]);
});
