/**
 * Command-line options of `npm run bench` (node:util parseArgs; no dependency).
 */
import { parseArgs } from 'node:util';
import type { QueryMode } from './pgbench.js';
import { TARGET_NAMES, type TargetName } from './report.js';

export const USAGE = `usage: node dist/bench/run.js [options]   (or: npm run bench -- [options])
  --seconds N      length of each pgbench run (default 10)
  --scale N        pgbench -i scale factor (default 1)
  --rounds N       runs per configuration and target; the median by TPS is reported (default 1)
  --warmup N       seconds of warm-up per target and mode before measuring (default 1; 0 = none)
  --targets LIST   comma list of direct,agentgate,agentgate-split,tunnel-relay,tls-relay,node-relay,ssh,pgbouncer
                   (default direct,agentgate,agentgate-split,node-relay,ssh,pgbouncer; direct always
                   runs: ratios need it; the targets are judged on agentgate-split when it ran)
  --modes LIST     comma list of simple,prepared (default both)
  --clients LIST   comma list of client counts (default 1,8,32,64: the curve); -j is min(c, 2)
  --idle N         idle tunneled connections for the broker RSS check (default 100; 0 skips it)
  --many N         then grow to N connected clients and report broker RSS and fds (default 1000;
                   0 or ≤ --idle skips it)
  --churn N        broker RSS after N distinct statements and N/10 malformed ones, in a fresh
                   broker child (default 200000; 0 skips it)
  --audit-append N the audit append alone: CPU per event over N events in a child process
                   (default 50000; 0 skips it); set beside the broker CPU target
  --audit-events N audit export/verify at scale: fill a log with N events, time
                   agentgate audit export and audit verify (default 1000000; 0 skips it)
  --mask-scale N   masked read: pgbench_accounts at scale N (10 = 1M rows) direct, through
                   agentgate unmasked and with one masked column (default 10; 0 skips it)
  --pg-store-seconds N  PostgreSQL store vs SQLite store: audit appends/s (one broker, two
                   brokers on one chain) and pgbench -S -c 8 through agentgate with each
                   store, N seconds per cell (default 5; 0 skips it)
  --recording-mb N recording cost: cat of N MB through an SSH exec via the broker, recording
                   off vs on (3 runs each), and pgbench -S through agentgate with
                   recording: { results: 0 } vs { results: 10 } (default 20; 0 skips it)
  --json FILE      also write the results as JSON
  --profile FILE   CPU-profile this process (CLI end + broker) during the agentgate runs only;
                   writes FILE (.cpuprofile) and prints the top 10 functions by self time
  --strict         exit 1 when a target is missed (default: only on errors)
  -h, --help       this text`;

export interface Options {
  seconds: number;
  scale: number;
  rounds: number;
  warmup: number;
  targets: TargetName[];
  modes: QueryMode[];
  clients: number[];
  idle: number;
  many: number;
  churn: number;
  auditAppend: number;
  auditEvents: number;
  maskScale: number;
  pgStoreSeconds: number;
  recordingMb: number;
  json: string | undefined;
  profile: string | undefined;
  strict: boolean;
  help: boolean;
}

export class UsageProblem extends Error {}

function integer(name: string, v: string | undefined, def: number, min: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageProblem(`--${name} must be an integer ≥ ${min}, got "${v}"`);
  return n;
}

function list<T extends string>(name: string, v: string | undefined, allowed: readonly T[], def: readonly T[]): T[] {
  if (v === undefined) return [...def];
  const items = v.split(',').map((s) => s.trim()).filter(Boolean);
  for (const i of items) if (!allowed.includes(i as T)) throw new UsageProblem(`--${name}: unknown "${i}" (choose from ${allowed.join(', ')})`);
  if (items.length === 0) throw new UsageProblem(`--${name} needs at least one value`);
  return items as T[];
}

export function parseOptions(argv: string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        seconds: { type: 'string' },
        scale: { type: 'string' },
        rounds: { type: 'string' },
        warmup: { type: 'string' },
        targets: { type: 'string' },
        modes: { type: 'string' },
        clients: { type: 'string' },
        idle: { type: 'string' },
        many: { type: 'string' },
        churn: { type: 'string' },
        'audit-append': { type: 'string' },
        'audit-events': { type: 'string' },
        'mask-scale': { type: 'string' },
        'pg-store-seconds': { type: 'string' },
        'recording-mb': { type: 'string' },
        json: { type: 'string' },
        profile: { type: 'string' },
        strict: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    throw new UsageProblem((err as Error).message);
  }
  const cli = ['direct', 'agentgate', 'agentgate-split', 'tunnel-relay', 'tls-relay', 'node-relay', 'ssh', 'pgbouncer'] as const;
  const chosen = list('targets', values.targets, cli, ['direct', 'agentgate', 'agentgate-split', 'node-relay', 'ssh', 'pgbouncer']);
  // Table order is fixed; every ratio is against direct, so direct always runs.
  const targets = TARGET_NAMES.filter((t) => t === 'direct' || chosen.includes(t === 'ssh -L' ? 'ssh' : t));
  const clients = values.clients === undefined ? [1, 8, 32, 64] : values.clients.split(',').map((c) => integer('clients', c.trim(), 1, 1));
  return {
    seconds: integer('seconds', values.seconds, 10, 1),
    scale: integer('scale', values.scale, 1, 1),
    rounds: integer('rounds', values.rounds, 1, 1),
    warmup: integer('warmup', values.warmup, 1, 0),
    targets,
    modes: list('modes', values.modes, ['simple', 'prepared'] as const, ['simple', 'prepared']),
    clients,
    idle: integer('idle', values.idle, 100, 0),
    many: integer('many', values.many, 1000, 0),
    churn: integer('churn', values.churn, 200_000, 0),
    auditAppend: integer('audit-append', values['audit-append'], 50_000, 0),
    auditEvents: integer('audit-events', values['audit-events'], 1_000_000, 0),
    maskScale: integer('mask-scale', values['mask-scale'], 10, 0),
    pgStoreSeconds: integer('pg-store-seconds', values['pg-store-seconds'], 5, 0),
    recordingMb: integer('recording-mb', values['recording-mb'], 20, 0),
    json: values.json,
    profile: values.profile,
    strict: values.strict ?? false,
    help: values.help ?? false,
  };
}
