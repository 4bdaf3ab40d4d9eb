/**
 * How a Postgres session ends at one of its time limits, in PostgreSQL's own words and
 * codes (authentication_timeout, idle_session_timeout), so clients and operators read
 * what they already know.
 */
import { PgError, SqlState } from './errors.js';

/** Default for `sessions.login_timeout`. */
export const DEFAULT_LOGIN_TIMEOUT_MS = 15_000;

/** The client did not finish the startup and SCRAM exchange in time. */
export function loginTimedOut(ms: number): PgError {
  return new PgError(SqlState.queryCanceled, `canceling authentication due to timeout (agentgate login_timeout, ${seconds(ms)})`, {
    severity: 'FATAL',
    hint: 'connect with the URL `agentgate connect` printed; a client must log in within the broker\'s sessions.login_timeout',
  });
}

/** No traffic either way, and no statement running or held, for the target's idle_timeout. */
export function idleSessionTimedOut(target: string, ms: number): PgError {
  // 57P05 idle_session_timeout (PostgreSQL 14+).
  return new PgError('57P05' as SqlState, `terminating connection due to idle-session timeout (agentgate idle_timeout of target "${target}", ${seconds(ms)})`, {
    severity: 'FATAL',
    hint: 'reconnect; the session secret still works while `agentgate connect` runs',
  });
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
