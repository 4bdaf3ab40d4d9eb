/**
 * The services behind `agentgate login`, `logout`, `whoami` and `targets`. Commands parse
 * flags, call one of these, and render the result.
 */
import type { TargetsResponse, WhoAmI } from '../shared/api-types.js';
import { brokerApi, createBrokerDispatcher, fetchDiscovery } from './broker-http.js';
import { openBrokerSession, type BrokerSessionFlags } from './broker-session.js';
import { deviceLogin, revokeLogin, type DevicePrompt } from './device-login.js';
import { closeIdpConnections } from './oidc.js';
import { openSettings, resolveBroker, type BrokerFlags } from './settings.js';
import type { TokenSourceKind } from './token-sources.js';
import { openTokenStore } from './token-store.js';

export interface LoginResult {
  broker: string;
  issuer: string;
  identity: WhoAmI;
  /** Where the tokens were stored (keychain or file path). */
  storedIn: string;
}

export interface LoginUi {
  /** Progress text for the user (stderr). */
  say(text: string): void;
  prompt(p: DevicePrompt): void;
  signal?: AbortSignal;
}

/** Device login against the broker's IdP; saves tokens and, on success, the broker and its trust. */
export async function login(flags: BrokerFlags, ui: LoginUi, env: NodeJS.ProcessEnv = process.env): Promise<LoginResult> {
  const { url, trust } = resolveBroker(flags, env);
  const dispatcher = createBrokerDispatcher(trust, { env });
  try {
    const discovery = await fetchDiscovery(url, dispatcher);
    ui.say(`Logging in to ${url} with ${discovery.issuer}`);
    const stored = await deviceLogin(discovery, { prompt: ui.prompt, ...(ui.signal ? { signal: ui.signal } : {}) });
    // Ask the broker before saving anything: a token it refuses is no login.
    const identity = await brokerApi(url, dispatcher, discovery).whoami(stored.access_token);
    const store = await openTokenStore({ env });
    await store.set(url, stored);
    openSettings().saveBroker(url, trust);
    return { broker: url, issuer: discovery.issuer, identity, storedIn: store.location };
  } finally {
    await Promise.allSettled([dispatcher.close(), closeIdpConnections()]);
  }
}

export interface LogoutResult {
  broker: string | undefined;
  /** False when there was nothing to forget. */
  removed: boolean;
  /** What happened to the refresh token at the IdP. */
  revocation: 'revoked' | 'unsupported' | 'nothing' | { failed: string };
}

/** Revokes the refresh token where possible, then forgets the login. Idempotent. */
export async function logout(flags: Pick<BrokerFlags, 'broker'>, env: NodeJS.ProcessEnv = process.env): Promise<LogoutResult> {
  const resolved = resolveBroker({ ...(flags.broker ? { broker: flags.broker } : {}) }, env, false);
  if (!resolved) return { broker: undefined, removed: false, revocation: 'nothing' };
  const store = await openTokenStore({ env });
  const stored = await store.get(resolved.url);
  let revocation: LogoutResult['revocation'] = 'nothing';
  try {
    if (stored) revocation = await revokeLogin(stored);
  } finally {
    await closeIdpConnections();
  }
  const removed = await store.delete(resolved.url);
  return { broker: resolved.url, removed: removed || stored !== undefined, revocation };
}

export interface WhoAmIResult extends WhoAmI {
  /** Where the token came from on this side. */
  token_source: TokenSourceKind;
}

export async function whoami(flags: BrokerSessionFlags, env: NodeJS.ProcessEnv = process.env): Promise<WhoAmIResult> {
  const session = await openBrokerSession(flags, env);
  try {
    const t = await session.token();
    const who = await session.api.whoami(t.token, session.tokenContext(t));
    return { ...who, token_source: t.kind };
  } finally {
    await session.close();
  }
}

export async function listTargets(flags: BrokerSessionFlags, env: NodeJS.ProcessEnv = process.env): Promise<TargetsResponse> {
  const session = await openBrokerSession(flags, env);
  try {
    const t = await session.token();
    return await session.api.targets(t.token, session.tokenContext(t));
  } finally {
    await session.close();
  }
}
