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
  /** agentgate-split: that CPU per transaction by process (`CLI`, `broker`). */
  cpuPartsUsPerTxn?: Record<string, number>;
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
  /** -c 8: agentgate keeps at least this share of the node-relay floor's TPS. */
  minTpsRatioToFloorC8: 0.85,
  /** -c 1: agentgate adds at most the floor's added latency plus this. */
  maxLatencyOverFloorUsC1: 40,
  /** -c 8, agentgate-split: CPU per select-only transaction, by process. */
  maxBrokerCpuUsC8: 60,
  maxCliCpuUsC8: 25,
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

export function ratioToFloor(samples: Sample[], s: Sample): number | undefined {
  const f = find(samples, s.mode, s.clients, 'node-relay');
  return f?.tps && s.tps !== undefined ? s.tps / f.tps : undefined;
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
  const rows: string[][] = [['config', 'target', 'TPS', 'avg lat ms', 'TPS/direct', 'TPS/floor', '+lat µs', 'note']];
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
      s.target === 'direct' || s.target === 'node-relay' ? '' : fmtRatio(ratioToFloor(samples, s)),
      added === undefined || s.target === 'direct' ? '' : `${added >= 0 ? '+' : ''}${added.toFixed(0)}`,
      s.error ?? s.note ?? (s.roundsTps.length > 1 ? `rounds: ${s.roundsTps.map((t) => t.toFixed(0)).join(', ')}` : ''),
    ]);
    last = label;
  }
  return pad(rows);
}

const fmtRatio = (r: number | undefined): string => (r === undefined ? '' : `${r.toFixed(2)}×`);

/** The agentgate row the targets judge: the split one (CLI and broker in their own processes, as deployed) when it ran. */
function judged(samples: Sample[], mode: QueryMode, clients: number): Sample | undefined {
  const split = find(samples, mode, clients, 'agentgate-split');
  return split?.tps !== undefined ? split : find(samples, mode, clients, 'agentgate');
}

/**
 * `auditUsPerEvent`: the audit append alone (audit-append.ts); the broker CPU goal shows
 * the floor's back relay plus two appends beside the target, what no amount of work
 * elsewhere in the broker gets below.
 */
/** What the floor's hop in the same place costs, and with the two audit appends a statement makes (broker). */
function hopNote(hop: string, floorHop: number | undefined, auditUsPerEvent: number | undefined): string {
  const bits: string[] = [];
  if (floorHop !== undefined) bits.push(`the floor's ${hop} relay: ${floorHop.toFixed(0)} µs`);
  if (auditUsPerEvent !== undefined) bits.push(`two audit appends alone: ${(2 * auditUsPerEvent).toFixed(0)} µs`);
  if (floorHop !== undefined && auditUsPerEvent !== undefined) bits.push(`together ${(floorHop + 2 * auditUsPerEvent).toFixed(0)} µs`);
  return bits.length > 0 ? ` (${bits.join('; ')})` : '';
}

export function judge(samples: Sample[], rss: RssResult | undefined, modes: QueryMode[], auditUsPerEvent?: number): Goal[] {
  const goals: Goal[] = [];
  for (const mode of modes) {
    const a = judged(samples, mode, 8);
    const ratio = a ? ratioToFloor(samples, a) : undefined;
    const min = LIMITS.minTpsRatioToFloorC8;
    const floor = find(samples, mode, 8, 'node-relay');
    goals.push({
      name: `-M ${mode} -c 8: ${a?.target ?? 'agentgate'} ≥ ${min}× the node-relay floor's TPS`,
      measured: ratio === undefined ? 'not measured (needs node-relay too)' : `${a!.tps!.toFixed(0)} vs ${floor!.tps!.toFixed(0)} TPS = ${ratio.toFixed(2)}×`,
      pass: ratio === undefined ? undefined : ratio >= min,
      ...(ratio !== undefined && ratio < min ? { shortBy: `needs ${Math.ceil(min * floor!.tps!)} TPS` } : {}),
    });
  }
  for (const mode of modes) {
    const a = judged(samples, mode, 1);
    const f = find(samples, mode, 1, 'node-relay');
    const added = a ? addedLatencyUs(samples, a) : undefined;
    const floorAdded = f ? addedLatencyUs(samples, f) : undefined;
    const over = LIMITS.maxLatencyOverFloorUsC1;
    const max = floorAdded === undefined ? undefined : floorAdded + over;
    goals.push({
      name: `-M ${mode} -c 1: ${a?.target ?? 'agentgate'} adds ≤ the floor's added latency + ${over} µs`,
      measured: added === undefined || max === undefined ? 'not measured (needs node-relay too)' : `+${added.toFixed(0)} µs vs the floor's +${floorAdded!.toFixed(0)} µs`,
      pass: added === undefined || max === undefined ? undefined : added <= max,
      ...(added !== undefined && max !== undefined && added > max ? { shortBy: `${(added - max).toFixed(0)} µs over` } : {}),
    });
  }
  for (const mode of modes) {
    const split = find(samples, mode, 8, 'agentgate-split');
    const parts = split?.cpuPartsUsPerTxn;
    // The floor's hop in the same place (front = where the CLI end is, back = the broker's):
    // what a process doing nothing but relaying bytes costs there, for scale.
    const hops = find(samples, mode, 8, 'node-relay')?.cpuPartsUsPerTxn;
    for (const [part, max, hop] of [['broker', LIMITS.maxBrokerCpuUsC8, 'back'], ['CLI', LIMITS.maxCliCpuUsC8, 'front']] as const) {
      const us = parts?.[part];
      const floorHop = hops?.[hop];
      goals.push({
        name: `-M ${mode} -c 8: ${part} CPU ≤ ${max} µs per transaction (agentgate-split)`,
        measured: us === undefined ? 'not measured (needs agentgate-split)' : `${us.toFixed(0)} µs${hopNote(hop, floorHop, part === 'broker' ? auditUsPerEvent : undefined)}`,
        pass: us === undefined ? undefined : us <= max,
        ...(us !== undefined && us > max ? { shortBy: `${(us - max).toFixed(0)} µs over (${(us / max).toFixed(1)}×)` } : {}),
      });
    }
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
