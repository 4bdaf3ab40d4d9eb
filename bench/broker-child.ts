/**
 * The broker alone in its own process, so its memory can be read cleanly (the bench's
 * main process also holds pgbench bookkeeping, the CLI tunnel and the node-postgres
 * clients). The same policy and masking as the in-process stack (bench-policy.ts).
 *
 * Protocol: the parent writes one JSON line (BrokerChildInput) on stdin — the password
 * travels there, never in argv — and reads one JSON line (BrokerChildReady) from stdout.
 * When stdin closes (the parent is done, or died) the broker shuts down and we exit.
 */
import { readJsonInput, replyReady, runJsonChild } from './json-child.js';
import { makeBrokerConfig, makeTempDir } from '../test/broker/fixtures.js';
import { runBroker } from '../src/broker/index.js';
import type { PostgresTargetConfig } from '../src/broker/config/types.js';
import { Secret } from '../src/shared/secret.js';
import { silentLogger } from '../src/broker/log.js';
import { benchMasking, benchPolicies } from './bench-policy.js';

export interface BrokerChildInput {
  issuer: string;
  target: string;
  pgPort: number;
  pgUser: string;
  pgPassword: string;
  pgDatabase: string;
}

export interface BrokerChildReady {
  url: string;
  tlsCertPem: string;
  sshHostKeyFingerprint: string;
  pid: number;
}

async function main(): Promise<void> {
  const { input, stdinClosed } = await readJsonInput<BrokerChildInput>();
  const tmp = await makeTempDir('agentgate-bench-broker-');
  const target: PostgresTargetConfig = {
    type: 'postgres',
    name: input.target,
    host: '127.0.0.1',
    port: input.pgPort,
    database: input.pgDatabase,
    user: input.pgUser,
    password: new Secret(input.pgPassword, '${env:BENCH_PG_PASSWORD}'),
    tls: 'disable',
    ca: undefined,
  };
  const config = makeBrokerConfig(tmp.path, {
    identity: { issuer: input.issuer },
    targets: { [input.target]: target },
    policies: benchPolicies(input.target),
    masking: benchMasking(input.target),
  });
  const broker = await runBroker(config, { port: 0, logger: silentLogger });
  const ready: BrokerChildReady = {
    url: broker.url,
    tlsCertPem: broker.keys.tlsCertPem,
    sshHostKeyFingerprint: broker.keys.sshHostKeyFingerprint,
    pid: process.pid,
  };
  replyReady(ready);
  await stdinClosed;
  await broker.close();
  await tmp.remove();
}

runJsonChild('broker-child', main);
