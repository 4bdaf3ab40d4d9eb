import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeRule, policiesForTarget, reachableTargets, subjectMatches } from '../../src/broker/access.js';
import type { Identity } from '../../src/broker/identity/types.js';
import { POLICIES, TARGETS } from './policy-fixture.js';

const agent: Identity = { sub: 'bot-1', groups: ['ai-agents'], kind: 'agent', issuer: 'https://idp', expiresAt: 0 };
const dba: Identity = { sub: 'dana', groups: ['dba', 'staff'], kind: 'human', issuer: 'https://idp', expiresAt: 0 };
const ci: Identity = { sub: 'repo:acme/api:ref:refs/heads/main', groups: ['ci'], kind: 'ci', issuer: 'https://ci', expiresAt: 0 };
const nobody: Identity = { sub: 'eve', groups: ['marketing'], kind: 'human', issuer: 'https://idp', expiresAt: 0 };

test('subject criteria: every given criterion must match, any value within one', () => {
  assert.equal(subjectMatches(agent, { groups: ['ai-agents', 'x'] }), true);
  assert.equal(subjectMatches(agent, { groups: ['ai-agents'], kinds: ['human'] }), false);
  assert.equal(subjectMatches(agent, { groups: ['ai-agents'], kinds: ['agent'] }), true);
  assert.equal(subjectMatches(ci, { subs: ['repo:acme/*'] }), true);
  assert.equal(subjectMatches(ci, { subs: ['repo:other/*'] }), false);
  assert.equal(subjectMatches(agent, {}), false, 'an empty subject block matches nobody');
});

test('policiesForTarget keeps config order and matches target globs', () => {
  assert.deepEqual(policiesForTarget(agent, 'pg-prod', POLICIES).map((p) => p.name), ['agents-read', 'agents-any-pg']);
  assert.deepEqual(policiesForTarget(agent, 'pg-staging', POLICIES).map((p) => p.name), ['agents-any-pg']);
  assert.deepEqual(policiesForTarget(agent, 'k8s-prod', POLICIES).map((p) => p.name), ['agents-k8s']);
  assert.deepEqual(policiesForTarget(nobody, 'pg-prod', POLICIES), []);
});

test('reachableTargets: deciding policy only, all-deny policies hide the target, sorted', () => {
  assert.deepEqual(reachableTargets(agent, { targets: TARGETS, policies: POLICIES }), [
    {
      name: 'k8s-prod',
      type: 'kubernetes',
      policies: ['agents-k8s'],
      allows: ['k8s get, list, watch on *, !secrets: allow', 'k8s delete: review by 1 of sre', 'everything else: deny'],
    },
    { name: 'pg-prod', type: 'postgres', database: 'app', policies: ['agents-read'], allows: ['select, explain: allow', 'insert, update, delete: review by 1 of dba', 'everything else: deny'] },
    { name: 'pg-staging', type: 'postgres', database: 'app', policies: ['agents-any-pg'], allows: ['everything: allow'] },
  ]);
  // ci-deploy matches pg-prod for CI but only denies: not reachable.
  assert.deepEqual(reachableTargets(ci, { targets: TARGETS, policies: POLICIES }), []);
  assert.deepEqual(reachableTargets(nobody, { targets: TARGETS, policies: POLICIES }), []);
  assert.deepEqual(
    reachableTargets(dba, { targets: TARGETS, policies: POLICIES }).map((t) => t.name),
    ['pg-prod', 'pg-staging'],
  );
});

test('describeRule mentions extra match keys and namespaces', () => {
  assert.equal(describeRule({ name: 'r', effect: 'allow', extra: { relations: ['x'] }, sql: ['select'] }, 2), 'select when relations: allow');
  assert.equal(describeRule({ name: 'r', effect: 'deny', extra: {}, k8s: { namespaces: ['kube-system'] } }), 'k8s any verb in kube-system: deny');
});
