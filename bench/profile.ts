/**
 * A CPU profile of this process (the CLI side and the broker, which share it) taken only
 * while agentgate runs are measured, so startup and the baselines do not dilute it.
 * Written as a .cpuprofile (Chrome DevTools, speedscope) and summarised by self time.
 */
import { Session } from 'node:inspector/promises';
import { writeFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
  startTime: number;
  endTime: number;
}

export interface Profiler {
  /** Sample while `fn` runs; `label` names this window's file. */
  during<T>(label: string, fn: () => Promise<T>): Promise<T>;
  /**
   * Write one .cpuprofile per window (`<file>` with the label before the extension) and
   * return the files and the top `n` functions by self time over all windows together.
   */
  finish(file: string, n?: number): Promise<{ files: string[]; top: string }>;
}

export async function startProfiler(): Promise<Profiler> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  const parts: { label: string; profile: Profile }[] = [];
  return {
    async during(label, fn) {
      await session.post('Profiler.start');
      try {
        return await fn();
      } finally {
        const { profile } = await session.post('Profiler.stop');
        parts.push({ label, profile: profile as unknown as Profile });
      }
    },
    async finish(file, n = 10) {
      session.disconnect();
      const files: string[] = [];
      const base = file.replace(/\.cpuprofile$/, '');
      for (const p of parts) {
        const name = `${base}.${p.label.replace(/[^A-Za-z0-9_-]+/g, '_')}.cpuprofile`;
        await writeFile(name, JSON.stringify(p.profile));
        files.push(name);
      }
      return { files, top: parts.length ? topSelf(parts.map((p) => p.profile), n) : '(no samples)' };
    },
  };
}

function label(n: ProfileNode): string {
  const { functionName, url, lineNumber } = n.callFrame;
  const where = url ? `${url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/')}:${lineNumber + 1}` : '';
  return `${functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
}

export function topSelf(parts: Profile[], n: number): string {
  const self = new Map<string, number>();
  let total = 0;
  for (const p of parts) {
    const byId = new Map(p.nodes.map((x) => [x.id, x]));
    const samples = p.samples ?? [];
    const deltas = p.timeDeltas ?? [];
    for (let i = 0; i < samples.length; i++) {
      const node = byId.get(samples[i]!);
      const d = deltas[i] ?? 0;
      if (!node) continue;
      total += d;
      const k = label(node);
      self.set(k, (self.get(k) ?? 0) + d);
    }
  }
  return [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, us]) => `${(us / 1000).toFixed(0).padStart(6)} ms ${((100 * us) / (total || 1)).toFixed(1).padStart(5)}%  ${k}`)
    .join('\n');
}
