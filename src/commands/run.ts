/** `agentgate run --target T [--target T2] -- CMD…` — the CI/agent wrapper. */
import type { Command } from 'commander';
import { addBrokerOptions, addReasonOption } from '../client/broker-options.js';
import { normalizeReason } from '../shared/reason.js';
import { ExitCode, UsageError } from '../errors.js';
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
  failOnDeny?: boolean;
  reason?: string;
}

export function register(program: Command): void {
  const cmd = program
    .command('run')
    .description('open tunnels to targets, run a command with DATABASE_URL/PG*/KUBECONFIG set, pass its exit code through, and save the session receipts')
    .requiredOption('--target <name>', 'a target to open (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--receipt-dir <dir>', 'where to save receipts (default: $XDG_STATE_HOME/agentgate/receipts)')
    .option('--timeout <duration>', 'stop the command after this long (e.g. 90s, 10m); exit code 124')
    .option('--no-pty', 'never run the command in a pseudo-terminal, even on a TTY')
    .option('--json', "print the run summary as one JSON document on stdout; the command's own stdout then goes to stderr (and no pty is used)")
    .option('--fail-on-deny', "exit 4 when the broker denied any statement and the command itself succeeded (default: the command's exit code)")
    .argument('<command...>', 'the command to run, after --')
    .usage('--target <name> [options] -- <command> [args...]');
  addBrokerOptions(addReasonOption(cmd)).action(async (command: string[], flags: RunFlags) => {
    const reason = normalizeReason(flags.reason);
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
      ...(reason !== undefined ? { reason } : {}),
      command: bin,
      args,
      pty: flags.pty !== false && !flags.json && Boolean(process.stdin.isTTY && process.stdout.isTTY),
      ...(flags.json ? { stdoutToStderr: true } : {}),
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      ...(flags.receiptDir ? { receiptDir: flags.receiptDir } : {}),
      say,
    });
    if (flags.json) printJson(summary);
    // Pass-through by default: many agents' commands exit 0 after a refused statement, and a wrapper should not change that unasked.
    const denied = flags.failOnDeny === true && summary.exit_code === 0 && summary.denied > 0;
    if (denied) say(`agentgate: --fail-on-deny: ${summary.denied} statement${summary.denied === 1 ? ' was' : 's were'} denied; exit ${ExitCode.denied}`);
    process.exitCode = denied ? ExitCode.denied : summary.exit_code;
  });
}
