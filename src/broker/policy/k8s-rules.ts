/**
 * Kubernetes rules: when a policy rule applies to a Kubernetes request, and the decision
 * for one request. The request comes in the neutral shape of request-info.ts; nothing
 * here knows HTTP.
 *
 * A rule's `k8s` block (absent = any request):
 * - `verbs`: policy verbs (get, list, watch, create, update, patch, delete,
 *   deletecollection, exec, attach, portforward, proxy), globs allowed.
 * - `resources`: `secrets`, `pods/exec` (a subresource), `apps/deployments` (a group;
 *   `core/pods` names the core group), `apps/deployments/scale`. A pattern without a
 *   subresource covers the resource's subresources only for reads (get, list, watch:
 *   `pods` covers `pods/log`) and the connect verbs (exec, attach, portforward, proxy, which
 *   the verb already names: `pods` with `verbs: [exec]` covers `pods/exec`). Any other verb
 *   on a subresource — create/update/patch/delete of `pods/ephemeralcontainers` (code in
 *   the pod), `pods/eviction` (a delete), `pods/binding`, `serviceaccounts/token` (a
 *   credential), `deployments/scale`, any `status` — matches only a pattern naming the
 *   subresource (`pods/eviction`, `pods/*`, or `*` followed by `/scale` or `/*`), as RBAC names
 *   them: such writes do something other than writing the resource. An exclusion
 *   (`!secrets`) excludes the resource's subresources for every verb. A request that
 *   issues a credential (a TokenRequest, a CSR approval) is granted only by a rule naming
 *   it literally (`serviceaccounts/token`). A bare name (`configmaps`) in an allow rule is
 *   that resource of the core group or of Kubernetes' own groups; in a deny or review rule
 *   and in an exclusion, of every group. Patterns starting with `/` name
 *   non-resource URLs (`/healthz`, `/metrics`); other patterns never match those, and a
 *   rule with `resources` matches a non-resource URL only through such a pattern.
 * - `namespaces`: namespace globs. A rule that names namespaces matches only requests
 *   inside one of them: never cluster-scoped requests, nor lists across all namespaces
 *   (`kubectl get pods -A` would otherwise read the excluded ones).
 *
 * In each list `*` is a glob, `!pattern` excludes, and a list of exclusions only
 * (`["!secrets"]`) means everything but those.
 *
 * Discovery (GET /api, /apis, their group/version documents, /version, /openapi/v2 and
 * /openapi/v3/…) is allowed to anyone whose policy grants anything on the target, whatever
 * its rules say: kubectl cannot run a single command without it, and it describes the
 * API's shape, not the cluster's contents.
 */
import type { PolicyConfig, RuleConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';
import { decidingPolicy, policyGrantsAccess } from '../access.js';
import { compileGlob } from '../glob.js';
import { describeRequest, isDiscoveryRead, type K8sRequestInfo, type K8sResourceRequest } from './k8s-request.js';
import { decide, type PolicyDecision } from './decision.js';

/** The synthetic rule name recorded for discovery reads. */
export const DISCOVERY_RULE = 'builtin:discovery';

export function ruleMatchesK8s(rule: RuleConfig, info: K8sRequestInfo): boolean {
  // SQL criteria (or criteria this version does not know) make a rule about something else.
  if (rule.sql || rule.relations || rule.flags || rule.ssh || Object.keys(rule.extra).length > 0) return false;
  const k = rule.k8s;
  // A request that issues a credential is granted (allowed, or put to a reviewer) only by a
  // rule that names its subresource literally: no rule naming no resources, no glob.
  if (rule.effect !== 'deny' && info.kind === 'resource' && issuesCredential(info) && !namesLiterally(k?.resources, info)) return false;
  if (!k) return true;
  if (k.verbs && !listMatches(k.verbs, (p) => compileGlob(p).test(info.verb))) return false;
  if (k.resources) {
    const ok =
      info.kind === 'nonResource'
        ? listMatches(k.resources, (p) => compileGlob(p).test(info.path), (p) => p.startsWith('/'), false)
        : // Exclusions only (`["!secrets"]`) mean `*` but those: the same subresource rule as `*`.
          listMatches(k.resources.some((p) => !p.startsWith('!')) ? k.resources : ['*', ...k.resources], (p) => resourcePatternMatches(p, info, false, rule.effect !== 'allow'), (p) => !p.startsWith('/'), true, (p) => resourcePatternMatches(p, info, true, true));
    if (!ok) return false;
  }
  if (k.namespaces) {
    if (info.kind === 'nonResource' || info.namespace === '') return false;
    if (!listMatches(k.namespaces, (p) => compileGlob(p).test(info.namespace))) return false;
  }
  return true;
}

/**
 * Positive patterns: at least one must match; `!` patterns: none may. `relevant` keeps the
 * patterns that apply to this kind of request (resource or non-resource). With no positive
 * pattern of either kind, all requests of the kind `implicitAll` allows count as matched.
 */
function listMatches(patterns: readonly string[], test: (p: string) => boolean, relevant: (p: string) => boolean = () => true, implicitAll = true, excludes: (p: string) => boolean = test): boolean {
  const positives = patterns.filter((p) => !p.startsWith('!') && relevant(p));
  const negatives = patterns.filter((p) => p.startsWith('!') && relevant(p.slice(1))).map((p) => p.slice(1));
  const anyPositive = patterns.some((p) => !p.startsWith('!'));
  if (positives.length > 0 ? !positives.some(test) : anyPositive || !implicitAll) return false;
  return !negatives.some(excludes);
}

/**
 * Subresource writes whose answer is (or whose effect is that a signer issues) a new
 * credential: a TokenRequest (`kubectl create token`: a bearer token for the service
 * account, however powerful) and a certificate signing request's approval (the signer
 * then issues a client certificate for whatever identity the request named).
 */
const CREDENTIAL_SUBRESOURCES: readonly { group: string; resource: string; subresource: string; verbs: readonly string[] }[] = [
  { group: '', resource: 'serviceaccounts', subresource: 'token', verbs: ['create'] },
  { group: 'certificates.k8s.io', resource: 'certificatesigningrequests', subresource: 'approval', verbs: ['update', 'patch'] },
  // Not an API subresource: what a Secret write of type bootstrap.kubernetes.io/token is
  // decided as (kubernetes/credential-secret.ts).
  { group: '', resource: 'secrets', subresource: 'bootstrap-token', verbs: ['create'] },
];

function issuesCredential(info: K8sResourceRequest): boolean {
  return CREDENTIAL_SUBRESOURCES.some((c) => c.group === info.group && c.resource === info.resource && c.subresource === info.subresource && c.verbs.includes(info.verb));
}

/** Whether a positive pattern without a glob names this request's resource and subresource. */
function namesLiterally(patterns: readonly string[] | undefined, info: K8sResourceRequest): boolean {
  return (patterns ?? []).some((p) => !p.startsWith('!') && !p.includes('*') && p.split('/').length >= 2 && resourcePatternMatches(p, info, false, false) && p.endsWith(`/${info.subresource}`));
}

/** Verbs a pattern without a subresource carries to the resource's subresources. */
const WHOLE_RESOURCE_VERBS: ReadonlySet<string> = new Set(['get', 'list', 'watch', 'exec', 'attach', 'portforward', 'proxy']);

/**
 * `resource`, `group/resource` or `resource/subresource`, `group/resource/subresource`.
 * `exclusion`: a `!` pattern, which excludes the resource's subresources for every verb.
 */
function resourcePatternMatches(pattern: string, info: K8sResourceRequest, exclusion: boolean, anyGroup: boolean): boolean {
  const parts = pattern.split('/');
  const g = (p: string): boolean => compileGlob(p).test(info.group) || (p === 'core' && info.group === '');
  // A write to a subresource (an eviction, an ephemeral container, a token) is not a write
  // of the resource: a pattern naming only the resource covers it for reads (and the
  // connect verbs, named by the verb) — as RBAC, which never lets `pods` grant `pods/eviction`.
  const wholeCovers = info.subresource === '' || exclusion || WHOLE_RESOURCE_VERBS.has(info.verb);
  const r = (p: string): boolean => compileGlob(p).test(info.resource);
  const whole = (p: string): boolean => wholeCovers && r(p);
  const s = (p: string): boolean => info.subresource !== '' && compileGlob(p).test(info.subresource);
  switch (parts.length) {
    case 1:
      // A bare name grants a resource of Kubernetes' own groups only: a custom resource or an
      // aggregated API may take any plural (`configmaps.evil.example.com`) and is granted by
      // naming its group (`example.com/widgets`, `*/widgets`). `*` alone is every group; an
      // exclusion and a deny or review rule read the name in every group (what denies more).
      return whole(parts[0] as string) && (anyGroup || parts[0] === '*' || builtInGroup(info.group));
    case 2: {
      const [a, b] = parts as [string, string];
      return (g(a) && whole(b)) || (r(a) && s(b));
    }
    case 3: {
      const [a, b, c] = parts as [string, string, string];
      return g(a) && r(b) && s(c);
    }
    default:
      return false;
  }
}

/**
 * The core group and Kubernetes' own API groups: a group without a dot (apps, batch,
 * policy…: a custom resource's group must hold one) or under k8s.io or kubernetes.io (which
 * the API server keeps for API-reviewed groups).
 */
function builtInGroup(group: string): boolean {
  return !group.includes('.') || group.endsWith('.k8s.io') || group.endsWith('.kubernetes.io') || group === 'k8s.io' || group === 'kubernetes.io';
}

export function decideK8s(identity: Identity, targetName: string, policies: readonly PolicyConfig[], info: K8sRequestInfo): PolicyDecision {
  if (isDiscoveryRead(info)) {
    const policy = decidingPolicy(identity, targetName, policies);
    if (policyGrantsAccess(policy)) {
      return { effect: 'allow', policy: policy.name, rule: DISCOVERY_RULE, reason: `discovery read ${info.path} is allowed to anyone who may use ${targetName}` };
    }
  }
  return decide(identity, targetName, policies, (rule) => ruleMatchesK8s(rule, info), describeRequest(info));
}
