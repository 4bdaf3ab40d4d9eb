/** Whether an identity may use a target at all, in the shape the Postgres proxy takes. */
import type { BrokerConfig } from './config/types.js';
import type { Identity } from './identity/types.js';
import type { TargetAccess } from './postgres/proxy-session.js';
import { decidingPolicy, policyGrantsAccess } from './access.js';

export function accessFor(identity: Identity, target: string, config: BrokerConfig): TargetAccess {
  const policy = decidingPolicy(identity, target, config.policies);
  // The one rule (access.ts): a policy that can only deny grants no access.
  if (policyGrantsAccess(policy)) return { allowed: true, policy: policy.name };
  return {
    allowed: false,
    message: `agentgate: ${identity.sub} may not use target "${target}": no policy matches this identity and target`,
  };
}
