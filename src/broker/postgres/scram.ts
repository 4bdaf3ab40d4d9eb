/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, both ends:
 *
 * - `ScramServer` authenticates a client (psql …) against a stored verifier. It never
 *   sees or needs the password.
 * - `ScramClient` authenticates the broker to the upstream server and checks that the
 *   server, too, knows the password (its signature in AuthenticationSASLFinal).
 *
 * No channel binding: the broker's client side already runs inside a TLS tunnel, so we
 * offer only `SCRAM-SHA-256` (never `-PLUS`). PostgreSQL's own departures from the RFC
 * apply: the SCRAM username is ignored (the StartupMessage's `user` counts, and clients
 * send `n=`), and passwords go through PostgreSQL's SASLprep (see saslprep.ts).
 *
 * https://www.postgresql.org/docs/current/sasl-authentication.html#SASL-SCRAM-SHA-256
 */
import { pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

import { ScramError, SqlState } from './errors.js';
import { saslprep } from './saslprep.js';

const pbkdf2Async = promisify(pbkdf2);

import {
  SCRAM_DEFAULT_ITERATIONS,
  KEY_BYTES,
  hmac,
  sha256,
  xor,
  keysFromSaltedPassword,
  makeScramVerifier,
  formatScramVerifier,
  parseSessionVerifier,
  VerifierFormatError,
  type ScramVerifier,
} from '../../shared/session-secret.js';

export { SCRAM_DEFAULT_ITERATIONS, makeScramVerifier, formatScramVerifier, type ScramVerifier };

const NONCE_BYTES = 18;

/** Parse PostgreSQL's text form. Throws ScramError('malformed') without echoing the input. */
export function parseScramVerifier(text: string): ScramVerifier {
  try {
    return parseSessionVerifier(text);
  } catch (err) {
    if (err instanceof VerifierFormatError) throw new ScramError('malformed', err.message, SqlState.internalError);
    throw err;
  }
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64 (Buffer.from is lenient and would skip junk). */
function base64(text: string): Buffer | undefined {
  return BASE64.test(text) ? Buffer.from(text, 'base64') : undefined;
}

/** A nonce is printable ASCII other than ','. */
const NONCE = /^[\x21-\x2b\x2d-\x7e]+$/;
/** saslname: no ',' and '=' only as =2C or =3D. */
const SASLNAME = /^(?:[^,=]|=2C|=3D)*$/;

/** `a=1,b=2` → [['a','1'],['b','2']]; undefined unless every part is a one-letter attribute. */
function attributes(text: string): [string, string][] | undefined {
  const out: [string, string][] = [];
  for (const part of text.split(',')) {
    if (part.length < 2 || part[1] !== '=' || !/^[A-Za-z]$/.test(part[0] as string)) return undefined;
    out.push([part[0] as string, part.slice(2)]);
  }
  return out;
}

function toText(data: Buffer | string): string {
  return typeof data === 'string' ? data : data.toString('utf8');
}

function malformed(which: string, why: string): ScramError {
  return new ScramError('malformed', `malformed SCRAM message (${which}): ${why}`);
}

export type ScramFinish = { ok: true; serverFinal: string } | { ok: false };

export interface ScramServerOptions {
  /**
   * The server's half of the nonce. Leave unset (18 random bytes, base64) except to
   * replay a known exchange, e.g. RFC 7677's example.
   */
  nonce?: string;
}

/**
 * One server-side SCRAM-SHA-256 exchange:
 *
 * ```ts
 * const scram = new ScramServer(verifier);
 * send(authenticationSASLContinue(scram.start(initial.data)));   // client-first → server-first
 * const r = scram.finish(decodeSASLResponse(body));               // client-final
 * if (r.ok) send(authenticationSASLFinal(r.serverFinal), AUTHENTICATION_OK) else send(passwordAuthFailed(user))
 * ```
 *
 * Malformed or out-of-order messages throw ScramError (08P01, or 0A000 for features we
 * don't support); a wrong password is `{ ok: false }`.
 */
export class ScramServer {
  readonly #verifier: ScramVerifier;
  readonly #serverNonce: string | undefined;
  #step: 'start' | 'finish' | 'done' = 'start';
  #gs2Header = '';
  #clientFirstBare = '';
  #serverFirst = '';
  #nonce = '';

  constructor(verifier: ScramVerifier, options: ScramServerOptions = {}) {
    this.#verifier = verifier;
    this.#serverNonce = options.nonce;
  }

  /** Read the client-first-message (SASLInitialResponse data); returns the server-first-message. */
  start(clientFirst: Buffer | string): string {
    if (this.#step !== 'start') throw new ScramError('state', 'SCRAM exchange already started');
    this.#step = 'done'; // until it succeeds
    const msg = toText(clientFirst);
    if (msg.includes('\0')) throw malformed('client-first', 'contains NUL');
    switch (msg[0]) {
      case 'n': // the client does not support channel binding
      case 'y': // it does, but thinks we don't: true, we never advertise -PLUS, so no downgrade
        if (msg[1] !== ',') throw malformed('client-first', 'expected "," after the channel-binding flag');
        break;
      case 'p':
        throw new ScramError(
          'channel-binding',
          'the client selected channel binding (SCRAM-SHA-256-PLUS), but the server offers only SCRAM-SHA-256',
        );
      default:
        throw malformed('client-first', 'unexpected channel-binding flag');
    }
    const rest = msg.slice(2);
    if (rest.startsWith('a=')) {
      throw new ScramError('authzid', 'client uses authorization identity, but it is not supported', SqlState.featureNotSupported);
    }
    if (rest[0] !== ',') throw malformed('client-first', 'expected "," after the GS2 header');
    const bare = rest.slice(1);
    const attrs = attributes(bare);
    if (attrs === undefined) throw malformed('client-first', 'expected attribute=value pairs');
    const [user, nonce] = attrs;
    if (user?.[0] === 'm') {
      throw new ScramError('extension', 'client requires an unsupported SCRAM extension', SqlState.featureNotSupported);
    }
    if (user?.[0] !== 'n' || !SASLNAME.test(user[1])) throw malformed('client-first', 'expected a username attribute');
    if (nonce?.[0] !== 'r' || !NONCE.test(nonce[1])) throw malformed('client-first', 'expected a nonce attribute');
    // Attributes after the nonce are optional extensions: ignored, as the RFC allows.

    this.#gs2Header = msg.slice(0, 3);
    this.#clientFirstBare = bare;
    this.#nonce = nonce[1] + (this.#serverNonce ?? randomBytes(NONCE_BYTES).toString('base64'));
    const v = this.#verifier;
    this.#serverFirst = `r=${this.#nonce},s=${v.salt.toString('base64')},i=${v.iterations}`;
    this.#step = 'finish';
    return this.#serverFirst;
  }

  /** Check the client-final-message (SASLResponse data): the proof, in constant time. */
  finish(clientFinal: Buffer | string): ScramFinish {
    if (this.#step !== 'finish') throw new ScramError('state', 'SCRAM client-final-message out of order');
    this.#step = 'done';
    const msg = toText(clientFinal);
    if (msg.includes('\0')) throw malformed('client-final', 'contains NUL');
    const proofAt = msg.lastIndexOf(',p=');
    if (proofAt < 0) throw malformed('client-final', 'no proof');
    const withoutProof = msg.slice(0, proofAt);
    const proof = base64(msg.slice(proofAt + 3));
    const attrs = attributes(withoutProof);
    if (attrs === undefined) throw malformed('client-final', 'expected attribute=value pairs');
    const [binding, nonce] = attrs;
    if (binding?.[0] !== 'c') throw malformed('client-final', 'expected a channel-binding attribute');
    const cbind = base64(binding[1]);
    if (cbind === undefined) throw malformed('client-final', 'channel-binding data is not base64');
    // With no channel binding, c= must repeat exactly the GS2 header of client-first.
    if (!cbind.equals(Buffer.from(this.#gs2Header, 'utf8'))) {
      throw new ScramError('channel-binding', 'SCRAM channel binding check failed');
    }
    if (nonce?.[0] !== 'r') throw malformed('client-final', 'expected a nonce attribute');
    if (nonce[1] !== this.#nonce) throw new ScramError('nonce', 'SCRAM nonce mismatch');
    if (proof === undefined || proof.length !== KEY_BYTES) throw malformed('client-final', 'proof is not a base64 SHA-256 value');

    const authMessage = `${this.#clientFirstBare},${this.#serverFirst},${withoutProof}`;
    const v = this.#verifier;
    const clientKey = xor(proof, hmac(v.storedKey, authMessage));
    if (!timingSafeEqual(sha256(clientKey), v.storedKey)) return { ok: false };
    return { ok: true, serverFinal: `v=${hmac(v.serverKey, authMessage).toString('base64')}` };
  }
}

export interface ScramClientOptions {
  /** Sent as `n=`; PostgreSQL ignores it and libpq sends ''. */
  username?: string;
  /** Our half of the nonce. Leave unset (random) except to replay a known exchange. */
  nonce?: string;
  /** Refuse a server asking for more PBKDF2 rounds than this (each costs CPU here). */
  maxIterations?: number;
}

/**
 * The broker's side of SCRAM-SHA-256 towards the upstream server:
 *
 * ```ts
 * const scram = new ScramClient(password);
 * send(saslInitialResponse('SCRAM-SHA-256', scram.clientFirst()));
 * send(saslResponse(await scram.clientFinal(continueData)));   // AuthenticationSASLContinue
 * scram.verifyServerFinal(finalData);                          // AuthenticationSASLFinal; throws on a bad signature
 * ```
 *
 * Accept the server's AuthenticationOk only once `verified` is true: a server that skips
 * SASLFinal has not proven that it knows the password.
 */
export class ScramClient {
  #password: string;
  readonly #username: string;
  readonly #clientNonce: string;
  readonly #maxIterations: number;
  #step: 'first' | 'final' | 'verify' | 'done' = 'first';
  #clientFirstBare = '';
  #serverSignature: Buffer | undefined;
  #verified = false;

  constructor(password: string, options: ScramClientOptions = {}) {
    this.#password = password;
    this.#username = options.username ?? '';
    this.#clientNonce = options.nonce ?? randomBytes(NONCE_BYTES).toString('base64');
    this.#maxIterations = options.maxIterations ?? 1_000_000;
  }

  /** True once the server's signature has been checked. */
  get verified(): boolean {
    return this.#verified;
  }

  /** The client-first-message for SASLInitialResponse. */
  clientFirst(): string {
    if (this.#step !== 'first') throw new ScramError('state', 'SCRAM exchange already started');
    this.#step = 'final';
    const name = this.#username.replaceAll('=', '=3D').replaceAll(',', '=2C');
    this.#clientFirstBare = `n=${name},r=${this.#clientNonce}`;
    return `n,,${this.#clientFirstBare}`;
  }

  /** Read the server-first-message (AuthenticationSASLContinue data); returns the client-final-message. */
  async clientFinal(serverFirst: Buffer | string): Promise<string> {
    if (this.#step !== 'final') throw new ScramError('state', 'SCRAM server-first-message out of order');
    this.#step = 'done'; // until it succeeds
    const msg = toText(serverFirst);
    const attrs = attributes(msg);
    if (attrs === undefined) throw malformed('server-first', 'expected attribute=value pairs');
    const [nonce, salt, iter] = attrs;
    if (nonce?.[0] === 'm') {
      throw new ScramError('extension', 'server requires an unsupported SCRAM extension', SqlState.featureNotSupported);
    }
    if (nonce?.[0] !== 'r' || !NONCE.test(nonce[1])) throw malformed('server-first', 'expected a nonce attribute');
    if (!nonce[1].startsWith(this.#clientNonce) || nonce[1].length === this.#clientNonce.length) {
      throw new ScramError('nonce', 'invalid SCRAM response (nonce mismatch)');
    }
    const saltBytes = salt?.[0] === 's' ? base64(salt[1]) : undefined;
    if (saltBytes === undefined || saltBytes.length === 0) throw malformed('server-first', 'expected a base64 salt');
    const iterations = iter?.[0] === 'i' && /^[1-9][0-9]{0,9}$/.test(iter[1]) ? Number(iter[1]) : NaN;
    if (!Number.isSafeInteger(iterations)) throw malformed('server-first', 'expected an iteration count');
    if (iterations > this.#maxIterations) {
      throw new ScramError('iterations', `the server asks for ${iterations} SCRAM iterations, more than the ${this.#maxIterations} allowed`);
    }

    const salted = await pbkdf2Async(saslprep(this.#password), saltBytes, iterations, KEY_BYTES, 'sha256');
    this.#password = ''; // no longer needed; don't keep it around
    const { clientKey, storedKey, serverKey } = keysFromSaltedPassword(salted);
    const withoutProof = `c=${Buffer.from('n,,').toString('base64')},r=${nonce[1]}`;
    const authMessage = `${this.#clientFirstBare},${msg},${withoutProof}`;
    const proof = xor(clientKey, hmac(storedKey, authMessage));
    this.#serverSignature = hmac(serverKey, authMessage);
    this.#step = 'verify';
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /**
   * Check the server-final-message (AuthenticationSASLFinal data). Throws ScramError:
   * `server-signature` if the server does not know the password (or is not the server),
   * `server-error` if it reported `e=…`.
   */
  verifyServerFinal(serverFinal: Buffer | string): void {
    if (this.#step !== 'verify' || this.#serverSignature === undefined) {
      throw new ScramError('state', 'SCRAM server-final-message out of order');
    }
    this.#step = 'done';
    const msg = toText(serverFinal);
    const attrs = attributes(msg);
    const first = attrs?.[0];
    if (first?.[0] === 'e') {
      const reason = /^[a-z-]{1,64}$/.test(first[1]) ? first[1] : 'unknown';
      throw new ScramError('server-error', `the server rejected the SCRAM exchange (${reason})`, SqlState.invalidPassword);
    }
    const signature = first?.[0] === 'v' ? base64(first[1]) : undefined;
    if (signature === undefined) throw malformed('server-final', 'expected a verifier attribute');
    if (signature.length !== KEY_BYTES || !timingSafeEqual(signature, this.#serverSignature)) {
      throw new ScramError(
        'server-signature',
        'the server failed to prove it knows the password (SCRAM server signature mismatch)',
        SqlState.invalidAuthorizationSpecification,
      );
    }
    this.#verified = true;
  }
}
