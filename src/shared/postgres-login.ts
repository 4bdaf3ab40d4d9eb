/**
 * The user name a Postgres client presents to the local listener. `connect` prints it in
 * the connection string and `run` exports it as PGUSER; the broker accepts only this name
 * (and the target's database), as PostgreSQL accepts only roles and databases that exist.
 * Upstream, the broker logs in as the target's configured role.
 */
export const POSTGRES_CLIENT_USER = 'agent';

/**
 * A FATAL ErrorResponse (SQLSTATE 08006, connection_failure) the CLI writes to a local
 * Postgres client when it cannot reach the broker, so psql prints a sentence rather than
 * "server closed the connection".
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-ERRORRESPONSE
 */
export function postgresConnectionFailure(message: string, hint?: string): Buffer {
  const field = (code: string, value: string): Buffer => Buffer.concat([Buffer.from(code, 'latin1'), Buffer.from(value.replace(/\0/g, ''), 'utf8'), Buffer.alloc(1)]);
  const body = Buffer.concat([field('S', 'FATAL'), field('V', 'FATAL'), field('C', '08006'), field('M', message), ...(hint === undefined ? [] : [field('H', hint)]), Buffer.alloc(1)]);
  const head = Buffer.alloc(5);
  head.write('E', 0, 'latin1');
  head.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
