/**
 * Turning measurements into the printed table and the issue's targets (PASS/FAIL).
 * Pure functions: run.ts measures, this module only formats and judges.
 */
import type { QueryMode } from './pgbench.js';
import type { RssResult } from './broker-rss.js';
import type { ChurnResult } from './broker-churn.js';

export const TARGET_NAMES = ['direct', 'agentgate', 'agentgate-split', 'tunnel-relay', 'tls-relay', 'node-relay', 'ssh -L', 'pgbouncer'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

export interface Sample {
  mode: QueryMode;
  clients: number;
  threads: number;
  target: TargetName;
  /** Median run by TPS when there were several rounds. */
  tps: number | undefined;
  latencyMs: number | undefined;
  transactions: number | undefined;
  /** Every round's TPS, in run order. */
  roundsTps: number[];
  /** agentgate only: audit events the broker appended during the run. */
  auditEvents?: number;
  /** agentgate paths: CPU of the agentgate processes (CLI end + broker) per transaction. */
  agentgateCpuUsPerTxn?: number;
  /** Share of that CPU spent in the kernel (system time). */
  agentgateSystemCpuShare?: number;
  note?: string;
  error?: string;
}

export interface Goal {
  name: string;
  /** What was measured, in words. */
  measured: string;
  pass: boolean | undefined;
  /** How far off, when it failed. */
  shortBy?: string;
}

export const LIMITS = {
  /** -c 8: agentgate keeps at least this share of direct TPS. */
  minTpsRatioC8: 0.6,
  /** -c 1: agentgate adds at most this much average latency. */
  maxAddedLatencyUsC1: 100,
  /** RSS of the broker holding the idle connections. */
  maxBrokerRssMb: 200,
} as const;

export const configLabel = (s: { mode: QueryMode; clients: number; threads: number }): string =>
  `-M ${s.mode} -c ${s.clients} -j ${s.threads}`;

function find(samples: Sample[], mode: QueryMode, clients: number, target: TargetName): Sample | undefined {
  return samples.find((s) => s.mode === mode && s.clients === clients && s.target === target);
}

export function ratioToDirect(samples: Sample[], s: Sample): number | undefined {
  const d = find(samples, s.mode, s.clients, 'direct');
  return d?.tps && s.tps !== undefined ? s.tps / d.tps : undefined;
}

export function addedLatencyUs(samples: Sample[], s: Sample): number | undefined {
  const d = find(samples, s.mode, s.clients, 'direct');
  return d?.latencyMs !== undefined && s.latencyMs !== undefined ? (s.latencyMs - d.latencyMs) * 1000 : undefined;
}

function pad(cells: string[][]): string {
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  // Text columns (the first two and the last) left-aligned, the numbers right-aligned.
  const text = (i: number): boolean => i < 2 || i === widths.length - 1;
  return cells.map((r) => r.map((c, i) => (text(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd()).join('\n');
}

export function resultsTable(samples: Sample[]): string {
  const rows: string[][] = [['config', 'target', 'TPS', 'avg lat ms', 'TPS/direct', '+lat µs', 'note']];
  let last = '';
  for (const s of samples) {
    const label = configLabel(s);
    const ratio = ratioToDirect(samples, s);
    const added = addedLatencyUs(samples, s);
    rows.push([
      label === last ? '' : label,
      s.target,
      s.error ? 'ERROR' : s.tps === undefined ? 'skipped' : s.tps.toFixed(0),
      s.latencyMs === undefined ? '' : s.latencyMs.toFixed(3),
      ratio === undefined ? '' : `${(ratio * 100).toFixed(1)}%`,
      added === undefined || s.target === 'direct' ? '' : `${added >= 0 ? '+' : ''}${added.toFixed(0)}`,
      s.error ?? s.note ?? (s.roundsTps.length > 1 ? `rounds: ${s.roundsTps.map((t) => t.toFixed(0)).join(', ')}` : ''),
    ]);
    last = label;
  }
  return pad(rows);
}

/** What the node-relay floor (no agentgate work at all) reached in the same cell, when it ran. */
function floorNote(samples: Sample[], mode: QueryMode, clients: number): string {
  const f = find(samples, mode, clients, 'node-relay');
  if (!f) return '';
  if (clients === 1) {
    const added = addedLatencyUs(samples, f);
    return added === undefined ? '' : `; the node-relay floor alone adds +${added.toFixed(0)} µs`;
  }
  const ratio = ratioToDirect(samples, f);
  return ratio === undefined ? '' : `; the node-relay floor alone reaches ${(ratio * 100).toFixed(1)}%`;
}

export function judge(samples: Sample[], rss: RssResult | undefined, modes: QueryMode[]): Goal[] {
  const goals: Goal[] = [];
  for (const mode of modes) {
    const a = find(samples, mode, 8, 'agentgate');
    const ratio = a ? ratioToDirect(samples, a) : undefined;
    const min = LIMITS.minTpsRatioC8;
    goals.push({
      name: `-M ${mode} -c 8: agentgate ≥ ${min * 100}% of direct TPS`,
      measured: ratio === undefined ? 'not measured' : `${(ratio * 100).toFixed(1)}%`,
      pass: ratio === undefined ? undefined : ratio >= min,
      ...(ratio !== undefined && ratio < min
        ? { shortBy: `${((min - ratio) * 100).toFixed(1)} points short (needs ${Math.ceil((min * (find(samples, mode, 8, 'direct')?.tps ?? 0)))} TPS)${floorNote(samples, mode, 8)}` }
        : {}),
    });
  }
  for (const mode of modes) {
    const a = find(samples, mode, 1, 'agentgate');
    const added = a ? addedLatencyUs(samples, a) : undefined;
    const max = LIMITS.maxAddedLatencyUsC1;
    goals.push({
      name: `-M ${mode} -c 1: agentgate adds ≤ ${max} µs avg latency`,
      measured: added === undefined ? 'not measured' : `+${added.toFixed(0)} µs`,
      pass: added === undefined ? undefined : added <= max,
      ...(added !== undefined && added > max ? { shortBy: `${(added - max).toFixed(0)} µs over (${(added / max).toFixed(1)}× the budget)${floorNote(samples, mode, 1)}` } : {}),
    });
  }
  const maxRss = LIMITS.maxBrokerRssMb;
  goals.push({
    name: `broker RSS < ${maxRss} MB holding ${rss?.connections ?? 100} idle tunneled connections`,
    measured: rss ? `${rss.heldMb.toFixed(1)} MB (baseline ${rss.baselineMb.toFixed(1)} MB, ~${rss.perConnectionKb.toFixed(0)} kB/conn, peak ${rss.peakMb.toFixed(1)} MB)` : 'not measured',
    pass: rss ? rss.heldMb < maxRss : undefined,
    ...(rss && rss.heldMb >= maxRss ? { shortBy: `${(rss.heldMb - maxRss).toFixed(1)} MB over` } : {}),
  });
  return goals;
}

/** Broker RSS after the churn workload (bench/broker-churn.ts), against the same budget. */
export function churnGoals(churn: ChurnResult | undefined): Goal[] {
  if (!churn) return [];
  const max = LIMITS.maxBrokerRssMb;
  const goal = (name: string, mb: number): Goal => ({
    name: `broker RSS < ${max} MB ${name}`,
    measured: `${mb.toFixed(1)} MB (baseline ${churn.baselineMb.toFixed(1)} MB, peak ${churn.peakMb.toFixed(1)} MB)`,
    pass: mb < max,
    ...(mb >= max ? { shortBy: `${(mb - max).toFixed(1)} MB over` } : {}),
  });
  return [
    goal(`after ${churn.statements} distinct statements`, churn.afterStatementsMb),
    goal(`after ${churn.malformed} more malformed statements`, churn.afterMalformedMb),
  ];
}

export function goalsTable(goals: Goal[]): string {
  return goals
    .map((g) => `${g.pass === undefined ? 'N/A ' : g.pass ? 'PASS' : 'FAIL'}  ${g.name}: ${g.measured}${g.shortBy ? ` — ${g.shortBy}` : ''}`)
    .join('\n');
}
