/**
 * `npm run bench`: PostgreSQL data-path throughput and latency through agentgate, next to
 * a direct connection and the usual alternatives (an `ssh -L` tunnel, pgbouncer), all
 * against one real PostgreSQL 15 on this machine, and the issue's targets as PASS/FAIL.
 *
 * One invocation starts everything it needs and tears it all down again, on error and on
 * Ctrl-C too. Progress goes to stderr, the results to stdout.
 */
import { writeFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { startPgStack, TARGET, type PgStack } from '../test/postgres/stack.js';
import { execSql, initPgbench, probe, runPgbench, warmPgbench, pgbenchArgs, type Endpoint, type PgbenchResult, type QueryMode } from './pgbench.js';
import { sshAvailable, startSshForward } from './ssh-forward.js';
import { pgbouncerAvailable, startPgbouncer } from './pgbouncer.js';
import { startBrokerProcess } from './broker-process.js';
import { measureBrokerRss, type RssResult } from './broker-rss.js';
import { measureBrokerChurn, type ChurnResult } from './broker-churn.js';
import { abortRuns } from './procs.js';
import { startProfiler, type Profiler } from './profile.js';
import { describeMachine, machineLines } from './machine.js';
import { MASKING_LIMIT, maskingReadLines, runMaskingReadBench, type MaskingReadResult } from './masking-read.js';
import { pgStoreLines, runPgStoreBench, type PgStoreBenchResult } from './pg-store.js';
import { auditAppendLine, measureAuditAppend, type AuditAppendResult } from './audit-append.js';
import { AUDIT_LIMITS, auditExportLines, runAuditExportBench, type AuditExportBenchResult } from './audit-export.js';
import { parseOptions, USAGE, UsageProblem, type Options } from './options.js';
import { churnGoals, configLabel, goalsTable, judge, resultsTable, addedLatencyUs, ratioToDirect, LIMITS, type Sample, type TargetName } from './report.js';
import { startNodeRelay } from './node-relay.js';
import { startTunnelRelay } from './tunnel-relay.js';
import { benchMasking, benchPolicies, MASKED_TABLE_SQL } from './bench-policy.js';
import { recordingLines, runPgResultsBench, runSshRecordingBench, type PgResultsResult, type SshRecordingResult } from './recording.js';
import { startTlsRelay } from './tls-relay.js';

const say = (msg: string): void => {
  process.stderr.write(`[bench] ${msg}\n`);
};

/** Undo steps, run last-first exactly once: at the end, on error, or on a signal. */
const cleanups: { what: string; fn: () => Promise<void> }[] = [];
let cleaning: Promise<void> | undefined;
let signalled = false;
const interrupted = (): boolean => signalled;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c.fn();
      } catch (err) {
        say(`cleanup of ${c.what} failed: ${(err as Error).message}`);
      }
    }
  })();
  return cleaning;
}
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.once(sig, () => {
    signalled = true;
    say(`${sig}: stopping everything`);
    // The measuring loop sees the abort at its next run() and stops there.
    // The process exits in finally, whatever abortRuns or cleanup did.
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- see above
    void abortRuns(new Error(`interrupted by ${sig}`))
      .then(cleanup)
      .finally(() => process.exit(code));
  });
}

/** One way to reach PostgreSQL, and what can be observed about the agentgate processes on it. */
interface Path {
  endpoint(mode: QueryMode): Endpoint;
  /** CPU (µs) spent so far by the agentgate processes on this path. */
  cpuUs?: () => Promise<CpuSample>;
  /** The broker's audit head (events so far), when the broker is in this process. */
  auditSeq?: () => number;
  note?: string;
}

/** CPU time (µs) so far; `parts` splits it by process when there is more than one. */
interface CpuSample {
  user: number;
  system: number;
  parts?: Record<string, number>;
}

const ownCpuUs = (): CpuSample => process.cpuUsage();

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageProblem)) throw err;
    process.stderr.write(`${err.message}\n${USAGE}\n`);
    return 2;
  }
  if (opts.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const script = relative(process.cwd(), process.argv[1] ?? 'dist/bench/run.js') || process.argv[1];
  const command = ['node', script, ...process.argv.slice(2)].join(' ');
  const via = process.env['npm_lifecycle_event'] === 'bench' ? ' (via npm run bench)' : '';

  say('starting PostgreSQL and the agentgate stack (broker + connect session)');
  const stack: PgStack = await startPgStack({
    // The 1,000-client check runs while pgbouncer still holds its pools (up to 120 server
    // connections: transaction 20 + session 100), so leave room for both.
    pg: { maxConnections: Math.max(200, opts.many + 200) },
    policies: benchPolicies(TARGET),
    config: { masking: benchMasking(TARGET) },
  });
  cleanups.push({ what: 'agentgate stack and PostgreSQL', fn: () => stack.close() });
  const pg = stack.pg;
  const machine = await describeMachine(pg);

  const direct: Endpoint = { host: '127.0.0.1', port: pg.port, user: pg.user, password: pg.password, database: pg.database };
  const paths = new Map<TargetName, Path>();
  const skipped = new Map<TargetName, string>();
  const notes: string[] = [];
  paths.set('direct', { endpoint: () => direct });
  if (opts.targets.includes('agentgate')) {
    paths.set('agentgate', {
      endpoint: () => ({ ...direct, port: stack.port, user: 'agent', password: stack.session.secret }),
      cpuUs: async () => ownCpuUs(),
      auditSeq: () => stack.broker.audit.head().seq,
    });
  }

  say(`pgbench -i -s ${opts.scale} as ${pg.user}`);
  await initPgbench(direct, opts.scale);
  await execSql(direct, MASKED_TABLE_SQL);

  const brokerInput = { issuer: stack.issuer.issuer, target: TARGET, pgPort: pg.port, pgUser: pg.user, pgPassword: pg.password, pgDatabase: pg.database };
  const agentToken = (): Promise<string> => stack.issuer.sign({ sub: 'agent-bench', groups: ['ai-agents'] }, { expiresIn: 3600 });
  if (opts.targets.includes('agentgate-split')) {
    say('starting a broker child process for agentgate-split');
    const broker = await startBrokerProcess(brokerInput);
    cleanups.push({ what: 'broker child (split)', fn: () => broker.close() });
    // The CLI end in a process of its own too, as `agentgate connect` runs it.
    const cli = await broker.connectChild(await agentToken(), TARGET);
    paths.set('agentgate-split', {
      endpoint: () => ({ ...direct, port: cli.port, user: 'agent', password: cli.secret }),
      cpuUs: async () => {
        const [a, b] = await Promise.all([cli.cpuUs(), broker.cpuUs()]);
        return { user: a.user + b.user, system: a.system + b.system, parts: { CLI: a.user + a.system, broker: b.user + b.system } };
      },
    });
  }
  if (opts.targets.includes('node-relay')) {
    say('starting the node-relay floor (two bare Node relays, TLS between them)');
    const relay = await startNodeRelay(pg.port);
    cleanups.push({ what: 'node relays', fn: () => relay.close() });
    paths.set('node-relay', { endpoint: () => ({ ...direct, port: relay.port }), cpuUs: () => relay.cpuUs() });
  }
  if (opts.targets.includes('tunnel-relay')) {
    say("starting tunnel-relay (agentgate's tunnel alone, two processes, no proxy behind it)");
    const relay = await startTunnelRelay(pg.port);
    cleanups.push({ what: 'tunnel relays', fn: () => relay.close() });
    paths.set('tunnel-relay', { endpoint: () => ({ ...direct, port: relay.port }), cpuUs: () => relay.cpuUs() });
  }
  if (opts.targets.includes('tls-relay')) {
    say('starting tls-relay (one TLS connection per local connection, via HTTPS upgrade, then bare pipes)');
    const relay = await startTlsRelay(pg.port);
    cleanups.push({ what: 'tls relays', fn: () => relay.close() });
    paths.set('tls-relay', { endpoint: () => ({ ...direct, port: relay.port }), cpuUs: () => relay.cpuUs() });
  }
  if (opts.targets.includes('ssh -L')) {
    if (await sshAvailable()) {
      say('starting sshd and ssh -L');
      const fwd = await startSshForward(pg.port);
      cleanups.push({ what: 'sshd and ssh -L', fn: () => fwd.close() });
      paths.set('ssh -L', { endpoint: () => ({ ...direct, port: fwd.port }) });
      machine.openssh = fwd.version;
    } else {
      skipped.set('ssh -L', 'sshd/ssh not installed');
      say('ssh -L baseline skipped: /usr/sbin/sshd or ssh is not installed');
    }
  }
  if (opts.targets.includes('pgbouncer')) {
    if (pgbouncerAvailable()) {
      say('starting pgbouncer');
      const b = await startPgbouncer({ pgPort: pg.port, user: pg.user, password: pg.password, database: pg.database });
      cleanups.push({ what: 'pgbouncer', fn: () => b.close() });
      paths.set('pgbouncer', { endpoint: (mode) => ({ ...direct, port: b.port, database: b.database(mode) }) });
      machine.pgbouncer = b.version;
      for (const m of opts.modes) {
        if (b.poolMode(m) !== 'transaction') {
          notes.push(`pgbouncer runs -M ${m} in ${b.poolMode(m)} pooling: ${b.version} has no max_prepared_statements (1.21+), and transaction pooling breaks protocol-level prepared statements`);
        }
      }
    } else {
      skipped.set('pgbouncer', 'pgbouncer not installed');
      say('pgbouncer baseline skipped: /usr/sbin/pgbouncer is not installed');
    }
  }

  const active = opts.targets.filter((t) => paths.has(t));
  for (const t of active) {
    for (const m of opts.modes) {
      if (!(await probe(paths.get(t)!.endpoint(m)))) throw new Error(`${t} (${m}) does not answer "select 1"`);
    }
  }
  if (opts.warmup > 0) {
    const c = Math.max(...opts.clients);
    for (const t of active) {
      for (const mode of opts.modes) {
        say(`warm-up ${t} -M ${mode} (${opts.warmup} s)`);
        const done = await warmPgbench(paths.get(t)!.endpoint(mode), { mode, clients: c, threads: Math.min(c, 2), seconds: opts.warmup });
        if (done === 0) say(`  (no transactions in the warm-up: ${c} connections took longer than ${opts.warmup} s)`);
      }
    }
  }

  const profiler: Profiler | undefined = opts.profile ? await startProfiler() : undefined;
  const samples: Sample[] = [];
  const runs = new Map<Sample, PgbenchResult[]>();
  let configIndex = 0;
  for (const mode of opts.modes) {
    for (const clients of opts.clients) {
      const threads = Math.min(clients, 2);
      const rows = opts.targets.map((target): Sample => {
        const s: Sample = { mode, clients, threads, target, tps: undefined, latencyMs: undefined, transactions: undefined, roundsTps: [] };
        const why = skipped.get(target);
        if (why) s.note = why;
        runs.set(s, []);
        return s;
      });
      samples.push(...rows);
      // Interleaved, and the starting target rotates per configuration and round, so
      // drift on the machine (thermal, page cache, a neighbour) hits every target alike.
      for (let round = 0; round < opts.rounds; round++) {
        const live = rows.filter((r) => paths.has(r.target) && !r.error);
        const shift = (configIndex + round) % Math.max(1, live.length);
        for (const r of [...live.slice(shift), ...live.slice(0, shift)]) {
          const path = paths.get(r.target)!;
          say(`${configLabel(r)} ${r.target}${opts.rounds > 1 ? ` round ${round + 1}` : ''}`);
          try {
            const bench = (): Promise<PgbenchResult> => runPgbench(path.endpoint(mode), { mode, clients, threads, seconds: opts.seconds });
            const seqBefore = path.auditSeq?.();
            const cpuBefore = await path.cpuUs?.();
            const res = r.target === 'agentgate' && profiler
              ? await profiler.during(`${mode}-c${clients}${opts.rounds > 1 ? `-r${round + 1}` : ''}`, bench)
              : await bench();
            const cpuAfter = await path.cpuUs?.();
            runs.get(r)!.push(res);
            r.roundsTps.push(res.tps);
            const bits: string[] = [];
            if (seqBefore !== undefined) {
              r.auditEvents = path.auditSeq!() - seqBefore;
              bits.push(`${r.auditEvents} audit events`);
            }
            if (cpuBefore !== undefined && cpuAfter !== undefined) {
              const user = cpuAfter.user - cpuBefore.user;
              const system = cpuAfter.system - cpuBefore.system;
              r.agentgateCpuUsPerTxn = (user + system) / Math.max(1, res.transactions);
              r.agentgateSystemCpuShare = system / Math.max(1, user + system);
              if (cpuAfter.parts && cpuBefore.parts) {
                r.cpuPartsUsPerTxn = Object.fromEntries(Object.keys(cpuAfter.parts).map((k) => [k, (cpuAfter.parts![k]! - cpuBefore.parts![k]!) / Math.max(1, res.transactions)]));
              }
              const parts = cpuAfter.parts && cpuBefore.parts
                ? ` = ${Object.keys(cpuAfter.parts).map((k) => `${k} ${((cpuAfter.parts![k]! - cpuBefore.parts![k]!) / Math.max(1, res.transactions)).toFixed(0)}`).join(' + ')}`
                : '';
              bits.push(`${r.target === 'node-relay' || r.target === 'tunnel-relay' || r.target === 'tls-relay' ? 'relay' : 'agentgate'} CPU ${r.agentgateCpuUsPerTxn.toFixed(0)} µs/txn${parts} (${(r.agentgateSystemCpuShare * 100).toFixed(0)}% kernel)`);
            }
            if (bits.length) r.note = bits.join('; ');
            say(`  ${res.tps.toFixed(0)} tps, ${res.latencyMs.toFixed(3)} ms${bits.length ? `, ${bits.join(', ')}` : ''}`);
          } catch (err) {
            if (interrupted()) throw err;
            r.error = (err as Error).message;
            say(`  failed: ${r.error}`);
          }
        }
      }
      configIndex++;
    }
  }
  for (const [s, rs] of runs) {
    if (rs.length === 0) continue;
    const mid = median(rs.map((y) => y.tps));
    const pick = rs.find((x) => x.tps === mid)!;
    s.tps = pick.tps;
    s.latencyMs = pick.latencyMs;
    s.transactions = pick.transactions;
  }

  let rss: RssResult | undefined;
  if (opts.idle > 0) {
    say(`broker RSS: a fresh broker child process, ${opts.idle} idle node-postgres connections through it`);
    const broker = await startBrokerProcess(brokerInput);
    cleanups.push({ what: 'broker child (RSS)', fn: () => broker.close() });
    try {
      rss = await measureBrokerRss({ broker, token: await agentToken(), target: TARGET, database: pg.database, connections: opts.idle, many: opts.many });
    } finally {
      await broker.close();
    }
  }
  let churn: ChurnResult | undefined;
  if (opts.churn > 0) {
    say(`broker RSS under churn: a fresh broker child process, ${opts.churn} distinct statements then ${Math.round(opts.churn / 10)} malformed ones`);
    const broker = await startBrokerProcess(brokerInput);
    cleanups.push({ what: 'broker child (churn)', fn: () => broker.close() });
    try {
      churn = await measureBrokerChurn({ broker, token: await agentToken(), target: TARGET, database: pg.database, statements: opts.churn, malformed: Math.round(opts.churn / 10), say });
    } finally {
      await broker.close();
    }
  }
  const profile = profiler && opts.profile ? await profiler.finish(opts.profile, 10) : undefined;

  let maskingRead: MaskingReadResult | undefined;
  if (opts.maskScale > 0) maskingRead = await runMaskingReadBench({ scale: opts.maskScale, rounds: 3, say });

  let auditAppend: AuditAppendResult | undefined;
  if (opts.auditAppend > 0) {
    say(`audit append alone: ${opts.auditAppend} events in a child process`);
    auditAppend = await measureAuditAppend(opts.auditAppend);
  }
  let auditExport: AuditExportBenchResult | undefined;
  if (opts.auditEvents > 0) auditExport = await runAuditExportBench({ events: opts.auditEvents, say });
  let pgStore: PgStoreBenchResult | undefined;
  if (opts.pgStoreSeconds > 0) pgStore = await runPgStoreBench({ seconds: opts.pgStoreSeconds, pgbench: true, say });
  let sshRecording: SshRecordingResult | undefined;
  let pgResults: PgResultsResult | undefined;
  if (opts.recordingMb > 0) {
    const target = stack.config.targets[TARGET] as { recording?: unknown };
    pgResults = await runPgResultsBench({
      endpoint: paths.get('agentgate')?.endpoint('simple') ?? { ...direct, port: stack.port, user: 'agent', password: stack.session.secret },
      setResults: (n) => (target.recording = { enabled: true, maxBytes: 64 * 1024 * 1024, results: n, input: false }),
      seconds: 5,
      rounds: 2,
      say,
    });
    if (await sshAvailable()) sshRecording = await runSshRecordingBench({ mb: opts.recordingMb, runs: 3, say });
    else say('ssh recording cost skipped: /usr/sbin/sshd or ssh is not installed');
  }
  const auditPass =
    !auditExport ||
    (auditExport.verified &&
      auditExport.export.seconds <= AUDIT_LIMITS.seconds &&
      auditExport.verify.seconds <= AUDIT_LIMITS.seconds &&
      Math.max(auditExport.export.peakRssMb, auditExport.brokerPeakRssMb, auditExport.verify.peakRssMb) < AUDIT_LIMITS.rssMb);

  const goals = [...judge(samples, rss, opts.modes, auditAppend?.cpuUsPerEvent), ...churnGoals(churn)];
  const out = [
    '',
    '== agentgate Postgres data-path benchmark ==',
    `command: ${command}${via}`,
    ...machineLines(machine),
    `workload: pgbench ${pgbenchArgs({ mode: 'simple', clients: 1, threads: 1, seconds: opts.seconds }).join(' ').replace('simple', '<mode>').replace('-c 1 -j 1', '-c <c> -j min(c,2)')}`
      + ` (select-only), scale ${opts.scale}, warm-up ${opts.warmup} s per target and mode, ${opts.rounds} round(s) per cell (median), targets interleaved; all on this one machine`,
    'paths: direct = pgbench → PostgreSQL',
    '       agentgate = pgbench → CLI listener → tunnel (a multiplex on TLS) → broker → proxy (read-only rules; a masking rule on another table; query.intent durable before forwarding, the outcome before ReadyForQuery; audit sync normal) → PostgreSQL; CLI end and broker share the bench process',
    ...(opts.targets.includes('agentgate-split') ? ['       agentgate-split = the same, with the CLI end and the broker each in a process of its own, run with the flags bin/agentgate gives them (CPU per txn = both processes)'] : []),
    ...(opts.targets.includes('tunnel-relay') ? ["       tunnel-relay = pgbench → local listener → agentgate's tunnel (HTTPS upgrade, a multiplex on TLS, a channel per connection) → PostgreSQL, two processes, no proxy/policy/audit: what the transport alone costs"] : []),
    ...(opts.targets.includes('tls-relay') ? ['       tls-relay = pgbench → Node relay → one HTTPS upgrade (undici) per local connection → Node relay → PostgreSQL: the data path of "one TLS connection per local connection" (its per-connection setup not counted)'] : []),
    ...(opts.targets.includes('node-relay') ? ['       node-relay = pgbench → Node relay → TLS → Node relay → PostgreSQL, two processes piping bytes: the floor of any CLI + broker design in Node (no SSH, proxy, policy or audit)'] : []),
    '       ssh -L = pgbench → ssh → sshd → PostgreSQL;  pgbouncer = pgbench → pgbouncer (transaction pooling) → PostgreSQL',
    ...notes.map((n) => `note: ${n}`),
    '',
    resultsTable(samples),
    '',
    'targets:',
    goalsTable(goals),
    ...(auditAppend ? [auditAppendLine(auditAppend)] : []),
    ...(rss ? [`(RSS: broker alone in a fresh child process, /proc VmRSS; ${rss.connections} node-postgres clients connected through one connect session, each ran "select 1", then held idle)`] : []),
    ...(rss?.many ? [manyLine(rss.many)] : []),
    ...(maskingRead ? ['', ...maskingReadLines(maskingRead)] : []),
    ...(auditExport ? ['', ...auditExportLines(auditExport), '  (export: the real CLI child writing a file, from a broker child over HTTPS; verify: the real CLI child; RSS from /usr/bin/time, broker VmHWM)'] : []),
    ...(pgStore ? ['', ...pgStoreLines(pgStore)] : []),
    ...(sshRecording || pgResults ? ['', ...recordingLines(sshRecording, pgResults)] : []),
    ...(profile ? ['', "CPU profile of the agentgate runs (this process's main thread: CLI end + broker), top 10 by self time over all runs:", profile.top, `profiles: ${profile.files.join(', ')}`] : []),
    '',
  ].join('\n');
  process.stdout.write(out);

  if (opts.json) {
    const doc = {
      command,
      machine,
      settings: { seconds: opts.seconds, scale: opts.scale, rounds: opts.rounds, warmup: opts.warmup, modes: opts.modes, clients: opts.clients, targets: opts.targets, auditEvents: opts.auditEvents, auditAppend: opts.auditAppend },
      notes,
      results: samples.map((s) => ({
        config: configLabel(s),
        ...s,
        ratioToDirect: ratioToDirect(samples, s),
        addedLatencyUs: s.target === 'direct' ? undefined : addedLatencyUs(samples, s),
      })),
      brokerRss: rss,
      brokerChurn: churn,
      auditExport: auditExport ? { ...auditExport, limits: AUDIT_LIMITS } : undefined,
      pgStore,
      recording: { ssh: sshRecording, postgres: pgResults },
      maskingRead: maskingRead ? { ...maskingRead, limit: MASKING_LIMIT } : undefined,
      limits: LIMITS,
      targets: goals,
    };
    await writeFile(opts.json, `${JSON.stringify(doc, null, 2)}\n`);
    say(`wrote ${opts.json}`);
  }
  if (samples.some((s) => s.error)) return 1;
  return opts.strict && (goals.some((g) => g.pass !== true) || !auditPass) ? 1 : 0;
}

function manyLine(m: NonNullable<RssResult['many']>): string {
  return `${m.clients} clients connected at once through one connect session (same broker child): broker RSS ${m.brokerRssMb.toFixed(1)} MB, broker fds ${m.brokerFds}, `
    + `CLI side (this process, with the clients) RSS +${m.cliSideRssGrowthMb.toFixed(1)} MB; connected in ${m.connectSeconds.toFixed(1)} s; `
    + `${m.allAnswered ? 'every client answered "select 1" afterwards' : 'NOT every client answered "select 1" afterwards'}`;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  // After a signal the handler owns the exit (code 130/143); anything else is a failure.
  if (!signalled) say(`error: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  code = 1;
} finally {
  await cleanup();
}
if (!signalled) process.exit(code);
