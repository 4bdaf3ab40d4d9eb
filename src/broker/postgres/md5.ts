/**
 * The answer to AuthenticationMD5Password, for upstream servers still on md5 auth:
 * `"md5" + md5hex(md5hex(password + user) + salt)`. PostgreSQL does not SASLprep here.
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
 * (MD5 is deprecated in PostgreSQL 18; prefer SCRAM.)
 */
import { createHash } from 'node:crypto';

function md5hex(data: Buffer | string): string {
  return createHash('md5').update(data).digest('hex');
}

/** The PasswordMessage text for MD5 auth; `salt` is the 4 bytes from AuthenticationMD5Password. */
export function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = md5hex(Buffer.from(password + user, 'utf8'));
  return `md5${md5hex(Buffer.concat([Buffer.from(inner, 'latin1'), salt]))}`;
}
