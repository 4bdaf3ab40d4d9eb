// Native add-ons built for another Node (its ABI, NODE_MODULE_VERSION) fail to load, and
// some fail quietly: ssh2 falls back to JavaScript crypto (about half the speed) and
// cpu-features to nothing. Plain JavaScript, so it runs before the build and on any Node.
//   node bin/check-addons.mjs [--quiet]   exit 1 and name each stale add-on
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);

/**
 * Package and its binary. Only the add-ons built against one Node ABI (nan): keytar and
 * node-pty use Node-API, which later Nodes load, and they fail loudly when they do not.
 */
const ADDONS = [
  ['ssh2', 'lib/protocol/crypto/build/Release/sshcrypto.node'],
  ['cpu-features', 'build/Release/cpufeatures.node'],
];

const WRONG_ABI = /NODE_MODULE_VERSION|did not self-register|invalid ELF header|wrong ELF class/;

function packageRoot(name) {
  // The main module sits somewhere under the package root; walk up to its package.json's folder.
  let dir = dirname(require.resolve(name));
  while (!dir.endsWith(`node_modules/${name}`) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/** Add-ons present but built for another Node: [{ name, detail }]. An add-on not installed or not built is not this check's business (its package copes). */
export function staleAddons() {
  const stale = [];
  for (const [name, rel] of ADDONS) {
    let file;
    try {
      file = join(packageRoot(name), rel);
    } catch {
      continue; // not installed (keytar is optional)
    }
    try {
      require(file);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (WRONG_ABI.test(message)) stale.push({ name, detail: message.split('\n')[0] });
    }
  }
  return stale;
}

/** One line for the user, or undefined when all add-ons load. */
export function staleAddonsAdvice(stale = staleAddons()) {
  if (stale.length === 0) return undefined;
  return `agentgate: native add-on${stale.length > 1 ? 's' : ''} ${stale.map((s) => s.name).join(', ')} built for another Node version than ${process.version}; run: npm rebuild`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const advice = staleAddonsAdvice();
  if (advice && !process.argv.includes('--quiet')) process.stderr.write(advice + '\n');
  process.exitCode = advice ? 1 : 0;
}
