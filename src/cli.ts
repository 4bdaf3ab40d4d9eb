/**
 * Builds the commander program and owns the one top-level error handler: the only place
 * that turns an error into an exit code. Commands throw; they never call process.exit().
 */
import { Command, CommanderError } from 'commander';
import { AgentgateError, ExitCode, UsageError, isAgentgateError } from './errors.js';
import { VERSION } from './shared/version.js';
import { renderError } from './commands/render.js';
import { registerCommands } from './commands/index.js';

export function buildProgram(): Command {
  const program = new Command('agentgate')
    .description('One enforcement point between AI agents and production systems.')
    .version(VERSION, '-V, --version', 'print the version')
    .showSuggestionAfterError(true)
    // A subcommand's options belong to it (`mcp install --target` is install's, not mcp's).
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      writeOut: (s) => process.stdout.write(s),
      // Usage errors are rendered by handleError like every other error (cause + next step).
      outputError: () => {},
    });
  registerCommands(program);
  return program;
}

/** Runs the CLI and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const wantsJson = argv.includes('--json');
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version arrive here as "errors" with exit code 0; a help shown for a missing subcommand is already the advice.
      if (err.exitCode === 0) return 0;
      if (err.code === 'commander.help') return ExitCode.usage;
      return handleError(usageErrorOf(err, commandPath(program, argv.slice(2))), wantsJson);
    }
    return handleError(err, wantsJson);
  }
}

/** commander's message ("error: required option '--target <name>' not specified") as our one-line cause + next step. */
function usageErrorOf(err: CommanderError, path: string): UsageError {
  return new UsageError(err.message.replace(/^error: /, '').replace(/\n\(Did you mean (.*)\?\)$/, ' (did you mean $1?)'), { hint: `see: agentgate ${path ? `${path} ` : ''}--help` });
}

/** The subcommand names at the front of the arguments (`broker start …` → "broker start"). */
function commandPath(program: Command, args: readonly string[]): string {
  const names: string[] = [];
  let cmd: Command = program;
  for (const arg of args) {
    const sub = cmd.commands.find((c) => c.name() === arg || c.aliases().includes(arg));
    if (!sub) break;
    names.push(sub.name());
    cmd = sub;
  }
  return names.join(' ');
}

function handleError(err: unknown, wantsJson: boolean): number {
  const known: AgentgateError = isAgentgateError(err)
    ? err
    : new AgentgateError('AG_BUG', `unexpected error: ${err instanceof Error ? err.message : String(err)}`, ExitCode.error, {
        hint: 'this is a bug in agentgate; run again with AGENTGATE_DEBUG=1 and report the output',
      });
  process.stderr.write(renderError(known) + '\n');
  if (process.env['AGENTGATE_DEBUG'] === '1' && err instanceof Error && err.stack) {
    process.stderr.write(err.stack + '\n');
    if (err.cause instanceof Error && err.cause.stack) process.stderr.write('caused by: ' + err.cause.stack + '\n');
  }
  if (wantsJson) process.stdout.write(JSON.stringify({ error: known.toJSON() }) + '\n');
  return known.exitCode;
}
