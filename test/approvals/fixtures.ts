/** Shared pieces for the approvals tests: identities, a held-statement request, a real audit store. */
import { join } from 'node:path';
import type { Identity } from '../../src/broker/identity/types.js';
import type { NewApprovalRequest } from '../../src/broker/approvals/types.js';
import { openSqliteAuditStore, type SqliteAuditStore } from '../../src/broker/audit/sqlite-store.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { TARGET as SSH_TARGET } from '../ssh/stack.js';

export function identity(sub: string, groups: string[], name?: string): Identity {
  return {
    sub,
    groups,
    kind: groups.includes('ai-agents') ? 'agent' : 'human',
    issuer: 'https://idp.test',
    expiresAt: Math.floor(Date.now() / 1000) + 3600,
    ...(name ? { name } : {}),
  };
}

export const AGENT = identity('agent-7', ['ai-agents'], 'Agent Seven');
export const BOB = identity('bob', ['dba'], 'Bob');
export const CAROL = identity('carol', ['dba']);
export const EVE = identity('eve', ['dev']);
export const SAM = identity('sam', ['security']);

/** A held UPDATE by `requester` (default the agent) that `dba` reviews. */
export function held(over: Partial<NewApprovalRequest> = {}, requester: Identity = AGENT): NewApprovalRequest {
  return {
    requester: { sub: requester.sub, name: requester.name ?? null, groups: requester.groups, kind: requester.kind },
    session: 'sess-1',
    target: 'pg-prod',
    protocol: 'postgres',
    statement: "UPDATE users SET plan = 'pro' WHERE id = 42",
    classification: { kinds: ['update'], writes: ['public.users'], flags: [] },
    policy: 'agents',
    rule: 'agents#2',
    reason: 'update needs review by dba',
    approvers: { groups: ['dba'], count: 1 },
    fingerprint: 'fp-update-users',
    ...over,
  };
}

export async function openStore(dir: string, name = 'audit.db'): Promise<SqliteAuditStore> {
  return openSqliteAuditStore(join(dir, name));
}

export async function allEvents(store: SqliteAuditStore): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for await (const r of store.read({})) out.push(r);
  return out;
}

/**
 * The promise's value if it has settled already, else `'unsettled'`: no timer. A decision
 * settles the request's outcome before `decide()` returns, so right after it returns this
 * says whether the decision released the statement. (Promise.race subscribes to `p`
 * first, so a settled `p` wins over the already-resolved marker.)
 */
export function settledNow<T>(p: Promise<T>): Promise<T | 'unsettled'> {
  return Promise.race([p, Promise.resolve('unsettled' as const)]);
}

/** SSH: `printenv …` is held for one reviewer of group sre; everything else is denied. */
export const HELD_PRINTENV_SSH: PolicyConfig[] = [
  {
    name: 'agents-ssh',
    subjects: { groups: ['ai-agents'] },
    targets: [SSH_TARGET],
    rules: [
      { name: 'held-printenv', ssh: { commands: ['printenv *'] }, effect: 'review', approvers: { groups: ['sre'], count: 1 }, extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];
