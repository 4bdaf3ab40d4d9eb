/**
 * CLI side of recordings: list sessions, fetch a session's timeline and recordings, play a
 * cast with its timing, and check a recording against its receipt (and, with an export,
 * the audit chain) offline.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { request } from 'undici';
import { UsageError } from '../errors.js';
import { parseCast, RECORDED_SESSIONS_PATH, RECORDING_SUBJECT_PREFIX, type ParsedCast, type RecordedSession, type TimelineEntry } from '../shared/recording.js';
import { apiError, transportError } from './broker-http.js';
import { openBrokerSession, type BrokerSessionFlags } from './broker-session.js';
import { checkReceipt, type ReceiptCheckOptions } from './receipt-check.js';
import { verifyExportFile } from './audit-export.js';
import { ReplayFilter, visible } from '../shared/display-text.js';

export interface SessionDetail {
  session: string;
  actor: string | null;
  target: string | null;
  protocol: string | null;
  started_at: string;
  timeline: TimelineEntry[];
  recordings: { name: string; bytes: number }[];
}

export interface SessionQuery {
  target?: string | undefined;
  actor?: string | undefined;
  since?: string | undefined;
  limit?: number | undefined;
}

export async function fetchSessions(flags: BrokerSessionFlags, q: SessionQuery, env: NodeJS.ProcessEnv = process.env): Promise<RecordedSession[]> {
  const s = await openBrokerSession(flags, env);
  try {
    const t = await s.token();
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
    const qs = p.toString();
    return (await s.api.get<{ sessions: RecordedSession[] }>(`${RECORDED_SESSIONS_PATH}${qs ? `?${qs}` : ''}`, t.token, s.tokenContext(t))).sessions;
  } finally {
    await s.close();
  }
}

/** The session's timeline and recordings, with each recording's bytes when `withRecordings`. */
export async function fetchSession(
  flags: BrokerSessionFlags,
  id: string,
  withRecordings: boolean,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ detail: SessionDetail; casts: { name: string; bytes: Buffer }[] }> {
  const s = await openBrokerSession(flags, env);
  try {
    const t = await s.token();
    const detail = await s.api.get<SessionDetail>(`${RECORDED_SESSIONS_PATH}/${encodeURIComponent(id)}`, t.token, s.tokenContext(t));
    const casts: { name: string; bytes: Buffer }[] = [];
    if (withRecordings) {
      for (const r of detail.recordings) {
        const url = `${s.url}${RECORDED_SESSIONS_PATH}/${encodeURIComponent(id)}/recordings/${encodeURIComponent(r.name)}`;
        let status: number;
        let body: Buffer;
        try {
          const res = await request(url, { dispatcher: s.dispatcher, headers: { authorization: `Bearer ${t.token}` } });
          status = res.statusCode;
          body = Buffer.from(await res.body.arrayBuffer());
        } catch (err) {
          throw transportError(err, url);
        }
        if (status !== 200) {
          let json: unknown;
          try {
            json = JSON.parse(body.toString('utf8'));
          } catch {
            json = undefined;
          }
          throw apiError(status, json, { brokerUrl: s.url, discovery: s.discovery, source: s.tokenContext(t).source });
        }
        casts.push({ name: r.name, bytes: body });
      }
    }
    return { detail, casts };
  } finally {
    await s.close();
  }
}

export interface PlayOptions {
  /** Playback speed factor. Default 1. */
  speed?: number;
  /** Pauses longer than this many seconds are shortened to it. Default 2. */
  idleLimit?: number;
  /** Where output goes; default process.stdout. */
  out?: NodeJS.WritableStream;
  /** Sleeps (tests pass one that does not). */
  sleep?: (ms: number) => Promise<void>;
  /** Keys on a terminal: space pauses, → skips 5 s ahead, ← goes 5 s back (replayed from the start), q quits. */
  control?: PlayControl;
  /**
   * Write the output exactly as recorded. Default false: it goes through ReplayFilter,
   * since the target (which the agent controls) wrote it for someone else's terminal.
   */
  raw?: boolean;
}

/** What the keys set; playCast reads it between events. */
export interface PlayControl {
  paused: boolean;
  quit: boolean;
  /** Seconds to move by (+ ahead, - back); consumed by the player. */
  seek: number;
  /** Resolves when something changed (a key was pressed). */
  changed(): Promise<void>;
}

/** Reads keys from a raw-mode terminal into a PlayControl; `stop()` restores the terminal. */
export function keyControl(input: NodeJS.ReadStream): { control: PlayControl; stop(): void } {
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const control: PlayControl = {
    paused: false,
    quit: false,
    seek: 0,
    changed: () => new Promise<void>((resolve) => (wake = resolve)),
  };
  const onData = (b: Buffer): void => {
    // Several keys may arrive in one read.
    const text = b.toString('latin1');
    const keys: string[] = [];
    for (let i = 0; i < text.length; i++) {
      const arrow = text.startsWith('\x1b[C', i) || text.startsWith('\x1b[D', i);
      keys.push(arrow ? text.slice(i, i + 3) : text[i]!);
      if (arrow) i += 2;
    }
    let any = false;
    for (const k of keys) {
      if (k === ' ') control.paused = !control.paused;
      else if (k === 'q' || k === 'Q' || k === '\x03') control.quit = true;
      else if (k === '\x1b[C') control.seek += 5;
      else if (k === '\x1b[D') control.seek -= 5;
      else continue;
      any = true;
    }
    if (any) notify();
  };
  input.setRawMode(true);
  input.resume();
  input.on('data', onData);
  return {
    control,
    stop() {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      notify();
    },
  };
}

/** Writes the cast's output with its timing (speed, idle limit); resizes and markers are shown as notes at the end. */
export async function playCast(cast: ParsedCast, o: PlayOptions = {}): Promise<{ events: number; played: number; markers: string[] }> {
  const out = o.out ?? process.stdout;
  const speed = o.speed ?? 1;
  const idle = o.idleLimit ?? 2;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const c = o.control;
  let last = 0;
  let played = 0;
  const markers: string[] = [];
  /** Events before this time are written without waiting (a seek). */
  let fastUntil = -1;
  const filter = o.raw ? undefined : new ReplayFilter();
  for (let i = 0; i < cast.events.length; i++) {
    const [t, code, data] = cast.events[i]!;
    if (c && t > fastUntil) {
      const gap = (Math.min(Math.max(0, t - last), idle) / speed) * 1000;
      // Wait out the gap, unless a key (pause, seek, quit) cuts in.
      const until = Date.now() + gap;
      while (!c.quit && c.seek === 0 && (c.paused || Date.now() < until)) {
        let timer: NodeJS.Timeout | undefined;
        const timeUp = c.paused ? new Promise<void>(() => {}) : new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, until - Date.now()))));
        try {
          await Promise.race([c.changed(), timeUp]);
        } finally {
          clearTimeout(timer);
        }
        if (!c.paused && Date.now() >= until) break;
      }
      if (c.quit) break;
      if (c.seek !== 0) {
        const target = Math.max(0, t + c.seek);
        c.seek = 0;
        if (target < t) {
          // Back: clear the screen and replay from the start up to the target at once.
          out.write('\x1bc');
          filter?.reset();
          fastUntil = target;
          last = 0;
          i = -1;
          continue;
        }
        fastUntil = target;
      }
    } else if (!c && t > fastUntil) {
      const gap = Math.min(Math.max(0, t - last), idle) / speed;
      if (gap > 0) await sleep(gap * 1000);
    }
    last = t;
    if (code === 'o') {
      out.write(filter ? filter.write(data) : data);
      played++;
    } else if (code === 'm' && !markers.includes(data)) markers.push(data);
  }
  if (filter) out.write(filter.end());
  return { events: cast.events.length, played, markers };
}

/** One line per timeline entry, for paging. */
export function formatTimeline(entries: TimelineEntry[]): string[] {
  return entries.map((e) => {
    const d = e.decision ? `${e.decision.effect}${e.decision.rule ? ` by ${e.decision.rule}` : ''}` : '-';
    const a = e.approvals.length ? ` approved: ${e.approvals.map((x) => `${x.approver ?? '?'} ${x.decision}`).join(', ')}` : '';
    // Every field may carry the agent's text (a deny reason quotes the statement; a tag or type comes from the target).
    const oc = e.outcome;
    const res = oc
      ? [oc.status, oc.tag, oc.rows !== undefined ? `${oc.rows} rows` : undefined, oc.sqlstate ? `SQLSTATE ${oc.sqlstate}` : undefined, oc.http_status !== undefined ? `HTTP ${oc.http_status}` : undefined, oc.exit_status !== undefined ? `exit ${oc.exit_status}` : undefined]
          .filter(Boolean)
          .join(', ')
      : 'no outcome';
    const tail = visible(`${d}${a}; ${res}${e.decision?.reason ? ` — ${e.decision.reason}` : ''}`, true);
    return `+${e.offset.toFixed(3)}s  ${visible(e.text === null ? `(${e.type})` : e.text)}\n          ${tail}${formatSample(e.result_sample)}`;
  });
}

/** A result sample as `| a | b |` lines under its statement; values are untrusted, so escaped. */
function formatSample(s: TimelineEntry['result_sample']): string {
  if (!s) return '';
  const cell = (v: string | null): string => (v === null ? 'NULL' : visible(v, true).replaceAll('|', '\\|'));
  const lines = [s.columns, ...s.rows].map((row) => `          | ${row.map(cell).join(' | ')} |`);
  if (s.truncated) lines.push('          | … |');
  return `\n${lines.join('\n')}`;
}

export type RecordingCheck =
  | { ok: true; file: string; name: string; sha256: string; receipt: string; session: string; chain: { seq: number } | null }
  | { ok: false; file: string; problem: string; message: string; hint: string };

/**
 * Checks a recording offline: the receipt's signature (receipt verify), a subject naming
 * this recording with the file's SHA-256, and — with `audit` — its recording.end event in
 * an export whose chain verifies, carrying the same digest.
 */
export async function checkRecording(file: string, receipt: string, opts: ReceiptCheckOptions & { name?: string } = {}): Promise<RecordingCheck> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { hint: 'pass the path of a downloaded recording (.cast)' });
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const name = opts.name ?? basename(file);
  const fail = (problem: string, message: string, hint: string): RecordingCheck => ({ ok: false, file, problem, message, hint });
  const rc = await checkReceipt(receipt, { ...(opts.key ? { key: opts.key } : {}), ...(opts.audit ? { audit: opts.audit } : {}), ...(opts.trust ? { trust: opts.trust } : {}), ...(opts.env ? { env: opts.env } : {}) });
  if (!rc.ok) return fail('receipt does not verify', rc.error.message, rc.error.hint);
  const subjects = rc.statement.subject.filter((s) => s.name.startsWith(RECORDING_SUBJECT_PREFIX));
  const subject = subjects.find((s) => s.name === `${RECORDING_SUBJECT_PREFIX}${name}`);
  if (!subject) {
    return fail(
      'recording not in the receipt',
      `${receipt} lists ${subjects.length ? subjects.map((s) => s.name.slice(RECORDING_SUBJECT_PREFIX.length)).join(', ') : 'no recordings'}, not ${name}`,
      'pass --name with the recording name the broker gave it (<session>.<n>.cast), or the receipt of its session',
    );
  }
  if (subject.digest['sha256'] !== sha256) {
    return fail('digest mismatch', `${file} hashes to ${sha256}, but the receipt attests ${String(subject.digest['sha256'])} for ${name}: the recording was altered`, 'get the recording again from the broker; this copy is not what was recorded');
  }
  let chain: { seq: number } | null = null;
  if (opts.audit) {
    const session = rc.statement.predicate.session;
    let found: { seq: number; sha: unknown } | undefined;
    const v = await verifyExportFile(opts.audit, {
      onRecord: (r) => {
        if (r.session === session && r.type === 'recording.end' && r.detail['name'] === name) found = { seq: r.seq, sha: r.detail['sha256'] };
      },
    });
    if (!v.ok) return fail('export does not verify', `${opts.audit}: ${v.problem}: ${v.message}`, 'export the log again');
    if (!found) return fail('recording not in the chain', `${opts.audit} has no recording.end for ${name}`, "export the log from the session's start to the receipt's head");
    if (found.sha !== sha256) return fail('digest mismatch', `the chain's recording.end at seq ${found.seq} attests ${String(found.sha)}, the file hashes to ${sha256}`, 'the recording was altered');
    chain = { seq: found.seq };
  }
  return { ok: true, file, name, sha256, receipt, session: rc.statement.predicate.session, chain };
}

export { parseCast };
