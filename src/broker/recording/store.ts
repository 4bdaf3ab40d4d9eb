/**
 * Where recordings live: `<state_dir>/recordings/` (0700), one file per recorded command or
 * shell, named `<session>.<request id>.cast` so a session's recordings are found by name.
 * Files are 0600 and written once; retention deletes them with the audit events they
 * belong to (retention.ts).
 */
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { BrokerConfig, RecordingConfig, TargetConfig } from '../config/types.js';
import { DEFAULT_RECORDING_MAX_BYTES } from '../config/schema.js';

export const RECORDING_NAME = /^([A-Za-z0-9_-]{1,120})\.(\d{1,9})\.cast$/;

export function recordingsDir(config: Pick<BrokerConfig, 'stateDir'>): string {
  return join(config.stateDir, 'recordings');
}

export function recordingName(session: string, requestId: number): string {
  return `${session}.${requestId}.cast`;
}

/** The target's `recording:` over the broker's over the defaults. */
export function recordingSettings(config: Pick<BrokerConfig, 'recording'>, target: TargetConfig | undefined): RecordingConfig {
  const t = target && 'recording' in target ? target.recording : undefined;
  return t ?? config.recording ?? { enabled: true, maxBytes: DEFAULT_RECORDING_MAX_BYTES, results: 0, input: false };
}

export interface RecordingFile {
  name: string;
  session: string;
  bytes: number;
}

/** The recordings on disk, optionally of one session. */
export async function listRecordings(config: Pick<BrokerConfig, 'stateDir'>, session?: string): Promise<RecordingFile[]> {
  const dir = recordingsDir(config);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: RecordingFile[] = [];
  for (const name of names.sort(byRequest)) {
    const m = RECORDING_NAME.exec(name);
    if (!m || (session !== undefined && m[1] !== session)) continue;
    try {
      out.push({ name, session: m[1]!, bytes: (await stat(join(dir, name))).size });
    } catch {
      // removed by retention meanwhile
    }
  }
  return out;
}

function byRequest(a: string, b: string): number {
  const ma = RECORDING_NAME.exec(a);
  const mb = RECORDING_NAME.exec(b);
  if (ma && mb && ma[1] === mb[1]) return Number(ma[2]) - Number(mb[2]);
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Retention: deletes recordings last written before `before` — the same cut the audit
 * events of their sessions are pruned at. Returns how many went.
 */
export async function pruneRecordings(config: Pick<BrokerConfig, 'stateDir'>, before: Date): Promise<number> {
  const dir = recordingsDir(config);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  let n = 0;
  for (const name of names) {
    if (!RECORDING_NAME.test(name)) continue;
    const path = join(dir, name);
    try {
      if ((await stat(path)).mtimeMs < before.getTime()) {
        await rm(path);
        n++;
      }
    } catch {
      // gone already
    }
  }
  return n;
}
