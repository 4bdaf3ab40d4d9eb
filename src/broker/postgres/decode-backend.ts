/**
 * Decoders for the server messages the broker inspects. Each is a pure function over a
 * message body (`PgMessage.body`) and throws a ProtocolError when the body is malformed.
 * Strings are decoded as UTF-8.
 *
 * Formats: https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { BodyReader, ValueCursor } from './body-reader.js';
import type { FieldDescription } from './build-backend.js';
import { ErrorFieldCode } from './error-fields.js';
import type { PgErrorFields } from './error-fields.js';
import { ProtocolError } from './errors.js';
import type { TransactionStatus } from './protocol.js';

export type { FieldDescription } from './build-backend.js';

/**
 * RowDescription.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-ROWDESCRIPTION
 */
export function decodeRowDescription(body: Buffer): FieldDescription[] {
  const r = new BodyReader(body, 'RowDescription');
  const count = r.uint16();
  // Each field takes at least 19 bytes: refuse an absurd count before allocating for it.
  if (count * 19 > r.remaining) throw r.malformed(`${count} fields declared, ${r.remaining} bytes left`);
  const fields = new Array<FieldDescription>(count);
  for (let i = 0; i < count; i++) {
    fields[i] = {
      name: r.cstring(),
      tableOid: r.uint32(),
      columnAttr: r.int16(),
      typeOid: r.uint32(),
      typeSize: r.int16(),
      typeMod: r.int32(),
      format: r.int16(),
    };
  }
  r.end();
  return fields;
}

/**
 * DataRow: the column count, and a cursor over the values in place (no copies). Pass
 * your own cursor to walk many rows without allocating.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-DATAROW
 */
export function dataRowValues(body: Buffer, cursor: ValueCursor = new ValueCursor()): ValueCursor {
  if (body.length < 2) throw new ProtocolError('malformed DataRow message: no column count');
  return cursor.reset(body, body.readUInt16BE(0), 2, 'DataRow');
}

export interface CommandComplete {
  /** The tag as sent, e.g. `INSERT 0 3`. */
  tag: string;
  /** The command words without counts: `INSERT`, `CREATE TABLE`. */
  command: string;
  /** Rows affected or returned, when the tag carries a count. */
  rows: number | null;
}

/**
 * CommandComplete. Tags with counts: `INSERT oid rows`, `SELECT rows` (also CREATE TABLE
 * AS), `UPDATE|DELETE|MERGE|MOVE|FETCH|COPY rows`.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-COMMANDCOMPLETE
 */
export function decodeCommandComplete(body: Buffer): CommandComplete {
  const r = new BodyReader(body, 'CommandComplete');
  const tag = r.cstring();
  r.end();
  const words = tag.split(' ');
  const last = words[words.length - 1] ?? '';
  if (words.length < 2 || !/^\d+$/.test(last)) return { tag, command: tag, rows: null };
  // INSERT carries an OID (always 0 now) before the count.
  const countWords = words[0] === 'INSERT' && words.length === 3 ? 2 : 1;
  return { tag, command: words.slice(0, words.length - countWords).join(' '), rows: Number(last) };
}

/**
 * The fields of an ErrorResponse or NoticeResponse, by their one-letter codes.
 * https://www.postgresql.org/docs/current/protocol-error-fields.html
 */
export function decodeNoticeFieldMap(body: Buffer, what = 'ErrorResponse'): Map<string, string> {
  const r = new BodyReader(body, what);
  const fields = new Map<string, string>();
  for (;;) {
    const code = r.uint8();
    if (code === 0) break;
    fields.set(String.fromCharCode(code), r.cstring());
  }
  r.end();
  return fields;
}

const FIELD_BY_CODE = new Map<string, keyof PgErrorFields>(
  Object.entries(ErrorFieldCode).map(([name, code]) => [code, name as keyof PgErrorFields]),
);

/** Name the fields of a decoded map. Severity prefers `V` (never localized) over `S`. */
export function pgErrorFieldsFromMap(map: ReadonlyMap<string, string>): PgErrorFields {
  const fields: PgErrorFields = {
    severity: map.get('V') ?? map.get('S') ?? 'ERROR',
    code: map.get('C') ?? '',
    message: map.get('M') ?? '',
  };
  for (const [code, value] of map) {
    const name = FIELD_BY_CODE.get(code);
    if (name === undefined || name === 'severity' || name === 'code' || name === 'message') continue;
    fields[name] = value;
  }
  return fields;
}

/**
 * ErrorResponse.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-ERRORRESPONSE
 */
export function decodeErrorResponse(body: Buffer): PgErrorFields {
  return pgErrorFieldsFromMap(decodeNoticeFieldMap(body, 'ErrorResponse'));
}

/**
 * NoticeResponse.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-NOTICERESPONSE
 */
export function decodeNoticeResponse(body: Buffer): PgErrorFields {
  return pgErrorFieldsFromMap(decodeNoticeFieldMap(body, 'NoticeResponse'));
}

export interface ParameterStatus {
  name: string;
  value: string;
}

/**
 * ParameterStatus.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PARAMETERSTATUS
 */
export function decodeParameterStatus(body: Buffer): ParameterStatus {
  const r = new BodyReader(body, 'ParameterStatus');
  const name = r.cstring();
  const value = r.cstring();
  r.end();
  return { name, value };
}

export interface BackendKeyData {
  processId: number;
  /** 4 bytes in protocol 3.0, up to 256 in 3.2. A copy. */
  secretKey: Buffer;
}

/**
 * BackendKeyData.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-BACKENDKEYDATA
 */
export function decodeBackendKeyData(body: Buffer): BackendKeyData {
  const r = new BodyReader(body, 'BackendKeyData');
  const processId = r.int32();
  const secretKey = Buffer.from(r.rest());
  if (secretKey.length < 4 || secretKey.length > 256) throw r.malformed(`secret key of ${secretKey.length} bytes`);
  return { processId, secretKey };
}

/**
 * ReadyForQuery: the transaction status.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-READYFORQUERY
 */
export function decodeReadyForQuery(body: Buffer): TransactionStatus {
  if (body.length !== 1) throw new ProtocolError(`malformed ReadyForQuery message: ${body.length} bytes`);
  const status = body[0];
  if (status === 0x49) return 'I';
  if (status === 0x54) return 'T';
  if (status === 0x45) return 'E';
  throw new ProtocolError(`malformed ReadyForQuery message: status ${status}`);
}

export interface Authentication {
  /** An AuthCode: 0 ok, 3 cleartext, 5 MD5, 10 SASL, 11 SASL continue, 12 SASL final … */
  code: number;
  /** What follows the code (MD5 salt, SASL mechanisms or data), as a view. */
  data: Buffer;
}

/**
 * Authentication* (every 'R' message).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONOK
 */
export function decodeAuthentication(body: Buffer): Authentication {
  const r = new BodyReader(body, 'Authentication');
  const code = r.int32();
  return { code, data: r.rest() };
}

/**
 * The mechanism list of AuthenticationSASL (its `data`).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONSASL
 */
export function decodeSASLMechanisms(data: Buffer): string[] {
  const r = new BodyReader(data, 'AuthenticationSASL');
  const mechanisms: string[] = [];
  for (;;) {
    const m = r.cstring();
    if (m === '') break;
    mechanisms.push(m);
  }
  r.end();
  return mechanisms;
}

export interface NotificationResponse {
  processId: number;
  channel: string;
  payload: string;
}

/**
 * NotificationResponse (LISTEN/NOTIFY).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-NOTIFICATIONRESPONSE
 */
export function decodeNotificationResponse(body: Buffer): NotificationResponse {
  const r = new BodyReader(body, 'NotificationResponse');
  const processId = r.int32();
  const channel = r.cstring();
  const payload = r.cstring();
  r.end();
  return { processId, channel, payload };
}

export interface CopyResponse {
  /** Overall format: 0 text, 1 binary. */
  format: number;
  /** One format code per column. */
  columnFormats: number[];
}

/**
 * CopyInResponse ('G'), CopyOutResponse ('H') and CopyBothResponse ('W') share a layout.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-COPYINRESPONSE
 */
export function decodeCopyResponse(body: Buffer): CopyResponse {
  const r = new BodyReader(body, 'CopyResponse');
  const format = r.uint8();
  const count = r.uint16();
  if (count * 2 !== r.remaining) throw r.malformed(`${count} column formats declared, ${r.remaining} bytes left`);
  const columnFormats = new Array<number>(count);
  for (let i = 0; i < count; i++) columnFormats[i] = r.int16();
  return { format, columnFormats };
}

export interface NegotiateProtocolVersion {
  newestMinor: number;
  unrecognizedOptions: string[];
}

/**
 * NegotiateProtocolVersion.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-NEGOTIATEPROTOCOLVERSION
 */
export function decodeNegotiateProtocolVersion(body: Buffer): NegotiateProtocolVersion {
  const r = new BodyReader(body, 'NegotiateProtocolVersion');
  const newestMinor = r.int32();
  const count = r.int32();
  if (count < 0 || count > r.remaining) throw r.malformed(`${count} options declared`);
  const unrecognizedOptions: string[] = [];
  for (let i = 0; i < count; i++) unrecognizedOptions.push(r.cstring());
  r.end();
  return { newestMinor, unrecognizedOptions };
}
