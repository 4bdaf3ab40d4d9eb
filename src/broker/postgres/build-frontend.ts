/**
 * Messages the broker sends to the upstream server, as a client would. Each builder
 * returns a Buffer the caller owns; payload-less messages are shared constants (never
 * write into them).
 *
 * Formats: https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { FrontendType, StartupCode } from './protocol.js';
import { MessageWriter } from './writer.js';

// Builders run synchronously, so one writer serves them all (it never rewrites bytes it
// has handed out).
const w = new MessageWriter(8192);

/**
 * StartupMessage: protocol version, then name/value String pairs, then a NUL. `user` is
 * required by the server; `database` defaults to it.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-STARTUPMESSAGE
 */
export function startupMessage(
  params: Readonly<Record<string, string>> | ReadonlyMap<string, string>,
  version: number = StartupCode.protocol3,
): Buffer {
  w.int32(version);
  const entries = params instanceof Map ? params.entries() : Object.entries(params);
  for (const [name, value] of entries) w.cstring(name).cstring(value);
  w.uint8(0);
  return w.flush();
}

/**
 * SSLRequest.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-SSLREQUEST
 */
export const SSL_REQUEST: Buffer = w.int32(StartupCode.sslRequest).flush();

/**
 * GSSENCRequest.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-GSSENCREQUEST
 */
export const GSSENC_REQUEST: Buffer = w.int32(StartupCode.gssEncRequest).flush();

/**
 * CancelRequest, sent on a new connection. The key is 4 bytes in protocol 3.0 (a number
 * or 4-byte Buffer), up to 256 bytes in 3.2.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-CANCELREQUEST
 */
export function cancelRequest(processId: number, secretKey: number | Buffer): Buffer {
  w.int32(StartupCode.cancelRequest).int32(processId);
  if (typeof secretKey === 'number') w.int32(secretKey);
  else w.bytes(secretKey);
  return w.flush();
}

/**
 * SASLInitialResponse: the chosen mechanism and the client-first-message (Int32 length,
 * or -1 when there is none).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-SASLINITIALRESPONSE
 */
export function saslInitialResponse(mechanism: string, data: Buffer | string | null): Buffer {
  w.cstring(mechanism);
  if (data === null) {
    w.int32(-1);
  } else {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    w.int32(bytes.length).bytes(bytes);
  }
  return w.flush(FrontendType.password);
}

/**
 * SASLResponse: the mechanism's data, nothing else.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-SASLRESPONSE
 */
export function saslResponse(data: Buffer | string): Buffer {
  return w.bytes(data).flush(FrontendType.password);
}

/**
 * PasswordMessage: a cleartext password, or `md5…` (see md5Password).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PASSWORDMESSAGE
 */
export function passwordMessage(password: string): Buffer {
  return w.cstring(password).flush(FrontendType.password);
}

/**
 * Query (simple query protocol).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-QUERY
 */
export function query(sql: string): Buffer {
  return w.cstring(sql).flush(FrontendType.query);
}

/**
 * Parse: statement name ('' for unnamed), SQL, parameter type OIDs (0 = let the server infer).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PARSE
 */
export function parse(statement: string, sql: string, paramTypes: readonly number[] = []): Buffer {
  w.cstring(statement).cstring(sql).uint16(paramTypes.length);
  for (const oid of paramTypes) w.uint32(oid);
  return w.flush(FrontendType.parse);
}

export interface BindOptions {
  /** Per-parameter format codes: none = all text, one = applies to all, else one each. */
  paramFormats?: readonly number[];
  resultFormats?: readonly number[];
}

/**
 * Bind: portal, statement, parameter formats, values (null = SQL NULL), result formats.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-BIND
 */
export function bind(portal: string, statement: string, values: readonly (Buffer | string | null)[], options: BindOptions = {}): Buffer {
  const paramFormats = options.paramFormats ?? [];
  const resultFormats = options.resultFormats ?? [];
  w.cstring(portal).cstring(statement).uint16(paramFormats.length);
  for (const f of paramFormats) w.int16(f);
  w.uint16(values.length);
  for (const v of values) {
    if (v === null) w.int32(-1);
    else if (typeof v === 'string') w.int32(Buffer.byteLength(v, 'utf8')).bytes(v);
    else w.int32(v.length).bytes(v);
  }
  w.uint16(resultFormats.length);
  for (const f of resultFormats) w.int16(f);
  return w.flush(FrontendType.bind);
}

/**
 * Describe a prepared statement ('S') or portal ('P').
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-DESCRIBE
 */
export function describe(kind: 'S' | 'P', name: string): Buffer {
  return w.uint8(kind.charCodeAt(0)).cstring(name).flush(FrontendType.describe);
}

/**
 * Execute a portal; maxRows 0 = no limit.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-EXECUTE
 */
export function execute(portal = '', maxRows = 0): Buffer {
  return w.cstring(portal).int32(maxRows).flush(FrontendType.execute);
}

/**
 * Close a prepared statement ('S') or portal ('P').
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-CLOSE
 */
export function close(kind: 'S' | 'P', name: string): Buffer {
  return w.uint8(kind.charCodeAt(0)).cstring(name).flush(FrontendType.close);
}

/**
 * Sync.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-SYNC
 */
export const SYNC: Buffer = w.flush(FrontendType.sync);

/**
 * Flush.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-FLUSH
 */
export const FLUSH: Buffer = w.flush(FrontendType.flush);

/**
 * Terminate.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-TERMINATE
 */
export const TERMINATE: Buffer = w.flush(FrontendType.terminate);
