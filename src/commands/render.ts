/**
 * Output rules from DESIGN.md: `--json` prints exactly one JSON document on stdout; human
 * text, progress and warnings go to stderr, so stdout stays clean for pipes.
 */
import { AgentgateError } from '../errors.js';
import { terminalJson } from '../shared/display-text.js';

export interface OutputStreams {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export const defaultStreams: OutputStreams = { stdout: process.stdout, stderr: process.stderr };

export function printJson(value: unknown, streams: OutputStreams = defaultStreams): void {
  // Agent text in it (statements, reasons, names) cannot reach the terminal as controls.
  streams.stdout.write(terminalJson(value, 2) + '\n');
}

/** Human-readable lines go to stderr. */
export function say(text: string, streams: OutputStreams = defaultStreams): void {
  streams.stderr.write(text.endsWith('\n') ? text : text + '\n');
}

/** Human result text that is the command's answer (e.g. `whoami` without --json) goes to stdout. */
export function print(text: string, streams: OutputStreams = defaultStreams): void {
  streams.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

export function useColor(stream: NodeJS.WritableStream = process.stderr): boolean {
  if (process.env['NO_COLOR'] !== undefined && process.env['NO_COLOR'] !== '') return false;
  return Boolean((stream as NodeJS.WriteStream).isTTY);
}

export function renderError(err: AgentgateError): string {
  const lines = [`agentgate: ${err.message}`];
  if (err.hint) lines.push(`  → ${err.hint}`);
  return lines.join('\n');
}
