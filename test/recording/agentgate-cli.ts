/**
 * The real `agentgate` CLI as the recording tests run it: a child process with its own
 * HOME/XDG dirs under the stack's temp dir, the broker pinned by URL and fingerprint, no
 * keychain, and the token in the environment (never argv).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

export interface CliWorld {
  /** The stack's temp dir: HOME and the XDG dirs live under it. */
  home: string;
  brokerUrl: string;
  fingerprint: string;
  token: string;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runAgentgate(world: CliWorld, args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const env = {
      PATH: process.env['PATH'],
      HOME: world.home,
      XDG_CONFIG_HOME: join(world.home, 'xdg-config'),
      XDG_STATE_HOME: join(world.home, 'xdg-state'),
      AGENTGATE_BROKER: world.brokerUrl,
      AGENTGATE_FINGERPRINT: world.fingerprint,
      AGENTGATE_KEYCHAIN: 'off',
      AGENTGATE_TOKEN: world.token,
    };
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
