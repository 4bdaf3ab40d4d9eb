/**
 * What terminal recording costs on the SSH data path: `cat` of a 100 MB text file through
 * an SSH exec via the broker (real sshd, real ssh, masking on), recording on vs off,
 * alternating runs. Prints MB/s for each and the ratio.
 *
 *   npm run build && node dist/bench/ssh-recording.js [--mb 100] [--runs 3]
 */
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startSshStack, TARGET } from '../test/ssh/stack.js';

const { values } = parseArgs({ options: { mb: { type: 'string', default: '100' }, runs: { type: 'string', default: '3' } } });
const MB = Number(values.mb);
const RUNS = Number(values.runs);

async function main(): Promise<void> {
  const stack = await startSshStack([
    { name: 'bench', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: [{ name: 'cat', ssh: { commands: ['cat *'] }, effect: 'allow', extra: {} }] },
  ]);
  try {
    const file = join(stack.tmp.path, 'big.txt');
    const line = `${'0123456789abcdef'.repeat(6)}\n`;
    await new Promise<void>((resolve, reject) => {
      const w = createWriteStream(file);
      w.once('error', reject);
      const block = line.repeat(10_000);
      const blocks = Math.ceil((MB * 1024 * 1024) / block.length);
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
    const config = stack.config as { recording?: { enabled: boolean; maxBytes: number } };
    const results: Record<'on' | 'off', number[]> = { on: [], off: [] };
    for (let r = 0; r < RUNS; r++) {
      for (const mode of ['off', 'on'] as const) {
        config.recording = { enabled: mode === 'on', maxBytes: 4 * 1024 * 1024 * 1024 };
        const t0 = performance.now();
        const child = stack.spawn('ssh', ['-F', stack.sshConfig, TARGET, `cat ${file}`]);
        child.stdin.end();
        let bytes = 0;
        let stderr = '';
        child.stdout.on('data', (b: Buffer) => (bytes += b.length));
        child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
        const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
        const s = (performance.now() - t0) / 1000;
        if (code !== 0) throw new Error(`ssh failed: ${stderr}`);
        results[mode].push(bytes / 1024 / 1024 / s);
      }
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const on = median(results.on);
    const off = median(results.off);
    console.log(`ssh exec cat ${MB} MB through the broker (masking on), median of ${RUNS}: recording off ${off.toFixed(1)} MB/s, on ${on.toFixed(1)} MB/s, ratio ${(on / off).toFixed(2)}`);
    console.log(`  runs off: ${results.off.map((x) => x.toFixed(1)).join(', ')}; on: ${results.on.map((x) => x.toFixed(1)).join(', ')}`);
  } finally {
    await stack.close();
  }
}

await main();
