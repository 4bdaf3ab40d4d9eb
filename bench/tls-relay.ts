/**
 * The `tls-relay` alternative: pgbench → front relay → one TLS connection per local
 * connection, opened as an HTTPS upgrade through undici (as the CLI would have to, for
 * one HTTPS port and HTTPS_PROXY) → back relay (an https server's `upgrade`) → PostgreSQL.
 * After the `101` both relays only pipe bytes. It prices the "one TLS connection per local
 * connection" transport on the data path, against the `node-relay` floor (raw TLS
 * sockets) and the multiplexed `tunnel-relay`; its per-connection setup (a TLS handshake
 * and an HTTP round trip per local connection) is not in these figures.
 * (TLS is not verified here: `rejectUnauthorized: false`. A bench fixture only.)
 */
import { fileURLToPath } from 'node:url';
import { makeSelfSignedCert } from '../src/shared/self-signed-cert.js';
import { startTwoHops, type NodeRelay } from './node-relay.js';

export async function startTlsRelay(pgPort: number): Promise<NodeRelay> {
  const { certPem, keyPem } = await makeSelfSignedCert({ commonName: 'agentgate-bench-tls', host: '127.0.0.1', validityDays: 1 });
  const script = fileURLToPath(new URL('./tls-relay-child.js', import.meta.url));
  return startTwoHops(script, 'tls relay', { role: 'back', upstreamPort: pgPort, certPem, keyPem }, (back) => ({ role: 'front', brokerPort: back.port }));
}
