/**
 * bin/runtime-flags.mjs: which commands replace themselves with a tuned node, and with what.
 * (broker-command.test.ts checks a real `broker start` ends up running with them.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';

interface Plan {
  args: string[];
  env: NodeJS.ProcessEnv;
}
type ReexecPlan = (argv: string[], env: NodeJS.ProcessEnv, execArgv: string[]) => Plan | undefined;

const { reexecPlan } = (await import(new URL('../../../bin/runtime-flags.mjs', import.meta.url).href)) as { reexecPlan: ReexecPlan };
const node = process.execPath;
const bin = '/x/bin/agentgate';

test('long-running commands get the young-generation cap; the broker also liftoff and two malloc arenas', () => {
  const connect = reexecPlan([node, bin, 'connect', 'pg-prod', '--port', '5433'], {}, []);
  assert.deepEqual(connect?.args, [node, '--max-semi-space-size=4', bin, 'connect', 'pg-prod', '--port', '5433']);
  assert.equal(connect?.env['MALLOC_ARENA_MAX'], undefined);
  for (const cmd of [['run', '--', 'psql'], ['mcp'], ['--json', 'run', 'x']]) {
    assert.ok(reexecPlan([node, bin, ...cmd], {}, [])?.args.includes('--max-semi-space-size=4'), cmd.join(' '));
  }
  const broker = reexecPlan([node, bin, 'broker', 'start', '--config', 'a.yaml'], { PATH: '/bin' }, ['--enable-source-maps']);
  assert.deepEqual(broker?.args, [node, '--enable-source-maps', '--max-semi-space-size=4', '--liftoff-only', bin, 'broker', 'start', '--config', 'a.yaml']);
  assert.deepEqual(broker?.env, { PATH: '/bin', MALLOC_ARENA_MAX: '2' });
});

test('short commands, flags already present, or AGENTGATE_NO_REEXEC=1: no exec', () => {
  for (const cmd of [['login'], ['targets'], ['broker', 'init', 'd'], ['approve'], []]) assert.equal(reexecPlan([node, bin, ...cmd], {}, []), undefined, cmd.join(' '));
  assert.equal(reexecPlan([node, bin, 'connect', 'x'], {}, ['--max-semi-space-size=8']), undefined);
  assert.equal(reexecPlan([node, bin, 'connect', 'x'], { NODE_OPTIONS: '--max-semi-space-size=2' }, []), undefined);
  assert.equal(reexecPlan([node, bin, 'connect', 'x'], { AGENTGATE_NO_REEXEC: '1' }, []), undefined);
  // The process it execs has everything: asking again changes nothing (no exec loop).
  const plan = reexecPlan([node, bin, 'broker', 'start'], {}, []);
  assert.ok(plan);
  assert.equal(reexecPlan([node, ...plan.args.slice(plan.args.indexOf(bin))], plan.env, plan.args.slice(1, plan.args.indexOf(bin))), undefined);
});
