/**
 * Errors that speak PostgreSQL: each carries a real SQLSTATE and serializes to an
 * ErrorResponse, so a refusal reaches psql or an ORM as the error it already knows how
 * to show. They are AgentgateErrors too, so the broker's logs and exit paths treat them
 * like every other typed error.
 *
 * SQLSTATE list: https://www.postgresql.org/docs/current/errcodes-appendix.html
 * ErrorResponse fields: https://www.postgresql.org/docs/current/protocol-error-fields.html
 */
import { AgentgateError, ExitCode } from '../../errors.js';
import { errorResponse } from './build-backend.js';
import { SqlState } from './error-fields.js';
import type { PgErrorFields, PgSeverity } from './error-fields.js';

export { SqlState, ErrorFieldCode } from './error-fields.js';
export type { PgErrorFields, PgSeverity } from './error-fields.js';

export interface PgErrorOptions {
  severity?: PgSeverity;
  detail?: string;
  hint?: string;
  cause?: unknown;
}

/** An error destined for a PostgreSQL client. `toErrorResponse()` gives the bytes to send. */
export class PgError extends AgentgateError {
  override readonly name: string = 'PgError';
  readonly sqlState: SqlState;
  readonly severity: PgSeverity;
  readonly detail: string | undefined;

  constructor(sqlState: SqlState, message: string, options: PgErrorOptions = {}, code = 'AG_PG_ERROR') {
    super(code, message, ExitCode.error, { hint: options.hint, cause: options.cause });
    this.sqlState = sqlState;
    this.severity = options.severity ?? 'ERROR';
    this.detail = options.detail;
  }

  /** True when PostgreSQL would end the session after sending it. */
  get fatal(): boolean {
    return this.severity === 'FATAL' || this.severity === 'PANIC';
  }

  toFields(): PgErrorFields {
    const fields: PgErrorFields = { severity: this.severity, code: this.sqlState, message: this.message };
    if (this.detail !== undefined) fields.detail = this.detail;
    if (this.hint !== undefined) fields.hint = this.hint;
    return fields;
  }

  /** The ErrorResponse message for this error. */
  toErrorResponse(): Buffer {
    return errorResponse(this.toFields());
  }
}

/**
 * The peer broke the wire protocol: a bad length, an unknown startup code, a malformed
 * body. PostgreSQL answers these with FATAL 08P01 and closes the connection; so do we.
 */
export class ProtocolError extends PgError {
  override readonly name: string = 'ProtocolError';
  constructor(message: string, options: PgErrorOptions & { sqlState?: SqlState } = {}) {
    super(options.sqlState ?? SqlState.protocolViolation, message, { severity: 'FATAL', ...options }, 'AG_PG_PROTOCOL');
  }
}

/**
 * What should have been a startup packet has an impossible length: the peer may not speak
 * the protocol at all (or, like a client that connects and ends at once, sent Terminate
 * before any StartupMessage). PostgreSQL logs this and closes without a reply; so do we.
 * Malformed input after a startup packet was read still gets FATAL 08P01.
 */
export class StartupFramingError extends ProtocolError {
  override readonly name: string = 'StartupFramingError';
}

/** Why a SCRAM exchange failed, for logs and tests; the wire only sees the SQLSTATE. */
export type ScramFailure =
  | 'malformed'
  | 'channel-binding'
  | 'authzid'
  | 'extension'
  | 'nonce'
  | 'state'
  | 'server-error'
  | 'server-signature'
  | 'iterations';

/** A SCRAM message was malformed, out of order, or (client side) the server failed to prove itself. */
export class ScramError extends PgError {
  override readonly name: string = 'ScramError';
  readonly reason: ScramFailure;
  constructor(reason: ScramFailure, message: string, sqlState: SqlState = SqlState.protocolViolation) {
    super(sqlState, message, { severity: 'FATAL' }, 'AG_PG_SCRAM');
    this.reason = reason;
  }
}

// Errors the broker sends, with PostgreSQL's own wording where one exists so that
// clients and people recognize them.

/** FATAL 28P01, the text psql users know. Same message whatever went wrong, as PostgreSQL does. */
export function passwordAuthFailed(user: string): PgError {
  return new PgError(SqlState.invalidPassword, `password authentication failed for user "${user}"`, {
    severity: 'FATAL',
    hint: 'use the connection string printed by `agentgate connect`; the password is that session\'s secret',
  });
}

/** ERROR 42501: policy refused a statement. The session stays usable. */
export function insufficientPrivilege(message: string, hint?: string): PgError {
  return new PgError(SqlState.insufficientPrivilege, message, hint === undefined ? {} : { hint });
}

/** ERROR 57014, as PostgreSQL words a user cancel. */
export function queryCanceled(message = 'canceling statement due to user request'): PgError {
  return new PgError(SqlState.queryCanceled, message);
}

/** FATAL 53300, as PostgreSQL words it. */
export function tooManyConnections(message = 'sorry, too many clients already'): PgError {
  return new PgError(SqlState.tooManyConnections, message, { severity: 'FATAL' });
}

/** FATAL 08006: the upstream server could not be reached or dropped us. */
export function connectionFailure(message: string, hint?: string): PgError {
  return new PgError(SqlState.connectionFailure, message, hint === undefined ? { severity: 'FATAL' } : { severity: 'FATAL', hint });
}

/** ERROR 0A000 (FATAL when it concerns the connection itself). */
export function featureNotSupported(message: string, severity: PgSeverity = 'ERROR'): PgError {
  return new PgError(SqlState.featureNotSupported, message, { severity });
}

/** FATAL 57P01, as PostgreSQL words a shutdown. */
export function adminShutdown(message = 'terminating connection due to administrator command'): PgError {
  return new PgError(SqlState.adminShutdown, message, { severity: 'FATAL' });
}

/** FATAL (or ERROR) 53000: the audit store has failed, so statements are refused. */
export function auditUnavailable(fatal = true): PgError {
  return new PgError('53000' as SqlState, 'agentgate: the audit log is unavailable, so statements are refused', {
    severity: fatal ? 'FATAL' : 'ERROR',
    hint: "the broker's operator must restore the audit store; nothing ran",
  });
}

/**
 * FATAL 42501: the server reports a setting changed to a value the gate's judgement depends
 * on not having (reported-settings.ts); code the policy let run changed it. Nothing after it ran.
 */
export function sessionSettingContradicted(name: string, value: string, why: string): PgError {
  return new PgError(SqlState.insufficientPrivilege, `agentgate: the server reports ${name} = ${value.slice(0, 40)}: ${why}; the session is ended`, {
    severity: 'FATAL',
    hint: 'start a new session; a function or procedure the policy lets run changed this setting, which the policy\'s operator should know',
  }, 'AG_PG_SETTING');
}
