/** Usage errors from the argument parser read like every other error: one cause, one next step, exit 2. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { PATH: process.env['PATH'], HOME: '/nonexistent' } }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('a missing required option names the option and the help to read', async () => {
  const r = await cli(['run', '--', 'true']);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, "agentgate: required option '--target <name>' not specified\n  → see: agentgate run --help\n");
});

test('an unknown command suggests the near one on the same line', async () => {
  const r = await cli(['brokr', 'start']);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, "agentgate: unknown command 'brokr' (did you mean broker?)\n  → see: agentgate --help\n");
});

test('a subcommand\'s unknown option points at that subcommand\'s help; with --json the error is the one JSON document', async () => {
  const r = await cli(['broker', 'start', '--nope', '--json']);
  assert.equal(r.code, 2);
  const doc = JSON.parse(r.stdout) as { error: { code: string; message: string; hint: string } };
  assert.equal(doc.error.code, 'AG_USAGE');
  assert.match(doc.error.message, /unknown option '--nope'/);
  assert.equal(doc.error.hint, 'see: agentgate broker start --help');
});
