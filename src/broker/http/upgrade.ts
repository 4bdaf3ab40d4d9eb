/**
 * HTTP Upgrade requests (the tunnel): authenticated like /v1/*, then the raw socket is
 * handed to the handler registered for the path. Refusals are written as plain HTTP/1.1
 * responses on the socket, which is then closed.
 */
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ApiErrorBody } from '../../shared/api-types.js';
import { TokenRejectedError } from '../identity/errors.js';
import { authenticate, rejection } from './auth.js';
import { errorBody, methodNotAllowed, notFound } from './errors.js';
import { pathOf } from './handler.js';
import type { BrokerContext, UpgradeHandler } from './types.js';

export function createUpgradeListener(
  handlers: Readonly<Record<string, UpgradeHandler>>,
  broker: BrokerContext,
  track: (socket: Duplex) => void,
): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  return (req, socket, head) => {
    const started = performance.now();
    const path = pathOf(req);
    const log = (status: number, sub?: string, reason?: string): void =>
      broker.logger.info('upgrade', { method: req.method, path, status, ms: Math.round((performance.now() - started) * 10) / 10, sub, ...(reason === undefined ? {} : { reason }) });
    // Until a handler owns it, a socket error (client gone) must not crash the broker.
    const onEarlyError = (err: Error): void => broker.logger.debug('upgrade socket error', { path, error: err });
    socket.on('error', onEarlyError);
    track(socket);

    const handler = Object.hasOwn(handlers, path) ? handlers[path] : undefined;
    if (!handler) {
      const e = notFound(path);
      log(404);
      return refuse(socket, 404, e.toBody());
    }
    if (req.method !== 'GET') {
      const e = methodNotAllowed(req.method ?? '', path, ['GET']);
      log(405);
      return refuse(socket, 405, e.toBody(), e.headers);
    }

    authenticate(req, broker.verifier).then(
      (identity) => {
        if (socket.destroyed) return;
        log(101, identity.sub);
        socket.off('error', onEarlyError);
        try {
          handler({ identity, req, socket, head });
        } catch (err) {
          broker.logger.error('upgrade handler threw', { path, sub: identity.sub, error: err });
          socket.destroy();
        }
      },
      (err: unknown) => {
        if (err instanceof TokenRejectedError) {
          const r = rejection(err);
          log(r.status, undefined, err.reason);
          refuse(socket, r.status, r.body, r.headers);
        } else {
          broker.logger.error('upgrade authentication failed', { path, error: err });
          log(500);
          refuse(socket, 500, errorBody('AG_INTERNAL', 'the broker hit an internal error'));
        }
      },
    );
  };
}

function refuse(socket: Duplex, status: number, body: ApiErrorBody, headers: Record<string, string> = {}): void {
  if (socket.destroyed) return;
  const payload = Buffer.from(JSON.stringify(body), 'utf8');
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    'content-type: application/json; charset=utf-8',
    `content-length: ${payload.length}`,
    'cache-control: no-store',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    'connection: close',
    '',
    '',
  ];
  socket.end(Buffer.concat([Buffer.from(lines.join('\r\n'), 'latin1'), payload]));
  // end() flushes then closes; destroy as a backstop if the peer never reads.
  setTimeout(() => socket.destroy(), 2_000).unref();
}
