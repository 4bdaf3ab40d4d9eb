// V8 and glibc settings for agentgate's long-running commands, applied by replacing this
// process with itself (process.execve: same pid, same stdio, signals reach it as before).
//
// Why: the broker and the CLI's tunnel end keep a few tens of MB live while every statement
// makes short-lived garbage. With V8's default young generation (16 MB semi-spaces) the
// old-generation headroom (limit − live) stays smaller than the young generation, so V8
// schedules a full mark-compact every ~80 ms no matter how little survives: measured
// (`node --trace-gc dist/bench/run.js --targets direct,agentgate --modes prepared
// --clients 1 …`) 86 mark-compacts in a 5 s run and 534 µs CPU per transaction, against
// 21 and 280 µs with --max-semi-space-size=4. --liftoff-only and MALLOC_ARENA_MAX=2 keep
// the broker's memory down (README, "Broker memory"). Flags are frozen once V8 starts, so
// they cannot be set from inside; a portable shebang cannot carry them.
//
// Plain JavaScript: it runs before anything is loaded. AGENTGATE_NO_REEXEC=1 turns it off
// (or set the flags yourself, in NODE_OPTIONS or on the node command line).

/** Commands that run for long (a session, the broker): short ones are not worth an exec. */
const LONG_RUNNING = new Set(['connect', 'run', 'mcp', 'dev', 'broker start']);

const COMMON = ['--max-semi-space-size=4'];
const BROKER = ['--liftoff-only'];

/** The command path as typed (`broker start`, `connect`), skipping leading options. */
function commandOf(argv) {
  const words = argv.slice(2).filter((a) => !a.startsWith('-'));
  if (words[0] === 'broker') return `broker ${words[1] ?? ''}`.trim();
  return words[0] ?? '';
}

/**
 * The node flags and environment `argv`'s command should run with, or undefined when this
 * process already has them (or cannot be replaced).
 */
export function reexecPlan(argv = process.argv, env = process.env, execArgv = process.execArgv) {
  if (env.AGENTGATE_NO_REEXEC === '1' || typeof process.execve !== 'function') return undefined;
  const command = commandOf(argv);
  if (!LONG_RUNNING.has(command)) return undefined;
  const wanted = command === 'broker start' || command === 'dev' ? [...COMMON, ...BROKER] : COMMON;
  const present = [...execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)];
  const missing = wanted.filter((flag) => !present.some((p) => p.split('=')[0] === flag.split('=')[0]));
  const wantsArena = (command === 'broker start' || command === 'dev') && env.MALLOC_ARENA_MAX === undefined;
  if (missing.length === 0 && !wantsArena) return undefined;
  return {
    args: [process.execPath, ...execArgv, ...missing, ...argv.slice(1)],
    env: wantsArena ? { ...env, MALLOC_ARENA_MAX: '2' } : env,
  };
}

/** Replace this process with one that has the flags; returns only when nothing needs doing. */
export function applyRuntimeFlags() {
  const plan = reexecPlan();
  if (!plan) return;
  try {
    process.execve(process.execPath, plan.args, plan.env);
  } catch {
    // An exec the system refuses (seccomp, an odd platform): run as we are, just slower.
  }
}
