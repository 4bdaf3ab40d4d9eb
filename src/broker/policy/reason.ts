/**
 * `require_reason: true` on a policy: what that policy would let run (allow or review) is
 * refused when the session or the call gave no reason. Protocol-neutral: the Postgres gate
 * and the Kubernetes proxy pass their decisions through it.
 */
import type { PolicyConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';
import { decidingPolicy } from '../access.js';
import type { PolicyDecision } from './decision.js';

export const REQUIRE_REASON_RULE = 'require_reason';

/** Whether the policy that decides this identity's access to the target requires a reason. */
export function policyRequiresReason(identity: Identity, target: string, policies: readonly PolicyConfig[]): boolean {
  return decidingPolicy(identity, target, policies)?.requireReason === true;
}

/** The decision, or — when a reason is required and none was given — its refusal. */
export function withReasonRequirement<D extends PolicyDecision>(decision: D, required: boolean, reason: string | undefined): D {
  if (!required || reason !== undefined || decision.effect === 'deny') return decision;
  const { approvers: _approvers, grantSeconds: _grant, anyValues: _any, ...rest } = decision;
  return {
    ...rest,
    effect: 'deny',
    rule: REQUIRE_REASON_RULE,
    reason: `policy ${decision.policy ?? ''} requires a reason and none was given: give one with --reason or AGENTGATE_REASON (agentgate mcp: the tool call's "reason")`,
  } as D;
}
