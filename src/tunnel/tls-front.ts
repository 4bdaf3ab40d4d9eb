/**
 * A TLS server end for a local listener whose client insists on TLS (kubectl sends a
 * bearer token only to an https server). The decrypted side joins a tunnel channel.
 */
import { duplexPair, pipeline, type Duplex } from 'node:stream';
import tls from 'node:tls';
import { startDeadline } from '../shared/connection-timers.js';

/**
 * The TLS end of one local connection: returns the stream to join with the accepted
 * socket (it carries TLS records), and joins the decrypted side with the channel once it
 * opens; a handshake not finished within `handshakeTimeoutMs` closes it. If the channel cannot be opened, kubectl's first request is answered with a 503
 * Status it prints, instead of a bare reset.
 */
export function tlsFront(secureContext: tls.SecureContext, channel: Promise<Duplex>, handshakeTimeoutMs: number): Duplex {
  const [outer, inner] = duplexPair();
  const secure = new tls.TLSSocket(inner, { isServer: true, secureContext });
  secure.on('error', () => secure.destroy());
  // A client that never finishes the handshake must not hold the connection (and its channel).
  const stop = startDeadline(handshakeTimeoutMs, () => {
    secure.destroy();
    outer.destroy();
  });
  secure.once('secure', stop);
  secure.once('close', stop);
  channel.then(
    (ch) => {
      if (secure.destroyed) {
        ch.destroy();
        return;
      }
      pipeline(secure, ch, () => secure.destroy());
      pipeline(ch, secure, () => secure.destroy());
    },
    (err: unknown) => refuse(secure, `agentgate: cannot reach the broker: ${(err as Error)?.message ?? String(err)}`),
  );
  return outer;
}

/** Answer the client's first request with a 503 Status it can print, then close. */
function refuse(secure: tls.TLSSocket, message: string): void {
  if (secure.destroyed) return;
  const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: 'ServiceUnavailable', code: 503 });
  secure.once('data', () => {
    secure.end(`HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
  const timer = setTimeout(() => secure.destroy(), 10_000);
  timer.unref();
  secure.once('close', () => clearTimeout(timer));
}

