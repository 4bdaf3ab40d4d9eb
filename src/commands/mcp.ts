/**
 * `agentgate mcp [--target T…]` — an MCP server over stdio for agents, every call through
 * the broker; `agentgate mcp install --client …` — that server in a client's MCP config.
 */
import type { Command } from 'commander';
import { addBrokerOptions, addReasonOption } from '../client/broker-options.js';
import { normalizeReason } from '../shared/reason.js';
import { print, say } from './render.js';
import { UsageError } from '../errors.js';

interface McpFlags {
  broker?: string;
  ca?: string;
  fingerprint?: string;
  tokenFile?: string;
  target?: string[];
  receiptDir?: string;
  reason?: string;
}

interface InstallFlags extends McpFlags {
  client?: string;
  print?: boolean;
  dir: string;
  global?: boolean;
  name: string;
  command: string;
}

const repeat = (v: string, prev: string[] = []): string[] => [...prev, v];

const CLIENT_HELP = `
Where each client's configuration goes (project scope unless said otherwise):
  claude-code  ./.mcp.json           {"mcpServers": {"agentgate": {"type": "stdio", "command": …, "args": […], "env": {}}}}
  cursor       ./.cursor/mcp.json    {"mcpServers": {"agentgate": {"command": …, "args": […], "env": {}}}}   (--global: ~/.cursor/mcp.json)
  vscode       ./.vscode/mcp.json    {"servers": {"agentgate": {"type": "stdio", "command": …, "args": […]}}}
Other servers in the file are kept; an entry of the same name is replaced. No token is written:
the server logs in like any agentgate command (stored login, AGENTGATE_TOKEN, client credentials).`;

export function register(program: Command): void {
  const cmd = program
    .command('mcp')
    .description('serve agentgate to an AI agent as an MCP server over stdio: list_targets, sql_query, kubernetes_request, request_status — every call through the broker')
    .option('--target <name>', 'a target to open (repeatable; default: every postgres, kubernetes and ssh target you may use)', repeat)
    .option('--receipt-dir <dir>', 'where to save the session receipts when the client disconnects (default: $XDG_STATE_HOME/agentgate/receipts)');
  // `mcp install --target T` belongs to install, not to the server command.
  cmd.enablePositionalOptions();
  const install = cmd
    .command('install')
    .description("write (or --print) a client's MCP configuration that starts agentgate mcp")
    .option('--client <name>', 'claude-code | cursor | vscode')
    .option('--target <name>', 'a target the server opens (repeatable; default: all you may use)', repeat)
    .option('--print', 'print the file as it would be written, to stdout; write nothing')
    .option('--dir <dir>', 'the project folder', '.')
    .option('--global', "cursor only: the user's ~/.cursor/mcp.json")
    .option('--name <key>', "the server's name in the file", 'agentgate')
    .option('--command <path>', 'how the client starts agentgate (an absolute path when the client does not see your PATH)', 'agentgate')
    .option('--reason <text>', "a standing reason for the server's session (each tool call may give its own)")
    .addHelpText('after', CLIENT_HELP);
  addBrokerOptions(install).action(async (flags: InstallFlags) => {
    const { isMcpClient, planInstall, writeInstall, MCP_CLIENTS } = await import('../client/mcp/install.js');
    if (flags.client === undefined || !isMcpClient(flags.client)) {
      throw new UsageError(flags.client === undefined ? '--client is required' : `--client: expected ${MCP_CLIENTS.join(', ')}, got "${flags.client}"`, {
        hint: 'agentgate mcp install --client claude-code   (agentgate mcp install --help shows where each client keeps it)',
      });
    }
    const args = ['mcp'];
    for (const t of flags.target ?? []) args.push('--target', t);
    // Where the broker is and how to trust it: given here, kept there. Never a token.
    if (flags.broker) args.push('--broker', flags.broker);
    if (flags.fingerprint) args.push('--fingerprint', flags.fingerprint);
    if (flags.ca) args.push('--ca', flags.ca);
    if (flags.tokenFile) args.push('--token-file', flags.tokenFile);
    if (flags.reason) args.push('--reason', flags.reason);
    const plan = await planInstall({ client: flags.client, dir: flags.dir, global: Boolean(flags.global), name: flags.name, launch: { command: flags.command, args } });
    if (flags.print) {
      print(plan.text);
      return;
    }
    await writeInstall(plan);
    say(`${plan.replaced ? 'Updated' : 'Added'} "${flags.name}" in ${plan.path} (${flags.client}): ${[flags.command, ...args].join(' ')}`);
    say('Restart the client (or reload its MCP servers) to pick it up.');
  });

  addBrokerOptions(addReasonOption(cmd)).action(async (flags: McpFlags) => {
    const { serveMcp } = await import('../client/mcp/server.js');
    const reason = normalizeReason(flags.reason);
    // A client that stops us with a signal still gets the session ended and its receipts
    // saved; a second signal (or a flood of them, from anything local) must not cut that
    // short, so every one only asks to stop. Saving is bounded (5 s).
    const stop = new AbortController();
    const onSignal = (): void => stop.abort();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const summary = await serveMcp({
      stop: stop.signal,
      flags: { broker: flags.broker, ca: flags.ca, fingerprint: flags.fingerprint, tokenFile: flags.tokenFile },
      targets: flags.target ?? [],
      ...(reason !== undefined ? { reason } : {}),
      ...(flags.receiptDir ? { receiptDir: flags.receiptDir } : {}),
      say,
    });
    say(`agentgate mcp: client disconnected after ${summary.calls} call${summary.calls === 1 ? '' : 's'}; session ${summary.session}`);
  });
}
