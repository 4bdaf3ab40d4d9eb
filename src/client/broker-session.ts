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
  url: string;
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
  const { url, trust } = resolveBroker(flags, env);
  const dispatcher = createBrokerDispatcher(trust, { env });
  const close = async (): Promise<void> => {
    await Promise.allSettled([dispatcher.close(), closeIdpConnections(), closeTokenSourceConnections()]);
  };
  let discovery: BrokerDiscovery;
  try {
    discovery = await fetchDiscovery(url, dispatcher);
  } catch (err) {
    await close();
    throw err;
  }
  let token: Promise<ResolvedToken> | undefined;
  return {
    url,
    trust,
    dispatcher,
    discovery,
    api: brokerApi(url, dispatcher, discovery),
    token: () => {
      token ??= resolveToken({ brokerUrl: url, discovery, env, ...(flags.tokenFile ? { tokenFile: flags.tokenFile } : {}) });
      return token;
    },
    tokenContext: (t) => (t.label ? { source: t.label } : {}),
    close,
  };
}

export { addBrokerOptions } from './broker-options.js';
