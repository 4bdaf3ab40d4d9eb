/**
 * Hang guards for parsers that run over untrusted text. A backtracking regular expression
 * cannot be interrupted on its own thread, so the code under test runs in a worker that is
 * ended — failing the test — if it has not answered in time. Not a speed target: linear work
 * answers in milliseconds, the shapes these guard against took hours or days.
 */
import { Worker } from 'node:worker_threads';

/**
 * Runs `source` (CommonJS, evaluated in a worker; it reads `workerData` and answers with
 * `parentPort.postMessage`) and resolves with its first message.
 */
export async function answerWithin<T>(source: string, workerData: unknown, seconds = 60): Promise<T> {
  const worker = new Worker(`const { parentPort, workerData } = require('node:worker_threads');\n${source}`, { eval: true, workerData });
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise<T>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      timer = setTimeout(() => reject(new Error(`no answer within ${seconds} s (a parser backtracking on crafted input?)`)), seconds * 1000);
    });
  } finally {
    clearTimeout(timer);
    await worker.terminate();
  }
}
