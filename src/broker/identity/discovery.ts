/**
 * OpenID Connect discovery (OpenID Connect Discovery 1.0 §4): the issuer's metadata
 * document, from which we take `jwks_uri`. Failures are `issuer_unreachable`: the caller's
 * token may be fine, the broker just cannot check it right now.
 */
import { TokenRejectedError } from './errors.js';

export interface OidcMetadata {
  issuer: string;
  jwks_uri: string;
}

export interface FetchDiscoveryOptions {
  timeoutMs: number;
  /** Cap on the document's size; a real one is a few KiB. */
  maxBytes?: number;
}

const UNREACHABLE_HINT = "the broker cannot reach its identity provider; retry shortly, and if it persists the broker's operator should check the IdP and the broker's network";

/** `https://idp/realm/` and `https://idp/realm` name the same issuer when choosing keys. */
export function sameIssuer(a: string, b: string): boolean {
  return stripSlashes(a) === stripSlashes(b);
}

export function discoveryUrl(issuer: string): string {
  return stripSlashes(issuer) + '/.well-known/openid-configuration';
}

export async function fetchOidcMetadata(issuer: string, options: FetchDiscoveryOptions): Promise<OidcMetadata> {
  const url = discoveryUrl(issuer);
  const fail = (why: string, cause?: unknown): TokenRejectedError =>
    new TokenRejectedError('issuer_unreachable', `cannot load the OIDC discovery document of ${issuer} (${url}): ${why}`, { hint: UNREACHABLE_HINT, cause });

  let response: Response;
  try {
    response = await fetch(url, {
      headers: { accept: 'application/json' },
      redirect: 'manual',
      signal: AbortSignal.timeout(options.timeoutMs),
    });
  } catch (err) {
    const e = err as Error;
    throw fail(e.name === 'TimeoutError' ? `no answer within ${options.timeoutMs} ms` : describeFetchError(e), err);
  }
  if (response.status !== 200) {
    await response.body?.cancel().catch(() => undefined);
    throw fail(`HTTP ${response.status}`);
  }

  let doc: unknown;
  try {
    doc = JSON.parse(await readCapped(response, options.maxBytes ?? 512 * 1024));
  } catch (err) {
    throw fail(`not a JSON document (${(err as Error).message})`, err);
  }
  if (typeof doc !== 'object' || doc === null) throw fail('not a JSON object');
  const { issuer: docIssuer, jwks_uri: jwksUri } = doc as Record<string, unknown>;
  if (typeof docIssuer !== 'string' || !sameIssuer(docIssuer, issuer)) {
    // §4.3: the document must name the issuer we asked about, or it is someone else's.
    throw fail(`the document names issuer ${JSON.stringify(docIssuer)}, expected ${JSON.stringify(issuer)}`);
  }
  if (typeof jwksUri !== 'string') throw fail('the document has no jwks_uri');
  let parsed: URL;
  try {
    parsed = new URL(jwksUri);
  } catch (err) {
    throw fail(`jwks_uri ${JSON.stringify(jwksUri)} is not a URL`, err);
  }
  // Never fetch keys over a weaker channel than the issuer itself uses.
  if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && new URL(url).protocol === 'http:')) {
    throw fail(`jwks_uri ${jwksUri} must use https`);
  }
  return { issuer: docIssuer, jwks_uri: parsed.href };
}

function stripSlashes(s: string): string {
  return s.replace(/\/+$/, '');
}

function describeFetchError(err: Error): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (cause && typeof cause.code === 'string') return `${err.message} (${cause.code})`;
  return err.message;
}

async function readCapped(response: Response, maxBytes: number): Promise<string> {
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) throw new Error(`larger than ${maxBytes} bytes`);
  if (!response.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body) {
    size += chunk.byteLength;
    if (size > maxBytes) throw new Error(`larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
