/**
 * The broker flags every broker-facing command takes, each with its environment twin.
 * Kept free of runtime imports so registering commands stays cheap at CLI startup.
 */
import type { Command } from 'commander';

/** `--reason TEXT` with its environment twin, for the commands that open sessions (connect, run, mcp). */
export function addReasonOption(cmd: Command): Command {
  return cmd.option('--reason <text>', 'why this session is needed: recorded in the audit log and the receipts, shown to reviewers (env AGENTGATE_REASON)', process.env['AGENTGATE_REASON']);
}

export function addBrokerOptions(cmd: Command, options: { tokenFile?: boolean } = {}): Command {
  cmd
    .option('--broker <url>', 'broker URL, or several comma-separated brokers on one store to fail over between (env AGENTGATE_BROKER; default: the one you logged in to)')
    .option('--ca <file>', 'PEM file to trust for the broker\'s certificate (env AGENTGATE_CA)')
    .option('--fingerprint <sha256>', 'pin the broker certificate\'s SHA-256 fingerprint (env AGENTGATE_FINGERPRINT)');
  if (options.tokenFile !== false) {
    cmd.option('--token-file <file>', 'read the access token from this file instead of the stored login');
  }
  return cmd;
}
