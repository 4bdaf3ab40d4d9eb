/**
 * Audit export and verification at scale: fill a store with N events (default 1,000,000),
 * then time `agentgate audit export --out F` (the real CLI, against a broker in its own
 * process, over HTTPS) and `agentgate audit verify F --key JWKS`, with each process's peak
 * RSS. Targets: ≤ 10 s each, RSS < 150 MB.
 *
 * Runs as part of `node dist/bench/run.js --audit-events N`, or alone:
 *   node dist/bench/audit-export.js [--events N] [--json FILE]
 *
 * The fill is a bulk load (one prepared INSERT, big transactions, no fsync) of events
 * built from a template that is canonical JSON by construction; the chain is computed as
 * it goes (each event's prev is the hash before it), so what is exported is a real chain.
 */
import { existsSync } from 'node:fs';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DatabaseSync } from 'node:sqlite';
import { makeBrokerConfig, makeTempDir } from '../test/broker/fixtures.js';
import { startTestIssuer } from '../test/helpers/test-issuer.js';
import { ensureBrokerKeys, receiptJwks } from '../src/broker/keys.js';
import { openSqliteAuditStore } from '../src/broker/audit/sqlite-store.js';
import { INSERT_EVENT } from '../src/broker/audit/sqlite-schema.js';
import { GENESIS_PREV, canonicalJson, sha256Hex } from '../src/shared/audit-hash.js';
import type { AuditBrokerChildInput, AuditBrokerChildReady } from './audit-broker-child.js';
import { endJsonChild, exited, processMemoryMb, spawnJsonChild, spawnTracked, stopChild, tail } from './procs.js';

export const AUDIT_LIMITS = { seconds: 10, rssMb: 150 } as const;

export interface TimedRun {
  seconds: number;
  peakRssMb: number;
}

export interface AuditExportBenchResult {
  events: number;
  fillSeconds: number;
  dbMb: number;
  export: TimedRun & { fileMb: number };
  verify: TimedRun;
  /** The broker child's VmHWM after the export (its whole life: start-up plus the export). */
  brokerPeakRssMb: number;
  /** The broker child's RSS after start-up, before the export. */
  brokerIdleRssMb: number;
  verified: boolean;
}

const BIN = fileURLToPath(new URL('../../bin/agentgate', import.meta.url));
const STATEMENTS = [
  'select id, email, created_at from public.users where id = $1',
  'select count(*) from public.orders where status = $1 and created_at > now() - interval \'1 day\'',
  "update public.orders set status = 'shipped' where id = $1",
  'select o.id, o.total, u.name from public.orders o join public.users u on u.id = o.user_id where o.id = $1',
  'insert into public.audit_notes (order_id, note) values ($1, $2)',
].map((s) => JSON.stringify(s));

/** One event as its canonical JSON (keys in sorted order by construction). */
function eventText(seq: number, time: string, prev: string): { text: string; session: string; type: string } {
  const s = Math.floor(seq / 200);
  const session = `pgs_bench_${s}`;
  const actor = `{"groups":["ai-agents"],"kind":"agent","name":"Agent ${s % 7}","sub":"agent-${s % 7}"}`;
  const pos = seq % 200;
  if (pos === 0 || pos === 199) {
    const type = pos === 0 ? 'session.start' : 'session.end';
    const detail = pos === 0 ? `{"client_address":"127.0.0.1:${40000 + (s % 20000)}","connect_session":"ags_bench_${s}","protocol":"postgres"}` : '{"reason":"client closed the connection","statements":198}';
    return {
      text: `{"actor":${actor},"decision":${pos === 0 ? '{"effect":"allow","rule":"agents-read"}' : 'null'},"detail":${detail},"outcome":${pos === 0 ? 'null' : '{"status":"ok"}'},"prev":"${prev}","seq":${seq},"session":"${session}","target":"pg-prod","time":"${time}","type":"${type}"}`,
      session,
      type,
    };
  }
  const sql = STATEMENTS[seq % STATEMENTS.length]!;
  return {
    text:
      `{"actor":${actor},"decision":{"effect":"allow","rule":"agents-read#1"},"detail":{"params":1,"protocol":"extended","sql":${sql},"tag":"SELECT 1"},` +
      `"outcome":{"bytes":${100 + (seq % 900)},"duration_ms":${(seq % 50) / 10},"rows":1,"status":"ok"},"prev":"${prev}","seq":${seq},"session":"${session}","target":"pg-prod","time":"${time}","type":"query"}`,
    session,
    type: 'query',
  };
}

/** Bulk-fills the audit table with a correct chain; returns the head hash. */
export function fillAuditStore(path: string, events: number): string {
  const db = new DatabaseSync(path);
  try {
    db.exec('PRAGMA synchronous = OFF; PRAGMA cache_size = -65536');
    const insert = db.prepare(INSERT_EVENT);
    const t0 = Date.now() - events * 10;
    let prev = GENESIS_PREV;
    db.exec('BEGIN');
    for (let seq = 1; seq <= events; seq++) {
      const time = new Date(t0 + seq * 10).toISOString();
      const e = eventText(seq, time, prev);
      if (seq <= 3) {
        const again = canonicalJson(JSON.parse(e.text));
        if (again !== e.text) throw new Error(`bench template is not canonical JSON:\n${e.text}\n${again}`);
      }
      const hash = sha256Hex(e.text);
      insert.run(seq, time, e.session, 'pg-prod', e.type, e.text, prev, hash);
      prev = hash;
      if (seq % 50_000 === 0) db.exec('COMMIT; BEGIN');
    }
    db.exec('COMMIT');
    return prev;
  } finally {
    db.close();
  }
}

/** Runs a command under /usr/bin/time for wall time and max RSS (falls back to polling /proc). */
async function timed(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<TimedRun & { stdout: string; stderr: string }> {
  const useTime = existsSync('/usr/bin/time');
  const statsFile = join(env['HOME'] ?? '/tmp', `time-${process.pid}-${Date.now()}.txt`);
  const cmd = useTime ? '/usr/bin/time' : process.execPath;
  const argv = useTime ? ['-o', statsFile, '-f', '%e %M', process.execPath, ...args] : args;
  const started = process.hrtime.bigint();
  const child = spawnTracked(cmd, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  const errLog = tail(child.stderr, 16_384);
  let polledHwm = 0;
  const poll = useTime
    ? undefined
    : setInterval(() => {
        processMemoryMb(child.pid!).then(
          (m) => (polledHwm = Math.max(polledHwm, Number.isNaN(m.hwmMb) ? 0 : m.hwmMb)),
          () => {},
        );
      }, 50);
  // stopChild only resolves (kill, then wait for 'exit').
  // eslint-disable-next-line @typescript-eslint/no-floating-promises -- see above
  const timer = setTimeout(() => void stopChild(child), timeoutMs);
  await exited(child);
  clearTimeout(timer);
  if (poll) clearInterval(poll);
  const wall = Number(process.hrtime.bigint() - started) / 1e9;
  if (child.exitCode !== 0) throw new Error(`${args.slice(1).join(' ')} exited ${child.exitCode}: ${errLog().trim()}`);
  if (!useTime) return { seconds: wall, peakRssMb: polledHwm, stdout, stderr: errLog() };
  const [secs, kb] = (await readFile(statsFile, 'utf8')).trim().split(/\s+/).slice(-2).map(Number);
  await rm(statsFile, { force: true });
  return { seconds: secs ?? wall, peakRssMb: (kb ?? 0) / 1024, stdout, stderr: errLog() };
}

export async function runAuditExportBench(opts: { events: number; say: (msg: string) => void }): Promise<AuditExportBenchResult> {
  const { events, say } = opts;
  const tmp = await makeTempDir('agentgate-bench-audit-');
  const issuer = await startTestIssuer();
  let child: ReturnType<typeof spawnTracked> | undefined;
  try {
    const config = makeBrokerConfig(tmp.path, { identity: { issuer: issuer.issuer }, auditors: { groups: ['security'] } });
    const keys = await ensureBrokerKeys(config);
    const dbPath = join(config.stateDir, 'agentgate.db');
    await (await openSqliteAuditStore(dbPath)).close();
    say(`audit export: filling the store with ${events.toLocaleString('en-US')} events`);
    const t0 = process.hrtime.bigint();
    fillAuditStore(dbPath, events);
    const fillSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const dbMb = (await stat(dbPath)).size / 1048576;
    say(`  filled in ${fillSeconds.toFixed(1)} s (${dbMb.toFixed(0)} MB)`);

    const script = fileURLToPath(new URL('./audit-broker-child.js', import.meta.url));
    const spawned = spawnJsonChild<AuditBrokerChildReady>(script, { root: tmp.path, issuer: issuer.issuer } satisfies AuditBrokerChildInput, 'broker child');
    child = spawned.child;
    const ready = await spawned.ready;

    const token = await issuer.sign({ sub: 'auditor-bench', groups: ['security'] }, { expiresIn: 3600 });
    const env: NodeJS.ProcessEnv = {
      PATH: process.env['PATH'],
      HOME: tmp.path,
      XDG_CONFIG_HOME: join(tmp.path, 'xdg'),
      AGENTGATE_BROKER: ready.url,
      AGENTGATE_FINGERPRINT: ready.fingerprint,
      AGENTGATE_TOKEN: token,
      AGENTGATE_KEYCHAIN: 'off',
      NO_COLOR: '1',
    };
    const out = join(tmp.path, 'export.jsonl');
    const jwks = join(tmp.path, 'jwks.json');
    await writeFile(jwks, JSON.stringify(receiptJwks(keys)));

    const memOf = async (): Promise<{ rss: number; hwm: number }> => {
      const m = await processMemoryMb(ready.pid);
      return { rss: m.rssMb, hwm: m.hwmMb };
    };
    const idle = await memOf();
    say(`audit export: broker child started (RSS ${idle.rss.toFixed(0)} MB, peak so far ${idle.hwm.toFixed(0)} MB)`);
    say('audit export: agentgate audit export --out FILE (CLI child → HTTPS → broker child)');
    const exp = await timed([BIN, 'audit', 'export', '--out', out, '--json'], env, 120_000);
    const fileMb = (await stat(out)).size / 1048576;
    const hwm = (await memOf()).hwm;
    say(`  ${exp.seconds.toFixed(1)} s, ${fileMb.toFixed(0)} MB written, CLI peak RSS ${exp.peakRssMb.toFixed(0)} MB, broker peak RSS ${hwm.toFixed(0)} MB`);

    say('audit export: agentgate audit verify FILE --key JWKS');
    const ver = await timed([BIN, 'audit', 'verify', out, '--key', jwks, '--json'], env, 120_000);
    const doc = JSON.parse(ver.stdout) as { ok: boolean; count?: number; endSigned?: boolean };
    say(`  ${ver.seconds.toFixed(1)} s, peak RSS ${ver.peakRssMb.toFixed(0)} MB, ${doc.ok ? `ok (${doc.count} events)` : 'FAILED'}`);
    return {
      events,
      fillSeconds,
      dbMb,
      export: { seconds: exp.seconds, peakRssMb: exp.peakRssMb, fileMb },
      verify: { seconds: ver.seconds, peakRssMb: ver.peakRssMb },
      brokerPeakRssMb: hwm,
      brokerIdleRssMb: idle.rss,
      // The export also holds its own audit.export event.
      verified: doc.ok && doc.count === events + 1 && doc.endSigned === true,
    };
  } finally {
    if (child) await endJsonChild(child);
    await issuer.close();
    await tmp.remove();
  }
}

export function auditExportLines(r: AuditExportBenchResult): string[] {
  const mark = (ok: boolean): string => (ok ? 'PASS' : 'FAIL');
  const { seconds, rssMb } = AUDIT_LIMITS;
  return [
    `audit export/verify: ${r.events.toLocaleString('en-US')} events (store ${r.dbMb.toFixed(0)} MB, filled in ${r.fillSeconds.toFixed(1)} s by bulk insert with a computed chain)`,
    `  export  ${r.export.seconds.toFixed(1).padStart(5)} s  CLI peak RSS ${r.export.peakRssMb.toFixed(0).padStart(4)} MB  broker peak RSS ${r.brokerPeakRssMb.toFixed(0)} MB (${r.brokerIdleRssMb.toFixed(0)} MB idle)  file ${r.export.fileMb.toFixed(0)} MB   ` +
      `${mark(r.export.seconds <= seconds)} ≤ ${seconds} s, ${mark(r.export.peakRssMb < rssMb && r.brokerPeakRssMb < rssMb)} RSS < ${rssMb} MB`,
    `  verify  ${r.verify.seconds.toFixed(1).padStart(5)} s  peak RSS ${r.verify.peakRssMb.toFixed(0).padStart(4)} MB   ` +
      `${mark(r.verify.seconds <= seconds)} ≤ ${seconds} s, ${mark(r.verify.peakRssMb < rssMb)} RSS < ${rssMb} MB   chain and signed end ${r.verified ? 'verified' : 'NOT VERIFIED'}`,
  ];
}

const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) {
  const { values } = parseArgs({ options: { events: { type: 'string' }, json: { type: 'string' } }, strict: true });
  const events = values.events === undefined ? 1_000_000 : Number(values.events);
  if (!Number.isSafeInteger(events) || events < 1) {
    process.stderr.write('usage: node dist/bench/audit-export.js [--events N] [--json FILE]\n');
    process.exit(2);
  }
  const say = (m: string): void => void process.stderr.write(`[bench] ${m}\n`);
  try {
    const r = await runAuditExportBench({ events, say });
    process.stdout.write(['', `command: node dist/bench/audit-export.js --events ${events}`, ...auditExportLines(r), ''].join('\n'));
    if (values.json) await writeFile(values.json, JSON.stringify({ ...r, limits: AUDIT_LIMITS }, null, 2) + '\n');
    process.exit(r.verified ? 0 : 1);
  } catch (err) {
    say(`error: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    process.exit(1);
  }
}
