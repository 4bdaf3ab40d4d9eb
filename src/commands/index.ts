/** One line per command module; each exports `register(program)`. */
import type { Command } from 'commander';

export function registerCommands(program: Command): void {
  void program;
}
