/**
 * A taken local port is found before the broker is contacted, so `connect` does not say
 * "connected to the broker" and then fail. The real listener still binds later (a port
 * taken in between fails there, with the same kind of error).
 */
import { createServer } from 'node:net';
import { UsageError } from '../errors.js';

export async function assertPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, exclusive: true }, resolve);
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') {
      throw new UsageError(`local port ${port} on ${host} is taken by another program`, { hint: 'pick another with --port N, or --port 0 for any free port' });
    }
    if (code === 'EACCES') {
      throw new UsageError(`local port ${port} on ${host} needs privileges this user lacks`, { hint: 'pick a port above 1023 with --port N, or --port 0 for any free port' });
    }
    throw err;
  } finally {
    await new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
  }
}
