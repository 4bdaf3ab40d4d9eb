/**
 * The `tunnel-relay` path: pgbench → local listener → agentgate's tunnel (HTTPS upgrade,
 * a multiplex on TLS, a channel per connection) → PostgreSQL, in two processes, with no proxy,
 * policy or audit behind it. Between the node-relay floor and agentgate, it splits
 * agentgate's overhead into what the transport costs and what the broker's work costs.
 * (TLS is not verified here: `rejectUnauthorized: false`. A bench fixture only.)
 */
import { fileURLToPath } from 'node:url';
import { makeSelfSignedCert } from '../src/shared/self-signed-cert.js';
import { startTwoHops, type NodeRelay } from './node-relay.js';

export async function startTunnelRelay(pgPort: number): Promise<NodeRelay> {
  const { certPem, keyPem } = await makeSelfSignedCert({ commonName: 'agentgate-bench-tunnel', host: '127.0.0.1', validityDays: 1 });
  const script = fileURLToPath(new URL('./tunnel-relay-child.js', import.meta.url));
  return startTwoHops(script, 'tunnel relay', { role: 'back', upstreamPort: pgPort, certPem, keyPem }, (back) => ({ role: 'front', brokerPort: back.port, fingerprint: back.fingerprint }));
}
