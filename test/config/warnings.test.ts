/** What `broker start` warns about in a valid config (each is also asserted through the real command in broker-command.test). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBrokerConfig } from '../../src/broker/config/load.js';
import { configWarnings } from '../../src/broker/config/warnings.js';

const identity = (issuer: string): string => `identity:\n  issuer: ${issuer}\n  audience: agentgate\n  client_id: agentgate-cli\n`;
const TARGET = `targets:
  pg-prod:
    type: postgres
    host: db.internal
    port: 5432
    database: app
    user: ro
    password: \${env:PG_PASSWORD}
    tls: verify-full
`;
const POLICY = `policies:
  - name: readers
    subjects: { groups: [developers] }
    targets: [pg-prod]
    rules:
      - { sql: [select], effect: allow }
`;
const warningsOf = (yaml: string): string[] => configWarnings(parseBrokerConfig(yaml, '/etc/agentgate/agentgate.yaml', { env: { PG_PASSWORD: 'x' } }));

test('the placeholder issuer, no targets and no policies are each named', () => {
  assert.deepEqual(warningsOf(identity('https://login.example.com/')), [
    "identity.issuer is the template's placeholder https://login.example.com/: no one can log in until it names your IdP",
    'targets: none configured, so there is nothing to connect to',
    'policies: none configured, so every request is denied',
  ]);
});

test('verify-full without ca says the system CAs are used; a complete config warns of nothing else', () => {
  assert.deepEqual(warningsOf(identity('https://idp.acme.test/') + TARGET + POLICY), [
    "targets.pg-prod.tls: verify-full without ca checks the server's certificate against the system CAs",
  ]);
  assert.deepEqual(warningsOf(identity('https://idp.acme.test/') + TARGET.replace('tls: verify-full', 'tls: verify-full\n    ca: /etc/ssl/db-ca.pem') + POLICY), []);
});
