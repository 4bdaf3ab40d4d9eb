/**
 * An SSH exec command in the form policy judges: the words of each simple command, and
 * whether anything in it is more than plain words (operators, substitutions, expansions,
 * redirections, assignments, comments, globs, line breaks).
 *
 * The remote user's shell re-parses whatever the broker sends. So a command with nothing
 * but plain words is sent as the broker re-quotes those words (`forwarded`), never as the
 * client wrote it: what runs is exactly what was judged. A compound command is sent as
 * written, and only when a rule allows compound commands explicitly.
 */
import { parse, quote } from 'shell-quote';
import { commandRuns, type CommandRuns } from './ssh-command-runs.js';

export interface ParsedCommand {
  /** The text as the client sent it. */
  raw: string;
  /** Every simple command's words, split at operators (for deny and review rules). */
  segments: string[][];
  /** True when the command is one plain simple command. */
  simple: boolean;
  /** Why it is not simple (e.g. `operator ;`, `substitution $`), empty when it is. */
  features: string[];
  /** Simple commands: the words, as matched against globs (`git-upload-pack /srv/repo.git`). */
  text: string;
  /** What goes to the target: the re-quoted words (simple), or the raw text. */
  forwarded: string;
  /** Every program it may run, and what of it cannot be read (ssh-command-runs.ts): for deny and review rules. */
  runs: CommandRuns;
}

const ASSIGNMENT = /^[A-Za-z_][A-Za-z0-9_]*=/;
/**
 * Redirection operators: the word after one is its target, and the simple command goes on
 * around it (`rm >/dev/null f` runs `rm f`; `>x rm f` runs `rm f`). Other operators end
 * a simple command.
 */
const REDIRECTION = new Set(['>', '>>', '<', '>&', '<&', '>|', '<>', '&>', '&>>', '<<<', '<<', '<<-']);

export function parseCommand(raw: string): ParsedCommand {
  const features = new Set<string>();
  // Characters shell-quote reads differently from a POSIX shell, or that expand: never "plain words".
  if (/[\n\r\0]/.test(raw)) features.add('line break');
  if (raw.includes('$')) features.add('substitution $');
  if (raw.includes('`')) features.add('substitution `');
  if (raw.includes('\\')) features.add('backslash');
  if (/[{}]/.test(raw)) features.add('braces');
  const segments: string[][] = [[]];
  /** The current simple command's words with a number before a redirection kept: `2>x` or `2 >x` (shell-quote cannot tell), both judged. */
  let withNumber: string[] | undefined;
  /** The next word is a redirection's target, not a word of the command. */
  let target = false;
  const endSegment = (): void => {
    if (withNumber) segments.splice(segments.length - 1, 0, withNumber);
    withNumber = undefined;
    segments.push([]);
  };
  let tokens: ReturnType<typeof parse>;
  try {
    // Variables become markers, never the broker's own environment.
    tokens = parse(raw, (name: string) => `\u0000${name}`);
  } catch {
    features.add('unparseable');
    tokens = [];
  }
  let previousOp: string | undefined;
  for (const t of tokens) {
    const current = segments[segments.length - 1] as string[];
    if (typeof t === 'string' || !('op' in t) || t.op === 'glob') previousOp = undefined;
    if (typeof t === 'string') {
      if (t.includes('\u0000')) features.add('substitution $');
      if (target) target = false;
      else {
        current.push(t);
        withNumber?.push(t);
      }
      continue;
    }
    if ('comment' in t) {
      features.add('comment');
      // shell-quote starts a comment at any `#`; a shell only at a word's start (`true x#; rm f` runs rm).
      const at = raw.length - String(t.comment).length - 1;
      if (raw[at] !== '#' || (at > 0 && !/[\s;&|()<>]/.test(raw[at - 1] as string))) features.add('unparseable: # inside a word, which the shell reads on past');
      continue;
    }
    if ('op' in t && t.op === 'glob') {
      features.add('glob');
      const pattern = (t as { pattern: string }).pattern;
      if (target) target = false;
      else {
        current.push(pattern);
        withNumber?.push(pattern);
      }
      continue;
    }
    const op = (t as { op: string }).op;
    features.add(`operator ${op}`);
    // `((x))`, `for ((…))`: bash arithmetic, which runs what a variable's value holds (ssh-command-runs.ts).
    if (op === '(' && previousOp === '(') features.add('arithmetic ((…))');
    previousOp = op;
    target = false;
    if (REDIRECTION.has(op)) {
      const last = current[current.length - 1];
      if (last !== undefined && /^[0-9]+$/.test(last)) {
        withNumber ??= [...current];
        current.pop();
      }
      target = true;
      continue;
    }
    endSegment();
  }
  if (withNumber) endSegment();
  const nonEmpty = segments.filter((s) => s.length > 0);
  for (const s of nonEmpty) if (ASSIGNMENT.test(s[0] as string)) features.add('assignment');
  if (nonEmpty.length === 0) features.add('empty');
  const simple = features.size === 0 && nonEmpty.length === 1;
  const words = nonEmpty[0] ?? [];
  let runs: CommandRuns | undefined;
  return {
    raw,
    segments: nonEmpty,
    simple,
    features: [...features],
    text: simple ? words.join(' ') : raw,
    forwarded: simple ? quote(words) : raw,
    get runs(): CommandRuns {
      return (runs ??= commandRuns(nonEmpty, [...features]));
    },
  };
}
