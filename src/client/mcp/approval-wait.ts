/**
 * Waiting for a held Kubernetes request's decision inside a tool call. The broker's
 * Kubernetes proxy does not keep a held request open (kubectl would time out): it answers
 * 403 "approval required: apr_…" and lets the same request through once approved. So the
 * MCP server waits on the approvals API for the requester, then sends the same request
 * again — the broker still judges it, and the approval covers exactly that request.
 * A cancelled call withdraws the request (only the requester may).
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
  /** How often the request's state is read (ms). */
  pollMs: number;
  /** The request as first seen (to announce who must decide). */
  onPending(r: RequestView): void;
}

/** Resolves with the request once it is no longer pending; on abort, withdraws it and rejects. */
export async function waitForDecision(client: ApprovalsClient, id: string, o: WaitOptions): Promise<RequestView> {
  let announced = false;
  try {
    for (;;) {
      const r = await client.get(id);
      if (r.status !== 'pending') return r;
      if (!announced) {
        announced = true;
        o.onPending(r);
      }
      await sleep(o.pollMs, undefined, { signal: o.signal });
    }
  } catch (err) {
    if (o.signal.aborted) {
      await client.withdraw(id).catch(() => {
        // already decided or gone: nothing left to take back
      });
    }
    throw err;
  }
}
