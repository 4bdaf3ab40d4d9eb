/**
 * SSH rules: when a policy rule applies to something an SSH client asks for, and the
 * decision for it. The request is the neutral shape below; nothing here knows the wire.
 *
 * A rule's `ssh` block:
 * - `commands`: globs over exec commands (`uptime`, `git-upload-pack *`, `ls -l /srv/*`).
 *   An allow rule matches only a plain simple command (see ssh-command.ts), word by word
 *   (ssh-command-glob.ts): each pattern word matches one command word, a `*` inside a
 *   word stays inside it and never stands for a `..` path segment, and a last pattern word
 *   that is exactly `*` matches one or more remaining words of any kind. With
 *   `compound: true` an allow rule's globs also match compound commands on their raw text,
 *   where `*` matches anything (spaces, operators, `..`): use sparingly. A deny or review
 *   rule matches a command when its raw text, or the words of any of its simple commands
 *   joined by single spaces, match (`*` across words too: broader is the safe side there),
 *   so `uptime; rm -rf /` meets a rule about `rm *`.
 *   Globs cannot see what an argument means: `man *` also allows `man -P 'sh -c id' ls`.
 *   Name the arguments of programs with options that run other programs.
 * - `tty: true` (allow and review rules with `commands`): an exec this rule allows (or
 *   that an approval under it releases) keeps the pty the client asked for. Without it the
 *   broker refuses the exec's pty-req and does not run the command (ssh/proxy.ts): a
 *   terminal makes pagers and editors interactive, and `man ls` in `less` runs `!sh`.
 *   A shell (`shell: true`) keeps its pty regardless.
 * - `shell: true`: an interactive shell.
 * - `subsystems: [sftp]`: those subsystems.
 * - `forwarding: true`: port forwarding (local and remote) and agent forwarding.
 *
 * A rule with no `ssh` block (and no SQL or Kubernetes criteria) matches exec and shell,
 * as "everything" does for the other protocols; subsystems and forwarding are matched
 * only by a block that names them. A rule about SQL or Kubernetes never matches.
 */
import type { Effect, PolicyConfig, RuleConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';
import { anyGlobMatches } from '../glob.js';
import { anyCommandGlobMatches } from './ssh-command-glob.js';
import { decide, type PolicyDecision } from './decision.js';
import { decidingPolicy } from '../access.js';
import type { ParsedCommand } from './ssh-command.js';

export type SshRequest =
  | { kind: 'exec'; command: ParsedCommand }
  | { kind: 'shell' }
  | { kind: 'subsystem'; name: string }
  | { kind: 'forwarding'; what: 'tcpip' | 'streamlocal' | 'agent' | 'x11' | 'remote-tcpip'; destination: string };

export function describeSsh(req: SshRequest): string {
  switch (req.kind) {
    case 'exec':
      return `command \`${req.command.raw.slice(0, 200)}\`${req.command.simple ? '' : ` (compound: ${req.command.features.join(', ')})`}${req.command.runs.opaque.length > 0 ? ` (runs what agentgate cannot read: ${req.command.runs.opaque.slice(0, 3).join('; ')})` : ''}`;
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
        // Word by word (ssh-command-glob.ts): a `*` stays inside its word and never stands for `..`.
        if (c.simple) return anyCommandGlobMatches(globs, c.segments[0] ?? []);
        return s.compound === true && anyGlobMatches(globs, c.raw);
      }
      // deny / review: any part of the command is enough, on the joined text, where `*` also
      // matches across words: word boundaries only ever narrow what an allow rule lets through.
      // Every program it may run counts (ssh-command-runs.ts); code it cannot read: sshMatcher.
      return anyGlobMatches(globs, c.raw) || c.segments.some((words) => anyGlobMatches(globs, words.join(' '))) || c.runs.programs.some((words) => anyGlobMatches(globs, words.join(' ')));
    }
  }
}

/**
 * Which rules of a policy match a request, for the first-match walk. As ruleMatchesSsh,
 * except for a command that runs code agentgate cannot read (`python3 -c`, `sh` reading
 * its input, `git -c …`: ssh-command-runs.ts). A deny list cannot see into such code, so
 * when the rule that would decide it is an allow rule that does not name its program (`*`,
 * `* --version`) — or no rule — the policy's first deny or review rule about commands
 * decides instead: unknown means no, or a human looks. A rule that matches it on its own
 * (a deny or review rule, an allow rule naming the program: `python3 *`) decides as usual.
 */
export function sshMatcher(policy: PolicyConfig | undefined, req: SshRequest): (rule: RuleConfig) => boolean {
  const plain = (rule: RuleConfig): boolean => ruleMatchesSsh(rule, req);
  if (!policy || req.kind !== 'exec' || req.command.runs.opaque.length === 0) return plain;
  const first = policy.rules.find(plain);
  if (first && (first.effect !== 'allow' || namesProgram(first, req.command))) return plain;
  const guard = policy.rules.find((r) => r.effect !== 'allow' && (r.ssh?.commands?.length ?? 0) > 0 && !(r.sql || r.relations || r.flags || r.functions || r.k8s || Object.keys(r.extra).length > 0));
  return guard ? (rule) => rule === guard : plain;
}

/** An allow rule that matches the command through a pattern whose first word is written out (no glob). */
function namesProgram(rule: RuleConfig, c: ParsedCommand): boolean {
  const named = (rule.ssh?.commands ?? []).filter((g) => !/[*?[]/.test(g.trim().split(/ +/)[0] ?? '*'));
  return named.length > 0 && ruleMatchesSsh({ ...rule, ssh: { ...rule.ssh, commands: named } }, { kind: 'exec', command: c });
}

export function decideSsh(identity: Identity, targetName: string, policies: readonly PolicyConfig[], req: SshRequest): PolicyDecision {
  return decide(identity, targetName, policies, sshMatcher(decidingPolicy(identity, targetName, policies), req), describeSsh(req));
}

/**
 * Whether the rule that decides this exec lets it keep a terminal (`tty: true` on an allow
 * or review rule): the broker answers an exec's pty-req with it before the command runs,
 * so it is asked of the same first-match walk `decideSsh` does, nothing counted.
 */
export function sshExecTty(identity: Identity, targetName: string, policies: readonly PolicyConfig[], req: Extract<SshRequest, { kind: 'exec' }>): SshExecTty {
  const policy = decidingPolicy(identity, targetName, policies);
  const rule = policy?.rules.find(sshMatcher(policy, req));
  if (!rule) return { rule: null, effect: 'deny', tty: false };
  return { rule: rule.name, effect: rule.effect, tty: rule.effect !== 'deny' && rule.ssh?.tty === true };
}

export interface SshExecTty {
  /** The deciding rule's name; null when none matches (default deny). */
  rule: string | null;
  effect: Effect;
  tty: boolean;
}
