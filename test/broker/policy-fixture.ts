/** A small target set and policy list used by the access and server tests. */
import type { PolicyConfig, TargetConfig } from '../../src/broker/config/types.js';

export const TARGETS: Record<string, TargetConfig> = {
  'pg-prod': { type: 'postgres', name: 'pg-prod', host: 'db.internal', port: 5432, database: 'app', user: 'ro', password: undefined, tls: 'verify-full', ca: undefined },
  'pg-staging': { type: 'postgres', name: 'pg-staging', host: 'db.staging', port: 5432, database: 'app', user: 'ro', password: undefined, tls: 'require', ca: undefined },
  'k8s-prod': { type: 'kubernetes', name: 'k8s-prod', server: 'https://k8s.internal:6443', ca: undefined, token: undefined, clientCert: undefined, clientKey: undefined },
};

export const POLICIES: PolicyConfig[] = [
  {
    name: 'agents-read',
    subjects: { groups: ['ai-agents'] },
    targets: ['pg-prod'],
    rules: [
      { name: 'agents-read#1', sql: ['select', 'explain'], effect: 'allow', extra: {} },
      { name: 'agents-read#2', sql: ['insert', 'update', 'delete'], effect: 'review', approvers: { groups: ['dba'], count: 1 }, extra: {} },
      { name: 'agents-read#3', effect: 'deny', extra: {} },
    ],
  },
  {
    name: 'agents-k8s',
    subjects: { groups: ['ai-agents'] },
    targets: ['k8s-*'],
    rules: [
      { name: 'agents-k8s#1', k8s: { verbs: ['get', 'list', 'watch'], resources: ['*', '!secrets'] }, effect: 'allow', extra: {} },
      { name: 'agents-k8s#2', k8s: { verbs: ['delete'] }, effect: 'review', approvers: { groups: ['sre'], count: 1 }, extra: {} },
      { name: 'agents-k8s#3', effect: 'deny', extra: {} },
    ],
  },
  {
    name: 'agents-any-pg',
    subjects: { groups: ['ai-agents', 'dba'] },
    targets: ['pg-*'],
    rules: [{ name: 'agents-any-pg#1', effect: 'allow', extra: {} }],
  },
  {
    name: 'ci-deploy',
    subjects: { kinds: ['ci'], subs: ['repo:acme/*'] },
    targets: ['*'],
    rules: [{ name: 'ci-deploy#1', effect: 'deny', extra: {} }],
  },
];
