/**
 * The services behind `agentgate broker sessions` and `agentgate broker revoke`: the
 * operators' view of live sessions at the broker, and ending them at once.
 */
import { request } from 'undici';
import type { LiveSessionsResponse, RevokeResponse } from '../shared/api-types.js';
import { apiError, readJson, transportError } from './broker-http.js';
import { openBrokerSession, type BrokerSessionFlags } from './broker-session.js';

/** Proxy session ids carry their protocol's prefix; anything else names a subject. */
const SESSION_ID = /^(pgs|k8s|ssh)_[0-9a-f-]{36}$/;

export async function listLiveSessions(flags: BrokerSessionFlags, env: NodeJS.ProcessEnv = process.env): Promise<LiveSessionsResponse> {
  const session = await openBrokerSession(flags, env);
  try {
    const t = await session.token();
    return await session.api.get<LiveSessionsResponse>('/v1/live-sessions', t.token, session.tokenContext(t));
  } finally {
    await session.close();
  }
}

/** Ends one session (a `pgs_…`/`k8s_…` id) or, otherwise or with `asSub`, every live session of a subject. */
export async function revokeLive(flags: BrokerSessionFlags, which: string, asSub: boolean, env: NodeJS.ProcessEnv = process.env): Promise<RevokeResponse & { by: 'session' | 'sub' }> {
  const by = !asSub && SESSION_ID.test(which) ? 'session' : 'sub';
  const session = await openBrokerSession(flags, env);
  try {
    const t = await session.token();
    const url = `${session.url}/v1/live-sessions/revoke`;
    let status: number;
    let json: unknown;
    try {
      const res = await request(url, {
        method: 'POST',
        dispatcher: session.dispatcher,
        headers: { accept: 'application/json', authorization: `Bearer ${t.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ [by]: which }),
      });
      status = res.statusCode;
      json = await readJson(res.body);
    } catch (err) {
      throw transportError(err, url);
    }
    if (status !== 200 || json === undefined) throw apiError(status, json, { brokerUrl: session.url, discovery: session.discovery, source: session.tokenContext(t).source });
    return { ...(json as RevokeResponse), by };
  } finally {
    await session.close();
  }
}
