/**
 * The tools `agentgate mcp` offers: names, descriptions and input/output schemas (zod; the
 * SDK publishes them as JSON Schema in tools/list). The README's "Agents via MCP" section
 * documents the same shapes.
 */
import { z } from 'zod';
import { K8S_VERBS } from './kubernetes.js';
import { MAX_REASON_CHARS } from '../../shared/reason.js';

export const DEFAULT_MAX_ROWS = 100;

const REASON = z
  .string()
  .max(MAX_REASON_CHARS * 4)
  .optional()
  .describe("why this call is needed: recorded with it in the audit log and the receipt, shown to the reviewer of a held call; replaces the server's --reason for this call. Some policies refuse calls without one");
export const MAX_MAX_ROWS = 1000;
/** Statement text an agent may send in one call (the broker caps messages too). */
export const MAX_SQL_CHARS = 1024 * 1024;

export const listTargetsTool = {
  title: 'List targets',
  description:
    'The databases and clusters this identity may use through agentgate, with their type and a plain-language summary of what policy allows (what runs, what waits for a human reviewer, what is refused).',
  inputSchema: {},
  outputSchema: {
    targets: z.array(
      z.object({
        name: z.string(),
        type: z.enum(['postgres', 'kubernetes', 'ssh']),
        database: z.string().optional(),
        open: z.boolean().describe('usable from this server (false: not opened with --target, or a type this server has no tool for)'),
        allows: z.array(z.string()),
        policies: z.array(z.string()),
      }),
    ),
  },
} as const;

export const sqlQueryTool = {
  title: 'Run SQL',
  description:
    'Runs SQL on a PostgreSQL target through the agentgate broker. Policy decides per statement: allowed statements run, sensitive values come back masked, refused ones return an error naming the rule. A statement held for review waits inside this call (progress notifications name the approval request) and returns its result once a reviewer approves it; cancelling the call withdraws the request.',
  inputSchema: {
    target: z.string().min(1).describe('a postgres target from list_targets'),
    sql: z.string().min(1).max(MAX_SQL_CHARS).describe('one statement (or several separated by semicolons; the last result with rows is returned)'),
    max_rows: z.number().int().min(1).max(MAX_MAX_ROWS).optional().describe(`rows to return at most (default ${DEFAULT_MAX_ROWS}); the rest are counted, not returned`),
    reason: REASON,
  },
  outputSchema: {
    target: z.string(),
    command: z.string().describe('the command tag, e.g. "SELECT 3" or "UPDATE 1"'),
    columns: z.array(z.object({ name: z.string(), type_oid: z.number().int() })),
    rows: z.array(z.array(z.string().nullable())).describe('values as text, masked where policy masks'),
    row_count: z.number().int().describe('rows the statement returned'),
    truncated: z.boolean().describe('row_count > rows returned (max_rows)'),
    approval: z.string().optional().describe('the approval request the statement waited for, when it was held'),
  },
} as const;

export const kubernetesRequestTool = {
  title: 'Kubernetes API request',
  description:
    'Sends one Kubernetes API request to a kubernetes target through the agentgate broker: give path, or resource (+ namespace, name, api_version). Policy decides per request; a request held for review waits inside this call (progress notifications name the approval request) and is sent once approved; cancelling the call withdraws the request.',
  inputSchema: {
    target: z.string().min(1).describe('a kubernetes target from list_targets'),
    verb: z.enum(K8S_VERBS),
    path: z.string().optional().describe('an API path, e.g. /api/v1/namespaces/default/pods (instead of resource)'),
    resource: z.string().optional().describe('e.g. pods, configmaps, deployments'),
    namespace: z.string().optional(),
    name: z.string().optional().describe('the object; required for get, update, patch, delete'),
    api_version: z.string().optional().describe('v1 (core, default) or group/version, e.g. apps/v1'),
    body: z.unknown().optional().describe('create/update: the object; patch: a JSON merge patch'),
    reason: REASON,
  },
  outputSchema: {
    target: z.string(),
    status: z.number().int().describe('HTTP status from the API server, or from the broker for a refusal'),
    body: z.unknown().optional().describe('the JSON response (masked where policy masks)'),
    text: z.string().optional().describe('the response when it was not JSON'),
    truncated: z.boolean(),
    approval: z.string().optional().describe('the approval request the call waited for, when it was held'),
  },
} as const;

export const DEFAULT_MAX_BYTES = 1024 * 1024;
export const MAX_MAX_BYTES = 16 * 1024 * 1024;
/** Command text an agent may send in one call (OpenSSH's own limit is far above any real command). */
export const MAX_COMMAND_CHARS = 64 * 1024;

export const sshExecTool = {
  title: 'Run a command over SSH',
  description:
    "Runs one command on an SSH target through the agentgate broker (an exec request, no shell or pty). Policy decides per command: an allowed one runs and its output comes back with secrets masked; a refused one (not listed, or chained with ;, &&, |, $(…), redirections) returns an error with the broker's message and nothing runs. A command held for review waits inside this call (progress notifications name the approval request) and runs once a reviewer approves it; cancelling the call withdraws the request. A non-zero exit status is a result, not an error.",
  inputSchema: {
    target: z.string().min(1).describe('an ssh target from list_targets'),
    command: z.string().min(1).max(MAX_COMMAND_CHARS).describe('the command line, as `ssh target <command>` would send it, e.g. "uptime" or "systemctl status nginx"'),
    max_bytes: z.number().int().min(1).max(MAX_MAX_BYTES).optional().describe(`output (stdout and stderr together) to return at most (default ${DEFAULT_MAX_BYTES}); the rest is read and dropped, and truncated says so`),
    reason: REASON.describe(
      "why this call is needed: recorded with the command (ssh.command.intent/ssh.command, the approval request) in place of the session's reason (agentgate mcp --reason / AGENTGATE_REASON); a policy with require_reason accepts it",
    ),
  },
  outputSchema: {
    target: z.string(),
    exit_code: z.number().int().nullable().describe('the exit status; 126 with an agentgate message on stderr is a refusal (returned as an error); null when it ended on a signal'),
    signal: z.string().optional().describe('the signal that ended it, e.g. TERM'),
    stdout: z.string().describe('masked where policy masks'),
    stderr: z.string().describe('masked where policy masks; the broker\'s own hold lines are left out'),
    truncated: z.boolean().describe('more output came than max_bytes'),
    approval: z.string().optional().describe('the approval request the command waited for, when it was held'),
  },
} as const;

export const requestStatusTool = {
  title: 'Approval request status',
  description: 'The state of an approval request (apr_…) this identity made (e.g. one a held call of yours named): pending, approved, denied, expired or withdrawn, with who decided and why.',
  inputSchema: {
    id: z.string().regex(/^apr_[a-z0-9]+$/i).describe('the request id from a progress notification or an error'),
  },
  outputSchema: {
    id: z.string(),
    status: z.enum(['pending', 'approved', 'denied', 'expired', 'withdrawn']),
    target: z.string(),
    statement: z.string(),
    rule: z.string(),
    why_held: z.string(),
    approvers: z.object({ groups: z.array(z.string()), count: z.number().int() }),
    decisions: z.array(z.object({ approver: z.string(), decision: z.enum(['approve', 'deny']), reason: z.string().nullable(), at: z.string() })),
    created_at: z.string(),
    expires_at: z.string(),
  },
} as const;
