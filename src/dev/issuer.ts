/**
 * The OIDC issuer `agentgate dev` embeds: panva's `oidc-provider` on 127.0.0.1, with the
 * demo users as both accounts (for a real device-flow `agentgate login`, any password)
 * and confidential clients (for the token files `agentgate dev` writes: a client-
 * credentials grant whose token's `sub` is the client id, so each demo identity gets an
 * access token the broker verifies exactly like a production one — signature from the
 * issuer's JWKS, issuer, audience, expiry, groups claim).
 *
 * Client secrets and the signing key live only in this process's memory.
 */
import { generateKeyPair, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { AgentgateError } from '../errors.js';

export interface DevUser {
  /** Login name, token `sub` and client id. */
  username: string;
  name: string;
  email: string;
  groups: string[];
}

export interface MintedToken {
  /** The access token (a JWT). Never print it. */
  token: string;
  /** Unix seconds. */
  expiresAt: number;
}

export interface DevIssuer {
  /** `http://127.0.0.1:<port>` (no trailing slash). */
  issuer: string;
  port: number;
  audience: string;
  /** Public client for `agentgate login` (device flow). */
  deviceClientId: string;
  /** An access token for one demo user, from the issuer's token endpoint. */
  mintToken(username: string): Promise<MintedToken>;
  close(): Promise<void>;
}

export interface DevIssuerOptions {
  audience: string;
  users: readonly DevUser[];
  /** Lifetime of minted tokens, seconds. Default 8 h. */
  tokenTtlSec?: number;
  /** Lifetime of device-flow (login) access tokens, seconds; they refresh. Default 1 h. */
  loginTtlSec?: number;
  /** Errors inside the provider (it would otherwise print them to the console). */
  onError?: (message: string) => void;
}

export const DEV_DEVICE_CLIENT_ID = 'agentgate-cli';
const RESOURCE = 'urn:agentgate:dev-broker';
const INTERACTION_PATH = '/interaction/';

// oidc-provider ships no type declarations; this is the part of its surface used here.
interface Provider {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
  interactionFinished(req: IncomingMessage, res: ServerResponse, result: Record<string, unknown>, opts?: { mergeWithLastSubmission?: boolean }): Promise<void>;
  Grant: new (init: { accountId: string; clientId: string }) => GrantLike;
  use(mw: (ctx: KoaContext, next: () => Promise<void>) => Promise<void>): void;
  on(event: 'server_error', listener: (ctx: unknown, err: Error) => void): void;
}
interface KoaContext {
  path: string;
  status: number;
  body: unknown;
}
interface InteractionDetails {
  uid: string;
  prompt: { name: string; details: { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> } };
  params: Record<string, unknown>;
  session?: { accountId?: string };
}
interface GrantLike {
  addOIDCScope(scope: string): void;
  addOIDCClaims(claims: string[]): void;
  addResourceScope(resource: string, scope: string): void;
  save(): Promise<string>;
}
interface TokenLike {
  kind: string;
  accountId?: string;
  clientId?: string;
}

export async function startDevIssuer(opts: DevIssuerOptions): Promise<DevIssuer> {
  const users = new Map(opts.users.map((u) => [u.username, u]));
  const secrets = new Map(opts.users.map((u) => [u.username, randomBytes(32).toString('base64url')]));
  const tokenTtl = opts.tokenTtlSec ?? 8 * 3600;
  const loginTtl = opts.loginTtlSec ?? 3600;

  // The issuer URL carries the port, and the provider needs the URL: listen first.
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const server = createServer((req, res) => {
    if (handler) handler(req, res);
    else res.writeHead(503).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://127.0.0.1:${port}`;
  const close = (): Promise<void> =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });

  try {
    const { default: ProviderClass } = (await import('oidc-provider' as string)) as {
      default: new (issuer: string, config: Record<string, unknown>) => Provider;
    };
    const { privateKey } = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
    const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };

    const claimsOf = (u: DevUser): Record<string, unknown> => ({ name: u.name, email: u.email, groups: u.groups, preferred_username: u.username });
    const config: Record<string, unknown> = {
      jwks: { keys: [signingKey] },
      clients: [
        {
          client_id: DEV_DEVICE_CLIENT_ID,
          token_endpoint_auth_method: 'none',
          grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
          response_types: [],
          redirect_uris: [],
        },
        ...opts.users.map((u) => ({
          client_id: u.username,
          client_secret: secrets.get(u.username),
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
        })),
      ],
      async findAccount(_ctx: unknown, sub: string) {
        const u = users.get(sub);
        if (!u) return undefined;
        return { accountId: sub, claims: async () => ({ sub, email_verified: true, ...claimsOf(u) }) };
      },
      claims: { openid: ['sub'], profile: ['name', 'preferred_username'], email: ['email', 'email_verified'], groups: ['groups'] },
      scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
      // Sign-in is this module's own plain page (see handleInteraction), not the provider's debug pages.
      interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `${INTERACTION_PATH}${interaction.uid}` },
      features: {
        devInteractions: { enabled: false },
        deviceFlow: {
          enabled: true,
          // The provider's forms carry only inputs; the buttons are ours and name the form.
          async userCodeInputSource(ctx: KoaContext, form: string, _out: unknown, err?: { name?: string; userCode?: string }) {
            const problem = err ? `<p class="err">${err.userCode || err.name === 'NoCodeError' ? 'That code is not valid or has expired: check it and try again.' : 'That did not work: start again with agentgate login.'}</p>` : '';
            ctx.body = page('Sign in the agentgate CLI', `${problem}<p>Enter the code <code>agentgate login</code> printed.</p>${form}<p><button type="submit" form="op.deviceInputForm">Continue</button></p>`);
          },
          async userCodeConfirmSource(ctx: KoaContext, form: string, _client: unknown, _info: unknown, userCode: string) {
            ctx.body = page(
              'Sign in the agentgate CLI?',
              `<p>Your terminal should show the code <code>${escapeHtml(userCode)}</code>. If it does not, or you did not run <code>agentgate login</code>, abort.</p>${form}` +
                `<p><button type="submit" form="op.deviceConfirmForm">Confirm</button> <button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Abort</button></p>`,
            );
          },
          async successSource(ctx: KoaContext) {
            ctx.body = page('Signed in', '<p>The agentgate CLI is signed in. You can close this page and return to your terminal.</p>');
          },
        },
        clientCredentials: { enabled: true },
        revocation: { enabled: true },
        resourceIndicators: {
          enabled: true,
          // Neither the device flow nor client credentials name a resource: every token is for the broker.
          async defaultResource() {
            return RESOURCE;
          },
          async useGrantedResource() {
            return true;
          },
          async getResourceServerInfo(_ctx: unknown, _resource: string, client: { clientId: string }) {
            return {
              scope: '',
              audience: opts.audience,
              accessTokenFormat: 'jwt',
              accessTokenTTL: client.clientId === DEV_DEVICE_CLIENT_ID ? loginTtl : tokenTtl,
              jwt: { sign: { alg: 'RS256' } },
            };
          },
        },
      },
      async extraTokenClaims(_ctx: unknown, token: TokenLike) {
        const u = users.get((token.kind === 'ClientCredentials' ? token.clientId : token.accountId) ?? '');
        return u ? claimsOf(u) : undefined;
      },
      async issueRefreshToken(_ctx: unknown, client: { grantTypeAllowed(g: string): boolean }, code: { scopes: Set<string> }) {
        return client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access');
      },
      ttl: { AccessToken: loginTtl, ClientCredentials: tokenTtl, DeviceCode: 600, IdToken: 3600, RefreshToken: 86400, Grant: 86400, Session: 86400, Interaction: 600 },
      async renderError(ctx: KoaContext, out: Record<string, string>) {
        ctx.body = page('Sign-in failed', `<pre>${escapeHtml(`${String(out['error'])}: ${String(out['error_description'])}`)}</pre>`);
      },
      cookies: { keys: [randomBytes(32).toString('base64url')] },
      clientBasedCORS: () => false,
    };

    // It warns on construction that its in-memory storage is for development; that is the point here.
    const { warn, info } = console;
    console.warn = () => {};
    console.info = () => {};
    let provider: Provider;
    try {
      provider = new ProviderClass(issuer, config);
    } finally {
      console.warn = warn;
      console.info = info;
    }
    provider.on('server_error', (_ctx, err) => opts.onError?.(`issuer: ${err.message}`));
    provider.use(async (ctx, next) => {
      await next();
      // It advertises no polling interval, and clients then wait 5 s between polls.
      if (ctx.path === '/device/auth' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
        (ctx.body as Record<string, unknown>)['interval'] = 2;
      }
    });
    const callback = provider.callback();
    handler = (req, res) => {
      if (req.url?.startsWith(INTERACTION_PATH)) {
        handleInteraction(provider, users, req, res).catch((err: unknown) => {
          if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
          res.end(`agentgate dev issuer: ${err instanceof Error ? err.message : String(err)}\n`);
        });
      }
      else callback(req, res);
    };
  } catch (err) {
    await close();
    throw err;
  }

  return {
    issuer,
    port,
    audience: opts.audience,
    deviceClientId: DEV_DEVICE_CLIENT_ID,
    async mintToken(username) {
      const secret = secrets.get(username);
      if (secret === undefined) throw new Error(`no demo user ${username}`);
      const basic = Buffer.from(`${encodeURIComponent(username)}:${encodeURIComponent(secret)}`).toString('base64');
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: 'grant_type=client_credentials',
        signal: AbortSignal.timeout(10_000),
      });
      const body = (await res.json().catch(() => ({}))) as { access_token?: unknown; expires_in?: unknown; error?: unknown };
      if (!res.ok || typeof body.access_token !== 'string') {
        throw new AgentgateError('AG_DEV_ISSUER', `the embedded issuer refused a token for ${username} (HTTP ${res.status} ${String(body.error ?? '')})`, 1, {
          hint: 'this is a bug in agentgate dev; run again with AGENTGATE_DEBUG=1 and report the output',
        });
      }
      const ttl = typeof body.expires_in === 'number' ? body.expires_in : tokenTtl;
      return { token: body.access_token, expiresAt: Math.floor(Date.now() / 1000) + ttl };
    },
    close,
  };
}

/**
 * The sign-in step of the device flow, after the code is confirmed: a plain form for a demo
 * user (any password: a local demo only). Consent is the code confirmation the user just
 * gave, so the consent prompt is granted here without a second page.
 */
async function handleInteraction(provider: Provider, users: ReadonlyMap<string, DevUser>, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const details = await provider.interactionDetails(req, res);
    const { uid, prompt } = details;
    if (prompt.name === 'login' && req.method === 'POST') {
      const form = new URLSearchParams(await readBody(req));
      const username = form.get('username') ?? '';
      if (!users.has(username)) {
        sendPage(res, 200, 'Sign in', loginForm(uid, users, `There is no demo user "${username}": pick one of the users below.`));
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false });
      return;
    }
    if (prompt.name === 'login') {
      sendPage(res, 200, 'Sign in', loginForm(uid, users));
      return;
    }
    if (prompt.name === 'consent') {
      const accountId = details.session?.accountId;
      const clientId = details.params['client_id'];
      if (typeof accountId !== 'string' || typeof clientId !== 'string') throw new Error('the sign-in session is gone');
      const grant = new provider.Grant({ accountId, clientId });
      const missing = prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(resource, scopes.join(' '));
      await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
      return;
    }
    throw new Error(`unexpected sign-in step ${prompt.name}`);
  } catch (err) {
    if (res.headersSent) return;
    sendPage(res, 400, 'Sign-in failed', `<p>${escapeHtml(err instanceof Error ? err.message : String(err))}</p><p>Start again with <code>agentgate login</code>.</p>`);
  }
}

function loginForm(uid: string, users: ReadonlyMap<string, DevUser>, problem?: string): string {
  const options = [...users.values()].map((u) => `<option value="${escapeHtml(u.username)}">${escapeHtml(`${u.username} (${u.groups.join(', ')})`)}</option>`).join('');
  return (
    `${problem ? `<p class="err">${escapeHtml(problem)}</p>` : ''}<p>A local demo issuer: pick a demo user; any password works.</p>` +
    `<form method="post" action="${INTERACTION_PATH}${escapeHtml(uid)}">` +
    `<p><label>User <select name="username" autofocus>${options}</select></label></p>` +
    `<p><label>Password <input type="password" name="password" autocomplete="off"></label></p>` +
    `<p><button type="submit">Sign in</button></p></form>`
  );
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
      // A sign-in form is a few dozen bytes.
      if (body.length > 4096) req.destroy(new Error('sign-in form too large'));
    });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

function sendPage(res: ServerResponse, status: number, title: string, body: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(page(title, body));
}

/** Plain, self-contained HTML: no scripts, fonts or anything fetched from elsewhere (the demo runs offline). */
function page(title: string, body: string): string {
  return (
    `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${escapeHtml(title)}</title>` +
    '<style>body{font-family:system-ui,sans-serif;max-width:34em;margin:3em auto;padding:0 1em;line-height:1.5}code{font-size:1.1em}.err{color:#a00}' +
    'input,select,button{font:inherit;padding:.3em .6em}</style>' +
    `<body><p><small>agentgate dev · local demo issuer</small></p><h1>${escapeHtml(title)}</h1>${body}</body></html>`
  );
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
