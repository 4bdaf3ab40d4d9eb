/**
 * Everything a command that talks to the broker needs, in one call: which broker and how
 * to trust it (flags > env > settings), the HTTP dispatcher, the broker's discovery
 * document, the API helpers, and the access token from the first source that applies.
 */
import type { Dispatcher } from 'undici';
import type { BrokerDiscovery } from '../shared/api-types.js';
import { brokerApi, createBrokerDispatcher, fetchDiscovery, type BrokerApi, type BrokerTrust, type TokenContext } from './broker-http.js';
import { closeIdpConnections } from './oidc.js';
import { resolveBroker, type BrokerFlags } from './settings.js';
import { closeTokenSourceConnections, resolveToken, type ResolvedToken } from './token-sources.js';

export interface BrokerSessionFlags extends BrokerFlags {
  /** `--token-file`. */
  tokenFile?: string;
}

export interface BrokerSession {
  /** The broker that answered (the first of several that did). */
  url: string;
  /** The other brokers given (`--broker a,b`), for failover. */
  alternates: string[];
  trust: BrokerTrust;
  /** undici dispatcher with the broker's TLS trust (and proxy) applied; reuse it for the tunnel. */
  dispatcher: Dispatcher;
  discovery: BrokerDiscovery;
  api: BrokerApi;
  /** Resolves the access token (cached for the session). */
  token(): Promise<ResolvedToken>;
  /** For brokerApi calls: names a non-login token source in refusals. */
  tokenContext(t: ResolvedToken): TokenContext;
  close(): Promise<void>;
}

export async function openBrokerSession(flags: BrokerSessionFlags, env: NodeJS.ProcessEnv = process.env): Promise<BrokerSession> {
  const resolved = resolveBroker(flags, env);
  const { trust } = resolved;
  const dispatcher = createBrokerDispatcher(trust, { env });
  const close = async (): Promise<void> => {
    await Promise.allSettled([dispatcher.close(), closeIdpConnections(), closeTokenSourceConnections()]);
  };
  // Several brokers: the first that answers serves this command; the rest are alternates.
  const candidates = [resolved.url, ...resolved.alternates];
  let discovery: BrokerDiscovery | undefined;
  let url = resolved.url;
  let firstError: unknown;
  for (const u of candidates) {
    try {
      discovery = await fetchDiscovery(u, dispatcher);
      url = u;
      break;
    } catch (err) {
      firstError ??= err;
    }
  }
  if (!discovery) {
    await close();
    throw firstError;
  }
  const alternates = candidates.filter((u) => u !== url);
  let token: Promise<ResolvedToken> | undefined;
  const found = discovery;
  return {
    url,
    alternates,
    trust,
    dispatcher,
    discovery: found,
    api: brokerApi(url, dispatcher, found),
    token: () => {
      token ??= resolveToken({ brokerUrl: url, discovery: found, env, ...(flags.tokenFile ? { tokenFile: flags.tokenFile } : {}) });
      return token;
    },
    tokenContext: (t) => (t.label ? { source: t.label } : {}),
    close,
  };
}

export { addBrokerOptions } from './broker-options.js';
