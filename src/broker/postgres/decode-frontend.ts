/**
 * Decoders for the client messages the broker inspects. Each is a pure function over a
 * message body (`PgMessage.body`) and throws a ProtocolError when the body is malformed.
 * Strings are decoded as UTF-8 (the broker expects client_encoding UTF8).
 *
 * Formats: https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { BodyReader, ValueCursor } from './body-reader.js';
import { ProtocolError, SqlState } from './errors.js';
import { StartupCode } from './protocol.js';

/** What an untyped startup-phase packet is. The FrontendReader has already validated it. */
export type StartupRequestKind = 'startup' | 'ssl' | 'gssenc' | 'cancel';

/** Classify an untyped packet by its leading code. */
export function startupRequestKind(body: Buffer): StartupRequestKind {
  if (body.length < 4) throw new ProtocolError('malformed startup packet: no request code');
  switch (body.readInt32BE(0)) {
    case StartupCode.sslRequest:
      return 'ssl';
    case StartupCode.gssEncRequest:
      return 'gssenc';
    case StartupCode.cancelRequest:
      return 'cancel';
    default:
      return 'startup';
  }
}

export interface StartupMessage {
  majorVersion: number;
  minorVersion: number;
  /** `user` (always present), `database` (the server defaults it to `user`), `application_name`, `options`, `_pq_.*` … */
  params: Map<string, string>;
}

/**
 * StartupMessage: version, then name/value pairs, then a NUL.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-STARTUPMESSAGE
 */
export function decodeStartupMessage(body: Buffer): StartupMessage {
  const r = new BodyReader(body, 'StartupMessage');
  const version = r.int32();
  const params = new Map<string, string>();
  for (;;) {
    if (r.remaining === 0) throw r.malformed('expected terminator as last byte');
    const name = r.cstring();
    if (name === '') break;
    if (r.remaining === 0) throw r.malformed(`parameter "${name}" has no value`);
    params.set(name, r.cstring());
  }
  r.end();
  if (!params.get('user')) {
    throw new ProtocolError('no PostgreSQL user name specified in startup packet', {
      sqlState: SqlState.invalidAuthorizationSpecification,
    });
  }
  return { majorVersion: version >>> 16, minorVersion: version & 0xffff, params };
}

export interface CancelRequest {
  processId: number;
  /** 4 bytes in protocol 3.0 (read it with `readInt32BE(0)`), up to 256 in 3.2. A copy. */
  secretKey: Buffer;
}

/**
 * CancelRequest.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-CANCELREQUEST
 */
export function decodeCancelRequest(body: Buffer): CancelRequest {
  const r = new BodyReader(body, 'CancelRequest');
  if (r.int32() !== StartupCode.cancelRequest) throw r.malformed('not a CancelRequest');
  const processId = r.int32();
  const secretKey = Buffer.from(r.rest());
  if (secretKey.length < 4 || secretKey.length > 256) throw r.malformed(`secret key of ${secretKey.length} bytes`);
  return { processId, secretKey };
}

/**
 * Query: the SQL text (possibly several statements).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-QUERY
 */
export function decodeQuery(body: Buffer): string {
  const r = new BodyReader(body, 'Query');
  const sql = r.cstring();
  r.end();
  return sql;
}

export interface ParseMessage {
  /** Prepared statement name; '' for the unnamed statement. */
  statement: string;
  sql: string;
  /** Declared parameter type OIDs (0 = unspecified); may be fewer than the SQL's parameters. */
  paramTypes: number[];
}

/**
 * Parse.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PARSE
 */
export function decodeParse(body: Buffer): ParseMessage {
  const r = new BodyReader(body, 'Parse');
  const statement = r.cstring();
  const sql = r.cstring();
  const count = r.uint16();
  if (r.remaining !== count * 4) throw r.malformed(`${count} parameter types declared, ${r.remaining} bytes left`);
  const paramTypes = new Array<number>(count);
  for (let i = 0; i < count; i++) paramTypes[i] = r.uint32();
  return { statement, sql, paramTypes };
}

export interface BindMessage {
  portal: string;
  statement: string;
  /** Parameter format codes as sent: none = all text, one = all the same, else one per parameter. */
  paramFormats: number[];
  paramCount: number;
  /** Where the parameter values begin in the body: give it to `bindParamValues`. */
  paramsOffset: number;
  resultFormats: number[];
}

/**
 * Bind. Parameter values are not copied (they can be large): their lengths are walked
 * to validate the message, and `bindParamValues` reads them in place.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-BIND
 */
export function decodeBind(body: Buffer, cursor: ValueCursor = new ValueCursor()): BindMessage {
  const r = new BodyReader(body, 'Bind');
  const portal = r.cstring();
  const statement = r.cstring();
  const paramFormats = formatCodes(r);
  const paramCount = r.uint16();
  const paramsOffset = r.offset;
  r.offset = cursor.reset(body, paramCount, paramsOffset, 'Bind').skipRest();
  const resultFormats = formatCodes(r);
  r.end();
  if (paramFormats.length > 1 && paramFormats.length !== paramCount) {
    throw r.malformed(`${paramFormats.length} parameter formats for ${paramCount} parameters`);
  }
  return { portal, statement, paramFormats, paramCount, paramsOffset, resultFormats };
}

/** Walk a Bind's parameter values in place (see ValueCursor). */
export function bindParamValues(body: Buffer, bind: BindMessage, cursor: ValueCursor = new ValueCursor()): ValueCursor {
  return cursor.reset(body, bind.paramCount, bind.paramsOffset, 'Bind');
}

/** The format (0 text, 1 binary) of parameter `index`, per Bind's rules. */
export function bindParamFormat(bind: BindMessage, index: number): number {
  const f = bind.paramFormats;
  return f.length === 0 ? 0 : f.length === 1 ? (f[0] as number) : (f[index] ?? 0);
}

function formatCodes(r: BodyReader): number[] {
  const count = r.uint16();
  if (count * 2 > r.remaining) throw r.malformed(`${count} format codes declared, ${r.remaining} bytes left`);
  const codes = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    const code = r.int16();
    if (code !== 0 && code !== 1) throw r.malformed(`format code ${code}`);
    codes[i] = code;
  }
  return codes;
}

export interface DescribeMessage {
  /** 'S' a prepared statement, 'P' a portal. */
  kind: 'S' | 'P';
  name: string;
}

function describeOrClose(body: Buffer, what: string): DescribeMessage {
  const r = new BodyReader(body, what);
  const kind = r.uint8();
  if (kind !== 0x53 && kind !== 0x50) throw r.malformed(`target type ${kind}`);
  const name = r.cstring();
  r.end();
  return { kind: kind === 0x53 ? 'S' : 'P', name };
}

/**
 * Describe.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-DESCRIBE
 */
export function decodeDescribe(body: Buffer): DescribeMessage {
  return describeOrClose(body, 'Describe');
}

/**
 * Close.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-CLOSE
 */
export function decodeClose(body: Buffer): DescribeMessage {
  return describeOrClose(body, 'Close');
}

export interface ExecuteMessage {
  portal: string;
  /** 0 = no limit. */
  maxRows: number;
}

/**
 * Execute.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-EXECUTE
 */
export function decodeExecute(body: Buffer): ExecuteMessage {
  const r = new BodyReader(body, 'Execute');
  const portal = r.cstring();
  const maxRows = r.int32();
  r.end();
  return { portal, maxRows };
}

export interface SASLInitialResponse {
  mechanism: string;
  /** The client-first-message (a view), or null if the client sent none. */
  data: Buffer | null;
}

/**
 * SASLInitialResponse ('p' answering AuthenticationSASL).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-SASLINITIALRESPONSE
 */
export function decodeSASLInitialResponse(body: Buffer): SASLInitialResponse {
  const r = new BodyReader(body, 'SASLInitialResponse');
  const mechanism = r.cstring();
  const length = r.int32();
  const data = length === -1 ? null : r.bytes(length);
  r.end();
  return { mechanism, data };
}

/**
 * SASLResponse ('p' answering AuthenticationSASLContinue): the whole body is the data.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-SASLRESPONSE
 */
export function decodeSASLResponse(body: Buffer): Buffer {
  return body;
}

/**
 * PasswordMessage ('p' answering a cleartext or MD5 request).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PASSWORDMESSAGE
 */
export function decodePasswordMessage(body: Buffer): string {
  const r = new BodyReader(body, 'PasswordMessage');
  const password = r.cstring();
  r.end();
  return password;
}

export interface FunctionCallMessage {
  /** pg_proc OID of the function to call. */
  oid: number;
  /** Number of arguments sent (their values are not copied). */
  argCount: number;
  /** 0 text, 1 binary. */
  resultFormat: number;
}

/**
 * FunctionCall (the fast-path interface libpq's PQfn and large-object calls use).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-FUNCTIONCALL
 */
export function decodeFunctionCall(body: Buffer, cursor: ValueCursor = new ValueCursor()): FunctionCallMessage {
  const r = new BodyReader(body, 'FunctionCall');
  const oid = r.uint32();
  const formats = formatCodes(r);
  const argCount = r.uint16();
  if (formats.length > 1 && formats.length !== argCount) throw r.malformed(`${formats.length} argument formats for ${argCount} arguments`);
  r.offset = cursor.reset(body, argCount, r.offset, 'FunctionCall').skipRest();
  const resultFormat = r.int16();
  if (resultFormat !== 0 && resultFormat !== 1) throw r.malformed(`result format ${resultFormat}`);
  r.end();
  return { oid, argCount, resultFormat };
}
