/**
 * Constants of the PostgreSQL frontend/backend protocol, version 3.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

/** Message type bytes sent by the client (frontend). */
export const FrontendType = {
  bind: 0x42, // 'B'
  close: 0x43, // 'C'
  copyData: 0x64, // 'd'
  copyDone: 0x63, // 'c'
  copyFail: 0x66, // 'f'
  describe: 0x44, // 'D'
  execute: 0x45, // 'E'
  flush: 0x48, // 'H'
  functionCall: 0x46, // 'F'
  parse: 0x50, // 'P'
  /** PasswordMessage, SASLInitialResponse, SASLResponse, GSSResponse: which one depends on the auth exchange. */
  password: 0x70, // 'p'
  query: 0x51, // 'Q'
  sync: 0x53, // 'S'
  terminate: 0x58, // 'X'
} as const;
export type FrontendType = (typeof FrontendType)[keyof typeof FrontendType];

/** Message type bytes sent by the server (backend). */
export const BackendType = {
  authentication: 0x52, // 'R'
  backendKeyData: 0x4b, // 'K'
  bindComplete: 0x32, // '2'
  closeComplete: 0x33, // '3'
  commandComplete: 0x43, // 'C'
  copyData: 0x64, // 'd'
  copyDone: 0x63, // 'c'
  copyInResponse: 0x47, // 'G'
  copyOutResponse: 0x48, // 'H'
  copyBothResponse: 0x57, // 'W'
  dataRow: 0x44, // 'D'
  emptyQueryResponse: 0x49, // 'I'
  errorResponse: 0x45, // 'E'
  functionCallResponse: 0x56, // 'V'
  negotiateProtocolVersion: 0x76, // 'v'
  noData: 0x6e, // 'n'
  noticeResponse: 0x4e, // 'N'
  notificationResponse: 0x41, // 'A'
  parameterDescription: 0x74, // 't'
  parameterStatus: 0x53, // 'S'
  parseComplete: 0x31, // '1'
  portalSuspended: 0x73, // 's'
  readyForQuery: 0x5a, // 'Z'
  rowDescription: 0x54, // 'T'
} as const;
export type BackendType = (typeof BackendType)[keyof typeof BackendType];

/**
 * The Int32 that opens an untyped startup-phase packet (after its length).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-STARTUPMESSAGE
 */
export const StartupCode = {
  /** Protocol 3.0: major 3 in the high 16 bits, minor 0 in the low. */
  protocol3: 196608,
  cancelRequest: 80877102,
  sslRequest: 80877103,
  gssEncRequest: 80877104,
} as const;

/**
 * Authentication request codes (the Int32 after 'R').
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-AUTHENTICATIONOK
 */
export const AuthCode = {
  ok: 0,
  kerberosV5: 2,
  cleartextPassword: 3,
  md5Password: 5,
  gss: 7,
  gssContinue: 8,
  sspi: 9,
  sasl: 10,
  saslContinue: 11,
  saslFinal: 12,
} as const;
export type AuthCode = (typeof AuthCode)[keyof typeof AuthCode];

/** Transaction status carried by ReadyForQuery. */
export type TransactionStatus = 'I' | 'T' | 'E';

/**
 * PostgreSQL refuses a startup packet longer than this (MAX_STARTUP_PACKET_LENGTH in
 * src/include/libpq/pqcomm.h); we do the same before allocating anything.
 */
export const MAX_STARTUP_PACKET_LENGTH = 10_000;

/**
 * PostgreSQL reads authentication responses with this cap (PG_MAX_AUTH_TOKEN_LENGTH);
 * the frontend reader applies it to 'p' messages before the client is authenticated.
 */
export const MAX_AUTH_MESSAGE_LENGTH = 65_535;

/** Default cap on a typed client message once authenticated (a Bind with big parameters fits). */
export const DEFAULT_MAX_FRONTEND_MESSAGE = 64 * 1024 * 1024;

/**
 * Default cap on a server message. A DataRow may legitimately carry several large
 * values; past this the broker would rather drop the connection than buffer it.
 */
export const DEFAULT_MAX_BACKEND_MESSAGE = 256 * 1024 * 1024;

/** The only SASL mechanism we offer and use: no channel binding (the tunnel is already TLS). */
export const SCRAM_SHA_256 = 'SCRAM-SHA-256';

/** A printable name for a type byte, for error messages: `'Q' (0x51)`. */
export function typeName(type: number): string {
  const hex = `0x${type.toString(16).padStart(2, '0')}`;
  return type >= 0x20 && type < 0x7f ? `'${String.fromCharCode(type)}' (${hex})` : hex;
}
