/**
 * Errors that become a JSON ApiErrorBody response. Route code throws these; the request
 * handler turns them (and TokenRejectedError) into a status, headers and body.
 */
import type { ApiErrorBody, TokenRejectionReason } from '../../shared/api-types.js';

export class HttpError extends Error {
  override readonly name = 'HttpError';
  readonly status: number;
  readonly code: string;
  readonly hint: string | undefined;
  readonly reason: TokenRejectionReason | undefined;
  readonly headers: Record<string, string>;

  constructor(status: number, code: string, message: string, options: { hint?: string; reason?: TokenRejectionReason; headers?: Record<string, string>; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = status;
    this.code = code;
    this.hint = options.hint;
    this.reason = options.reason;
    this.headers = options.headers ?? {};
  }

  toBody(): ApiErrorBody {
    return errorBody(this.code, this.message, { hint: this.hint, reason: this.reason });
  }
}

export function errorBody(code: string, message: string, extra: { hint?: string | undefined; reason?: TokenRejectionReason | undefined } = {}): ApiErrorBody {
  const error: ApiErrorBody['error'] = { code, message };
  if (extra.reason !== undefined) error.reason = extra.reason;
  if (extra.hint !== undefined) error.hint = extra.hint;
  return { error };
}

export const notFound = (path: string): HttpError => new HttpError(404, 'AG_NOT_FOUND', `no such endpoint: ${path}`, { hint: 'see GET /.well-known/agentgate for what this broker serves' });

export const methodNotAllowed = (method: string, path: string, allowed: readonly string[]): HttpError =>
  new HttpError(405, 'AG_METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`, { hint: `use ${allowed.join(' or ')}`, headers: { allow: allowed.join(', ') } });
