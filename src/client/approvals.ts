/**
 * The CLI side of the approvals API: list, get and decide requests, and follow the live
 * stream of changes (server-sent events). Used by `agentgate approve` and
 * `agentgate requests`; the broker answers refusals with stable codes, mapped here to the
 * exit codes of DESIGN.md (a refused decision, e.g. self-approval, exits 4).
 */
import { request, type Dispatcher } from 'undici';
import { AgentgateError, BrokerError, ExitCode } from '../errors.js';
import type { ApiErrorBody, DecisionBody, RequestEventType, RequestView, RequestsResponse, WhoAmI } from '../shared/api-types.js';
import { apiError, readJson, transportError } from './broker-http.js';
import { openBrokerSession, type BrokerSession, type BrokerSessionFlags } from './broker-session.js';
import { resolveToken, type ResolvedToken } from './token-sources.js';

export type Decision = DecisionBody['decision'];

export const REQUEST_EVENT_TYPES: readonly RequestEventType[] = ['created', 'decided', 'expired', 'withdrawn', 'updated'];

export interface RequestEventHandlers {
  /** The broker confirmed the subscription: changes from now on will arrive. */
  onOpen?(): void;
  onEvent(type: RequestEventType, request: RequestView): void;
}

export interface ApprovalsClient {
  readonly url: string;
  whoami(): Promise<WhoAmI>;
  /** Every page (the live screen holds them all; the broker caps what one requester queues). */
  list(opts?: { all?: boolean }): Promise<RequestView[]>;
  /** One page, newest first: `next` is the `after` of the following page. */
  page(opts?: PageOptions): Promise<RequestsResponse>;
  get(id: string): Promise<RequestView>;
  decide(id: string, decision: Decision, reason?: string | null): Promise<RequestView>;
  /** Takes back a pending request the caller made (`POST /v1/requests/:id/withdraw`). */
  withdraw(id: string): Promise<RequestView>;
  /** Follows `GET /v1/requests/events` until the broker ends the stream or `signal` aborts. */
  events(handlers: RequestEventHandlers, signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

export interface PageOptions {
  all?: boolean;
  limit?: number;
  after?: string;
}

const MAX_JSON_BYTES = 16 * 1024 * 1024;
/** Pages list() follows at most (200 each). */
const MAX_PAGES = 50;
const MAX_SSE_LINE = 1024 * 1024;

export async function openApprovalsClient(flags: BrokerSessionFlags, env: NodeJS.ProcessEnv = process.env): Promise<ApprovalsClient> {
  const session = await openBrokerSession(flags, env);
  return approvalsClient(session, flags, env);
}

/** Runs `fn` with a client and always closes it. */
async function withClient<T>(flags: BrokerSessionFlags, env: NodeJS.ProcessEnv, fn: (c: ApprovalsClient) => Promise<T>): Promise<T> {
  const client = await openApprovalsClient(flags, env);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

export function listRequests(flags: BrokerSessionFlags, opts: PageOptions = {}, env: NodeJS.ProcessEnv = process.env): Promise<RequestsResponse> {
  return withClient(flags, env, (c) => c.page(opts));
}

export function getRequest(flags: BrokerSessionFlags, id: string, env: NodeJS.ProcessEnv = process.env): Promise<RequestView> {
  return withClient(flags, env, (c) => c.get(id));
}

export function decideRequest(flags: BrokerSessionFlags, id: string, decision: Decision, reason: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<RequestView> {
  return withClient(flags, env, (c) => c.decide(id, decision, reason ?? null));
}

function approvalsClient(session: BrokerSession, flags: BrokerSessionFlags, env: NodeJS.ProcessEnv): ApprovalsClient {
  // The screen may stay open longer than an access token lives: after a 401 (or before a
  // stream reconnect) the token is resolved again, which refreshes a stored login.
  let current: Promise<ResolvedToken> | undefined;
  const token = (fresh = false): Promise<ResolvedToken> => {
    if (fresh || !current) {
      current = fresh ? resolveToken({ brokerUrl: session.url, discovery: session.discovery, env, ...(flags.tokenFile ? { tokenFile: flags.tokenFile } : {}) }) : session.token();
      current.catch(() => (current = undefined));
    }
    return current;
  };
  const errorFor = (status: number, json: unknown, t: ResolvedToken): AgentgateError => approvalApiError(status, json, session, t);

  const call = async <T>(method: 'GET' | 'POST', path: string, body?: unknown, retried = false): Promise<T> => {
    const t = await token();
    const url = `${session.url}${path}`;
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, {
        method,
        dispatcher: session.dispatcher,
        headers: {
          accept: 'application/json',
          authorization: `Bearer ${t.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (err) {
      throw transportError(err, url);
    }
    let json: unknown;
    try {
      json = await readJson(res.body, MAX_JSON_BYTES);
    } catch (err) {
      throw transportError(err, url);
    }
    if (res.statusCode >= 200 && res.statusCode < 300 && json !== undefined) return json as T;
    if (res.statusCode === 401 && !retried && t.kind === 'login') {
      await token(true);
      return call<T>(method, path, body, true);
    }
    throw errorFor(res.statusCode, json, t);
  };

  const path = (id: string): string => `/v1/requests/${encodeURIComponent(id)}`;
  let streams = 0;

  return {
    url: session.url,
    async whoami() {
      const t = await token();
      return session.api.whoami(t.token, session.tokenContext(t));
    },
    async page(opts = {}) {
      const q = new URLSearchParams();
      if (opts.all) q.set('all', '1');
      if (opts.limit !== undefined) q.set('limit', String(opts.limit));
      if (opts.after !== undefined) q.set('after', opts.after);
      const res = await call<RequestsResponse>('GET', `/v1/requests${q.size > 0 ? `?${q.toString()}` : ''}`);
      return { requests: Array.isArray(res.requests) ? res.requests : [], ...(typeof res.next === 'string' ? { next: res.next } : {}) };
    },
    async list(opts = {}) {
      const out: RequestView[] = [];
      let after: string | undefined;
      for (let i = 0; i < MAX_PAGES; i++) {
        const page = await this.page({ ...opts, limit: 200, ...(after !== undefined ? { after } : {}) });
        out.push(...page.requests);
        if (page.next === undefined) break;
        after = page.next;
      }
      return out;
    },
    get: (id) => call<RequestView>('GET', path(id)),
    decide: (id, decision, reason) => {
      const body: DecisionBody = { decision, ...(reason ? { reason } : {}) };
      return call<RequestView>('POST', `${path(id)}/decision`, body);
    },
    withdraw: (id) => call<RequestView>('POST', `${path(id)}/withdraw`),
    async events(handlers, signal) {
      // Reconnects ask for the token again, so a refreshed login is picked up.
      const t = await token(streams++ > 0);
      const url = `${session.url}/v1/requests/events`;
      let res: Dispatcher.ResponseData;
      try {
        res = await request(url, {
          method: 'GET',
          dispatcher: session.dispatcher,
          headers: { accept: 'text/event-stream', authorization: `Bearer ${t.token}` },
          signal,
          // The broker sends a heartbeat every 15 s.
          bodyTimeout: 60_000,
        });
      } catch (err) {
        if (signal.aborted) return;
        throw transportError(err, url);
      }
      if (res.statusCode !== 200) {
        const json = await readJson(res.body, MAX_JSON_BYTES).catch(() => undefined);
        throw errorFor(res.statusCode, json, t);
      }
      let opened = false;
      const open = (): void => {
        if (opened) return;
        opened = true;
        handlers.onOpen?.();
      };
      try {
        for await (const ev of readSse(res.body)) {
          open();
          if (ev.event === undefined || !(REQUEST_EVENT_TYPES as readonly string[]).includes(ev.event)) continue;
          let view: RequestView;
          try {
            view = JSON.parse(ev.data) as RequestView;
          } catch {
            continue;
          }
          if (view && typeof view.id === 'string') handlers.onEvent(ev.event as RequestEventType, view);
        }
      } catch (err) {
        if (signal.aborted) return;
        throw transportError(err, url);
      } finally {
        res.body.destroy();
      }
    },
    close: () => session.close(),
  };
}

/** Refusals keep the broker's code; their exit code says what kind of refusal it was. */
export function approvalApiError(status: number, json: unknown, session: Pick<BrokerSession, 'url' | 'discovery'>, t: Pick<ResolvedToken, 'label'>): AgentgateError {
  const body = (json as Partial<ApiErrorBody> | undefined)?.error;
  if (body && typeof body.code === 'string' && typeof body.message === 'string' && [400, 403, 404, 409].includes(status)) {
    const exit = status === 403 ? ExitCode.denied : status === 400 ? ExitCode.usage : ExitCode.error;
    return new AgentgateError(body.code, body.message, exit, { hint: body.hint ?? 'see: agentgate requests --all' });
  }
  return apiError(status, json, { brokerUrl: session.url, discovery: session.discovery, source: t.label });
}

export interface SseMessage {
  /** Undefined for a comment-only block (heartbeat). */
  event: string | undefined;
  data: string;
}

/**
 * Parses a text/event-stream body into messages (WHATWG HTML §9.2 "event stream
 * interpretation", the subset we use: `event`, `data`, comments). A comment block yields
 * a message without `event`, so a reader learns the stream is alive.
 */
export async function* readSse(body: AsyncIterable<Buffer | string>): AsyncGenerator<SseMessage> {
  const decoder = new TextDecoder();
  let buf = '';
  let event: string | undefined;
  let data: string[] = [];
  let sawComment = false;
  for await (const chunk of body) {
    buf += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    for (;;) {
      const nl = buf.search(/\r\n|\r|\n/);
      // A CR at the end may be the first half of a CRLF split across chunks.
      if (nl < 0 || (nl === buf.length - 1 && buf[nl] === '\r')) break;
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (data.length > 0 || event !== undefined) yield { event: event ?? 'message', data: data.join('\n') };
        else if (sawComment) yield { event: undefined, data: '' };
        event = undefined;
        data = [];
        sawComment = false;
        continue;
      }
      if (line.startsWith(':')) {
        sawComment = true;
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (buf.length > MAX_SSE_LINE) throw new BrokerError('AG_BROKER_PROTOCOL', 'the broker sent an event line longer than 1 MiB', { hint: 'check that the URL points at an agentgate broker' });
  }
}
