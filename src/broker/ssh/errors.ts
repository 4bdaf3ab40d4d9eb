/** Why the broker could not reach an SSH target: coded, with the next step. */
import { AgentgateError, ExitCode } from '../../errors.js';

export type SshUpstreamCode = 'AG_SSH_HOST_KEY_MISMATCH' | 'AG_SSH_UPSTREAM_AUTH' | 'AG_SSH_UPSTREAM_UNREACHABLE';

export class SshUpstreamError extends AgentgateError {
  override readonly name = 'SshUpstreamError';
  constructor(code: SshUpstreamCode, message: string, hint: string) {
    super(code, message, ExitCode.error, { hint });
  }
}
