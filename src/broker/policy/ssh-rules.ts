/**
 * SSH rules: when a policy rule applies to something an SSH client asks for, and the
 * decision for it. The request is the neutral shape below; nothing here knows the wire.
 *
 * A rule's `ssh` block:
 * - `commands`: globs over an exec command's words joined by single spaces
 *   (`uptime`, `git-upload-pack *`, `ls -l /srv/*`). An allow rule matches only a plain
 *   simple command (see ssh-command.ts) unless it also says `compound: true`, when its
 *   globs match the raw text. A deny or review rule matches a command any of whose
 *   simple commands matches, so `uptime; rm -rf /` meets a rule about `rm *`.
 * - `shell: true`: an interactive shell.
 * - `subsystems: [sftp]`: those subsystems.
 * - `forwarding: true`: port forwarding (local and remote) and agent forwarding.
 *
 * A rule with no `ssh` block (and no SQL or Kubernetes criteria) matches exec and shell,
 * as "everything" does for the other protocols; subsystems and forwarding are matched
 * only by a block that names them. A rule about SQL or Kubernetes never matches.
 */
import type { PolicyConfig, RuleConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';
import { anyGlobMatches } from '../glob.js';
import { decide, type PolicyDecision } from './decision.js';
import type { ParsedCommand } from './ssh-command.js';

export type SshRequest =
  | { kind: 'exec'; command: ParsedCommand }
  | { kind: 'shell' }
  | { kind: 'subsystem'; name: string }
  | { kind: 'forwarding'; what: 'tcpip' | 'streamlocal' | 'agent' | 'x11' | 'remote-tcpip'; destination: string };

export function describeSsh(req: SshRequest): string {
  switch (req.kind) {
    case 'exec':
      return `command \`${req.command.raw.slice(0, 200)}\`${req.command.simple ? '' : ` (compound: ${req.command.features.join(', ')})`}`;
    case 'shell':
      return 'an interactive shell';
    case 'subsystem':
      return `the ${req.name} subsystem`;
    case 'forwarding':
      return `${req.what} forwarding${req.destination ? ` to ${req.destination}` : ''}`;
  }
}

export function ruleMatchesSsh(rule: RuleConfig, req: SshRequest): boolean {
  if (rule.sql || rule.relations || rule.flags || rule.functions || rule.k8s || Object.keys(rule.extra).length > 0) return false;
  const s = rule.ssh;
  if (!s) return req.kind === 'exec' || req.kind === 'shell';
  switch (req.kind) {
    case 'shell':
      return s.shell === true;
    case 'subsystem':
      return (s.subsystems ?? []).includes(req.name);
    case 'forwarding':
      return s.forwarding === true;
    case 'exec': {
      const globs = s.commands;
      if (!globs || globs.length === 0) return false;
      const c = req.command;
      if (rule.effect === 'allow') {
        if (c.simple) return anyGlobMatches(globs, c.text);
        return s.compound === true && anyGlobMatches(globs, c.raw);
      }
      // deny / review: any part of the command is enough.
      return anyGlobMatches(globs, c.raw) || c.segments.some((words) => anyGlobMatches(globs, words.join(' ')));
    }
  }
}

export function decideSsh(identity: Identity, targetName: string, policies: readonly PolicyConfig[], req: SshRequest): PolicyDecision {
  return decide(identity, targetName, policies, (rule) => ruleMatchesSsh(rule, req), describeSsh(req));
}
