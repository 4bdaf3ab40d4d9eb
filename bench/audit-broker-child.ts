/**
 * A broker alone in its own process over an existing state dir (the audit export bench
 * fills the log first), so its memory during an export is its own.
 *
 * Protocol: one JSON line on stdin ({ root, issuer }), one JSON line back on stdout
 * ({ url, fingerprint, pid }); the broker stops when stdin closes.
 */
import { readJsonInput, replyReady, runJsonChild } from './json-child.js';
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
  const { input, stdinClosed } = await readJsonInput<AuditBrokerChildInput>();
  const config = makeBrokerConfig(input.root, { identity: { issuer: input.issuer }, auditors: { groups: ['security'] } });
  const broker = await runBroker(config, { port: 0, logger: silentLogger });
  const ready: AuditBrokerChildReady = { url: broker.url, fingerprint: broker.fingerprint, pid: process.pid };
  replyReady(ready);
  await stdinClosed;
  await broker.close();
}

runJsonChild('audit-broker-child', main);
