/**
 * What terminal recording costs on the SSH data path, on its own (`npm run bench` runs the
 * same with `--recording-mb`): `cat` of a text file through an SSH exec via the broker,
 * recording on vs off, alternating runs. Prints MB/s for each and the ratio.
 *
 *   npm run build && node dist/bench/ssh-recording.js [--mb 100] [--runs 3]
 */
import { parseArgs } from 'node:util';
import { recordingLines, runSshRecordingBench } from './recording.js';

const { values } = parseArgs({ options: { mb: { type: 'string', default: '100' }, runs: { type: 'string', default: '3' } } });
const result = await runSshRecordingBench({ mb: Number(values.mb), runs: Number(values.runs), say: (s) => process.stderr.write(`[bench] ${s}\n`) });
console.log(recordingLines(result, undefined).join('\n'));
