/**
 * The child side of the bench's start protocol (the parent side is spawnJsonChild in
 * procs.ts): one JSON line of input on stdin — secrets travel there, never in argv —
 * one JSON line back on stdout once ready, and stdin closing (the parent is done, or
 * died) as the cue to shut down.
 */
import { createInterface } from 'node:readline';

/** Reads the input line; `stdinClosed` resolves when the parent closes stdin. */
export async function readJsonInput<Input>(): Promise<{ input: Input; stdinClosed: Promise<void> }> {
  const lines = createInterface({ input: process.stdin });
  const stdinClosed = new Promise<void>((resolve) => lines.once('close', resolve));
  const first = await Promise.race([
    new Promise<string>((resolve) => lines.once('line', resolve)),
    stdinClosed.then(() => Promise.reject(new Error('stdin closed before the input line'))),
  ]);
  return { input: JSON.parse(first) as Input, stdinClosed };
}

export function replyReady(ready: object): void {
  process.stdout.write(`${JSON.stringify(ready)}\n`);
}

/** Runs the child's main: exit 0 when it finishes, 1 with the error on stderr when it throws. */
export function runJsonChild(name: string, main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`${name}: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
