/**
 * Policy's one entry point for a neutral request: each protocol adapter describes what
 * its client asked for in policy's terms, and gets a PolicyDecision back. New protocols
 * add their request shape here.
 */
import type { PolicyConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';
import type { PolicyDecision } from './decision.js';
import { decideSsh, type SshRequest } from './ssh-rules.js';
import { decideK8s } from './k8s-rules.js';
import type { K8sRequestInfo } from './k8s-request.js';

export type PolicyRequest = { protocol: 'ssh'; ssh: SshRequest } | { protocol: 'k8s'; info: K8sRequestInfo };

export function decideRequest(identity: Identity, target: string, policies: readonly PolicyConfig[], req: PolicyRequest): PolicyDecision {
  switch (req.protocol) {
    case 'ssh':
      return decideSsh(identity, target, policies, req.ssh);
    case 'k8s':
      return decideK8s(identity, target, policies, req.info);
  }
}
