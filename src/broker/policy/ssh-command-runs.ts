/**
 * What an SSH command runs, as deny and review rules see it: every program it may start,
 * with that program's arguments, and whether some of what runs is code agentgate cannot
 * read.
 *
 * A deny list (`rm *`) in front of "any plain command" is only as good as its view of
 * what runs. `sh -c 'rm f'`, `find . -exec rm {} ;`, `xargs rm`, `sudo -E rm f`,
 * `env -S'rm f'`, `watch rm f` and `git -c core.pager='rm f' log` all run `rm` while
 * their first word is something else. So:
 *
 * - Wrappers (`env`, `sudo`, `nice`, `timeout`, `xargs`, `chroot`, `strace`, …) run a
 *   command after their own options. Their options differ per wrapper (`sudo -E` takes no
 *   value, `xargs -E` does), so every later word is taken as a possible program: broader
 *   is the safe side for a deny. After `xargs` the program also gets the words it reads
 *   from its input (shown as `…`).
 * - Shells with `-c` (also `eval`, `trap`, `watch`, `su -c`, `flock -c`, `script -c`,
 *   `env -S`, bash's `compgen -C`, `mapfile -C`): the string is parsed like the command
 *   itself and each of its simple commands is analysed in turn.
 * - Reserved words (`if`, `then`, `do`, `!`…) in front of a command are skipped like
 *   leading assignments: `if true; then rm f; fi` runs `rm f`.
 * - The analysis has a work budget (MAX_WORK): past it, the rest is opaque.
 * - Environment given to a command (`X=1 cmd`, `env X=1`, `export X=1`) is opaque unless
 *   its name is known inert (INERT_ENV): `BASH_ENV`, `GIT_SSH_COMMAND`, `LD_PRELOAD`… run code.
 * - `find -exec/-execdir/-ok/-okdir … ;` runs the words up to `;` or `+`; `find -delete`
 *   removes files as `rm` does and is seen as `rm`.
 * - Opaque: code agentgate cannot read. An interpreter other than a shell (`python3`,
 *   `perl`, `awk` with `system`, `node`…), a `sed` script with more than plain editing
 *   commands (`e` runs a shell command), a shell reading a script file or its input,
 *   an editor (`vim -c '!…'`), options that name a program to run (`git -c`,
 *   `git --upload-pack`, `tar --to-command`, `rsync -e`, `man -P`, `ssh -o`, `enable -f`…), `sudo -s`,
 *   `at`, `make`, and shell syntax shell-quote does not read as a shell does
 *   (substitutions, backslashes, braces, line breaks, a glob naming the program).
 *   In ssh-rules.ts (sshMatcher) such a command is not let through by an allow rule that
 *   does not name its program (`*`) while the policy has a deny or review rule about
 *   commands: that rule decides it. Unknown means no (or a human looks at it).
 */
import { parseCommand } from './ssh-command.js';

export interface CommandRuns {
  /** Each program that may run, with its arguments, the program named by its file name. */
  programs: string[][];
  /** Why some of what runs cannot be read (`python3 -c`, `git -c`): empty when everything can. */
  opaque: string[];
}

/** Nesting followed (`sudo sh -c "env sh -c '…'"`); deeper is opaque. */
const MAX_DEPTH = 6;
/** Programs followed per command; more is opaque (a word list of wrappers is quadratic). */
const MAX_PROGRAMS = 512;
/**
 * Work spent on one command: words followed plus characters of nested command strings
 * parsed. Each tail of `eval a a a …` is parsed again, as is each word after a wrapper, so
 * a crafted 16 KB command held the broker's event loop for 73 s (every session stalled).
 * Past this budget the rest is opaque: what is not analysed is not let through.
 */
const MAX_WORK = 100_000;

/** Run the command that follows their own options. */
const WRAPPERS = new Set([
  'command', 'builtin', 'env', 'exec', 'nice', 'nohup', 'time', 'stdbuf', 'timeout', 'ionice', 'setsid', 'chrt', 'taskset',
  'sudo', 'doas', 'pkexec', 'busybox', 'toybox', 'xargs', 'unbuffer', 'flock', 'chroot', 'unshare', 'nsenter', 'systemd-run',
  'strace', 'ltrace', 'valgrind', 'fakeroot', 'eatmydata', 'firejail', 'proot', 'torsocks', 'proxychains', 'proxychains4',
  'catchsegv', 'rlwrap', 'dbus-run-session', 'ssh-agent', 'numactl', 'cgexec', 'screen', 'caffeinate', 'chpst', 'runcon', 'setpriv',
  'prlimit', 'faketime', 'ts', 'parallel', 'sem', 'retry', 'coproc',
]);
/**
 * Shell reserved words a command may follow (`if rm f; then …`, `then rm f`, `! rm f`,
 * `do rm f`, `else rm f`): the shell grammar runs the words after them as a command, so
 * they are skipped as leading assignments are. (`time` and `coproc` are wrappers.)
 */
const RESERVED_PREFIX = new Set(['!', 'if', 'then', 'elif', 'else', 'while', 'until', 'do']);
/**
 * Bash builtins that run a command string given with an option: `compgen -C CMD`,
 * `mapfile -C CMD` / `readarray -C CMD` (called per line read). The string is analysed as
 * `sh -c`'s is. (`complete -C` is opaque with `complete`; `enable -f` loads code: RUNS_A_PROGRAM.)
 */
const BUILTIN_COMMAND_OPTION: Record<string, RegExp> = {
  compgen: /^-[A-Za-z]*C/,
  mapfile: /^-[A-Za-z]*C/,
  readarray: /^-[A-Za-z]*C/,
};
/**
 * Environment a command may be given (`X=1 cmd`, `env X=1 cmd`, `export X=1; cmd`) that no
 * program reads as code or as where to find code. Any other name may run what agentgate
 * never sees (`BASH_ENV`, `ENV`, `LD_PRELOAD`, `GIT_SSH_COMMAND`, `PAGER`, `PATH`, `HOME`,
 * `PERL5OPT`, `NODE_OPTIONS`…): the set of such names is open, so unknown means opaque.
 */
const INERT_ENV = /^(?:LANG|LANGUAGE|LC_[A-Z]+|TZ|TERM|COLUMNS|LINES|NO_COLOR|CLICOLOR|CLICOLOR_FORCE|FORCE_COLOR|GIT_PROTOCOL)$/;
/** Builtins whose `NAME=value` arguments set (or export) variables for what runs after them. */
const SETS_VARIABLES = new Set(['export', 'declare', 'typeset', 'readonly', 'local']);
/**
 * Bash evaluates arithmetic on a variable's value as an expression, and an expression's
 * array index runs substitutions: `read x; let x` with `a[$(rm f)]` on the input runs
 * `rm f`, with no `$` in the command. So `let`, the integer attribute (`declare -i`) and an
 * array index given to a builtin that takes variable names (`printf -v 'a[x]'`,
 * `declare 'a[x]=1'`) run data as code: opaque. (`((…))` and `$((…))`: ssh-command.ts.)
 */
const TAKES_VARIABLE_NAMES = new Set([...SETS_VARIABLES, 'read', 'unset', 'printf', 'test', '[', 'mapfile', 'readarray', 'getopts', 'wait', 'let']);
/** Shells: `-c STRING` is analysed; a script file or the input is opaque. */
const SHELLS = new Set(['sh', 'bash', 'rbash', 'dash', 'zsh', 'ksh', 'ksh93', 'mksh', 'pdksh', 'ash', 'yash', 'posh', 'fish', 'csh', 'tcsh']);
/** Interpreters and programs whose arguments or input are code agentgate cannot read. */
const INTERPRETER =
  /^(?:python[0-9.]*|pypy[0-9.]*|perl[0-9.]*|ruby[0-9.]*|irb|node|nodejs|deno|bun|php[0-9.]*|lua[0-9.]*|luajit|tclsh[0-9.]*|wish[0-9.]*|expect|Rscript|R|julia|osascript|pwsh|powershell|guile|racket|sbcl|clisp|ghci|runghc|runhaskell|jshell|groovy|scala|erl|escript|elixir|iex|gdb|lldb|ed|red|ex|vi|vim|nvim|view|rvim|rview|vimdiff|emacs|emacsclient|nano|at|batch|make|gmake|bmake|source|\.|bind|fc|complete|tmux|busybox-sh)$/;
/** Options (or option prefixes) that name a program to run, per program. */
const RUNS_A_PROGRAM: Record<string, RegExp> = {
  tar: /^(?:--to-command|--use-compress-program|--checkpoint-action|--info-script|--new-volume-script|--rsh-command|--rmt-command|-I|-F|-[A-Za-z]*[IF])/,
  rsync: /^(?:-e|--rsh|--rsync-path|-[A-Za-z]*e)/,
  ssh: /^(?:-o|-F|-[A-Za-z]*[oF])/,
  scp: /^(?:-o|-F|-S|-[A-Za-z]*[oFS])/,
  sftp: /^(?:-o|-F|-S|-D|-[A-Za-z]*[oFSD])/,
  man: /^(?:-P|--pager|-H|--html|-[A-Za-z]*[PH])/,
  zip: /^(?:-T|-TT|--unzip-command|-[A-Za-z]*T)/,
  less: /^(?:-\+|\+)/,
  apt: /^(?:-o|--option)/,
  'apt-get': /^(?:-o|--option)/,
  dpkg: /^--(?:pre-invoke|post-invoke)/,
  // bash's `enable -f FILE NAME` loads a shared object as a builtin: code agentgate cannot read.
  enable: /^-[A-Za-z]*f/,
};
/** `git` subcommands that run a program from their arguments or write configuration that later does. */
const GIT_RUNS = new Set(['config', 'submodule', 'bisect', 'filter-branch', 'filter-repo', 'daemon', 'instaweb', 'hook']);
/** git subcommands that run a program given with an option (`rebase --exec`, `difftool --extcmd`). */
const GIT_RUNS_WITH = /^(?:-x|--exec|--extcmd|-t|--tool)/;
/** git options before the subcommand that take the next word as their value. */
const GIT_VALUED = new Set(['-c', '-C', '--git-dir', '--work-tree', '--namespace', '--config-env', '--super-prefix', '--exec-path']);
/** git subcommands that talk to a remote through a program they can be told to run. */
const GIT_REMOTE = new Set(['clone', 'fetch', 'pull', 'push', 'ls-remote', 'archive', 'remote', 'submodule']);
/** Read-only forms of `git config`. */
const GIT_CONFIG_READ = /^(?:--get|--get-all|--get-regexp|--list|-l|--show-origin|--show-scope|--name-only|get|list)$/;
/** One plain sed command: an optional address, then p/d/q/…, `s` with plain flags, or `y`. */
/**
 * One sed command, read in parts so no pattern has whitespace on both sides of an optional
 * piece (the one-pattern form backtracked cubically: 5,000 blanks held the event loop 31 s):
 * an optional address (n, $, /re/, or two of them joined by a comma), `!` after an address,
 * then a command that only prints or edits the stream (e runs a shell, w writes a file).
 */
const SED_ADDRESS = /^(?:\d+|\$|\/[^/]*\/)(?:\s*,\s*(?:\d+|\$|\/[^/]*\/))?/;
const SED_COMMAND = /^(?:[pdqQlnNgGhHxz=]?|[{}]|s([^\\\n\w\s])(?:(?!\1).)*\1(?:(?!\1).)*\1[gIip0-9]*|y([^\\\n\w\s])(?:(?!\2).)*\2(?:(?!\2).)*\2)$/;

function safeSedCommand(cmd: string): boolean {
  let rest = cmd.trim();
  const address = SED_ADDRESS.exec(rest);
  if (address) {
    rest = rest.slice(address[0].length).trimStart();
    if (rest.startsWith('!')) rest = rest.slice(1).trimStart();
  }
  return SED_COMMAND.test(rest);
}
/** Shell syntax shell-quote reads differently from a shell (ssh-command.ts): never analysed. */
const UNREADABLE_FEATURES = /^(?:substitution|backslash|braces|line break|unparseable|arithmetic)/;

const base = (word: string): string => word.replace(/^.*\//, '');

/** The analysis under way: what it found, and the work spent (MAX_WORK). */
interface Walk extends CommandRuns {
  work: number;
}

function opaque(out: CommandRuns, why: string): void {
  if (!out.opaque.includes(why)) out.opaque.push(why);
}

/** Counts `n` units of work; false (and opaque) once the command costs more than agentgate analyses. */
function spend(out: Walk, n: number): boolean {
  out.work += n;
  if (out.work <= MAX_WORK) return true;
  opaque(out, 'more than agentgate analyses in one command (too many nested or repeated commands)');
  return false;
}

/** Everything the command may run (its simple commands, and what they run in turn). */
export function commandRuns(segments: readonly (readonly string[])[], features: readonly string[] = []): CommandRuns {
  const out: Walk = { programs: [], opaque: [], work: 0 };
  for (const f of features) if (UNREADABLE_FEATURES.test(f)) opaque(out, f);
  for (const words of segments) follow(words, 0, out);
  return { programs: out.programs, opaque: out.opaque };
}

/** `NAME=value` words whose name is not known inert: opaque. */
function environment(words: readonly string[], out: Walk): void {
  for (const w of words) {
    const name = /^([A-Za-z_][A-Za-z0-9_]*)=/.exec(w)?.[1];
    if (name !== undefined && !INERT_ENV.test(name)) opaque(out, `${name}=… (an environment variable a program may read as code, or as where to find it)`);
  }
}

/**
 * `suffix`: the words are a tail after a wrapper, tried as a possible command (their
 * leading `NAME=value` may be a plain argument, `nice grep a=b f`); env and sudo check
 * their own assignments.
 */
function follow(words: readonly string[], depth: number, out: Walk, suffix = false): void {
  if (words.length === 0) return;
  if (depth > MAX_DEPTH || out.programs.length >= MAX_PROGRAMS) {
    opaque(out, 'more nested commands than agentgate follows');
    return;
  }
  if (!spend(out, words.length)) return;
  let i = 0;
  while (i < words.length && (/^[A-Za-z_][A-Za-z0-9_]*=/.test(words[i]!) || RESERVED_PREFIX.has(words[i]!))) i++;
  if (!suffix) environment(words.slice(0, i), out);
  if (i >= words.length) return;
  const name = base(words[i]!);
  const args = words.slice(i + 1);
  out.programs.push([name, ...args]);
  if (/[*?[]/.test(words[i]!)) opaque(out, `a glob naming the program (${words[i]})`);

  if (WRAPPERS.has(name)) {
    if ((name === 'sudo' || name === 'doas') && args.some((a) => /^-[A-Za-z]*[si][A-Za-z]*$|^--(?:shell|login)$/.test(a))) opaque(out, `${name} -s/-i (a shell reading its input)`);
    if (name === 'env' || name === 'sudo' || name === 'doas') environment(args, out);
    if (name === 'env') envSplit(args, depth, out);
    if (name === 'flock') shellStrings(args, depth, out, /^(?:-c|--command)$/);
    // Each later word may be the program (option values differ per wrapper): all are followed.
    for (let k = 0; k < args.length && out.programs.length < MAX_PROGRAMS && out.work <= MAX_WORK; k++) {
      const rest = args.slice(k);
      follow(rest, depth + 1, out, true);
      if (name === 'xargs' || name === 'parallel') out.programs.push([base(rest[0]!), ...rest.slice(1), '…']);
    }
    return;
  }
  if (SHELLS.has(name)) return shell(name, args, depth, out);
  if (SETS_VARIABLES.has(name)) environment(args, out);
  if (name === 'let' || (SETS_VARIABLES.has(name) && args.some((a) => /^[-+][A-Za-z]*i/.test(a))) || (TAKES_VARIABLE_NAMES.has(name) && args.some((a) => a.includes('[')))) {
    opaque(out, `${name} evaluating arithmetic (a variable's value runs as code in it)`);
  }
  if (name === 'eval' || name === 'watch') {
    // eval: its words joined are a command; watch runs `sh -c` with them (each option-free tail).
    for (let k = 0; k < args.length; k++) if (!parseInto(args.slice(k).join(' '), depth, out)) break;
    return;
  }
  if (name === 'trap') {
    const action = args.find((a) => !a.startsWith('-'));
    if (action !== undefined) parseInto(action, depth, out);
    return;
  }
  if (name === 'su' || name === 'runuser' || name === 'script' || name === 'sg') {
    if (!shellStrings(args, depth, out, /^(?:-c|--command|-[A-Za-z]*c)$/)) opaque(out, `${name} without -c (a shell reading its input, or a program agentgate cannot see)`);
    return;
  }
  const commandOption = BUILTIN_COMMAND_OPTION[name];
  if (commandOption) {
    shellStrings(args, depth, out, commandOption);
    return;
  }
  if (name === 'find') return find(args, depth, out);
  if (name === 'sed' || name === 'gsed') return sed(name, args, out);
  if (name === 'awk' || name === 'gawk' || name === 'mawk' || name === 'nawk' || name === 'busybox-awk') return awk(name, args, out);
  if (INTERPRETER.test(name)) {
    if (!(args.length === 1 && /^(?:--version|-V|--help|-h)$/.test(args[0]!))) opaque(out, `${name} (runs code agentgate cannot read)`);
    return;
  }
  const runs = RUNS_A_PROGRAM[name];
  if (runs && args.some((a) => runs.test(a))) opaque(out, `${name} with an option that runs another program`);
  if (name === 'git') git(args, out);
}

/**
 * git: options before the subcommand that set configuration (`-c core.pager=…`,
 * `alias.x=!…`) or the exec path; subcommands that run a program named in their arguments
 * (`--upload-pack`, `--exec`, `-u` of clone/fetch/pull/ls-remote/push/archive) or write
 * configuration that later runs one (`git config` other than reads), and GIT_RUNS.
 */
function git(args: readonly string[], out: CommandRuns): void {
  const at = args.findIndex((a, k) => !a.startsWith('-') && !GIT_VALUED.has(args[k - 1] ?? ''));
  for (const a of at < 0 ? args : args.slice(0, at)) if (/^(?:-c|--config-env|--exec-path)/.test(a)) opaque(out, `git ${a.split('=')[0]} (sets configuration that runs programs)`);
  if (at < 0) return;
  const sub = args[at]!;
  const rest = args.slice(at + 1);
  if (GIT_REMOTE.has(sub) && rest.some((a) => /^(?:--upload-pack|--receive-pack|--exec|-u$)/.test(a))) opaque(out, `git ${sub} with a program to run on the remote side`);
  if ((sub === 'rebase' || sub === 'difftool' || sub === 'mergetool') && rest.some((a) => GIT_RUNS_WITH.test(a))) opaque(out, `git ${sub} with a program to run`);
  if (GIT_RUNS.has(sub) && !(sub === 'config' && rest.some((a) => GIT_CONFIG_READ.test(a)))) opaque(out, `git ${sub} (runs or configures programs)`);
}

/** A shell: `-c STRING` (in any option cluster: `-lc`, `-ec`) is analysed; anything else runs code unseen. */
function shell(name: string, args: readonly string[], depth: number, out: Walk): void {
  let c = false;
  let k = 0;
  for (; k < args.length; k++) {
    const a = args[k]!;
    if (a === '--' || a === '-') {
      k++;
      break;
    }
    if (/^--(?:rcfile|init-file)/.test(a)) {
      opaque(out, `${name} ${a} (reads a file agentgate cannot see)`);
      return;
    }
    if (a.startsWith('--')) continue;
    if (/^[-+][A-Za-z]+$/.test(a)) {
      if (a.startsWith('-') && a.includes('c')) c = true;
      if (a.startsWith('-') && a.includes('s')) {
        opaque(out, `${name} -s (reads commands from its input)`);
        return;
      }
      if (/^[-+][A-Za-z]*[oO]$/.test(a)) k++;
      continue;
    }
    break;
  }
  const first = args[k];
  if (c && first !== undefined) {
    parseInto(first, depth, out);
    return;
  }
  opaque(out, first === undefined ? `${name} reading commands from its input` : `${name} running a script agentgate cannot read`);
}

/** Options that take a shell command string (`-c STRING`, `-C'rm f'` glued): each such string is analysed. */
function shellStrings(args: readonly string[], depth: number, out: Walk, option: RegExp): boolean {
  let found = false;
  for (let k = 0; k < args.length; k++) {
    const m = option.exec(args[k]!);
    if (!m) continue;
    const glued = args[k]!.slice(m[0].length);
    const s = glued !== '' ? glued : args[k + 1];
    if (s === undefined) continue;
    found = true;
    parseInto(s, depth, out);
  }
  return found;
}

/** `env -S STRING`, `-SSTRING`, `--split-string=STRING`: the string's words are the command. */
function envSplit(args: readonly string[], depth: number, out: Walk): void {
  for (let k = 0; k < args.length; k++) {
    const a = args[k]!;
    let s: string | undefined;
    if (a === '-S' || a === '--split-string') s = args[k + 1];
    else if (a.startsWith('--split-string=')) s = a.slice('--split-string='.length);
    else if (/^-[^-]*S/.test(a)) s = a.slice(a.indexOf('S') + 1) || args[k + 1];
    if (s !== undefined) parseInto(`${s} ${args.slice(k + (s === args[k + 1] ? 2 : 1)).map((w) => `'${w.replace(/'/g, `'\\''`)}'`).join(' ')}`, depth, out);
  }
}

/** A shell command string: parsed as the command itself is, each simple command followed. */
function parseInto(text: string, depth: number, out: Walk): boolean {
  if (!spend(out, text.length)) return false;
  const p = parseCommand(text);
  for (const f of p.features) if (UNREADABLE_FEATURES.test(f)) opaque(out, `${f} in a nested command`);
  for (const words of p.segments) follow(words, depth + 1, out);
  return true;
}

/** `find … -exec CMD ;` (and -execdir, -ok, -okdir; `+` ends one too), `-delete` as `rm`. */
function find(args: readonly string[], depth: number, out: Walk): void {
  const paths = args.filter((a, k) => !a.startsWith('-') && !args.slice(0, k).some((b) => b.startsWith('-') || b === '(' || b === '!'));
  for (let k = 0; k < args.length; k++) {
    const a = args[k]!;
    if (a === '-delete') out.programs.push(['rm', '-r', ...(paths.length > 0 ? paths : ['.'])]);
    if (a === '-exec' || a === '-execdir' || a === '-ok' || a === '-okdir') {
      let e = k + 1;
      while (e < args.length && args[e] !== ';' && args[e] !== '+') e++;
      follow(args.slice(k + 1, e), depth + 1, out);
      k = e;
    }
  }
}

/**
 * sed: GNU sed runs a shell command with `e` (and `s///e`) and writes files with `w`. A
 * script is read when each of its commands is one of the plain editing ones (print,
 * delete, quit, substitute with flags g/I/i/p/number, y, hold-space…); anything else, or a
 * script file (`-f`), is opaque.
 */
function sed(name: string, args: readonly string[], out: CommandRuns): void {
  const scripts: string[] = [];
  let sawE = false;
  let first: string | undefined;
  for (let k = 0; k < args.length; k++) {
    const a = args[k]!;
    if (a === '-e' || a === '--expression') {
      sawE = true;
      if (args[k + 1] !== undefined) scripts.push(args[++k]!);
    } else if (a.startsWith('--expression=')) {
      sawE = true;
      scripts.push(a.slice('--expression='.length));
    } else if (/^-[A-Za-z]*e./.test(a) && !a.startsWith('--')) {
      sawE = true;
      scripts.push(a.slice(a.indexOf('e') + 1));
    } else if (a === '-f' || a.startsWith('--file') || /^-[A-Za-z]*f/.test(a)) {
      opaque(out, `${name} -f (a script file agentgate cannot read)`);
      return;
    } else if (!a.startsWith('-') && first === undefined) first = a;
  }
  if (!sawE && first !== undefined) scripts.push(first);
  for (const script of scripts) {
    for (const cmd of script.split(/[;\n]/)) {
      if (!safeSedCommand(cmd)) {
        opaque(out, `${name} script with a command agentgate does not read (\`${cmd.trim().slice(0, 40)}\`: e runs a shell command, w writes a file)`);
        return;
      }
    }
  }
}

/** awk: a program that can start a process (`system`, a pipe, getline from a command) or is read from a file is opaque. */
function awk(name: string, args: readonly string[], out: CommandRuns): void {
  let program: string | undefined;
  for (let k = 0; k < args.length; k++) {
    const a = args[k]!;
    if (a === '-F' || a === '-v') {
      k++;
      continue;
    }
    if (/^-[Fv]./.test(a)) continue;
    if (a === '--') {
      program = args[k + 1];
      break;
    }
    if (a.startsWith('-')) {
      opaque(out, `${name} ${a} (a program file, an extension or an option agentgate does not read)`);
      return;
    }
    program = a;
    break;
  }
  if (program === undefined) opaque(out, `${name} without a program`);
  else if (/system|getline|\||@/.test(program)) opaque(out, `${name} program that runs commands (system, a pipe, getline)`);
}
