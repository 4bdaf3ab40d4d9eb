/**
 * What one audit event costs the broker: CPU per append (chain, canonical JSON, hash, the
 * journal write, the writer thread's SQLite insert), measured in a child process of its
 * own. Every statement through the Postgres proxy writes two (its intent before it is
 * forwarded, its outcome before ReadyForQuery), so this bounds from below what the broker
 * can spend per statement — set beside the floor's back relay in the CPU targets.
 */
import { fileURLToPath } from 'node:url';
import type { AuditAppendInput, AuditAppendReady } from './audit-append-child.js';
import { endJsonChild, spawnJsonChild } from './procs.js';

export interface AuditAppendResult {
  events: number;
  group: number;
  eventBytes: number;
  cpuUsPerEvent: number;
  systemShare: number;
}

export async function measureAuditAppend(events: number, group = 8): Promise<AuditAppendResult> {
  const script = fileURLToPath(new URL('./audit-append-child.js', import.meta.url));
  // The broker's flags (broker-process.ts), so V8 behaves as it does in the broker.
  const { child, ready } = spawnJsonChild<AuditAppendReady>(script, { events, group } satisfies AuditAppendInput, 'audit append child', ['--liftoff-only', '--max-semi-space-size=4']);
  try {
    const r = await ready;
    return { events: r.events, group, eventBytes: r.eventBytes, cpuUsPerEvent: (r.userUs + r.systemUs) / r.events, systemShare: r.systemUs / Math.max(1, r.userUs + r.systemUs) };
  } finally {
    await endJsonChild(child);
  }
}

export function auditAppendLine(r: AuditAppendResult): string {
  return `audit append alone (bench/audit-append.ts): ${r.cpuUsPerEvent.toFixed(1)} µs CPU per event (${(r.systemShare * 100).toFixed(0)}% kernel; writer thread included; ${r.events} query.intent-shaped events of ${r.eventBytes} bytes in groups of ${r.group}, sync normal); a statement writes two`;
}
