/** The Postgres approval tests' view of a stack: pending requests, waiting for a hold, the database directly, a client through the broker. */
import pg from 'pg';
import { eventually, TARGET, type PgStack } from '../postgres/stack.js';
import type { ApprovalRequest } from '../../src/broker/approvals/types.js';
import type { Identity } from '../../src/broker/identity/types.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';

export interface PgApprovalHelpers {
  /** Pending requests `viewer` may see. */
  pending(): ApprovalRequest[];
  /** The pending request whose statement contains `fragment` (other than those in `not`), once it exists. */
  held(fragment: string, not?: readonly string[]): Promise<ApprovalRequest>;
  /** One statement straight on the server (database app), its output trimmed. */
  direct(sql: string): Promise<string>;
  /** A connected node-postgres client through the broker. */
  client(): Promise<pg.Client>;
}

/** The approvals adversary suites' policy: reads and SET allowed; updates (granted for an hour), deletes (two approvers) and loads held for dba. */
export const APPROVAL_POLICIES: PolicyConfig[] = [
  {
    name: 'agents',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'reads', sql: ['select', 'set'], effect: 'allow', extra: {} },
      { name: 'updates-hour', sql: ['update'], effect: 'review', approvers: { groups: ['dba'], count: 1 }, grantSeconds: 3600, extra: {} },
      { name: 'deletes-two', sql: ['delete'], effect: 'review', approvers: { groups: ['dba'], count: 2 }, extra: {} },
      { name: 'loads', sql: ['insert', 'copy'], effect: 'review', approvers: { groups: ['dba'], count: 1 }, extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

/** What became of a statement sent through the broker: `'ran'`, or the error it got. */
export function failure(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'ran',
    (e: Error) => e.message,
  );
}

/** `stack` is read when a helper runs (the suite starts it in `before`). */
export function pgApprovalHelpers(stack: () => PgStack, viewer: Identity): PgApprovalHelpers {
  const pending = (): ApprovalRequest[] => stack().broker.approvals.list(viewer, {}).requests.filter((r) => r.status === 'pending');
  return {
    pending,
    held: (fragment, not = []) => eventually(`a pending request for ${fragment}`, () => pending().find((r) => r.statement.includes(fragment) && !not.includes(r.id))),
    direct: async (sql) => (await stack().pg.psql(sql, { database: 'app' })).trim(),
    async client() {
      const c = new pg.Client({ connectionString: stack().url });
      await c.connect();
      return c;
    },
  };
}
