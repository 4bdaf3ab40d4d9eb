/** Who may read the whole audit log and every receipt: members of `auditors.groups`. */
import type { BrokerConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';

export function isAuditor(identity: Pick<Identity, 'groups'>, config: Pick<BrokerConfig, 'auditors'>): boolean {
  return config.auditors.groups.some((g) => identity.groups.includes(g));
}
