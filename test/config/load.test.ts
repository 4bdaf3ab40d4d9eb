/**
 * One test per class of config mistake: each asserts the exact problem line a user sees.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadBrokerConfig, parseBrokerConfig } from '../../src/broker/config/load.js';
import { ConfigError } from '../../src/errors.js';

const CONFIG_PATH = '/etc/agentgate/agentgate.yaml';

const IDENTITY = `identity:
  issuer: https://login.example.com/
  audience: agentgate
  client_id: agentgate-cli
`;

const PG_TARGET = `targets:
  pg-prod:
    type: postgres
    host: db.internal
    port: 5432
    database: app
    user: agentgate_ro
    password: \${env:PG_PROD_PASSWORD}
    tls: verify-full
`;

const ENV = { PG_PROD_PASSWORD: 'pg-secret-value' };

/** Parses and returns the ConfigError it must throw. */
function problemsOf(yaml: string, env: NodeJS.ProcessEnv = ENV, configPath = CONFIG_PATH): ConfigError {
  try {
    parseBrokerConfig(yaml, configPath, { env });
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('config was accepted but should have been rejected');
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'agentgate-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('a minimal valid config loads with the documented defaults', () => {
  const config = parseBrokerConfig(IDENTITY, CONFIG_PATH, { env: {} });
  assert.equal(config.configPath, CONFIG_PATH);
  assert.deepEqual(config.listen, { host: '127.0.0.1', port: 8443 });
  assert.equal(config.stateDir, '/etc/agentgate/state');
  assert.deepEqual(config.tls, { cert: '/etc/agentgate/state/tls.crt', key: '/etc/agentgate/state/tls.key', generated: true });
  assert.deepEqual(config.store, { kind: 'sqlite', path: '/etc/agentgate/state/audit.db' });
  assert.equal(config.identity.groupsClaim, 'groups');
  assert.deepEqual(config.identity.scopes, ['openid', 'profile', 'email', 'offline_access']);
  assert.equal(config.identity.clockToleranceSec, 30);
  assert.deepEqual(config.identity.agentGroups, []);
  assert.deepEqual(config.identity.ciIssuers, []);
  assert.deepEqual(config.targets, {});
  assert.deepEqual(config.policies, []);
  assert.deepEqual(config.auditors, { groups: [] });
  assert.deepEqual(config.masking, {});
  assert.deepEqual(config.audit, { sync: 'normal', retentionDays: undefined });
  assert.equal(config.receiptKeyPath, '/etc/agentgate/state/receipt-signing.key');
  assert.equal(config.sshHostKeyPath, '/etc/agentgate/state/ssh-host.key');
});

test('a YAML syntax error names its line and column', () => {
  const err = problemsOf(`identity:\n  issuer: https://login.example.com/\n  audience: agent: gate\n  client_id: cli\n`);
  assert.deepEqual(err.problems, ['line 3, column 13: Nested mappings are not allowed in compact mappings']);
  assert.equal(err.message, `config ${CONFIG_PATH} has 1 problem:\n  line 3, column 13: Nested mappings are not allowed in compact mappings`);
  const dup = problemsOf(`${IDENTITY}listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n`);
  assert.deepEqual(dup.problems, ['line 6, column 1: Map keys must be unique']);
});

test('an unknown key is reported with the closest known key, and the key it meant is not also "missing"', () => {
  const err = problemsOf(`identity:\n  issuer: https://login.example.com/\n  audiance: agentgate\n  client_id: cli\n`);
  assert.deepEqual(err.problems, ['identity.audiance: unknown key (did you mean "audience"?)']);
});

test('an unknown key with no close match has no suggestion', () => {
  const err = problemsOf(`${IDENTITY}colour: blue\n`);
  assert.deepEqual(err.problems, ['colour: unknown key']);
});

test('a wrong type names what was expected and what was found', () => {
  const err = problemsOf(`identity:\n  issuer: https://login.example.com/\n  audience: [agentgate]\n  client_id: cli\n`);
  assert.deepEqual(err.problems, ['identity.audience: expected a string, got a list']);
});

test('a port that is not an integer 1-65535 is reported with the exact message', () => {
  const err = problemsOf(IDENTITY + PG_TARGET.replace('port: 5432', 'port: abc'));
  assert.deepEqual(err.problems, ['targets.pg-prod.port: expected an integer 1-65535, got "abc"']);
  const big = problemsOf(IDENTITY + PG_TARGET.replace('port: 5432', 'port: 70000'));
  assert.deepEqual(big.problems, ['targets.pg-prod.port: expected an integer 1-65535, got 70000']);
});

test('a bad enum value lists the allowed values', () => {
  const err = problemsOf(IDENTITY + PG_TARGET.replace('tls: verify-full', 'tls: yes'));
  assert.deepEqual(err.problems, ['targets.pg-prod.tls: expected one of disable, require, verify-full, got "yes"']);
});

test('an unknown target type lists the known ones', () => {
  const err = problemsOf(`${IDENTITY}targets:\n  my:\n    type: mysql\n    host: x\n`);
  assert.deepEqual(err.problems, ['targets.my.type: expected one of postgres, kubernetes, ssh, got "mysql"']);
});

test('a missing required key says so', () => {
  const err = problemsOf(`identity:\n  audience: agentgate\n  client_id: cli\n`);
  assert.deepEqual(err.problems, ['identity.issuer: required, missing']);
});

test('issuer must be https, except http on localhost', () => {
  const err = problemsOf(IDENTITY.replace('https://login.example.com/', 'http://login.example.com/'));
  assert.deepEqual(err.problems, ['identity.issuer: expected an https URL (http only for localhost or 127.0.0.1), got "http://login.example.com/"']);
  const local = parseBrokerConfig(IDENTITY.replace('https://login.example.com/', 'http://127.0.0.1:9000/'), CONFIG_PATH, { env: {} });
  assert.equal(local.identity.issuer, 'http://127.0.0.1:9000/');
});

test('listen must be host:port', () => {
  const err = problemsOf(`listen: localhost\n${IDENTITY}`);
  assert.deepEqual(err.problems, ['listen: expected host:port with port 0-65535 (e.g. 127.0.0.1:8443), got "localhost"']);
  const v6 = parseBrokerConfig(`listen: "[::1]:9443"\n${IDENTITY}`, CONFIG_PATH, { env: {} });
  assert.deepEqual(v6.listen, { host: '::1', port: 9443 });
});

test('an unset env reference names the key and the reference, never a secret from another variable', () => {
  const otherSecret = 'k8s-token-Zq93nM1x';
  const yaml = `${IDENTITY}${PG_TARGET}  k8s-prod:
    type: kubernetes
    server: https://k8s.internal:6443
    token: \${env:K8S_TOKEN}
`;
  const env = { K8S_TOKEN: otherSecret };
  const err = problemsOf(yaml, env);
  assert.deepEqual(err.problems, ['targets.pg-prod.password: ${env:PG_PROD_PASSWORD} is not set']);
  // The fix is in the environment, not the file.
  assert.equal(err.hint, 'set the environment variable named above for the broker and run again');
  assert.ok(!err.message.includes(otherSecret));
  assert.ok(!JSON.stringify(err).includes(otherSecret));

  const empty = problemsOf(yaml, { ...env, PG_PROD_PASSWORD: '' });
  assert.deepEqual(empty.problems, ['targets.pg-prod.password: ${env:PG_PROD_PASSWORD} is set but empty']);
});

test('credential values never appear in problems, even when they are the problem', () => {
  const inline = 'inline-Secret-77aa';
  const yaml = `${IDENTITY}store: "postgres://agentgate:${inline}@db/audit"
targets:
  pg-prod:
    type: postgres
    host: db.internal
    port: nope
    database: app
    user: u
    password: ${inline}
  box:
    type: ssh
    host: box
    user: deploy
    host_key: SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s
    password: 987654321
`;
  const err = problemsOf(yaml, {});
  const all = err.message + '\n' + err.problems.join('\n');
  assert.ok(!all.includes(inline), all);
  assert.ok(!all.includes('987654321'), all);
  assert.deepEqual(err.problems, [
    'store: expected sqlite or { postgres: URL }, got a string',
    'targets.pg-prod.port: expected an integer 1-65535, got "nope"',
    'targets.box.password: expected a string, ${env:NAME} or ${file:PATH}, got an integer',
  ]);
});

test('an unreadable file reference names the reference and the error code', async () => {
  const configPath = join(dir, 'unreadable.yaml');
  await writeFile(configPath, IDENTITY + PG_TARGET.replace('${env:PG_PROD_PASSWORD}', '${file:./no-such-secret}'));
  await assert.rejects(loadBrokerConfig(configPath, { env: {} }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.deepEqual(err.problems, ['targets.pg-prod.password: ${file:./no-such-secret} cannot be read (ENOENT)']);
    return true;
  });
});

test('a file reference resolves relative to the config, with one trailing newline trimmed', async () => {
  const sub = join(dir, 'secrets');
  await mkdir(sub, { recursive: true });
  await writeFile(join(sub, 'pg'), 'from-file\n\n');
  const configPath = join(dir, 'file-ref.yaml');
  await writeFile(configPath, IDENTITY + PG_TARGET.replace('${env:PG_PROD_PASSWORD}', '${file:secrets/pg}'));
  const config = await loadBrokerConfig(configPath, { env: {} });
  const pg = config.targets['pg-prod'];
  assert.equal(pg?.type, 'postgres');
  assert.equal(pg.password?.reveal(), 'from-file\n');
  assert.equal(pg.password?.source, '${file:secrets/pg}');
});

test('malformed references are problems', () => {
  const env = problemsOf(IDENTITY + PG_TARGET.replace('${env:PG_PROD_PASSWORD}', '"${env:}"'), {});
  assert.deepEqual(env.problems, ['targets.pg-prod.password: malformed reference ${env:}: expected ${env:NAME} with NAME of letters, digits and _']);
  const kind = problemsOf(IDENTITY + PG_TARGET.replace('${env:PG_PROD_PASSWORD}', '"${foo:x}"'), {});
  assert.deepEqual(kind.problems, ['targets.pg-prod.password: has a ${…} reference of unknown kind (expected ${env:NAME} or ${file:PATH})']);
});

test('a policy naming a target that does not exist is reported; globs that match are fine', () => {
  const yaml = `${IDENTITY}${PG_TARGET}policies:
  - name: p
    subjects: { groups: [ai-agents] }
    targets: [pg-prd, "pg-*", "mysql-*"]
    rules:
      - { effect: deny }
`;
  const err = problemsOf(yaml);
  assert.deepEqual(err.problems, [
    'policies.0.targets.0: unknown target "pg-prd" (did you mean "pg-prod"?)',
    'policies.0.targets.2: no target matches "mysql-*"',
  ]);
});

test('a review rule without approvers is reported', () => {
  const yaml = `${IDENTITY}${PG_TARGET}policies:
  - name: p
    subjects: { groups: [ai-agents] }
    targets: [pg-prod]
    rules:
      - { sql: [delete], effect: review }
`;
  const err = problemsOf(yaml);
  assert.deepEqual(err.problems, ['policies.0.rules.0.approvers: required when effect is review (e.g. { groups: [dba], count: 1 }), missing']);
});

test('rule keys: relations, flags and grant are typed; unknown keys and near-misses are errors', () => {
  const base = `${IDENTITY}${PG_TARGET}policies:
  - name: p
    subjects: { groups: [ai-agents] }
    targets: [pg-prod]
    rules:
`;
  const config = parseBrokerConfig(
    base +
      '      - { sql: [SELECT], relations: [public.users], flags: [no_where], effect: allow }\n' +
      '      - { sql: [delete], effect: review, grant: 1h, approvers: { groups: [dba] } }\n' +
      '      - { effect: deny, name: last }\n',
    CONFIG_PATH,
    { env: ENV },
  );
  const rules = config.policies[0]?.rules;
  assert.deepEqual(rules?.[0], { name: 'p#1', sql: ['select'], relations: ['public.users'], flags: ['no_where'], effect: 'allow', extra: {} });
  assert.deepEqual(rules?.[1], { name: 'p#2', sql: ['delete'], grantSeconds: 3600, effect: 'review', approvers: { groups: ['dba'], count: 1, kinds: ['human'] }, extra: {} });
  assert.deepEqual(rules?.[2], { name: 'last', effect: 'deny', extra: {} });

  // Approvers are humans unless the rule opts other kinds in; any_values is a review rule's choice.
  const opted = parseBrokerConfig(base + '      - { sql: [update], effect: review, any_values: true, approvers: { groups: [dba], kinds: [human, ci] } }\n', CONFIG_PATH, { env: ENV });
  assert.deepEqual(opted.policies[0]?.rules[0], { name: 'p#1', sql: ['update'], anyValues: true, effect: 'review', approvers: { groups: ['dba'], count: 1, kinds: ['human', 'ci'] }, extra: {} });
  assert.deepEqual(problemsOf(base + '      - { sql: [select], any_values: true, effect: allow }\n').problems, ['policies.0.rules.0.any_values: only allowed when effect is review, not allow']);
  assert.equal(problemsOf(base + '      - { effect: review, approvers: { groups: [dba], kinds: [robot] } }\n').problems.length, 1);

  assert.deepEqual(problemsOf(base + '      - { sql: [select], efect: allow }\n').problems, ['policies.0.rules.0.efect: unknown key (did you mean "effect"?)']);
  assert.deepEqual(problemsOf(base + '      - { sql: [select], relation: [x], effect: allow }\n').problems, [
    'policies.0.rules.0.relation: unknown key (did you mean "relations"?)',
  ]);
  assert.deepEqual(problemsOf(base + '      - { sql: [select], when_hour: 9, effect: allow }\n').problems, ['policies.0.rules.0.when_hour: unknown key']);
  assert.deepEqual(problemsOf(base + '      - { flags: [nowhere], effect: deny }\n').problems.length, 1);
  assert.deepEqual(problemsOf(base + '      - { sql: [select], grant: 1h, effect: allow }\n').problems, [
    'policies.0.rules.0.grant: only allowed when effect is review, not allow',
  ]);
  assert.deepEqual(problemsOf(base + '      - { sql: [delete], grant: soon, effect: review, approvers: { groups: [dba] } }\n').problems, [
    'policies.0.rules.0.grant: expected a duration like 90s, 15m, 1h or 2d, got "soon"',
  ]);
});

test('rule key functions: globs, lower-cased; not together with k8s; near-misses suggested', () => {
  const base = `${IDENTITY}${PG_TARGET}policies:
  - name: p
    subjects: { groups: [ai-agents] }
    targets: [pg-prod]
    rules:
`;
  const config = parseBrokerConfig(base + '      - { sql: [select, show], functions: [NextVal, "pg_catalog.pg_*"], effect: allow }\n', CONFIG_PATH, { env: ENV });
  assert.deepEqual(config.policies[0]?.rules[0], { name: 'p#1', sql: ['select', 'show'], functions: ['nextval', 'pg_catalog.pg_*'], effect: 'allow', extra: {} });
  assert.deepEqual(problemsOf(base + '      - { functions: [f], k8s: { verbs: [get] }, effect: deny }\n').problems, [
    'policies.0.rules.0.functions: applies to SQL statements only, not together with k8s',
  ]);
  assert.deepEqual(problemsOf(base + '      - { function: [f], effect: deny }\n').problems, ['policies.0.rules.0.function: unknown key (did you mean "functions"?)']);
  assert.deepEqual(parseBrokerConfig(base + '      - { sql: [session], effect: allow }\n', CONFIG_PATH, { env: ENV }).policies[0]?.rules[0]?.sql, ['session']);
});

test('approvals, dangerous_functions and per-policy masking load with defaults', () => {
  const yaml = `${IDENTITY}${PG_TARGET}policies:
  - name: dba
    subjects: { groups: [dba] }
    targets: [pg-prod]
    rules: [{ effect: allow }]
    masking: off
  - name: agents
    subjects: { groups: [ai-agents] }
    targets: [pg-prod]
    rules: [{ effect: allow }]
    masking: { columns: ["*.phone"], style: hash }
approvals:
  timeout: 15m
  webhooks:
    - url: https://hooks.example.com/agentgate
      secret: \${env:PG_PROD_PASSWORD}
dangerous_functions: [pg_sleep, My_Func]
`;
  const c = parseBrokerConfig(yaml, CONFIG_PATH, { env: ENV });
  assert.deepEqual(c.policies[0]?.masking, { mode: 'off' });
  assert.deepEqual(c.policies[1]?.masking, { mode: 'extend', rules: { columns: ['*.phone'], detectors: [], style: 'hash' } });
  assert.equal(c.approvals.timeoutSeconds, 900);
  assert.equal(c.approvals.webhooks[0]?.url, 'https://hooks.example.com/agentgate');
  assert.deepEqual(c.approvals.webhooks[0]?.events, ['created', 'decided']);
  assert.deepEqual(c.dangerousFunctions, ['pg_sleep', 'my_func']);
  const d = parseBrokerConfig(IDENTITY, CONFIG_PATH, { env: ENV });
  assert.equal(d.approvals.timeoutSeconds, 600);
  assert.ok(d.dangerousFunctions.includes('pg_terminate_backend'));
});

test('require_reason: true on a policy loads; anything but a boolean is a problem naming the key', () => {
  const policy = (v: string): string => `${IDENTITY}${PG_TARGET}policies:
  - name: careful
    subjects: { groups: [ai-agents] }
    targets: [pg-prod]
    require_reason: ${v}
    rules: [{ effect: allow }]
`;
  assert.equal(parseBrokerConfig(policy('true'), CONFIG_PATH, { env: ENV }).policies[0]?.requireReason, true);
  assert.equal(parseBrokerConfig(policy('false'), CONFIG_PATH, { env: ENV }).policies[0]?.requireReason, undefined);
  const err = problemsOf(policy('"yes please"'));
  assert.ok(err.problems.some((p) => /^policies\.0\.require_reason: expected true or false, got "yes please"/.test(p)), err.problems.join('\n'));
});

test('masking keyed by an unknown target, and an invalid masking style, are reported', () => {
  const yaml = `${IDENTITY}${PG_TARGET}masking:
  pg-prd: { columns: ["*.email"] }
  pg-prod: { style: blur }
`;
  const err = problemsOf(yaml);
  assert.deepEqual(err.problems, [
    'masking.pg-prd: unknown target (did you mean "pg-prod"?)',
    'masking.pg-prod.style: expected one of full, partial, hash, null, got "blur"',
  ]);
});

test('every problem in the file is reported together, in file order', () => {
  const yaml = `listen: 127.0.0.1:99999
identity:
  issuer: https://login.example.com/
  client_id: 7
targets:
  pg-prod:
    type: postgres
    host: db.internal
    port: abc
    database: app
    user: u
    password: \${env:PG_PROD_PASSWORD}
    tls: yes
policies:
  - name: p
    subjects: { groups: [ai-agents] }
    targets: [nope]
    rules:
      - { effect: review }
`;
  const err = problemsOf(yaml, {});
  assert.deepEqual(err.problems, [
    'listen: expected host:port with port 0-65535 (e.g. 127.0.0.1:8443), got "127.0.0.1:99999"',
    'identity.audience: required, missing',
    'identity.client_id: expected a string, got 7',
    'targets.pg-prod.port: expected an integer 1-65535, got "abc"',
    'targets.pg-prod.password: ${env:PG_PROD_PASSWORD} is not set',
    'targets.pg-prod.tls: expected one of disable, require, verify-full, got "yes"',
    'policies.0.targets.0: unknown target "nope"',
    'policies.0.rules.0.approvers: required when effect is review (e.g. { groups: [dba], count: 1 }), missing',
  ]);
  assert.ok(err.message.startsWith(`config ${CONFIG_PATH} has 8 problems:\n`));
  for (const p of err.problems) assert.ok(err.message.includes(`\n  ${p}`), `message lists ${p}`);
  assert.equal(err.exitCode, 1);
  assert.equal(err.hint, 'set the environment variable named above for the broker, fix the rest in /etc/agentgate/agentgate.yaml, and run again');
});

test('a missing config file is a ConfigError with a next step', async () => {
  const missing = join(dir, 'absent.yaml');
  await assert.rejects(loadBrokerConfig(missing), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.message, `config ${missing} cannot be read (ENOENT)`);
    assert.match(err.hint ?? '', /agentgate broker init/);
    return true;
  });
});

test('recording: results and input, broker-wide and on postgres targets; results is capped at 100', () => {
  const withRec = IDENTITY + PG_TARGET + '    recording:\n      results: 5\n' + 'recording:\n  input: true\n';
  const config = parseBrokerConfig(withRec, CONFIG_PATH, { env: ENV });
  assert.deepEqual(config.recording, { enabled: true, maxBytes: 64 * 1024 * 1024, results: 0, input: true });
  const t = config.targets['pg-prod'];
  assert.deepEqual(t && 'recording' in t ? t.recording : undefined, { enabled: true, maxBytes: 64 * 1024 * 1024, results: 5, input: false });
  const big = problemsOf(IDENTITY + PG_TARGET + '    recording:\n      results: 101\n');
  assert.deepEqual(big.problems, ['targets.pg-prod.recording.results: expected an integer 0-100, got 101']);
});

test('ssh tty: a boolean on allow and review rules with commands; anything else is a problem naming the key', () => {
  const SSH_TARGET = `targets:
  box:
    type: ssh
    host: box.internal
    user: deploy
    password: \${env:PG_PROD_PASSWORD}
    host_key: "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
`;
  const policy = (rule: string): string => `${IDENTITY}${SSH_TARGET}policies:
  - name: p
    subjects: { groups: [ai-agents] }
    targets: [box]
    rules:
      - ${rule}
`;
  const loaded = parseBrokerConfig(policy('{ ssh: { commands: ["journalctl *"], tty: true }, effect: allow }'), CONFIG_PATH, { env: ENV });
  assert.deepEqual(loaded.policies[0]?.rules[0]?.ssh, { commands: ['journalctl *'], tty: true });
  const review = parseBrokerConfig(policy('{ ssh: { commands: ["vim *"], tty: true }, effect: review, approvers: { groups: [sre] } }'), CONFIG_PATH, { env: ENV });
  assert.equal(review.policies[0]?.rules[0]?.ssh?.tty, true);
  assert.equal(parseBrokerConfig(policy('{ ssh: { commands: [uptime], tty: false }, effect: allow }'), CONFIG_PATH, { env: ENV }).policies[0]?.rules[0]?.ssh?.tty, false);
  assert.deepEqual(problemsOf(policy('{ ssh: { commands: [uptime], tty: "yes" }, effect: allow }')).problems, [
    'policies.0.rules.0.ssh.tty: expected true or false (true: an exec this rule lets run keeps the terminal the client asked for), got "yes"',
  ]);
  assert.deepEqual(problemsOf(policy('{ ssh: { commands: ["rm *"], tty: true }, effect: deny }')).problems, [
    'policies.0.rules.0.ssh.tty: only allowed when effect is allow or review, not deny (a denied command gets no terminal)',
  ]);
  assert.deepEqual(problemsOf(policy('{ ssh: { shell: true, tty: true }, effect: allow }')).problems, [
    'policies.0.rules.0.ssh.tty: applies to exec commands: give the commands that may keep a terminal (commands: [...]); a shell (shell: true) keeps its pty without it',
  ]);
  assert.match(problemsOf(policy('{ ssh: { commands: [uptime], tyy: true }, effect: allow }')).problems.join('\n'), /ssh\.tyy: unknown key \(did you mean "tty"\?\)/);
});
