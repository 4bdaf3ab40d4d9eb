import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { coalesceWrites } from '../../src/tunnel/write-coalescing.js';

test('writes made in one turn of the event loop leave together in its check phase, in order', async () => {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect((server.address() as { port: number }).port, '127.0.0.1');
  await once(client, 'connect');
  const [peer] = await accepted;
  let received = '';
  peer.setEncoding('utf8').on('data', (d: string) => (received += d));

  coalesceWrites(client);
  client.write('one,');
  client.write('two,');
  client.write('three');
  // Held in this turn: nothing has been handed to the kernel yet.
  assert.equal(client.writableCorked, 1);
  assert.equal(client.writableLength, 'one,two,three'.length);
  await new Promise<void>((r) => setImmediate(r));
  assert.equal(client.writableCorked, 0);
  // A later turn starts a new batch.
  client.write('|four');
  assert.equal(client.writableCorked, 1);
  await new Promise<void>((r) => setImmediate(r));
  assert.equal(client.writableCorked, 0);
  while (received !== 'one,two,three|four') await once(peer, 'data');
  client.destroy();
  peer.destroy();
  server.close();
});
