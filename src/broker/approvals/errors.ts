/**
 * Why a decision (or request) was refused. Each code maps to one HTTP status, so the API
 * and the CLI agree on what went wrong; the exit code follows DESIGN.md (a refusal is 4).
 */
import { AgentgateError, ExitCode } from '../../errors.js';

export type ApprovalErrorCode =
  | 'AG_REQUEST_NOT_FOUND'
  | 'AG_REQUEST_NOT_PENDING'
  | 'AG_SELF_APPROVAL'
  | 'AG_NOT_APPROVER'
  | 'AG_NOT_REQUESTER'
  | 'AG_ALREADY_DECIDED'
  | 'AG_REASON_REQUIRED'
  | 'AG_APPROVALS_CLOSED'
  | 'AG_TOO_MANY_PENDING';

const STATUS: Record<ApprovalErrorCode, number> = {
  AG_REQUEST_NOT_FOUND: 404,
  AG_REQUEST_NOT_PENDING: 409,
  AG_SELF_APPROVAL: 403,
  AG_NOT_APPROVER: 403,
  AG_NOT_REQUESTER: 403,
  AG_ALREADY_DECIDED: 409,
  AG_REASON_REQUIRED: 400,
  AG_APPROVALS_CLOSED: 503,
  AG_TOO_MANY_PENDING: 429,
};

const EXIT: Record<ApprovalErrorCode, ExitCode> = {
  AG_REQUEST_NOT_FOUND: ExitCode.error,
  AG_REQUEST_NOT_PENDING: ExitCode.error,
  AG_SELF_APPROVAL: ExitCode.denied,
  AG_NOT_APPROVER: ExitCode.denied,
  AG_NOT_REQUESTER: ExitCode.denied,
  AG_ALREADY_DECIDED: ExitCode.error,
  AG_REASON_REQUIRED: ExitCode.usage,
  AG_APPROVALS_CLOSED: ExitCode.error,
  AG_TOO_MANY_PENDING: ExitCode.denied,
};

export class ApprovalServiceError extends AgentgateError {
  override readonly name = 'ApprovalServiceError';
  declare readonly code: ApprovalErrorCode;
  /** The HTTP status the API answers with. */
  readonly status: number;
  constructor(code: ApprovalErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(code, message, EXIT[code], options);
    this.status = STATUS[code];
  }
}
