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

// oidc-provider ships no type declarations; this is the part of its surface used here.
interface Provider {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  use(mw: (ctx: KoaContext, next: () => Promise<void>) => Promise<void>): void;
  on(event: 'server_error', listener: (ctx: unknown, err: Error) => void): void;
}
interface KoaContext {
  path: string;
  status: number;
  body: unknown;
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
      features: {
        // The provider's built-in login page takes any password: right for a local demo, and only here.
        devInteractions: { enabled: true },
        deviceFlow: {
          enabled: true,
          async userCodeInputSource(ctx: KoaContext, form: string, _out: unknown, err?: { message?: string }) {
            ctx.body = page('agentgate dev: sign in', `${err ? `<p>${escapeHtml(err.message ?? 'error')}</p>` : ''}<p>Enter the code the CLI printed.</p>${form}`);
          },
          async userCodeConfirmSource(ctx: KoaContext, form: string) {
            ctx.body = page('agentgate dev: confirm', `<p>Sign in the agentgate CLI? Then log in as dev-human, dev-reviewer or dev-agent, with any password.</p>${form}`);
          },
          async successSource(ctx: KoaContext) {
            ctx.body = page('agentgate dev: done', '<p>Signed in. Return to your terminal.</p>');
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
        ctx.body = page('agentgate dev: error', `<pre>${escapeHtml(`${String(out['error'])}: ${String(out['error_description'])}`)}</pre>`);
      },
      cookies: { keys: [randomBytes(32).toString('base64url')] },
      clientBasedCORS: () => false,
    };

    // It warns on construction that devInteractions is for development; that is the point here.
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
    handler = provider.callback();
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

function page(title: string, body: string): string {
  return `<!doctype html><meta charset="utf-8"><title>${title}</title><body style="font-family:sans-serif;max-width:32em;margin:3em auto"><h1>${title}</h1>${body}</body>`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
