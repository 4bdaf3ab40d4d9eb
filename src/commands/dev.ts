/**
 * `agentgate dev [--dir D] [--port N] [--pglite] [--json]` — everything on one machine for
 * a first look: broker, embedded OIDC issuer, seeded demo PostgreSQL, demo policy, token
 * files for a human, a reviewer and an agent, and a tour. Runs until Ctrl-C; a second
 * Ctrl-C stops at once.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { printJson, say } from './render.js';

interface DevFlags {
  dir?: string;
  port?: number;
  pglite?: boolean;
  json?: boolean;
}

function portArg(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n > 65535) throw new InvalidArgumentError('expected a port 0-65535 (0 = any free port)');
  return n;
}

export function register(program: Command): void {
  program
    .command('dev')
    .description('everything on one machine for a first look: a broker, a local OIDC issuer, a demo PostgreSQL, a demo policy, and token files for three demo users (it does not log you in; agentgate login does)')
    .addOption(new Option('--dir <dir>', 'where the dev broker keeps its state, config and token files (default: $XDG_STATE_HOME/agentgate/dev)').env('AGENTGATE_DEV_DIR'))
    .option('--port <n>', 'broker port (default 8443, or a free one when taken; 0 = any free port)', portArg)
    .option('--pglite', 'use PGlite (PostgreSQL in WebAssembly) even when a PostgreSQL server is installed')
    .option('--json', 'once ready, print the endpoints and file paths as one JSON document on stdout')
    .action(async (flags: DevFlags) => {
      const { startDev, DevAbortedError } = await import('../dev/run-dev.js');
      const stop = new AbortController();
      let forced = false;
      let dev: Awaited<ReturnType<typeof startDev>> | undefined;
      const onSignal = (): void => {
        if (!stop.signal.aborted) {
          say('agentgate dev: stopping (Ctrl-C again to force)');
          stop.abort();
          return;
        }
        if (forced) return;
        forced = true;
        say('agentgate dev: forced stop');
        dev?.kill();
        // The clean stop is still awaiting servers; a forced stop cannot wait for it. The exit hook kills the database.
        process.exit(130);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        try {
          dev = await startDev({
            ...(flags.dir !== undefined ? { dir: flags.dir } : {}),
            ...(flags.port !== undefined ? { port: flags.port } : {}),
            ...(flags.pglite ? { pglite: true } : {}),
            say,
            signal: stop.signal,
          });
        } catch (err) {
          if (err instanceof DevAbortedError) {
            say('agentgate dev: stopped');
            return;
          }
          throw err;
        }
        say(dev.tour);
        if (flags.json) {
          printJson({
            dir: dev.dir,
            broker: dev.brokerUrl,
            fingerprint: dev.fingerprint,
            issuer: dev.issuer,
            target: dev.target,
            database: { kind: dev.database.kind, host: dev.database.host, port: dev.database.port, database: dev.database.database, data_dir: dev.database.dataDir ?? null },
            config: dev.configPath,
            env_file: dev.envFile,
            log: dev.logFile,
            receipt_dir: dev.receiptDir,
            token_files: dev.tokenFiles,
          });
        }
        say('\nagentgate dev: ready; Ctrl-C stops everything');
        if (!stop.signal.aborted) await new Promise((resolve) => stop.signal.addEventListener('abort', resolve, { once: true }));
        await dev.close();
        say('agentgate dev: stopped');
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
