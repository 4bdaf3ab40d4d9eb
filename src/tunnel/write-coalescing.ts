/**
 * Per-turn write coalescing for a tunnel socket.
 *
 * ssh2 writes every SSH packet to the socket as it makes it: one TLS record and one
 * write(2) each. With several channels busy (pgbench -c 8, an ORM's pool) many packets
 * are made in the same turn of the event loop — one per upstream reply that arrived —
 * and each costs a system call on this end and a read on the other. Corking the socket at
 * the first write of a turn and uncorking it in that turn's check phase (setImmediate)
 * sends them as one writev: one TLS pass, one system call, one wake-up of the peer. A lone
 * packet leaves in the same turn, just after the callbacks that were already running.
 */
import type { Duplex } from 'node:stream';

export function coalesceWrites(socket: Duplex): void {
  let corked = false;
  const flush = (): void => {
    corked = false;
    if (!socket.destroyed) socket.uncork();
  };
  const write = socket.write;
  socket.write = function (this: Duplex, ...args: Parameters<Duplex['write']>): boolean {
    if (!corked && !socket.destroyed) {
      corked = true;
      socket.cork();
      setImmediate(flush);
    }
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as Duplex['write'];
}
