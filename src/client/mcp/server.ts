/**
 * `agentgate mcp`: an MCP server over stdio that is a thin adapter in front of one
 * agentgate session. It opens the session like `agentgate run` does (one tunnel, a local
 * endpoint per target, the per-session secret), and each tool call speaks the target's own
 * protocol to that endpoint — node-postgres for SQL, HTTPS for Kubernetes, an ssh2 client
 * for SSH — so the broker judges, holds, masks and records every call exactly as it does a
 * psql, kubectl or ssh one.
 * Nothing on this side allows or refuses anything: the agent is not trusted, and neither
 * is this process.
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { CallToolResult, ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { Readable, Writable } from 'node:stream';
import { isAgentgateError } from '../../errors.js';
import { VERSION } from '../../shared/version.js';
import type { RequestView, TargetSummary } from '../../shared/api-types.js';
import type { BrokerSessionFlags } from '../broker-session.js';
import { openConnections, type Endpoint, type OpenConnections } from '../connect.js';
import { openApprovalsClient, type ApprovalsClient } from '../approvals.js';
import { listTargets } from '../identity.js';
import { collectReceipts, type CollectedReceipt } from '../receipts.js';
import { renewalNotices } from '../renewal-notice.js';
import { runSql } from './sql.js';
import { sqlText } from './text-table.js';
import { k8sClient, type K8sCall } from './kubernetes.js';
import { heldRequestId, ownRequest, waitForDecision } from './approval-wait.js';
import { holdNotice } from '../../shared/hold-notice.js';
import { normalizeReason } from '../../shared/reason.js';
import { pinnedHostKey, sshExec, HostKeyMismatchError } from './ssh.js';
import { sshGrantedRequestId, sshHoldRequestId } from './ssh-lines.js';
import { DEFAULT_MAX_BYTES, DEFAULT_MAX_ROWS, kubernetesRequestTool, listTargetsTool, requestStatusTool, sqlQueryTool, sshExecTool } from './tools.js';

export interface ServeMcpOptions {
  flags: BrokerSessionFlags;
  /** Targets to open; empty = every postgres, kubernetes and ssh target this identity may use. */
  targets: string[];
  receiptDir?: string;
  env?: NodeJS.ProcessEnv;
  /** The protocol's streams (default: this process's stdin and stdout). */
  stdin?: Readable;
  stdout?: Writable;
  /** Human lines (stderr): never stdout, which carries the protocol. */
  say: (line: string) => void;
  /** How often a waiting call repeats its progress notification (ms). */
  progressIntervalMs?: number;
  /** How often a held Kubernetes request's state is read (ms). */
  pollMs?: number;
  /** The session's reason (`--reason` / AGENTGATE_REASON); a tool call's own reason replaces it for that call. */
  reason?: string;
  /** Ends the server as if the client had gone (SIGINT/SIGTERM): the session ends and its receipts are saved. */
  stop?: AbortSignal;
}

export interface McpSummary {
  session: string;
  targets: string[];
  calls: number;
  receipts: { id: string; path: string; verified: boolean }[];
}

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

const SERVED: readonly TargetSummary['type'][] = ['postgres', 'kubernetes', 'ssh'];
/** The broker's hold notice (shared/hold-notice.ts), not any NOTICE that mentions a request id. */
const HOLD_NOTICE = /^waiting for \d+ approvals? .*\((apr_[a-z0-9]+)\)/;
/** Hold notices of one sql_query call that are checked with the broker (one per held statement of a list). */
const MAX_HOLD_CLAIMS = 16;
/** The SSH proxy's exit status for a command it did not run (REFUSED_EXIT). */
const SSH_REFUSED_EXIT = 126;
/** …and for one it could not start (the target unreachable or refusing the broker). */
const SSH_BROKER_FAILED_EXIT = 255;

/** Runs until the client closes stdin (or the transport fails); then ends the session and saves its receipts. */
export async function serveMcp(o: ServeMcpOptions): Promise<McpSummary> {
  const env = o.env ?? process.env;
  const all = (await listTargets(o.flags, env)).targets;
  const names = o.targets.length > 0 ? o.targets : all.filter((t) => SERVED.includes(t.type)).map((t) => t.name);
  const renewalNotice = renewalNotices();
  const conns = await openConnections({
    flags: o.flags,
    targets: names.map((name) => ({ name, port: 0 })),
    bind: '127.0.0.1',
    allowRemote: false,
    env,
    ...(o.reason !== undefined ? { reason: o.reason } : {}),
    onState: (state, change) => {
      if (state === 'down') o.say(`agentgate mcp: broker connection lost${change.error ? ` (${change.error.message})` : ''}, reconnecting…`);
    },
    onRenewal: (event) => {
      const text = renewalNotice(event);
      if (text) o.say(text);
    },
  });
  let approvals: Promise<ApprovalsClient> | undefined;
  const k8s = new Map<string, ReturnType<typeof k8sClient>>();
  let calls = 0;
  try {
    const server = new McpServer(
      { name: 'agentgate', version: VERSION },
      {
        instructions:
          'Every call goes through the agentgate broker: policy decides per statement or request, sensitive values arrive masked, and risky ones wait for a human reviewer inside the call. Start with list_targets.',
      },
    );
    const endpoint = (name: string, type: TargetSummary['type']): Endpoint | string => {
      const e = conns.endpoints.find((x) => x.target.name === name);
      if (e && e.target.type === type) return e;
      const open = conns.endpoints.filter((x) => x.target.type === type).map((x) => x.target.name);
      if (e) return `target "${name}" is a ${e.target.type} target, not ${type}${open.length > 0 ? `; ${type} targets here: ${open.join(', ')}` : ''}`;
      return `no ${type} target "${name}" in this session${open.length > 0 ? `; open: ${open.join(', ')}` : ''}; call list_targets to see what you may use`;
    };

    /**
     * A request id read from a NOTICE, a 403 or a stderr line is a claim the agent can forge
     * (RAISE NOTICE, an echoing command, an API message): it is announced and reported only
     * when the broker says this identity made the request, so a forged notice cannot send
     * the user, as a reviewer, to someone else's request. Undefined when not (or unknown).
     */
    const confirmedMine = async (id: string): Promise<RequestView | undefined> => {
      approvals ??= openApprovalsClient(o.flags, env);
      try {
        const r = await (await approvals).get(id);
        return r.mine ? r : undefined;
      } catch {
        return undefined;
      }
    };

    server.registerTool('list_targets', listTargetsTool, async () => {
      calls++;
      const { targets } = await listTargets(o.flags, env);
      const rows = targets.map((t) => ({
        name: t.name,
        type: t.type,
        ...(t.database !== undefined ? { database: t.database } : {}),
        open: conns.endpoints.some((e) => e.target.name === t.name),
        allows: t.allows,
        policies: t.policies,
      }));
      const text = rows.length === 0 ? 'No targets: no policy on this broker lets this identity reach one.' : rows.map((t) => `${t.name} (${t.type}${t.open ? '' : ', not open here'}): ${t.allows.join('; ') || 'nothing'}`).join('\n');
      return { content: [{ type: 'text', text }], structuredContent: { targets: rows } };
    });

    server.registerTool('sql_query', sqlQueryTool, async (args, extra) => {
      calls++;
      const e = endpoint(args.target, 'postgres');
      if (typeof e === 'string') return toolError(e);
      const maxRows = args.max_rows ?? DEFAULT_MAX_ROWS;
      const progress = progressReporter(extra, o.progressIntervalMs ?? 15_000);
      let approval: string | undefined;
      let confirming: Promise<void> | undefined;
      let claims = 0;
      try {
        const out = await runSql({
          url: e.url as string,
          sql: args.sql,
          maxRows,
          reason: normalizeReason(args.reason),
          signal: extra.signal,
          onNotice: (message) => {
            const id = HOLD_NOTICE.exec(message)?.[1];
            // A flood of (forged) hold notices would queue a lookup each: the first few are checked.
            if (id === undefined || ++claims > MAX_HOLD_CLAIMS) return;
            // Each held statement of a list says so; checked in the order they came.
            confirming = (confirming ?? Promise.resolve()).then(async () => {
              if (!(await confirmedMine(id))) return;
              approval = id;
              progress.waiting(`${args.target}: ${message}`);
            });
          },
        });
        await confirming;
        if (!out.ok) {
          const f = out.error;
          const lines = [`${f.sqlstate === '42501' ? 'refused' : 'failed'} (SQLSTATE ${f.sqlstate}): ${f.message}`];
          if (f.detail) lines.push(`DETAIL: ${f.detail}`);
          if (f.hint) lines.push(`HINT: ${f.hint}`);
          if (approval) lines.push(`approval request: ${approval} (request_status shows who decided and why)`);
          return toolError(lines.join('\n'));
        }
        const r = out.result;
        return {
          content: [{ type: 'text', text: sqlText(r, maxRows) }],
          structuredContent: { target: args.target, ...r, ...(approval ? { approval } : {}) },
        };
      } catch (err) {
        if (extra.signal.aborted) throw err;
        // Not an answer from PostgreSQL or the broker's policy: the connection itself failed.
        return toolError(
          `the connection to ${args.target} failed: ${(err as Error).message}. If the statement was sent, its outcome is in the broker's audit log: check before retrying a write (request_status for a held one)`,
        );
      } finally {
        progress.stop();
      }
    });

    server.registerTool('kubernetes_request', kubernetesRequestTool, async (args, extra) => {
      calls++;
      const e = endpoint(args.target, 'kubernetes');
      if (typeof e === 'string') return toolError(e);
      let client = k8s.get(e.target.name);
      if (!client) {
        client = k8sClient({ host: e.host, port: e.port, caPem: e.caPem as string, secret: conns.session.secret });
        k8s.set(e.target.name, client);
      }
      const progress = progressReporter(extra, o.progressIntervalMs ?? 15_000);
      try {
        const call: K8sCall = { verb: args.verb, path: args.path, resource: args.resource, namespace: args.namespace, name: args.name, api_version: args.api_version, body: args.body, reason: normalizeReason(args.reason) };
        let res = await client.send(call, extra.signal);
        const held = heldRequestId(res.status, res.json);
        let approval: string | undefined;
        // A 403 naming a request this identity did not make is the API's (or a forgery), not a hold.
        const mine = held !== undefined ? await confirmedMine(held) : undefined;
        if (held !== undefined && mine !== undefined) {
          approval = held;
          approvals ??= openApprovalsClient(o.flags, env);
          const decided = await waitForDecision(await approvals, held, {
            signal: extra.signal,
            session: conns.session.id,
            pollMs: o.pollMs ?? 1_000,
            onPending: (r) => progress.waiting(`${args.target}: ${holdNotice(r)}`),
          });
          if (decided.status !== 'approved') {
            const why = decided.decisions.filter((d) => d.decision === 'deny').map((d) => `denied by ${d.approver.name ?? d.approver.sub}: ${d.reason ?? ''}`).join('; ');
            return toolError(`${held} ${decided.status}${why ? ` (${why})` : ''}; the request was not sent`);
          }
          // Approved: the same request again; the broker lets it through on that approval.
          res = await client.send(call, extra.signal);
        }
        const result = {
          target: args.target,
          status: res.status,
          ...(res.json !== undefined ? { body: res.json } : {}),
          ...(res.text !== undefined ? { text: res.text } : {}),
          truncated: res.truncated,
          ...(approval ? { approval } : {}),
        };
        const summary = res.json !== undefined ? JSON.stringify(res.json, null, 2) : (res.text ?? '');
        const text = `HTTP ${res.status}${res.truncated ? ' (body cut at 1 MiB)' : ''}\n${summary}`;
        if (res.status >= 400) return { content: [{ type: 'text', text: `${res.status === 403 ? 'refused' : 'failed'}: ${text}` }], isError: true };
        return { content: [{ type: 'text', text }], structuredContent: result };
      } catch (err) {
        if (isAgentgateError(err)) return toolError(err.hint ? `${err.message}\n${err.hint}` : err.message);
        throw err;
      } finally {
        progress.stop();
      }
    });

    server.registerTool('ssh_exec', sshExecTool, async (args, extra) => {
      calls++;
      const e = endpoint(args.target, 'ssh');
      if (typeof e === 'string') return toolError(e);
      const pinned = e.sshConfig ? await pinnedHostKey(e.sshConfig, e.host, e.port).catch(() => undefined) : undefined;
      if (!pinned) return toolError(`the session has no pinned broker host key for ${args.target}; nothing was sent (reconnect agentgate mcp; if it persists, report it as a bug)`);
      const progress = progressReporter(extra, o.progressIntervalMs ?? 15_000);
      const maxBytes = args.max_bytes ?? DEFAULT_MAX_BYTES;
      let approval: string | undefined;
      let claimed = false;
      let confirming: Promise<void> | undefined;
      try {
        const r = await sshExec({
          host: e.host,
          port: e.port,
          privateKey: conns.session.sshKey.private,
          pinnedHostKey: pinned,
          command: args.command,
          reason: normalizeReason(args.reason),
          maxBytes,
          signal: extra.signal,
          onStderrLine: (line) => {
            // The broker's hold line comes before the command runs: only the first one counts.
            if (claimed) return;
            const id = sshHoldRequestId(line);
            if (id === undefined) return;
            claimed = true;
            confirming = confirmedMine(id).then((v) => {
              if (!v) return;
              approval = id;
              progress.waiting(`${args.target}: ${line.replace(/^agentgate: /, '').replace(/ \(waiting…\)$/, '')}`);
            });
          },
        });
        await confirming;
        // The broker's own hold and grant lines are not the command's output.
        const stderr = approval === undefined ? r.stderr : r.stderr.split('\n').filter((l) => sshHoldRequestId(l.replace(/\r$/, '')) === undefined && sshGrantedRequestId(l.replace(/\r$/, '')) === undefined).join('\n');
        // The broker ran nothing and said why, on stderr alone: refused (policy, a denied or
        // withdrawn approval, a session ended: 126) or the target unreachable (255).
        const said = stderr.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l !== '');
        const brokerOnly = said.length > 0 && said[0]?.startsWith('agentgate: ') === true && said.every((l) => l.startsWith('agentgate: ') || l.startsWith('hint: '));
        if ((r.exit_code === SSH_REFUSED_EXIT || r.exit_code === SSH_BROKER_FAILED_EXIT) && r.stdout === '' && brokerOnly) {
          const lines = [`${r.exit_code === SSH_REFUSED_EXIT ? 'refused' : 'failed'}: ${said.join('\n')}`];
          if (approval) lines.push(`approval request: ${approval} (request_status shows who decided and why)`);
          return toolError(lines.join('\n'));
        }
        const result = { target: args.target, exit_code: r.exit_code, ...(r.signal ? { signal: r.signal } : {}), stdout: r.stdout, stderr, truncated: r.truncated, ...(approval ? { approval } : {}) };
        const status = r.exit_code !== null ? `exit ${r.exit_code}` : r.signal ? `ended by signal ${r.signal}` : 'ended without an exit status';
        const parts = [`${status}${r.truncated ? ` (output cut at ${maxBytes} bytes)` : ''}${approval ? ` — approved: ${approval}` : ''}`];
        if (r.stdout) parts.push(r.stdout.replace(/\n$/, ''));
        if (stderr.trim()) parts.push(`stderr:\n${stderr.replace(/\n$/, '')}`);
        return { content: [{ type: 'text', text: parts.join('\n') }], structuredContent: result };
      } catch (err) {
        if (extra.signal.aborted) {
          await confirming;
          // The broker's SSH proxy does not see a held exec's channel close while it waits,
          // so the request is withdrawn here, as the requester (as approval-wait.ts does).
          if (approval !== undefined) {
            const id = approval;
            approvals ??= openApprovalsClient(o.flags, env);
            // Only a request of this session: the id came from a stderr line, which the command can forge.
            await approvals
              .then(async (c) => {
                if (ownRequest(await c.get(id), conns.session.id)) await c.withdraw(id);
              })
              .catch(() => {
                // already decided or gone (or the API unreachable): nothing more to do here
              });
          }
          throw err;
        }
        if (err instanceof HostKeyMismatchError) return toolError(err.message);
        return toolError(
          `the SSH connection to ${args.target} failed: ${(err as Error).message}. If the command was sent, its outcome is in the broker's audit log: check before retrying (request_status for a held one)`,
        );
      } finally {
        progress.stop();
      }
    });

    server.registerTool('request_status', requestStatusTool, async (args) => {
      calls++;
      approvals ??= openApprovalsClient(o.flags, env);
      try {
        const r = await (await approvals).get(args.id);
        // The agent acts as this identity, not as its reviewer: requests others made (which
        // the identity may see as a reviewer) are not the agent's to read.
        if (!r.mine) return toolError(`no approval request ${args.id} made by this identity; request_status shows the requests your own calls made (reviewers use agentgate requests)`);
        const view = {
          id: r.id,
          status: r.status,
          target: r.target,
          statement: r.statement,
          rule: r.rule,
          why_held: r.reason,
          approvers: { groups: r.approvers.groups, count: r.approvers.count },
          decisions: r.decisions.map((d) => ({ approver: d.approver.name ?? d.approver.sub, decision: d.decision, reason: d.reason, at: d.at })),
          created_at: r.created_at,
          expires_at: r.expires_at,
        };
        const decided = view.decisions.map((d) => `${d.decision} by ${d.approver}${d.reason ? `: ${d.reason}` : ''}`).join('; ');
        return { content: [{ type: 'text', text: `${r.id} ${r.status} (${r.target}: ${r.statement})${decided ? ` — ${decided}` : ''}` }], structuredContent: view };
      } catch (err) {
        if (isAgentgateError(err)) return toolError(err.hint ? `${err.message}\n${err.hint}` : err.message);
        throw err;
      }
    });

    const stdin = o.stdin ?? process.stdin;
    const transport = new StdioServerTransport(stdin, o.stdout ?? process.stdout);
    const closed = new Promise<void>((resolve) => {
      transport.onclose = () => resolve();
      stdin.once('end', () => resolve());
      stdin.once('close', () => resolve());
      if (o.stop?.aborted) resolve();
      o.stop?.addEventListener('abort', () => resolve(), { once: true });
    });
    await server.connect(transport);
    o.say(`agentgate mcp: serving ${conns.endpoints.map((x) => `${x.target.name} (${x.target.type})`).join(', ') || 'no targets'} over stdio; session ${conns.session.id}`);
    await closed;
    await server.close().catch(() => {});
    return await finish(o, conns, calls, env);
  } finally {
    for (const c of k8s.values()) await c.close().catch(() => {});
    if (approvals) await (await approvals.catch(() => undefined))?.close().catch(() => {});
    await conns.close().catch(() => {});
  }
}

async function finish(o: ServeMcpOptions, conns: OpenConnections, calls: number, env: NodeJS.ProcessEnv): Promise<McpSummary> {
  const channels = conns.session.channels;
  await conns.closeTunnel();
  let receipts: CollectedReceipt[] = [];
  try {
    receipts = await collectReceipts(conns.broker, conns.session.id, o.receiptDir, { expected: channels, timeoutMs: 5_000, env });
  } catch (err) {
    o.say(`agentgate mcp: could not fetch the session receipts: ${(err as Error).message}`);
  }
  for (const r of receipts) o.say(`  receipt ${r.id}: ${r.path}${r.verified ? '' : ' (signature NOT verified)'}`);
  return {
    session: conns.session.id,
    targets: conns.endpoints.map((e) => e.target.name),
    calls,
    receipts: receipts.map((r) => ({ id: r.id, path: r.path, verified: r.verified })),
  };
}

function toolError(text: string): CallToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}

/**
 * MCP progress notifications for a call that waits (when the client asked for them with a
 * progressToken): one as soon as the wait is known, then one every `intervalMs` saying how
 * long it has waited. Progress only grows, as the protocol requires.
 */
function progressReporter(extra: Extra, intervalMs: number): { waiting(message: string): void; stop(): void } {
  const token = extra._meta?.progressToken;
  let n = 0;
  let timer: NodeJS.Timeout | undefined;
  const started = Date.now();
  const send = (message: string): void => {
    if (token === undefined || extra.signal.aborted) return;
    n++;
    extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: n, message } }).catch(() => {
      // the client went away: the call's own signal ends it
    });
  };
  return {
    waiting(message) {
      send(message);
      clearInterval(timer);
      timer = setInterval(() => send(`${message} — still waiting after ${Math.round((Date.now() - started) / 1000)} s`), intervalMs);
      timer.unref();
    },
    stop() {
      clearInterval(timer);
    },
  };
}
