import { DEFAULT_DANGEROUS_FUNCTIONS } from '../../src/broker/config/schema.js';
/**
 * DESIGN.md's example config loads into the expected typed values, and the template that
 * `broker init` writes loads as written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { parseBrokerConfig } from '../../src/broker/config/load.js';
import { renderConfigTemplate } from '../../src/broker/config/template.js';
import { Secret } from '../../src/shared/secret.js';

const DESIGN_EXAMPLE = `listen: 127.0.0.1:8443
state_dir: ./state               # SQLite store, keys; created 0700
tls:                             # omit both: generated on first start, fingerprint printed
  cert: ./state/tls.crt
  key: ./state/tls.key
identity:
  issuer: https://login.example.com/
  audience: agentgate
  client_id: agentgate-cli       # public client used for the device flow
  groups_claim: groups
  agent_groups: [ai-agents]      # actor.kind = agent for members
  ci_issuers:
    - issuer: https://token.actions.githubusercontent.com
      audience: agentgate
      subject: "repo:acme/*"
      groups: [ci]
targets:
  pg-prod:
    type: postgres
    host: db.internal
    port: 5432
    database: app
    user: agentgate_ro
    password: \${env:PG_PROD_PASSWORD}    # or \${file:/run/secrets/pg}; never logged
    tls: verify-full                     # disable | require | verify-full
  k8s-prod:
    type: kubernetes
    server: https://k8s.internal:6443
    ca: /etc/agentgate/k8s-ca.pem
    token: \${env:K8S_TOKEN}              # or client_cert + client_key
policies:                                # first matching policy decides; none matching = deny
  - name: agents-read
    subjects: { groups: [ai-agents] }
    targets: [pg-prod]
    rules:                               # first matching rule decides
      - { sql: [select, explain], effect: allow }
      - { sql: [insert, update, delete], effect: review, approvers: { groups: [dba], count: 1 } }
      - { effect: deny }
  - name: agents-k8s
    subjects: { groups: [ai-agents] }
    targets: [k8s-prod]
    rules:
      - { k8s: { verbs: [get, list, watch], resources: ["*", "!secrets"] }, effect: allow }
      - { k8s: { verbs: [delete] }, effect: review, approvers: { groups: [sre], count: 1 } }
      - { effect: deny }
auditors: { groups: [security] }        # may export the audit log and read every receipt
sessions: { max_duration: 8h }
masking:
  pg-prod:
    columns: ["*.email", "users.ssn", "*password*"]
    detectors: [email, credit_card, aws_key, jwt, private_key]
    style: partial                       # full | partial | hash | null
`;

const ENV = { PG_PROD_PASSWORD: 'pg-Pa55-example', K8S_TOKEN: 'k8s-tok-example' };

test("DESIGN.md's example loads into the expected typed config", () => {
  const config = parseBrokerConfig(DESIGN_EXAMPLE, '/srv/agentgate/agentgate.yaml', { env: ENV });

  // Secrets first: real Secret objects that keep their value out of every text form.
  const pg = config.targets['pg-prod'];
  const k8s = config.targets['k8s-prod'];
  assert.ok(pg?.type === 'postgres' && k8s?.type === 'kubernetes');
  assert.ok(pg.password instanceof Secret && k8s.token instanceof Secret);
  assert.equal(pg.password.reveal(), 'pg-Pa55-example');
  assert.equal(pg.password.source, '${env:PG_PROD_PASSWORD}');
  assert.equal(String(pg.password), '[redacted]');
  assert.equal(`${k8s.token}`, '[redacted]');
  assert.equal(k8s.token.reveal(), 'k8s-tok-example');
  assert.equal(k8s.token.source, '${env:K8S_TOKEN}');
  const everyTextForm = JSON.stringify(config) + inspect(config, { depth: 10 });
  assert.ok(!everyTextForm.includes('pg-Pa55-example') && !everyTextForm.includes('k8s-tok-example'));

  // The rest as plain data: secrets serialize as [redacted] (checked above for value and source).
  const plain = JSON.parse(JSON.stringify(config)) as unknown;
  assert.deepEqual(plain, {
    configPath: '/srv/agentgate/agentgate.yaml',
    listen: { host: '127.0.0.1', port: 8443 },
    stateDir: '/srv/agentgate/state',
    tls: { cert: '/srv/agentgate/state/tls.crt', key: '/srv/agentgate/state/tls.key', generated: false },
    store: { kind: 'sqlite', path: '/srv/agentgate/state/audit.db' },
    identity: {
      issuer: 'https://login.example.com/',
      audience: 'agentgate',
      clientId: 'agentgate-cli',
      groupsClaim: 'groups',
      agentGroups: ['ai-agents'],
      ciIssuers: [{ issuer: 'https://token.actions.githubusercontent.com', audience: 'agentgate', subject: 'repo:acme/*', groups: ['ci'] }],
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      clockToleranceSec: 30,
    },
    targets: {
      'pg-prod': {
        type: 'postgres',
        name: 'pg-prod',
        host: 'db.internal',
        port: 5432,
        database: 'app',
        user: 'agentgate_ro',
        password: '[redacted]',
        tls: 'verify-full',
      },
      'k8s-prod': {
        type: 'kubernetes',
        name: 'k8s-prod',
        server: 'https://k8s.internal:6443',
        ca: '/etc/agentgate/k8s-ca.pem',
        token: '[redacted]',
      },
    },
    policies: [
      {
        name: 'agents-read',
        subjects: { groups: ['ai-agents'] },
        targets: ['pg-prod'],
        rules: [
          { name: 'agents-read#1', sql: ['select', 'explain'], effect: 'allow', extra: {} },
          { name: 'agents-read#2', sql: ['insert', 'update', 'delete'], effect: 'review', approvers: { groups: ['dba'], count: 1, kinds: ['human'] }, extra: {} },
          { name: 'agents-read#3', effect: 'deny', extra: {} },
        ],
        masking: { mode: 'inherit' },
      },
      {
        name: 'agents-k8s',
        subjects: { groups: ['ai-agents'] },
        targets: ['k8s-prod'],
        rules: [
          { name: 'agents-k8s#1', k8s: { verbs: ['get', 'list', 'watch'], resources: ['*', '!secrets'] }, effect: 'allow', extra: {} },
          { name: 'agents-k8s#2', k8s: { verbs: ['delete'] }, effect: 'review', approvers: { groups: ['sre'], count: 1, kinds: ['human'] }, extra: {} },
          { name: 'agents-k8s#3', effect: 'deny', extra: {} },
        ],
        masking: { mode: 'inherit' },
      },
    ],
    auditors: { groups: ['security'] },
    masking: {
      'pg-prod': {
        columns: ['*.email', 'users.ssn', '*password*'],
        detectors: ['email', 'credit_card', 'aws_key', 'jwt', 'private_key'],
        style: 'partial',
      },
    },
    audit: { sync: 'normal' },
    approvals: { timeoutSeconds: 600, webhooks: [], maxPendingPerRequester: 20 },
    sessions: { maxDurationSeconds: 8 * 3600, expiryLeewaySeconds: 30, loginTimeoutMs: 15_000, tlsHandshakeTimeoutMs: 10_000 },
    operators: { groups: [] },
    dangerousFunctions: [...DEFAULT_DANGEROUS_FUNCTIONS],
    receiptKeyPath: '/srv/agentgate/state/receipt-signing.key',
    sshHostKeyPath: '/srv/agentgate/state/ssh-host.key',
  });
  // JSON drops undefined; the optional fields are present as undefined, not missing values.
  assert.equal(pg.ca, undefined);
  assert.equal(k8s.clientCert, undefined);
  assert.equal(config.audit.retentionDays, undefined);
});

test('a postgres store URL may be a secret reference, embedded or whole', () => {
  const identity = 'identity: { issuer: "https://login.example.com/", audience: agentgate, client_id: cli }\n';
  const whole = parseBrokerConfig(`${identity}store: { postgres: "\${env:STORE_URL}" }\n`, '/srv/a.yaml', { env: { STORE_URL: 'postgres://a:b@db/x' } });
  assert.equal(whole.store.kind, 'postgres');
  assert.ok(whole.store.kind === 'postgres' && whole.store.url.reveal() === 'postgres://a:b@db/x');

  const embedded = parseBrokerConfig(`${identity}store: { postgres: "postgresql://agentgate:\${env:STORE_PW}@db/audit" }\n`, '/srv/a.yaml', { env: { STORE_PW: 'pw' } });
  assert.ok(embedded.store.kind === 'postgres');
  assert.equal(embedded.store.url.reveal(), 'postgresql://agentgate:pw@db/audit');
  assert.equal(embedded.store.url.source, '${env:STORE_PW}');

  const sqlite = parseBrokerConfig(`${identity}store: sqlite\nstate_dir: /var/lib/agentgate\n`, '/srv/a.yaml', { env: {} });
  assert.deepEqual(sqlite.store, { kind: 'sqlite', path: '/var/lib/agentgate/audit.db' });
});

test('the init template loads cleanly with no environment', () => {
  const config = parseBrokerConfig(renderConfigTemplate({}), '/srv/agentgate/agentgate.yaml', { env: {} });
  assert.equal(config.identity.issuer, 'https://login.example.com/');
  assert.equal(config.identity.audience, 'agentgate');
  assert.equal(config.identity.clientId, 'agentgate-cli');
  assert.deepEqual(config.listen, { host: '127.0.0.1', port: 8443 });
  assert.equal(config.tls.generated, true);
  assert.deepEqual(config.targets, {});
  assert.deepEqual(config.policies, []);
});

test('the template takes identity and listen from options, and keeps the examples as comments', () => {
  const text = renderConfigTemplate({ issuer: 'https://idp.acme.test/realms/main', audience: 'broker-aud', clientId: 'cli-1', listen: '0.0.0.0:9443' });
  const config = parseBrokerConfig(text, '/srv/agentgate/agentgate.yaml', { env: {} });
  assert.equal(config.identity.issuer, 'https://idp.acme.test/realms/main');
  assert.equal(config.identity.audience, 'broker-aud');
  assert.equal(config.identity.clientId, 'cli-1');
  assert.deepEqual(config.listen, { host: '0.0.0.0', port: 9443 });
  // The DESIGN example sections are there for the operator to uncomment.
  for (const line of ['#   pg-prod:', '#     password: ${env:PG_PROD_PASSWORD}', '#   - name: agents-read', '#     style: partial']) {
    assert.ok(text.includes(line), `template contains ${line}`);
  }
});
