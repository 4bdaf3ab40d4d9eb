/**
 * Waiting for a held Kubernetes request's decision inside a tool call. The broker's
 * Kubernetes proxy does not keep a held request open (kubectl would time out): it answers
 * 403 "approval required: apr_…" and lets the same request through once approved. So the
 * MCP server waits on the approvals API for the requester, then sends the same request
 * again — the broker still judges it, and the approval covers exactly that request.
 * A cancelled call withdraws the request (only the requester may), and only when the broker
 * says it was made in this client session: the 403 is read from a response the API server
 * (and so the agent) can shape, and the identity may have other sessions whose requests are
 * not this call's to take back.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { RequestView } from '../../shared/api-types.js';
import type { ApprovalsClient } from '../approvals.js';

const APPROVAL_REQUIRED = /approval required: (apr_[a-z0-9]+)/i;

/** The approval request a broker refusal names, if the refusal is "approval required". */
export function heldRequestId(status: number, body: unknown): string | undefined {
  if (status !== 403 || typeof body !== 'object' || body === null) return undefined;
  const message = (body as { message?: unknown }).message;
  return typeof message === 'string' ? APPROVAL_REQUIRED.exec(message)?.[1] : undefined;
}

export interface WaitOptions {
  signal: AbortSignal;
  /** This client's session id (`agentgate mcp`): only a request made in it is withdrawn on abort. */
  session: string;
  /** How often the request's state is read (ms). */
  pollMs: number;
  /** The request as first seen (to announce who must decide). */
  onPending(r: RequestView): void;
}

/** Resolves with the request once it is no longer pending; on abort, withdraws it and rejects. */
export async function waitForDecision(client: ApprovalsClient, id: string, o: WaitOptions): Promise<RequestView> {
  let announced = false;
  let seen: RequestView | undefined;
  try {
    for (;;) {
      const r = await client.get(id);
      seen = r;
      if (r.status !== 'pending') return r;
      if (!announced) {
        announced = true;
        o.onPending(r);
      }
      await sleep(o.pollMs, undefined, { signal: o.signal });
    }
  } catch (err) {
    if (o.signal.aborted && seen !== undefined && ownRequest(seen, o.session)) {
      await client.withdraw(id).catch(() => {
        // already decided or gone: nothing left to take back
      });
    }
    throw err;
  }
}

/**
 * The request was made by this identity in this client session, as the broker records it.
 * A request id read from a response or a command's output is only a claim: the command (or
 * the API server) can print any id, including one of the user's requests from elsewhere.
 */
export function ownRequest(r: RequestView, session: string): boolean {
  return r.mine && r.connect_session === session;
}
