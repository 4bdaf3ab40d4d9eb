/**
 * Recognises the end of a Postgres login in what the broker sends a local client, so the
 * CLI's listener can bound how long a connection may take to log in (pgbouncer's
 * client_login_timeout) without parsing anything after it.
 *
 * Before AuthenticationOk the broker sends only single-byte answers to SSLRequest and
 * GSSENCRequest ('N'), Authentication messages ('R') and an ErrorResponse ('E') before it
 * closes. See https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
 */

/** Feed it each chunk from the broker; true once AuthenticationOk has gone by. */
export type LoginWatch = (chunk: Buffer) => boolean;

const ENCRYPTION_DECLINED = 0x4e; // 'N'
const AUTHENTICATION = 0x52; // 'R'

export function postgresLoginWatch(): LoginWatch {
  // Bytes of the current message still to skip, and a partial header (type, length, code).
  let skip = 0;
  let header = Buffer.alloc(0);
  let done = false;
  return (chunk) => {
    if (done) return true;
    let i = 0;
    while (i < chunk.length) {
      if (skip > 0) {
        const n = Math.min(skip, chunk.length - i);
        skip -= n;
        i += n;
        continue;
      }
      if (header.length === 0 && chunk[i] === ENCRYPTION_DECLINED) {
        i++;
        continue;
      }
      // Nine bytes: type, int32 length, and for 'R' the int32 auth code (0 = Ok).
      const take = Math.min(9 - header.length, chunk.length - i);
      header = Buffer.concat([header, chunk.subarray(i, i + take)]);
      i += take;
      if (header.length < 9) continue;
      const length = header.readInt32BE(1);
      if (header[0] === AUTHENTICATION && length === 8 && header.readInt32BE(5) === 0) {
        done = true;
        return true;
      }
      skip = Math.max(0, length - 8);
      header = Buffer.alloc(0);
    }
    return false;
  };
}
