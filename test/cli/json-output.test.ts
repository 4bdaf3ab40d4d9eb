/**
 * `--json` means stdout holds exactly one JSON document, for every command that has it:
 * each runs for real against `agentgate dev` and its stdout goes through JSON.parse whole
 * (a child's output, a progress line or a second document would break it). `broker init`
 * and `dev --json` are covered in test/config/broker-command.test.ts and test/dev/dev.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTempDir, type TempDir } from '../broker/fixtures.js';
import { startDev, type DevEnvironment } from '../../src/dev/run-dev.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

describe('--json output is one JSON document on stdout', () => {
  let tmp: TempDir;
  let dev: DevEnvironment;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    tmp = await makeTempDir('agentgate-json-');
    dev = await startDev({ dir: join(tmp.path, 'dev'), port: 0, pglite: true, say: () => {} });
    env = {
      PATH: process.env['PATH'],
      HOME: tmp.path,
      XDG_CONFIG_HOME: join(tmp.path, 'config'),
      XDG_STATE_HOME: join(tmp.path, 'state'),
      AGENTGATE_KEYCHAIN: 'off',
      AGENTGATE_BROKER: dev.brokerUrl,
      AGENTGATE_FINGERPRINT: dev.fingerprint,
      LANG: 'C',
    };
  });
  after(async () => {
    await dev?.close();
    await tmp?.remove();
  });

  /** Runs the command and parses its whole stdout; returns the document and the exit code. */
  function json(args: string[]): Promise<{ code: number; doc: unknown; stderr: string }> {
    return new Promise((resolve, reject) => {
      execFile(process.execPath, [BIN, ...args], { env, timeout: 60_000 }, (err, stdout, stderr) => {
        const code = err ? Number((err as { code?: unknown }).code ?? 1) : 0;
        try {
          resolve({ code, doc: JSON.parse(stdout) as unknown, stderr });
        } catch (parseErr) {
          reject(new Error(`agentgate ${args.join(' ')}: stdout is not one JSON document (${(parseErr as Error).message}):\n${stdout}\nstderr:\n${stderr}`));
        }
      });
    });
  }

  test('whoami, targets, run, requests, approve, audit export/verify, receipt verify, and errors', async () => {
    const { agent, reviewer } = dev.tokenFiles;
    const receipts = join(tmp.path, 'receipts');
    const cases: { args: string[]; code: number }[] = [
      { args: ['whoami', '--json', '--token-file', agent], code: 0 },
      { args: ['targets', '--json', '--token-file', agent], code: 0 },
      // The child prints to its stdout too: that goes to stderr.
      { args: ['run', '--json', '--target', dev.target, '--token-file', agent, '--receipt-dir', receipts, '--', 'psql', '-X', '-c', 'select 1'], code: 0 },
      { args: ['requests', '--json', '--token-file', reviewer], code: 0 },
      { args: ['approve', '--json', '--token-file', reviewer], code: 0 },
      { args: ['audit', 'export', '--json', '--token-file', reviewer, '--out', join(tmp.path, 'audit.jsonl')], code: 0 },
      { args: ['audit', 'verify', '--json', '--chain-only', join(tmp.path, 'audit.jsonl')], code: 0 },
      // An error is one JSON document too.
      { args: ['targets', '--json', '--token-file', join(tmp.path, 'missing.token')], code: 2 },
    ];
    for (const c of cases) {
      const r = await json(c.args);
      assert.equal(r.code, c.code, `${c.args.join(' ')}: ${r.stderr}`);
      assert.equal(typeof r.doc, 'object', c.args.join(' '));
    }
    const receipt = readdirSync(receipts).find((f) => f.endsWith('.receipt.json'));
    assert.ok(receipt);
    const verified = await json(['receipt', 'verify', '--json', join(receipts, receipt)]);
    assert.equal(verified.code, 0, verified.stderr);
    assert.equal((verified.doc as { ok: boolean }).ok, true);
  });

  test('connect --json prints one document, then runs until Ctrl-C', async () => {
    const child = spawn(process.execPath, [BIN, 'connect', dev.target, '--port', '0', '--json', '--token-file', dev.tokenFiles.agent], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      const doc = await new Promise<{ target: string; port: number }>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          stdout += d.toString();
          try {
            resolve(JSON.parse(stdout) as { target: string; port: number });
          } catch {
            // not complete yet
          }
        });
        child.once('close', (code) => reject(new Error(`connect exited (${code}) before printing its document`)));
      });
      assert.equal(doc.target, dev.target);
      child.kill('SIGINT');
      assert.equal(await exit, 0);
      assert.doesNotThrow(() => JSON.parse(stdout), 'nothing else reached stdout on the way out');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
