/** `agentgate targets [--json]` — the targets policy lets you reach, and what it allows. */
import type { Command } from 'commander';
import { addBrokerOptions } from '../client/broker-options.js';
import type { TargetSummary } from '../shared/api-types.js';
import { print, printJson, say } from './render.js';

interface TargetsOptions {
  broker?: string;
  ca?: string;
  fingerprint?: string;
  tokenFile?: string;
  json?: boolean;
}

export function register(program: Command): void {
  const cmd = program.command('targets').description('list the targets you may reach, with their type and what policy allows');
  addBrokerOptions(cmd)
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: TargetsOptions) => {
      // Loaded on use: other commands need not pay for the OIDC and HTTP stack at startup.
      const { listTargets } = await import('../client/identity.js');
      const res = await listTargets(opts);
      if (opts.json) {
        printJson(res);
        return;
      }
      if (res.targets.length === 0) {
        say('No targets: no policy on this broker lets you reach one.');
        return;
      }
      print(table(res.targets));
    });
}

export function table(targets: TargetSummary[]): string {
  const rows = [['NAME', 'TYPE', 'ALLOWS'], ...targets.map((t) => [t.name, t.type, t.allows.join('; ') || '(nothing)'])];
  const widths = [0, 1].map((i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => `${(r[0] ?? '').padEnd(widths[0] ?? 0)}  ${(r[1] ?? '').padEnd(widths[1] ?? 0)}  ${r[2] ?? ''}`).join('\n');
}
