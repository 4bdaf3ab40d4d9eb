/**
 * `agentgate mcp [--target T…]` — an MCP server over stdio for agents, every call through
 * the broker; `agentgate mcp install --client …` — that server in a client's MCP config.
 */
import type { Command } from 'commander';
import { addBrokerOptions } from '../client/broker-options.js';
import { say } from './render.js';

interface McpFlags {
  broker?: string;
  ca?: string;
  fingerprint?: string;
  tokenFile?: string;
  target?: string[];
  receiptDir?: string;
}

const repeat = (v: string, prev: string[] = []): string[] => [...prev, v];

export function register(program: Command): void {
  const cmd = program
    .command('mcp')
    .description('serve agentgate to an AI agent as an MCP server over stdio: list_targets, sql_query, kubernetes_request, request_status — every call through the broker')
    .option('--target <name>', 'a target to open (repeatable; default: every postgres and kubernetes target you may use)', repeat)
    .option('--receipt-dir <dir>', 'where to save the session receipts when the client disconnects (default: $XDG_STATE_HOME/agentgate/receipts)');
  addBrokerOptions(cmd).action(async (flags: McpFlags) => {
    const { serveMcp } = await import('../client/mcp/server.js');
    const summary = await serveMcp({
      flags: { broker: flags.broker, ca: flags.ca, fingerprint: flags.fingerprint, tokenFile: flags.tokenFile },
      targets: flags.target ?? [],
      ...(flags.receiptDir ? { receiptDir: flags.receiptDir } : {}),
      say,
    });
    say(`agentgate mcp: client disconnected after ${summary.calls} call${summary.calls === 1 ? '' : 's'}; session ${summary.session}`);
  });
}
