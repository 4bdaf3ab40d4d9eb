/**
 * The audit append alone, in a process of its own (so its CPU, writer thread included, is
 * nothing else's): a SQLite store with `sync: normal` — the journal write per group, the
 * writer thread's inserts — fed events shaped like the Postgres proxy's query.intent, in
 * groups as concurrent sessions make them. Run by audit-append.ts (spawnJsonChild).
 */
import { openSqliteAuditStore } from '../src/broker/audit/sqlite-store.js';
import { makeTempDir } from '../test/broker/fixtures.js';
import type { NewAuditEvent } from '../src/broker/audit/store.js';
import { readJsonInput, replyReady, runJsonChild } from './json-child.js';

export interface AuditAppendInput {
  events: number;
  /** Events appended before awaiting them all (sessions writing at once). */
  group: number;
}

export interface AuditAppendReady {
  events: number;
  userUs: number;
  systemUs: number;
  /** Canonical text length of one event, bytes. */
  eventBytes: number;
}

/** A query.intent as the proxy writes it for `pgbench -S -M simple` (a select-only rule, a read of one table). */
function intent(i: number): NewAuditEvent {
  return {
    session: '6f1d2c3b-8a4e-4f5a-9b6c-7d8e9f0a1b2c',
    actor: { sub: 'agent-bench', name: null, groups: ['ai-agents'], kind: 'agent' },
    target: 'pg-bench',
    type: 'query.intent',
    detail: {
      id: i,
      sql: `SELECT abalance FROM pgbench_accounts WHERE aid = ${(i * 7919) % 100000};`,
      protocol: 'simple',
      params: [],
      classification: { kinds: ['select'], reads: ['public.pgbench_accounts'], writes: [], flags: [], statements: 1 },
    },
    decision: { effect: 'allow', rule: 'read-only' },
    outcome: null,
  };
}

async function main(): Promise<void> {
  const { input } = await readJsonInput<AuditAppendInput>();
  const tmp = await makeTempDir('agentgate-bench-audit-append-');
  const store = await openSqliteAuditStore(`${tmp.path}/audit.db`, { sync: 'normal' });
  try {
    // Warm-up (JIT, the database's first pages), not counted.
    for (let i = 0; i < 2000; i += input.group) await Promise.all(Array.from({ length: input.group }, (_, j) => store.append(intent(i + j))));
    const before = process.cpuUsage();
    let last: Awaited<ReturnType<typeof store.append>> | undefined;
    for (let i = 0; i < input.events; i += input.group) {
      const all = await Promise.all(Array.from({ length: Math.min(input.group, input.events - i) }, (_, j) => store.append(intent(i + j))));
      last = all[all.length - 1];
    }
    // The writer thread's inserts are part of the cost: wait until the database has them all.
    await store.close();
    const used = process.cpuUsage(before);
    const { hash: _hash, ...unhashed } = last!;
    replyReady({ events: input.events, userUs: used.user, systemUs: used.system, eventBytes: Buffer.byteLength(JSON.stringify(unhashed)) } satisfies AuditAppendReady);
  } finally {
    await tmp.remove();
  }
}

runJsonChild('audit-append-child', main);
