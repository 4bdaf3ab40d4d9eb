/**
 * Which policies apply to an identity on a target, and the "what may I reach" view of
 * that. Semantics (DESIGN.md): policies are tried in config order; the first whose
 * subjects and targets both match decides; none matching means deny.
 */
import type { TargetSummary } from '../shared/api-types.js';
import type { BrokerConfig, PolicyConfig, RuleConfig, SubjectMatch } from './config/types.js';
import { anyGlobMatches } from './glob.js';
import type { Identity } from './identity/types.js';

/**
 * Each criterion given (groups, subs, kinds) must match, and within one criterion any
 * listed value does. `subs` are globs (`repo:acme/*`). A policy that names no subject
 * matches nobody: an empty `subjects` is a mistake, not a wildcard.
 */
export function subjectMatches(identity: Identity, subjects: SubjectMatch): boolean {
  const { groups, subs, kinds } = subjects;
  if (groups === undefined && subs === undefined && kinds === undefined) return false;
  if (groups !== undefined && !groups.some((g) => identity.groups.includes(g))) return false;
  if (subs !== undefined && !anyGlobMatches(subs, identity.sub)) return false;
  if (kinds !== undefined && !kinds.includes(identity.kind)) return false;
  return true;
}

/**
 * The policies that apply to `identity` on `targetName`, in config order. The first one
 * decides; the rest are returned so callers can explain shadowed policies.
 */
export function policiesForTarget(identity: Identity, targetName: string, policies: readonly PolicyConfig[]): PolicyConfig[] {
  return policies.filter((p) => subjectMatches(identity, p.subjects) && anyGlobMatches(p.targets, targetName));
}

/**
 * The one rule for access to a target at all: a policy that can only deny grants no access
 * (the targets listing, the tunnel channel, every protocol session).
 */
export function policyGrantsAccess(policy: PolicyConfig | undefined): policy is PolicyConfig {
  return policy !== undefined && policy.rules.some((r) => r.effect !== 'deny');
}

/** The deciding policy for this identity and target, if any. */
export function decidingPolicy(identity: Identity, targetName: string, policies: readonly PolicyConfig[]): PolicyConfig | undefined {
  return policies.find((p) => subjectMatches(identity, p.subjects) && anyGlobMatches(p.targets, targetName));
}

/**
 * Targets the identity can do anything on: its deciding policy has at least one rule
 * that is not a plain deny. Sorted by name.
 */
export function reachableTargets(identity: Identity, config: Pick<BrokerConfig, 'targets' | 'policies'>): TargetSummary[] {
  const out: TargetSummary[] = [];
  for (const [name, target] of Object.entries(config.targets)) {
    const policy = decidingPolicy(identity, name, config.policies);
    if (!policyGrantsAccess(policy)) continue;
    out.push({
      name,
      type: target.type,
      ...(target.type === 'postgres' ? { database: target.database } : {}),
      policies: [policy.name],
      allows: [...policy.rules.map((r, i) => describeRule(r, i)), ...(policy.requireReason ? ['a reason is required (--reason, or a tool call\'s reason)'] : [])],
    });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** e.g. `select, explain: allow`, `k8s delete: review by 1 of sre`, `everything else: deny`. */
export function describeRule(rule: RuleConfig, index = 0): string {
  const parts: string[] = [];
  if (rule.sql) parts.push(rule.sql.join(', '));
  if (rule.k8s) {
    const { verbs, resources, namespaces } = rule.k8s;
    let k = `k8s ${verbs?.length ? verbs.join(', ') : 'any verb'}`;
    if (resources?.length) k += ` on ${resources.join(', ')}`;
    if (namespaces?.length) k += ` in ${namespaces.join(', ')}`;
    parts.push(k);
  }
  if (rule.ssh) {
    const { commands, compound, tty, shell, subsystems, forwarding } = rule.ssh;
    const s: string[] = [];
    if (commands?.length) s.push(`ssh commands ${commands.join(', ')}${compound ? ' (also compound)' : ''}${tty ? ' (with a terminal)' : ''}`);
    if (shell) s.push('ssh shell');
    if (subsystems?.length) s.push(`ssh subsystems ${subsystems.join(', ')}`);
    if (forwarding) s.push('ssh forwarding');
    parts.push(s.length > 0 ? s.join(', ') : 'nothing over ssh');
  }
  const extra = Object.keys(rule.extra);
  if (extra.length > 0) parts.push(`when ${extra.join(', ')}`);
  const what = parts.length > 0 ? parts.join(' ') : index === 0 ? 'everything' : 'everything else';
  let effect: string = rule.effect;
  if (rule.effect === 'review' && rule.approvers) {
    effect = `review by ${rule.approvers.count} of ${rule.approvers.groups.join(', ')}`;
  }
  return `${what}: ${effect}`;
}
