/**
 * What the numbers were measured on: hardware, versions, and whether ssh2's native crypto
 * binding loaded (without it ssh2 builds a new cipher object for every packet, which
 * costs agentgate a large share of its CPU per query).
 */
import { createRequire } from 'node:module';
import { availableParallelism, cpus, release, totalmem } from 'node:os';
import type { PgServer } from '../test/helpers/postgres.js';
import { pgTool } from './pgbench.js';
import { run } from './procs.js';

export interface Machine {
  nproc: number;
  cpu: string;
  memoryGb: number;
  kernel: string;
  node: string;
  postgres: string;
  pgbench: string;
  openssh: string;
  pgbouncer: string;
  ssh2: string;
  ssh2NativeCrypto: boolean;
}

async function firstLine(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args).catch(() => undefined);
  return (r?.stdout.trim() || r?.stderr.trim() || 'not installed').split('\n')[0]!;
}

export async function describeMachine(pg: PgServer): Promise<Machine> {
  const require = createRequire(import.meta.url);
  const ssh2Version = (require('ssh2/package.json') as { version: string }).version;
  const ssh2Crypto = require('ssh2/lib/protocol/crypto.js') as { bindingAvailable?: boolean };
  return {
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGb: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    postgres: (await pg.psql('show server_version')).trim(),
    pgbench: await firstLine(pgTool('pgbench'), ['--version']),
    openssh: 'not used',
    pgbouncer: 'not used',
    ssh2: ssh2Version,
    ssh2NativeCrypto: ssh2Crypto.bindingAvailable === true,
  };
}

export function machineLines(m: Machine): string[] {
  return [
    `machine: nproc ${m.nproc}, ${m.cpu}, ${m.memoryGb} GB RAM, Linux ${m.kernel}`,
    `software: node ${m.node}, PostgreSQL ${m.postgres}, ${m.pgbench}, ${m.openssh}, ${m.pgbouncer}`,
    `ssh2 ${m.ssh2}: native crypto binding ${m.ssh2NativeCrypto ? 'loaded' : 'NOT loaded (built for another Node ABI or absent): per-packet JS cipher setup'}`,
  ];
}
