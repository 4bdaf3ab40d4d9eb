/**
 * A broker alone in its own process over an existing state dir (the audit export bench
 * fills the log first), so its memory during an export is its own.
 *
 * Protocol: one JSON line on stdin ({ root, issuer }), one JSON line back on stdout
 * ({ url, fingerprint, pid }); the broker stops when stdin closes.
 */
import { createInterface } from 'node:readline';
import { makeBrokerConfig } from '../test/broker/fixtures.js';
import { runBroker } from '../src/broker/index.js';
import { silentLogger } from '../src/broker/log.js';

export interface AuditBrokerChildInput {
  root: string;
  issuer: string;
}

export interface AuditBrokerChildReady {
  url: string;
  fingerprint: string;
  pid: number;
}

async function main(): Promise<void> {
  const lines = createInterface({ input: process.stdin });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    lines.once('close', () => reject(new Error('stdin closed before the config line')));
  });
  const input = JSON.parse(first) as AuditBrokerChildInput;
  const config = makeBrokerConfig(input.root, { identity: { issuer: input.issuer }, auditors: { groups: ['security'] } });
  const broker = await runBroker(config, { port: 0, logger: silentLogger });
  const ready: AuditBrokerChildReady = { url: broker.url, fingerprint: broker.fingerprint, pid: process.pid };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
  await new Promise<void>((resolve) => lines.once('close', resolve));
  await broker.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`audit-broker-child: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
