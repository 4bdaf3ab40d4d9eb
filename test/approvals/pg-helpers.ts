/** The Postgres approval tests' view of a stack: pending requests, waiting for a hold, the database directly, a client through the broker. */
import pg from 'pg';
import { eventually, type PgStack } from '../postgres/stack.js';
import type { ApprovalRequest } from '../../src/broker/approvals/types.js';
import type { Identity } from '../../src/broker/identity/types.js';

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
