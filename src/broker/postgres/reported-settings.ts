/**
 * Settings the server reports as they change (ParameterStatus, GUC_REPORT in PostgreSQL 15:
 * client_encoding, standard_conforming_strings, default_transaction_read_only,
 * session_authorization, is_superuser, …) checked against what the gate assumes of the
 * session. The gate refuses every statement it sees changing them, but code it lets run
 * (a function the policy names, a procedure) may call set_config(…, false), whose change
 * outlives the call; the server's report is the confirmation that it happened.
 *
 * `role` and search_path are not reported in PostgreSQL 15: a change of those by such code
 * shows up only in the session-state digest approvals bind to (the statement is recorded
 * there as one that may have changed the session).
 */

/** Why the reported value contradicts what the gate relies on; undefined when it does not. */
export function contradictedSetting(name: string, value: string, readOnly: boolean): string | undefined {
  switch (name.toLowerCase()) {
    case 'client_encoding': {
      const v = value.toUpperCase().replace(/[-_]/g, '');
      return v === 'UTF8' || v === 'UNICODE' ? undefined : 'the server would split statement text differently from agentgate\'s parser';
    }
    case 'standard_conforming_strings':
      return value === 'on' ? undefined : 'the server would read backslashes in strings differently from agentgate\'s parser';
    case 'default_transaction_read_only':
      return !readOnly || value === 'on' ? undefined : 'the session was opened read-only (the policy grants no write)';
    default:
      return undefined;
  }
}
