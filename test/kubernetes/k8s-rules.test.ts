/**
 * Kubernetes policy rules: verbs, resources (globs, `!` exclusions, subresources and
 * groups), namespaces, non-resource URLs, the discovery allowance, and decisions through
 * the protocol-neutral core (first policy, first rule, default deny).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decideK8s, DISCOVERY_RULE, ruleMatchesK8s } from '../../src/broker/policy/k8s-rules.js';
import { parseRequestInfo } from '../../src/broker/kubernetes/request-info.js';
import type { PolicyConfig, RuleConfig } from '../../src/broker/config/types.js';
import type { Identity } from '../../src/broker/identity/types.js';

const rule = (k8s: RuleConfig['k8s'], extra: Partial<RuleConfig> = {}): RuleConfig => ({ name: 'r', effect: 'allow', extra: {}, ...(k8s ? { k8s } : {}), ...extra });

const R = {
  listPods: parseRequestInfo('GET', '/api/v1/namespaces/default/pods'),
  listPodsAll: parseRequestInfo('GET', '/api/v1/pods'),
  getSecret: parseRequestInfo('GET', '/api/v1/namespaces/default/secrets/db'),
  listSecretsSystem: parseRequestInfo('GET', '/api/v1/namespaces/kube-system/secrets'),
  deletePod: parseRequestInfo('DELETE', '/api/v1/namespaces/default/pods/web-1'),
  exec: parseRequestInfo('POST', '/api/v1/namespaces/default/pods/web-1/exec?command=sh'),
  logs: parseRequestInfo('GET', '/api/v1/namespaces/default/pods/web-1/log'),
  scale: parseRequestInfo('PATCH', '/apis/apps/v1/namespaces/default/deployments/web/scale'),
  patchDeploy: parseRequestInfo('PATCH', '/apis/apps/v1/namespaces/prod/deployments/web'),
  listNodes: parseRequestInfo('GET', '/api/v1/nodes'),
  healthz: parseRequestInfo('GET', '/healthz'),
  evict: parseRequestInfo('POST', '/api/v1/namespaces/default/pods/web-1/eviction'),
  debug: parseRequestInfo('PATCH', '/api/v1/namespaces/default/pods/web-1/ephemeralcontainers'),
  token: parseRequestInfo('POST', '/api/v1/namespaces/default/serviceaccounts/default/token'),
  podStatus: parseRequestInfo('PUT', '/api/v1/namespaces/default/pods/web-1/status'),
  getScale: parseRequestInfo('GET', '/apis/apps/v1/namespaces/default/deployments/web/scale'),
  secretSub: parseRequestInfo('PATCH', '/api/v1/namespaces/default/secrets/db/status'),
  metrics: parseRequestInfo('GET', '/metrics'),
  csrApprove: parseRequestInfo('PUT', '/apis/certificates.k8s.io/v1/certificatesigningrequests/agent-csr/approval'),
  listCm: parseRequestInfo('GET', '/api/v1/namespaces/default/configmaps'),
  crdCm: parseRequestInfo('GET', '/apis/evil.example.com/v1/namespaces/default/configmaps'),
  ingress: parseRequestInfo('GET', '/apis/networking.k8s.io/v1/namespaces/default/ingresses'),
};
type Req = keyof typeof R;

const CASES: [RuleConfig['k8s'], Req[], Req[]][] = [
  // [k8s block, requests it matches, requests it does not]
  [undefined, ['listPods', 'exec', 'healthz'], []],
  [{ verbs: ['get', 'list', 'watch'] }, ['listPods', 'getSecret', 'logs', 'listNodes', 'healthz'], ['deletePod', 'exec', 'scale']],
  [{ verbs: ['get', 'list', 'watch'], resources: ['*', '!secrets'] }, ['listPods', 'logs', 'listNodes'], ['getSecret', 'listSecretsSystem', 'exec', 'healthz']],
  [{ resources: ['!secrets'] }, ['listPods', 'exec', 'deletePod'], ['getSecret', 'healthz']],
  [{ verbs: ['exec'] }, ['exec'], ['listPods', 'logs']],
  [{ resources: ['pods/exec'] }, ['exec'], ['listPods', 'logs', 'deletePod']],
  // A pattern without a subresource covers subresources for reads and connect verbs only:
  // writes to pods/eviction, pods/ephemeralcontainers, …/status need a pattern naming them.
  [{ resources: ['pods'] }, ['listPods', 'exec', 'logs', 'deletePod', 'listPodsAll'], ['getSecret', 'scale', 'evict', 'debug', 'podStatus']],
  [{ resources: ['*'] }, ['listPods', 'exec', 'logs', 'getScale'], ['evict', 'debug', 'token', 'podStatus', 'scale']],
  [{ resources: ['!secrets'] }, ['listPods', 'getScale'], ['evict', 'debug', 'token', 'secretSub']],
  [{ resources: ['*', '!secrets'] }, ['logs'], ['secretSub', 'evict']],
  [{ resources: ['pods/eviction'] }, ['evict'], ['debug', 'deletePod']],
  // A credential (a TokenRequest, a CSR approval) only where a pattern names it literally.
  [{ resources: ['*/*'] }, ['evict', 'debug', 'podStatus', 'scale', 'logs', 'listPods'], ['token', 'csrApprove']],
  [undefined, ['listPods'], ['token', 'csrApprove']],
  [{ verbs: ['create', 'update'] }, ['evict'], ['token', 'csrApprove']],
  [{ resources: ['serviceaccounts/*', 'certificates.k8s.io/*/approval'] }, [], ['token', 'csrApprove']],
  [{ resources: ['serviceaccounts/token', 'certificates.k8s.io/certificatesigningrequests/approval'] }, ['token', 'csrApprove'], ['evict']],
  [{ resources: ['core/serviceaccounts/token', 'certificatesigningrequests/approval'] }, ['token', 'csrApprove'], []],
  // A bare name: Kubernetes' own groups (core, dotless, *.k8s.io); another group is named.
  [{ resources: ['configmaps', 'deployments', 'ingresses'] }, ['listCm', 'patchDeploy', 'ingress'], ['crdCm']],
  [{ resources: ['*/configmaps'] }, ['listCm', 'crdCm'], []],
  [{ resources: ['evil.example.com/configmaps'] }, ['crdCm'], ['listCm']],
  [{ resources: ['*', '!configmaps'] }, ['listPods'], ['listCm', 'crdCm']],
  [{ resources: ['*/status'] }, ['podStatus', 'secretSub'], ['evict', 'listPods']],
  [{ resources: ['serviceaccounts'] }, [], ['token']],
  [{ resources: ['pods', '!pods/exec'] }, ['listPods', 'logs'], ['exec']],
  [{ resources: ['pods/*'] }, ['exec', 'logs'], ['listPods']],
  [{ resources: ['apps/deployments'] }, ['patchDeploy', 'getScale'], ['listPods', 'scale']],
  [{ resources: ['apps/deployments/scale'] }, ['scale'], ['patchDeploy']],
  [{ resources: ['deployments/scale'] }, ['scale'], ['patchDeploy']],
  [{ resources: ['core/*'] }, ['listPods', 'getSecret', 'listNodes'], ['scale']],
  [{ resources: ['*/deployments'] }, ['patchDeploy', 'getScale'], ['listPods', 'scale']],
  [{ namespaces: ['default'] }, ['listPods', 'exec', 'getSecret'], ['listPodsAll', 'listNodes', 'patchDeploy', 'listSecretsSystem', 'healthz']],
  [{ namespaces: ['*', '!kube-system'] }, ['listPods', 'patchDeploy'], ['listSecretsSystem', 'listPodsAll', 'listNodes']],
  [{ resources: ['/healthz', '/livez'] }, ['healthz'], ['metrics', 'listPods']],
  [{ resources: ['*', '/metrics'] }, ['metrics', 'listPods'], ['healthz']],
  [{ verbs: ['*'], resources: ['secrets'], namespaces: ['kube-*'] }, ['listSecretsSystem'], ['getSecret']],
];

describe('k8s rules', () => {
  test('each rule matches exactly the requests it names', () => {
    for (const [k8s, yes, no] of CASES) {
      for (const r of yes) assert.ok(ruleMatchesK8s(rule(k8s), R[r]), `${JSON.stringify(k8s)} should match ${r}`);
      for (const r of no) assert.ok(!ruleMatchesK8s(rule(k8s), R[r]), `${JSON.stringify(k8s)} should not match ${r}`);
    }
  });

  test('deny and review rules read a bare name in every group, and match a credential without naming it', () => {
    const deny = (k8s: RuleConfig['k8s']): RuleConfig => rule(k8s, { effect: 'deny' });
    assert.ok(ruleMatchesK8s(deny({ resources: ['configmaps'] }), R.crdCm));
    assert.ok(ruleMatchesK8s(rule({ resources: ['configmaps'] }, { effect: 'review' }), R.crdCm));
    assert.ok(ruleMatchesK8s(deny(undefined), R.token));
    assert.ok(ruleMatchesK8s(deny({ resources: ['*/*'] }), R.csrApprove));
    assert.ok(!ruleMatchesK8s(rule({ verbs: ['create'] }, { effect: 'review' }), R.token));
  });

  test('a rule about SQL never matches a Kubernetes request', () => {
    assert.ok(!ruleMatchesK8s(rule(undefined, { sql: ['select'] }), R.listPods));
    assert.ok(!ruleMatchesK8s(rule(undefined, { relations: ['public.*'] }), R.listPods));
    assert.ok(!ruleMatchesK8s(rule(undefined, { flags: ['no_where'] }), R.deletePod));
    assert.ok(!ruleMatchesK8s(rule(undefined, { extra: { future: true } }), R.listPods));
  });

  const agent: Identity = { sub: 'agent-7', groups: ['ai-agents'], kind: 'agent', issuer: 'https://idp', expiresAt: 0 };
  const intern: Identity = { sub: 'mallory', groups: ['interns'], kind: 'human', issuer: 'https://idp', expiresAt: 0 };
  const policies: PolicyConfig[] = [
    {
      name: 'agents-k8s',
      subjects: { groups: ['ai-agents'] },
      targets: ['k8s-*'],
      rules: [
        { name: 'agents-k8s#1', k8s: { verbs: ['get', 'list', 'watch'], resources: ['*', '!secrets'] }, effect: 'allow', extra: {} },
        { name: 'agents-k8s#2', k8s: { verbs: ['delete'] }, effect: 'review', approvers: { groups: ['sre'], count: 1 }, grantSeconds: 300, extra: {} },
        { name: 'agents-k8s#3', effect: 'deny', extra: {} },
      ],
    },
    { name: 'interns-nothing', subjects: { groups: ['interns'] }, targets: ['k8s-*'], rules: [{ name: 'interns-nothing#1', effect: 'deny', extra: {} }] },
  ];

  test('decisions: first matching rule of the deciding policy, with reasons a user can act on', () => {
    const list = decideK8s(agent, 'k8s-prod', policies, R.listPods);
    assert.deepEqual([list.effect, list.rule], ['allow', 'agents-k8s#1']);
    const secret = decideK8s(agent, 'k8s-prod', policies, R.getSecret);
    assert.deepEqual([secret.effect, secret.rule], ['deny', 'agents-k8s#3']);
    assert.equal(secret.reason, 'rule agents-k8s#3 denies get secrets "db" in namespace default');
    const del = decideK8s(agent, 'k8s-prod', policies, R.deletePod);
    assert.deepEqual([del.effect, del.rule, del.grantSeconds], ['review', 'agents-k8s#2', 300]);
    assert.deepEqual(del.approvers, { groups: ['sre'], count: 1 });
    const none = decideK8s(agent, 'pg-prod', policies, R.listPods);
    assert.deepEqual([none.effect, none.policy, none.rule], ['deny', null, null]);
    assert.match(none.reason, /no policy gives agent-7 access to pg-prod/);
  });

  test('discovery is allowed to anyone with access to the target, and only to them', () => {
    for (const p of ['/api', '/apis', '/api/v1', '/apis/apps/v1', '/version', '/openapi/v2', '/openapi/v3/apis/apps/v1']) {
      const d = decideK8s(agent, 'k8s-prod', policies, parseRequestInfo('GET', p));
      assert.deepEqual([d.effect, d.rule], ['allow', DISCOVERY_RULE], p);
    }
    // The agent's rules do not allow non-resource URLs in general.
    assert.equal(decideK8s(agent, 'k8s-prod', policies, R.healthz).effect, 'deny');
    // A policy that only denies gives no access, so no discovery either.
    assert.equal(decideK8s(intern, 'k8s-prod', policies, parseRequestInfo('GET', '/api')).effect, 'deny');
    assert.equal(decideK8s({ ...intern, groups: [] }, 'k8s-prod', policies, parseRequestInfo('GET', '/api')).effect, 'deny');
  });
});
