/** `agentgate run --target T [--target T2] -- CMD…` — the CI/agent wrapper. */
import type { Command } from 'commander';
import { addBrokerOptions } from '../client/broker-options.js';
import { UsageError } from '../errors.js';
import { printJson, say } from './render.js';

interface RunFlags {
  broker?: string;
  ca?: string;
  fingerprint?: string;
  tokenFile?: string;
  target: string[];
  receiptDir?: string;
  timeout?: string;
  json?: boolean;
  pty?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command('run')
    .description('open tunnels to targets, run a command with DATABASE_URL/PG*/KUBECONFIG set, pass its exit code through, and save the session receipts')
    .requiredOption('--target <name>', 'a target to open (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--receipt-dir <dir>', 'where to save receipts (default: $XDG_STATE_HOME/agentgate/receipts)')
    .option('--timeout <duration>', 'stop the command after this long (e.g. 90s, 10m); exit code 124')
    .option('--no-pty', 'never run the command in a pseudo-terminal, even on a TTY')
    .option('--json', 'print the run summary as one JSON document on stdout')
    .argument('<command...>', 'the command to run, after --')
    .usage('--target <name> [options] -- <command> [args...]');
  addBrokerOptions(cmd).action(async (command: string[], flags: RunFlags) => {
    const [bin, ...args] = command;
    if (!bin) throw new UsageError('no command given', { hint: 'agentgate run --target pg-prod -- psql -c "select 1"' });
    const { runWrapped } = await import('../client/run-session.js');
    let timeoutMs: number | undefined;
    if (flags.timeout !== undefined) {
      const { parseTimeout } = await import('../client/run.js');
      timeoutMs = parseTimeout(flags.timeout);
      if (timeoutMs === undefined) throw new UsageError(`--timeout: expected a duration like 90s or 10m, got "${flags.timeout}"`);
    }
    const summary = await runWrapped({
      flags: { broker: flags.broker, ca: flags.ca, fingerprint: flags.fingerprint, tokenFile: flags.tokenFile },
      targets: flags.target,
      command: bin,
      args,
      pty: flags.pty !== false && Boolean(process.stdin.isTTY && process.stdout.isTTY),
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      ...(flags.receiptDir ? { receiptDir: flags.receiptDir } : {}),
      say,
    });
    if (flags.json) printJson(summary);
    process.exitCode = summary.exit_code;
  });
}
