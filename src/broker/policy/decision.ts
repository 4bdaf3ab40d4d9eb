/**
 * The protocol-neutral half of policy: find the deciding policy for an identity and a
 * target, walk its rules in order, and turn the first match into a decision. What a rule
 * "matches" is protocol-specific (sql-rules.ts, k8s-rules.ts) and passed in.
 *
 * Semantics (DESIGN.md): the first policy whose subjects and targets match decides; no
 * policy means deny; within it the first matching rule decides; no rule matching means deny.
 */
import type { ApproverSpec, Effect, PolicyConfig, RuleConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';
import { decidingPolicy } from '../access.js';

export interface PolicyDecision {
  effect: Effect;
  /** The deciding policy's name; null when none applies. */
  policy: string | null;
  /** The deciding rule's name; null when no rule matched (default deny). */
  rule: string | null;
  /** One sentence a user can act on, e.g. `rule agents-read#3 denies drop on public.users`. */
  reason: string;
  /** Present when effect is review. */
  approvers?: ApproverSpec;
  /** Review rules: how long an approval covers the same fingerprint (else one execution). */
  grantSeconds?: number;
  /** Review rules: the approval covers the statement's shape with any parameter values. */
  anyValues?: boolean;
}

/** Decides with `matches` telling whether a rule applies to the request at hand. */
export function decide(
  identity: Identity,
  targetName: string,
  policies: readonly PolicyConfig[],
  matches: (rule: RuleConfig) => boolean,
  describe: string,
): PolicyDecision {
  const policy = decidingPolicy(identity, targetName, policies);
  if (!policy) {
    return { effect: 'deny', policy: null, rule: null, reason: `no policy gives ${identity.sub} access to ${targetName}` };
  }
  return decideInPolicy(policy, matches, describe);
}

export function decideInPolicy(policy: PolicyConfig, matches: (rule: RuleConfig) => boolean, describe: string): PolicyDecision {
  for (const rule of policy.rules) {
    if (!matches(rule)) continue;
    const d: PolicyDecision = { effect: rule.effect, policy: policy.name, rule: rule.name, reason: `rule ${rule.name} ${verb(rule.effect)} ${describe}` };
    if (rule.effect === 'review' && rule.approvers) d.approvers = rule.approvers;
    if (rule.effect === 'review' && rule.grantSeconds !== undefined) d.grantSeconds = rule.grantSeconds;
    if (rule.effect === 'review' && rule.anyValues === true) d.anyValues = true;
    return d;
  }
  return { effect: 'deny', policy: policy.name, rule: null, reason: `no rule of policy ${policy.name} allows ${describe}` };
}

const RANK: Record<Effect, number> = { allow: 0, review: 1, deny: 2 };

/** Of several decisions (one per statement of a multi-statement string), the most restrictive; the first among equals. */
export function mostRestrictive(decisions: readonly PolicyDecision[]): PolicyDecision | undefined {
  let worst: PolicyDecision | undefined;
  for (const d of decisions) if (!worst || RANK[d.effect] > RANK[worst.effect]) worst = d;
  return worst;
}

function verb(effect: Effect): string {
  return effect === 'allow' ? 'allows' : effect === 'deny' ? 'denies' : 'holds for review';
}
