/**
 * A real OpenID Provider (panva's `oidc-provider`) on 127.0.0.1:0 for tests, with the
 * features agentgate's CLI uses: the device authorization grant, client credentials,
 * refresh tokens and revocation. Access tokens are JWTs for one resource whose audience
 * is configurable (the broker's `identity.audience`), and carry a `groups` claim from a
 * small in-memory account table.
 *
 * `completeDeviceFlow()` plays the user's part over the provider's own HTTP pages (code
 * entry form, dev login, consent) with a tiny cookie jar, so no browser is needed.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TestAccount {
  name: string;
  email: string;
  groups: string[];
}

export interface TestIdpOptions {
  /** `aud` of issued access tokens. Default `agentgate`. */
  audience?: string;
  /** Access-token lifetime in seconds (short for refresh tests). Default 600. */
  accessTokenTtl?: number;
  /** Device-code lifetime in seconds. Default 300. */
  deviceCodeTtl?: number;
  /** Polling interval the device authorization response advertises. Default 1 s, so tests stay fast. */
  deviceInterval?: number;
  /** Extra or replacement accounts, by username. */
  accounts?: Record<string, TestAccount>;
}

export interface TestIdp {
  /** `http://127.0.0.1:<port>` (no trailing slash). */
  issuer: string;
  audience: string;
  /** Public client for the device flow. */
  deviceClientId: string;
  /** Confidential client for client_credentials (its tokens carry groups [ci]). */
  ccClient: { id: string; secret: string };
  accounts: Record<string, TestAccount>;
  /** Successful token-endpoint grants so far, by grant_type (to assert a refresh happened). */
  grantCounts(): Record<string, number>;
  /** Grants revoked so far (a refresh token's revocation revokes its grant). */
  revokedGrants(): number;
  /** Acts as the user: opens the verification page, enters the code, logs in as `username`, and consents (or denies). */
  completeDeviceFlow(userCode: string, username: string, options?: { deny?: boolean }): Promise<void>;
  /** A client-credentials access token, obtained over HTTP like any client would. */
  clientCredentialsToken(): Promise<string>;
  close(): Promise<void>;
}

export const DEFAULT_ACCOUNTS: Record<string, TestAccount> = {
  alice: { name: 'Alice Agent', email: 'alice@example.test', groups: ['ai-agents'] },
  rita: { name: 'Rita Admin', email: 'rita@example.test', groups: ['dba'] },
  sam: { name: 'Sam Security', email: 'sam@example.test', groups: ['security'] },
};

export const DEVICE_CLIENT_ID = 'agentgate-cli';
export const CC_CLIENT = { id: 'ci-bot', secret: 'ci-bot-secret-for-tests-only' };
const RESOURCE_INDICATOR = 'urn:agentgate:broker';

// oidc-provider ships no type declarations; this is the little of its surface used here.
interface ProviderLike {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  use(mw: (ctx: KoaContext, next: () => Promise<void>) => Promise<void>): void;
  on(event: 'grant.success', listener: (ctx: { oidc: { params: { grant_type?: string } } }) => void): void;
  on(event: 'grant.revoked', listener: () => void): void;
}
interface KoaContext {
  path: string;
  method: string;
  status: number;
  body: unknown;
}
interface TokenLike {
  kind: string;
  accountId?: string;
  clientId?: string;
}

export async function startTestIdp(options: TestIdpOptions = {}): Promise<TestIdp> {
  const audience = options.audience ?? 'agentgate';
  const accounts = { ...DEFAULT_ACCOUNTS, ...options.accounts };
  const grants: Record<string, number> = {};

  // The issuer must be known before the provider exists, so listen first.
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const server = createServer((req, res) => {
    if (handler) handler(req, res);
    else res.writeHead(503).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const { default: Provider } = (await import('oidc-provider' as string)) as {
    default: new (issuer: string, config: Record<string, unknown>) => ProviderLike;
  };

  const claimsFor = (sub: string): Record<string, unknown> | undefined => {
    const a = accounts[sub];
    return a && { sub, name: a.name, email: a.email, email_verified: true, preferred_username: sub, groups: a.groups };
  };

  const config: Record<string, unknown> = {
    clients: [
      {
        client_id: DEVICE_CLIENT_ID,
        token_endpoint_auth_method: 'none',
        grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
        response_types: [],
        redirect_uris: [],
      },
      {
        client_id: CC_CLIENT.id,
        client_secret: CC_CLIENT.secret,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    async findAccount(_ctx: unknown, sub: string) {
      if (!accounts[sub]) return undefined;
      return { accountId: sub, claims: async () => claimsFor(sub) };
    },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
    features: {
      devInteractions: { enabled: true },
      deviceFlow: {
        enabled: true,
        // Minimal pages around the provider's own forms (defaults log "you should change" notices).
        async userCodeInputSource(ctx: KoaContext, form: string, _out: unknown, err?: { message?: string }) {
          ctx.body = `<!doctype html><title>Device</title>${err ? `<p class="error">${err.message ?? 'error'}</p>` : ''}${form}`;
        },
        async userCodeConfirmSource(ctx: KoaContext, form: string) {
          ctx.body = `<!doctype html><title>Confirm</title>${form}`;
        },
        async successSource(ctx: KoaContext) {
          ctx.body = '<!doctype html><title>Done</title><p id="device-done">Sign-in complete</p>';
        },
      },
      clientCredentials: { enabled: true },
      revocation: {
        enabled: true,
        async allowedPolicy(_ctx: unknown, client: { clientId: string }, token: TokenLike) {
          return token.clientId === client.clientId;
        },
      },
      resourceIndicators: {
        enabled: true,
        // The device flow and client credentials send no `resource`; default to ours.
        async defaultResource() {
          return RESOURCE_INDICATOR;
        },
        // Keep the JWT for the broker at the token endpoint even though `openid` is asked for.
        async useGrantedResource() {
          return true;
        },
        async getResourceServerInfo() {
          return {
            scope: '',
            audience,
            accessTokenFormat: 'jwt',
            accessTokenTTL: options.accessTokenTtl ?? 600,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    async extraTokenClaims(_ctx: unknown, token: TokenLike) {
      if (token.kind === 'ClientCredentials') return { groups: ['ci'] };
      const a = token.accountId ? accounts[token.accountId] : undefined;
      return a ? { groups: a.groups, name: a.name, email: a.email } : undefined;
    },
    async issueRefreshToken(_ctx: unknown, client: { grantTypeAllowed(g: string): boolean }, source: { scopes: Set<string> }) {
      return client.grantTypeAllowed('refresh_token') && source.scopes.has('offline_access');
    },
    ttl: {
      AccessToken: options.accessTokenTtl ?? 600,
      DeviceCode: options.deviceCodeTtl ?? 300,
      IdToken: 600,
      RefreshToken: 3600,
      Grant: 3600,
      Session: 3600,
      Interaction: 600,
      ClientCredentials: options.accessTokenTtl ?? 600,
    },
    pkce: { required: () => false },
    async renderError(ctx: KoaContext, out: Record<string, string>) {
      ctx.body = `<!doctype html><title>Error</title><pre id="error">${String(out['error'])}: ${String(out['error_description'])}</pre>`;
    },
    cookies: { keys: ['test-cookie-key-not-secret'] },
    clientBasedCORS: () => false,
  };

  // Its development warnings (devInteractions is dev-only) are expected here; keep test output readable.
  const { warn, info } = console;
  console.warn = () => {};
  console.info = () => {};
  let provider: ProviderLike;
  try {
    provider = new Provider(issuer, config);
  } finally {
    console.warn = warn;
    console.info = info;
  }

  provider.use(async (ctx, next) => {
    await next();
    // oidc-provider sends no `interval`; clients then default to 5 s. Advertise a short one.
    if (ctx.path === '/device/auth' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
      (ctx.body as Record<string, unknown>)['interval'] = options.deviceInterval ?? 1;
    }
  });
  provider.on('grant.success', (ctx: { oidc: { params: { grant_type?: string } } }) => {
    const gt = ctx.oidc.params.grant_type;
    if (gt) grants[gt] = (grants[gt] ?? 0) + 1;
  });
  let revoked = 0;
  provider.on('grant.revoked', () => {
    revoked++;
  });
  handler = provider.callback();

  return {
    issuer,
    audience,
    deviceClientId: DEVICE_CLIENT_ID,
    ccClient: CC_CLIENT,
    accounts,
    grantCounts: () => ({ ...grants }),
    revokedGrants: () => revoked,
    completeDeviceFlow: (userCode, username, opts = {}) => completeDeviceFlow(issuer, userCode, username, opts.deny === true),
    async clientCredentialsToken() {
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`${CC_CLIENT.id}:${CC_CLIENT.secret}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: 'grant_type=client_credentials',
      });
      const body = (await res.json()) as { access_token?: string; error?: string };
      if (!res.ok || !body.access_token) throw new Error(`client_credentials failed: ${res.status} ${body.error ?? ''}`);
      return body.access_token;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

/** A cookie jar keyed by name; enough for one provider on one host. */
class CookieJar {
  readonly #cookies = new Map<string, string>();

  store(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      if (!pair) continue;
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (/expires=Thu, 01 Jan 1970/i.test(line) || value === '') this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }

  header(): string {
    return [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

async function completeDeviceFlow(issuer: string, userCode: string, username: string, deny: boolean): Promise<void> {
  const jar = new CookieJar();
  const go = async (url: string, form?: Record<string, string>): Promise<{ res: Response; html: string; url: string }> => {
    let next = new URL(url, issuer).href;
    let body: string | undefined = form ? new URLSearchParams(form).toString() : undefined;
    for (let hop = 0; hop < 10; hop++) {
      const res = await fetch(next, {
        method: body === undefined ? 'GET' : 'POST',
        redirect: 'manual',
        headers: {
          cookie: jar.header(),
          ...(body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }),
        },
        ...(body === undefined ? {} : { body }),
      });
      jar.store(res);
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        await res.arrayBuffer();
        next = new URL(location, next).href;
        body = undefined;
        continue;
      }
      return { res, html: await res.text(), url: next };
    }
    throw new Error(`too many redirects from ${url}`);
  };

  // 1. The verification page: a form with an xsrf token.
  const entry = await go('/device');
  const xsrf = hiddenValue(entry.html, 'xsrf');
  // 2. Submit the code; the provider answers with a confirmation form.
  const confirm = await go('/device', { xsrf, user_code: userCode });
  if (!/name="confirm"/.test(confirm.html)) throw new Error(`device code not accepted: ${textOf(confirm.html)}`);
  if (deny) {
    const aborted = await go('/device', { xsrf: hiddenValue(confirm.html, 'xsrf'), user_code: userCode, abort: 'yes' });
    if (aborted.res.status >= 500) throw new Error(`abort failed: ${aborted.res.status}`);
    return;
  }
  // 3. Confirm; this starts the authorization and lands on the dev login page.
  const login = await go('/device', { xsrf: hiddenValue(confirm.html, 'xsrf'), user_code: userCode, confirm: 'yes' });
  if (!/name="prompt" value="login"/.test(login.html)) throw new Error(`expected the login page, got: ${textOf(login.html)}`);
  // 4. Log in (the dev interaction accepts any password) and land on the consent page.
  const consent = await go(login.url, { prompt: 'login', login: username, password: 'any' });
  if (!/name="prompt" value="consent"/.test(consent.html)) throw new Error(`expected the consent page, got: ${textOf(consent.html)}`);
  // 5. Consent; the provider finishes the device code and shows its success page.
  const done = await go(consent.url, { prompt: 'consent' });
  if (!/id="device-done"/.test(done.html)) throw new Error(`device flow did not complete: ${textOf(done.html)}`);
}

function hiddenValue(html: string, name: string): string {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(html);
  if (!m?.[1]) throw new Error(`no hidden field ${name} in page: ${textOf(html)}`);
  return m[1];
}

function textOf(html: string): string {
  return html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 300);
}
