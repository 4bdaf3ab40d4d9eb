/**
 * A live session ended by the broker (live-sessions.ts), in PostgreSQL's words: FATAL
 * 28000 when the credential lapsed or an operator revoked it (the authorization is gone),
 * FATAL 57P01 at `max_duration` (PostgreSQL's "terminating connection due to
 * administrator command" class).
 */
import type { EndNotice } from '../live-sessions.js';
import { PgError, SqlState } from './errors.js';

export function endedSessionError(notice: EndNotice): PgError {
  const state = notice.reason === 'max_duration' ? SqlState.adminShutdown : SqlState.invalidAuthorizationSpecification;
  return new PgError(state, notice.message, { severity: 'FATAL', hint: notice.hint });
}
