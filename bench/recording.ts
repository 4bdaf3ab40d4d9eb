/**
 * What recording costs on the data path (issue 17), for `npm run bench` and
 * bench/ssh-recording.ts:
 * - SSH: `cat` of an N MB text file through an SSH exec via the broker (real sshd, real
 *   ssh, masking on), recording off and on in alternating runs; MB/s and the ratio.
 * - Postgres: pgbench -S through agentgate with the target's `recording: { results: 0 }`
 *   (the default: no sampler exists) and `{ results: 10 }` (each statement's first rows go
 *   into its audit event), alternating; TPS and the ratio.
 */
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { startSshStack, TARGET } from '../test/ssh/stack.js';
import { runPgbench, type Endpoint } from './pgbench.js';

export interface SshRecordingResult {
  mb: number;
  runs: number;
  offMbps: number[];
  onMbps: number[];
  ratio: number;
}

export interface PgResultsResult {
  seconds: number;
  rounds: number;
  results0Tps: number[];
  results10Tps: number[];
  ratio: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function writeTextFile(file: string, mb: number): Promise<void> {
  const line = `${'0123456789abcdef'.repeat(6)}\n`;
  await new Promise<void>((resolve, reject) => {
    const w = createWriteStream(file);
    w.once('error', reject);
    const block = line.repeat(10_000);
    const blocks = Math.ceil((mb * 1024 * 1024) / block.length);
    let i = 0;
    const more = (): void => {
      while (i < blocks) {
        i++;
        if (!w.write(block)) {
          w.once('drain', more);
          return;
        }
      }
      w.end(resolve);
    };
    more();
  });
}

export async function runSshRecordingBench(o: { mb: number; runs: number; say: (s: string) => void }): Promise<SshRecordingResult> {
  o.say(`recording: starting sshd and a broker; cat of ${o.mb} MB through an SSH exec, recording off vs on, ${o.runs} run(s) each`);
  const stack = await startSshStack([
    { name: 'bench', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: [{ name: 'cat', ssh: { commands: ['cat *'] }, effect: 'allow', extra: {} }] },
  ]);
  try {
    const file = join(stack.tmp.path, 'big.txt');
    await writeTextFile(file, o.mb);
    // The broker reads `recording:` per command: flipping it between runs is enough.
    const config = stack.config as { recording?: { enabled: boolean; maxBytes: number; results: number; input: boolean } };
    const mbps: Record<'on' | 'off', number[]> = { on: [], off: [] };
    for (let r = 0; r < o.runs; r++) {
      for (const mode of ['off', 'on'] as const) {
        config.recording = { enabled: mode === 'on', maxBytes: 4 * 1024 * 1024 * 1024, results: 0, input: false };
        const t0 = performance.now();
        const child = stack.spawn('ssh', ['-F', stack.sshConfig, TARGET, `cat ${file}`]);
        child.stdin.end();
        let bytes = 0;
        let stderr = '';
        child.stdout.on('data', (b: Buffer) => (bytes += b.length));
        child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
        const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
        const s = (performance.now() - t0) / 1000;
        if (code !== 0) throw new Error(`ssh exited ${code}: ${stderr}`);
        mbps[mode].push(bytes / 1024 / 1024 / s);
        o.say(`  recording ${mode}: ${(bytes / 1024 / 1024 / s).toFixed(1)} MB/s`);
      }
    }
    return { mb: o.mb, runs: o.runs, offMbps: mbps.off, onMbps: mbps.on, ratio: median(mbps.on) / median(mbps.off) };
  } finally {
    await stack.close();
  }
}

/** `setResults` sets the target's `recording.results`, read by each new session. */
export async function runPgResultsBench(o: { endpoint: Endpoint; setResults: (n: number) => void; seconds: number; rounds: number; say: (s: string) => void }): Promise<PgResultsResult> {
  const tps: Record<0 | 10, number[]> = { 0: [], 10: [] };
  try {
    for (let r = 0; r < o.rounds; r++) {
      for (const n of [0, 10] as const) {
        o.setResults(n);
        const res = await runPgbench(o.endpoint, { mode: 'simple', clients: 1, threads: 1, seconds: o.seconds });
        tps[n].push(res.tps);
        o.say(`  pgbench -S -c 1 through agentgate, recording: { results: ${n} }: ${res.tps.toFixed(0)} tps`);
      }
    }
  } finally {
    o.setResults(0);
  }
  return { seconds: o.seconds, rounds: o.rounds, results0Tps: tps[0], results10Tps: tps[10], ratio: median(tps[10]) / median(tps[0]) };
}

export function recordingLines(ssh: SshRecordingResult | undefined, pg: PgResultsResult | undefined): string[] {
  const out = ['recording cost (issue 17):'];
  if (ssh) {
    out.push(
      `  ssh exec cat ${ssh.mb} MB through the broker (masking on), median of ${ssh.runs}: recording off ${median(ssh.offMbps).toFixed(1)} MB/s, on ${median(ssh.onMbps).toFixed(1)} MB/s, ratio on/off ${ssh.ratio.toFixed(2)}`,
      `    runs off: ${ssh.offMbps.map((x) => x.toFixed(1)).join(', ')}; on: ${ssh.onMbps.map((x) => x.toFixed(1)).join(', ')}`,
    );
  }
  if (pg) {
    out.push(
      `  postgres pgbench -S -c 1 (simple) through agentgate, ${pg.seconds} s × ${pg.rounds}: results: 0 ${median(pg.results0Tps).toFixed(0)} tps, results: 10 ${median(pg.results10Tps).toFixed(0)} tps, ratio ${pg.ratio.toFixed(2)}`,
      '    (results: 0 is the default and every agentgate row above: no sampler exists; SQL timelines are read from the audit log when asked for, nothing on the data path)',
    );
  }
  return out;
}
