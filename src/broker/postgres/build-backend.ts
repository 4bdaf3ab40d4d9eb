/**
 * Messages the broker sends to a PostgreSQL client, as it would receive them from a
 * server. Each builder returns a Buffer the caller owns; payload-less messages are
 * shared constants (never write into them).
 *
 * Formats: https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import assert from 'node:assert';

import { ErrorFieldCode } from './error-fields.js';
import type { PgErrorFields } from './error-fields.js';
import { AuthCode, BackendType, SCRAM_SHA_256 } from './protocol.js';
import type { TransactionStatus } from './protocol.js';
import { MessageWriter } from './writer.js';

// Builders run synchronously, so one writer serves them all; it never rewrites bytes it
// has handed out, so results stay valid.
const w = new MessageWriter(8192);

function authentication(code: number, data?: Buffer | string): Buffer {
  w.int32(code);
  if (data !== undefined) w.bytes(data);
  return w.flush(BackendType.authentication);
}

/**
 * AuthenticationOk.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONOK
 */
export const AUTHENTICATION_OK: Buffer = authentication(AuthCode.ok);

/**
 * AuthenticationCleartextPassword.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONCLEARTEXTPASSWORD
 */
export const AUTHENTICATION_CLEARTEXT_PASSWORD: Buffer = authentication(AuthCode.cleartextPassword);

/**
 * AuthenticationMD5Password with its 4-byte salt.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONMD5PASSWORD
 */
export function authenticationMD5Password(salt: Buffer): Buffer {
  assert(salt.length === 4, 'an MD5 salt is 4 bytes');
  return authentication(AuthCode.md5Password, salt);
}

/**
 * AuthenticationSASL: the mechanisms we accept, in order of preference, each a String,
 * then an empty String.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONSASL
 */
export function authenticationSASL(mechanisms: readonly string[] = [SCRAM_SHA_256]): Buffer {
  w.int32(AuthCode.sasl);
  for (const m of mechanisms) w.cstring(m);
  w.uint8(0);
  return w.flush(BackendType.authentication);
}

/**
 * AuthenticationSASLContinue carrying the server-first-message.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONSASLCONTINUE
 */
export function authenticationSASLContinue(data: Buffer | string): Buffer {
  return authentication(AuthCode.saslContinue, data);
}

/**
 * AuthenticationSASLFinal carrying the server-final-message.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONSASLFINAL
 */
export function authenticationSASLFinal(data: Buffer | string): Buffer {
  return authentication(AuthCode.saslFinal, data);
}

/**
 * ParameterStatus.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PARAMETERSTATUS
 */
export function parameterStatus(name: string, value: string): Buffer {
  return w.cstring(name).cstring(value).flush(BackendType.parameterStatus);
}

/**
 * BackendKeyData. The secret is 4 bytes in protocol 3.0 (pass a number or a 4-byte
 * Buffer); 3.2 allows up to 256 bytes.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-BACKENDKEYDATA
 */
export function backendKeyData(processId: number, secretKey: number | Buffer): Buffer {
  w.int32(processId);
  if (typeof secretKey === 'number') w.int32(secretKey);
  else w.bytes(secretKey);
  return w.flush(BackendType.backendKeyData);
}

const READY: Record<TransactionStatus, Buffer> = {
  I: w.uint8(0x49).flush(BackendType.readyForQuery),
  T: w.uint8(0x54).flush(BackendType.readyForQuery),
  E: w.uint8(0x45).flush(BackendType.readyForQuery),
};

/**
 * ReadyForQuery (shared constants).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-READYFORQUERY
 */
export function readyForQuery(status: TransactionStatus = 'I'): Buffer {
  return READY[status];
}

/** Error text may quote outside input; a NUL would cut the field short, so drop it. */
function clean(value: string): string {
  return value.includes('\0') ? value.replaceAll('\0', '') : value;
}

function noticeFields(fields: PgErrorFields, type: number): Buffer {
  w.uint8(0x53).cstring(clean(fields.severity)); // S: localized severity (we don't localize)
  w.uint8(0x56).cstring(clean(fields.severity)); // V: non-localized, for programs (9.6+)
  for (const key of Object.keys(ErrorFieldCode) as (keyof PgErrorFields)[]) {
    if (key === 'severity') continue;
    const value = fields[key];
    if (value === undefined) continue;
    w.uint8(ErrorFieldCode[key].charCodeAt(0)).cstring(clean(value));
  }
  w.uint8(0);
  return w.flush(type);
}

/**
 * ErrorResponse.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-ERRORRESPONSE
 * Fields: https://www.postgresql.org/docs/current/protocol-error-fields.html
 */
export function errorResponse(fields: PgErrorFields): Buffer {
  return noticeFields(fields, BackendType.errorResponse);
}

/**
 * NoticeResponse (same fields as ErrorResponse).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-NOTICERESPONSE
 */
export function noticeResponse(fields: PgErrorFields): Buffer {
  return noticeFields(fields, BackendType.noticeResponse);
}

/**
 * CommandComplete with its tag, e.g. `SELECT 1`, `INSERT 0 3`.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-COMMANDCOMPLETE
 */
export function commandComplete(tag: string): Buffer {
  return w.cstring(tag).flush(BackendType.commandComplete);
}

/**
 * EmptyQueryResponse.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-EMPTYQUERYRESPONSE
 */
export const EMPTY_QUERY_RESPONSE: Buffer = w.flush(BackendType.emptyQueryResponse);
/**
 * ParseComplete.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PARSECOMPLETE
 */
export const PARSE_COMPLETE: Buffer = w.flush(BackendType.parseComplete);
/**
 * BindComplete.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-BINDCOMPLETE
 */
export const BIND_COMPLETE: Buffer = w.flush(BackendType.bindComplete);
/**
 * CloseComplete.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-CLOSECOMPLETE
 */
export const CLOSE_COMPLETE: Buffer = w.flush(BackendType.closeComplete);
/**
 * NoData.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-NODATA
 */
export const NO_DATA: Buffer = w.flush(BackendType.noData);
/**
 * PortalSuspended.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PORTALSUSPENDED
 */
export const PORTAL_SUSPENDED: Buffer = w.flush(BackendType.portalSuspended);

/**
 * The one-byte `N` that declines an SSLRequest or GSSENCRequest: the client then sends
 * its StartupMessage in the clear (inside our already-encrypted tunnel).
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-SSL
 */
export const ENCRYPTION_DECLINED: Buffer = Buffer.from('N', 'latin1');

/** One column of a RowDescription. */
export interface FieldDescription {
  name: string;
  /** OID of the table, or 0. */
  tableOid: number;
  /** Attribute number of the column in that table, or 0. */
  columnAttr: number;
  typeOid: number;
  /** pg_type.typlen; negative for variable width. */
  typeSize: number;
  /** pg_attribute.atttypmod; -1 when none. */
  typeMod: number;
  /** 0 text, 1 binary. */
  format: number;
}

/**
 * RowDescription.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-ROWDESCRIPTION
 */
export function rowDescription(fields: readonly FieldDescription[]): Buffer {
  w.int16(fields.length);
  for (const f of fields) {
    w.cstring(f.name).uint32(f.tableOid).int16(f.columnAttr).uint32(f.typeOid).int16(f.typeSize).int32(f.typeMod).int16(f.format);
  }
  return w.flush(BackendType.rowDescription);
}

/**
 * DataRow: each value as bytes, a string (UTF-8), or null for SQL NULL.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-DATAROW
 */
export function dataRow(values: readonly (Buffer | string | null)[]): Buffer {
  w.int16(values.length);
  for (const v of values) {
    if (v === null) {
      w.int32(-1);
    } else if (typeof v === 'string') {
      w.int32(Buffer.byteLength(v, 'utf8')).bytes(v);
    } else {
      w.int32(v.length).bytes(v);
    }
  }
  return w.flush(BackendType.dataRow);
}

/**
 * NegotiateProtocolVersion: the newest minor version we support and the `_pq_.` options
 * we did not recognize.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-NEGOTIATEPROTOCOLVERSION
 */
export function negotiateProtocolVersion(newestMinor: number, unrecognizedOptions: readonly string[] = []): Buffer {
  w.int32(newestMinor).int32(unrecognizedOptions.length);
  for (const o of unrecognizedOptions) w.cstring(o);
  return w.flush(BackendType.negotiateProtocolVersion);
}
