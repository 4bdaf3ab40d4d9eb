/**
 * The error taxonomy. Every error a user can fix is an AgentgateError: it carries a
 * stable code, the exit code from DESIGN.md, and the next step. Anything else reaching
 * the top-level handler is a bug and is reported as one.
 */

/** Exit codes are a contract (DESIGN.md): scripts branch on them. */
export const ExitCode = {
  ok: 0,
  error: 1,
  usage: 2,
  auth: 3,
  denied: 4,
  approval: 5,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export interface AgentgateErrorOptions {
  /** What the user should do next; shown on its own line. */
  hint?: string;
  cause?: unknown;
}

export class AgentgateError extends Error {
  override readonly name: string = 'AgentgateError';
  readonly code: string;
  readonly exitCode: ExitCode;
  readonly hint: string | undefined;

  constructor(code: string, message: string, exitCode: ExitCode = ExitCode.error, options: AgentgateErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.exitCode = exitCode;
    this.hint = options.hint;
  }

  toJSON(): { code: string; message: string; hint?: string } {
    return this.hint ? { code: this.code, message: this.message, hint: this.hint } : { code: this.code, message: this.message };
  }
}

/** Bad flags or arguments (exit 2). */
export class UsageError extends AgentgateError {
  override readonly name = 'UsageError';
  constructor(message: string, options: AgentgateErrorOptions = {}) {
    super('AG_USAGE', message, ExitCode.usage, options);
  }
}

/** The broker config is wrong; message names the key path. */
export class ConfigError extends AgentgateError {
  override readonly name = 'ConfigError';
  /** Each problem as `path: expected …, got …`. */
  readonly problems: string[];
  constructor(message: string, problems: string[] = [], options: AgentgateErrorOptions = {}) {
    super('AG_CONFIG_INVALID', message, ExitCode.error, options);
    this.problems = problems;
  }
}

/** No usable credentials on the CLI side, or the broker rejected them (exit 3). */
export class AuthError extends AgentgateError {
  override readonly name: string = 'AuthError';
  /** The broker's reason code (token_expired, wrong_audience, …) when it gave one. */
  readonly reason: string | undefined;
  constructor(code: string, message: string, options: AgentgateErrorOptions & { reason?: string } = {}) {
    super(code, message, ExitCode.auth, options);
    this.reason = options.reason;
  }
}

/** Policy said no (exit 4). */
export class PolicyDeniedError extends AgentgateError {
  override readonly name = 'PolicyDeniedError';
  constructor(message: string, options: AgentgateErrorOptions = {}) {
    super('AG_DENIED', message, ExitCode.denied, options);
  }
}

/** A held action was denied by a reviewer or timed out (exit 5). */
export class ApprovalError extends AgentgateError {
  override readonly name = 'ApprovalError';
  constructor(code: 'AG_APPROVAL_DENIED' | 'AG_APPROVAL_TIMEOUT', message: string, options: AgentgateErrorOptions = {}) {
    super(code, message, ExitCode.approval, options);
  }
}

/** The broker could not be reached or spoke something unexpected. */
export class BrokerError extends AgentgateError {
  override readonly name = 'BrokerError';
  constructor(code: string, message: string, options: AgentgateErrorOptions = {}) {
    super(code, message, ExitCode.error, options);
  }
}

export function isAgentgateError(e: unknown): e is AgentgateError {
  return e instanceof AgentgateError;
}
