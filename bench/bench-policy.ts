/**
 * What the agentgate targets enforce while measured (issue 20's conditions): a read-only
 * rule set, the audit log at `sync: normal` with intent-before-forwarding, and a masking
 * rule on another table than the one pgbench reads — so the masker and its catalog run on
 * every result and find nothing to mask, the common case. The in-process stack and the
 * broker child use exactly this.
 */
import type { MaskingConfig, PolicyConfig } from '../src/broker/config/types.js';

export function benchPolicies(target: string): PolicyConfig[] {
  return [
    {
      name: 'agents',
      subjects: { groups: ['ai-agents'] },
      targets: [target],
      // What a read-only agent gets: queries and the session/transaction chatter drivers send.
      rules: [{ name: 'read-only', sql: ['select', 'show', 'explain', 'transaction', 'session'], effect: 'allow', extra: {} }],
    },
  ];
}

/** The table the masking rule names; created by the bench beside pgbench's tables. */
export const MASKED_TABLE_SQL = 'create table if not exists bench_customers (id int primary key, email text not null)';

export function benchMasking(target: string): Record<string, MaskingConfig> {
  return { [target]: { columns: ['bench_customers.email'], detectors: [], style: 'partial' } };
}
