/**
 * What the approvals screen shows, as a small external store (React's
 * useSyncExternalStore reads it): the requests seen so far and the stream's state.
 * `followRequests` fills it from the broker; tests fill it directly.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { RequestView } from '../shared/api-types.js';
import type { ApprovalsClient } from '../client/approvals.js';

export type FeedStatus = 'connecting' | 'live' | 'reconnecting';

export interface FeedState {
  /** Newest first. */
  requests: readonly RequestView[];
  status: FeedStatus;
  /** Why the stream is down, when it is. */
  error: string | undefined;
}

export interface RequestStore {
  getState(): FeedState;
  subscribe(listener: () => void): () => void;
  /** Replaces everything with a fresh listing. */
  reset(requests: readonly RequestView[]): void;
  /** Adds or updates one request; an older revision than the one held is ignored. */
  upsert(request: RequestView): void;
  setStatus(status: FeedStatus, error?: string): void;
}

export function createRequestStore(initial: readonly RequestView[] = [], status: FeedStatus = 'connecting'): RequestStore {
  let byId = new Map<string, RequestView>(initial.map((r) => [r.id, r]));
  let state: FeedState = { requests: sorted(byId), status, error: undefined };
  const listeners = new Set<() => void>();
  const publish = (next: FeedState): void => {
    state = next;
    for (const l of listeners) l();
  };
  return {
    getState: () => state,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    reset(requests) {
      byId = new Map(requests.map((r) => [r.id, r]));
      publish({ ...state, requests: sorted(byId) });
    },
    upsert(request) {
      const held = byId.get(request.id);
      if (held && held.revision > request.revision) return;
      byId.set(request.id, request);
      publish({ ...state, requests: sorted(byId) });
    },
    setStatus(status, error) {
      if (state.status === status && state.error === error) return;
      publish({ ...state, status, error });
    },
  };
}

function sorted(byId: Map<string, RequestView>): RequestView[] {
  return [...byId.values()].sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at) || (a.id < b.id ? 1 : -1));
}

export interface FollowOptions {
  /** First reconnect delay; doubles up to 30 s. Default 1 000. */
  retryMs?: number;
}

/**
 * Keeps `store` in step with the broker until `signal` aborts: subscribe to the event
 * stream first, list once the broker confirms the subscription (so no change can fall
 * between the two), apply events that raced the listing after it, and reconnect with
 * backoff when the stream drops.
 */
export async function followRequests(client: Pick<ApprovalsClient, 'list' | 'events'>, store: RequestStore, signal: AbortSignal, options: FollowOptions = {}): Promise<void> {
  const base = options.retryMs ?? 1_000;
  let failures = 0;
  while (!signal.aborted) {
    const attempt = new AbortController();
    const both = AbortSignal.any([signal, attempt.signal]);
    let early: RequestView[] | undefined = [];
    let listError: unknown;
    try {
      await client.events(
        {
          onOpen: () => {
            client.list().then(
              (list) => {
                store.reset(list);
                for (const v of early ?? []) store.upsert(v);
                early = undefined;
                failures = 0;
                store.setStatus('live');
              },
              (err: unknown) => {
                listError = err;
                attempt.abort();
              },
            );
          },
          onEvent: (_type, view) => {
            if (early) early.push(view);
            else store.upsert(view);
          },
        },
        both,
      );
      if (listError) throw listError;
    } catch (err) {
      if (signal.aborted) return;
      store.setStatus('reconnecting', err instanceof Error ? err.message : String(err));
    }
    if (signal.aborted) return;
    if (store.getState().status === 'live') store.setStatus('reconnecting', 'the broker ended the stream');
    failures++;
    try {
      await sleep(Math.min(base * 2 ** (failures - 1), 30_000), undefined, { signal });
    } catch {
      return;
    }
  }
}
