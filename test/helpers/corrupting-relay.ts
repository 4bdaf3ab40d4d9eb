/**
 * A TCP relay in front of a real PostgreSQL that can make the server look broken: on a
 * connection whose client has sent `marker` (in a query's text), the first DataRow the
 * server sends back claims far more bytes for its first value than the message holds.
 * Everything else passes unchanged. It stands in for a faulty server or a corrupting
 * middlebox, which a real PostgreSQL cannot be made to be.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';

const DATA_ROW = 0x44; // 'D'

export interface CorruptingRelay {
  readonly port: number;
  /** Where the relay connects; set before the first connection arrives. */
  upstreamPort: number;
  /** DataRows corrupted so far. */
  readonly corrupted: number;
  close(): Promise<void>;
}

export async function startCorruptingRelay(marker: string): Promise<CorruptingRelay> {
  const sockets = new Set<net.Socket>();
  let corrupted = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(relay.upstreamPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());

    let sent = '';
    let armed = false;
    client.on('data', (c: Buffer) => {
      // The server is idle while the client sends a query: its next byte starts a message.
      sent = (sent + c.toString('latin1')).slice(-(marker.length + c.length));
      if (!armed && sent.includes(marker)) armed = true;
      upstream.write(c);
    });

    let pending = Buffer.alloc(0);
    upstream.on('data', (c: Buffer) => {
      if (!armed) {
        client.write(c);
        return;
      }
      // Armed: follow the framing (type, 4-byte length) until the first DataRow.
      pending = Buffer.concat([pending, c]);
      let at = 0;
      while (armed && pending.length - at >= 5) {
        const end = at + 1 + pending.readUInt32BE(at + 1);
        if (end > pending.length) break;
        // DataRow: type, length, column count (2), first value's length (4).
        if (pending[at] === DATA_ROW && end - at >= 11) {
          pending.writeInt32BE(0x7ffffff0, at + 7);
          armed = false;
          corrupted++;
        }
        at = end;
      }
      if (!armed) at = pending.length;
      // One write for the chunk, as the server sent it.
      client.write(pending.subarray(0, at));
      pending = pending.subarray(at);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const relay: CorruptingRelay = {
    port: (server.address() as AddressInfo).port,
    upstreamPort: 0,
    get corrupted() {
      return corrupted;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  return relay;
}
