/**
 * A Postgres session is over when its backend is gone, as the server confirms it, not
 * when the broker stops listening. Sending Terminate and closing the socket is not
 * enough: a backend busy in a statement reads nothing, and a statement can catch the
 * cancel that precedes the Terminate (PL/pgSQL `EXCEPTION WHEN query_canceled`), so it
 * would run on, holding its locks and writing, long after its credential expired or an
 * operator revoked it. The server closing its side is the confirmation; when it does not
 * within a short grace, the broker terminates the backend from a connection of its own
 * (as the target's user, whose backends it may signal) and waits for the server to
 * close the session's own connection.
 */
import type { Duplex } from 'node:stream';
import type { PostgresTargetConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { BackendKeyData } from './decode-backend.js';
import { TERMINATE } from './build-frontend.js';
import { createCatalogLookup } from './masking-catalog.js';
import { sendCancel } from './upstream.js';

/** How the backend went: it closed after Terminate, the broker terminated it, or the broker could not confirm either. */
export type BackendEnd = 'closed' | 'terminated' | 'unconfirmed';

export interface EndBackendOptions {
  target: PostgresTargetConfig;
  socket: Duplex;
  key: BackendKeyData;
  /** A statement is running: cancel it first (a well-behaved one stops at once). */
  executing: boolean;
  logger: Logger;
  session: string;
  /** How long the server has to close after Terminate before it is terminated. Default 2 s. */
  graceMs?: number;
}

/** Wait for the server to close its side (or `ms` to pass); true when it did. */
function serverClosed(socket: Duplex, ms: number): Promise<boolean> {
  if (socket.readableEnded || socket.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (closed: boolean): void => {
      clearTimeout(timer);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      resolve(closed);
    };
    const onEnd = (): void => done(true);
    const timer = setTimeout(() => done(false), ms);
    timer.unref();
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    // The server's bytes still have to be read for 'end' to come.
    socket.resume();
  });
}

export async function endBackend(o: EndBackendOptions): Promise<BackendEnd> {
  const { socket, key } = o;
  if (o.executing) sendCancel(o.target, key).catch(() => {});
  if (!socket.destroyed && !socket.writableEnded) socket.end(TERMINATE);
  if (await serverClosed(socket, o.graceMs ?? 2_000)) return 'closed';
  // The TCP port the server sees this connection come from: a pid reused by another backend does not match it.
  const port = (socket as Duplex & { localPort?: number }).localPort;
  if (key.processId <= 0 || typeof port !== 'number') {
    o.logger.error('the server did not close an ended session and it cannot be terminated (no backend pid)', { session: o.session, target: o.target.name });
    socket.destroy();
    return 'unconfirmed';
  }
  const side = createCatalogLookup(o.target, { applicationName: 'agentgate session end', timeoutMs: 15_000 });
  try {
    const rows = await side.rows(`SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE pid = ${key.processId} AND client_port = ${port}`);
    // The server closing this session's own connection is the confirmation (no row: it left meanwhile).
    const gone = await serverClosed(socket, rows.length === 0 ? 1_000 : 10_000);
    o.logger.warn(gone ? 'terminated the backend of an ended session: it did not stop on cancel and Terminate' : 'could not confirm the backend of an ended session is gone', {
      session: o.session,
      target: o.target.name,
      pid: key.processId,
    });
    return gone ? 'terminated' : 'unconfirmed';
  } catch (err) {
    o.logger.error('could not terminate the backend of an ended session', { session: o.session, target: o.target.name, error: (err as Error).message });
    return 'unconfirmed';
  } finally {
    side.close();
    socket.destroy();
  }
}
