/**
 * The data of an ErrorResponse/NoticeResponse: SQLSTATE codes and field names. Kept apart
 * from the error classes so the codec can use it without importing them.
 *
 * SQLSTATE list: https://www.postgresql.org/docs/current/errcodes-appendix.html
 * Fields: https://www.postgresql.org/docs/current/protocol-error-fields.html
 */

/** The SQLSTATE codes the broker sends or inspects. */
export const SqlState = {
  successfulCompletion: '00000',
  connectionException: '08000',
  connectionFailure: '08006',
  protocolViolation: '08P01',
  featureNotSupported: '0A000',
  invalidParameterValue: '22023',
  invalidAuthorizationSpecification: '28000',
  invalidPassword: '28P01',
  /** invalid_catalog_name: PostgreSQL's code for a database that does not exist. */
  invalidCatalogName: '3D000',
  insufficientPrivilege: '42501',
  tooManyConnections: '53300',
  programLimitExceeded: '54000',
  queryCanceled: '57014',
  adminShutdown: '57P01',
  cannotConnectNow: '57P03',
  internalError: 'XX000',
} as const;
export type SqlState = (typeof SqlState)[keyof typeof SqlState];

/** Non-localized severities (the `V` field). FATAL ends the session, ERROR only the statement. */
export type PgSeverity = 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'DEBUG' | 'INFO' | 'LOG';

/**
 * The fields of an ErrorResponse or NoticeResponse, named. Decoded messages may carry a
 * severity or code outside our tables, hence the open string types.
 */
export interface PgErrorFields {
  /** `S` (and `V`, which we always send alongside, non-localized). */
  severity: PgSeverity | (string & {});
  /** `C`: the SQLSTATE. */
  code: SqlState | (string & {});
  /** `M`: one line, no trailing period by PostgreSQL's convention. */
  message: string;
  /** `D` */
  detail?: string;
  /** `H`: what to do about it. */
  hint?: string;
  /** `P`: 1-based character index into the query. */
  position?: string;
  /** `p` */
  internalPosition?: string;
  /** `q` */
  internalQuery?: string;
  /** `W` */
  where?: string;
  /** `s` */
  schema?: string;
  /** `t` */
  table?: string;
  /** `c` */
  column?: string;
  /** `d` */
  dataType?: string;
  /** `n` */
  constraint?: string;
  /** `F` */
  file?: string;
  /** `L` */
  line?: string;
  /** `R` */
  routine?: string;
}

/** Field name → the one-byte field code of the wire format. Order is the order we write. */
export const ErrorFieldCode = {
  severity: 'S',
  code: 'C',
  message: 'M',
  detail: 'D',
  hint: 'H',
  position: 'P',
  internalPosition: 'p',
  internalQuery: 'q',
  where: 'W',
  schema: 's',
  table: 't',
  column: 'c',
  dataType: 'd',
  constraint: 'n',
  file: 'F',
  line: 'L',
  routine: 'R',
} as const satisfies Record<keyof PgErrorFields, string>;
