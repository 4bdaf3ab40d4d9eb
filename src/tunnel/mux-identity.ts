/**
 * The broker's identity proof on a mux tunnel, which stands in for SSH's host key check.
 *
 * The CLI sends a fresh random nonce in the upgrade request (X-Agentgate-Tunnel-Nonce).
 * The broker's first frame, HELLO, carries its tunnel host key (the SSH key whose
 * fingerprint discovery publishes) and a signature over
 *
 *   "agentgate-mux/1 broker identity\0" ‖ nonce ‖ binding
 *
 * where `binding` is 32 bytes of TLS exported keying material (RFC 5705/8446, label
 * EXPORTER-agentgate-tunnel, the nonce as context) of the connection the broker sees.
 * The CLI computes the same from its own TLS socket, so the signature verifies only if
 * both ends share one TLS session: a proxy that terminates TLS and re-encrypts (so could
 * read the tunnel) gets a different exporter on each side and is refused, as it was
 * refused by SSH's key exchange before. An HTTPS_PROXY that only relays CONNECT does not
 * touch TLS, so the proof holds through it. Fails closed: a wrong key, a bad signature or
 * a broker that could not bind all end the attempt without retrying.
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import ssh2 from 'ssh2';
import type { ParsedKey } from 'ssh2';
import { BrokerError } from '../errors.js';
import { fingerprintOfPublicBlob, sameFingerprint } from './host-key.js';

/** Upgrade request header carrying the CLI's nonce (base64url of 32 random bytes). */
export const NONCE_HEADER = 'x-agentgate-tunnel-nonce';
const NONCE_BYTES = 32;
const SIGNED_CONTEXT = Buffer.from('agentgate-mux/1 broker identity\0', 'latin1');
const EXPORTER_LABEL = 'EXPORTER-agentgate-tunnel';
const EXPORTER_BYTES = 32;

export type Binding = 'tls-exporter' | 'none';

interface HelloBody {
  v: 1;
  key: string;
  sig: string;
  binding: Binding;
}

export function newNonce(): string {
  return randomBytes(NONCE_BYTES).toString('base64url');
}

/** The nonce from the upgrade request's header, or undefined when absent or malformed. */
export function parseNonce(header: string | string[] | undefined): Buffer | undefined {
  if (typeof header !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(header)) return undefined;
  const nonce = Buffer.from(header, 'base64url');
  return nonce.length === NONCE_BYTES ? nonce : undefined;
}

/** Keying material exported from this end's TLS session, if the socket is a TLS socket. */
export function tlsBinding(socket: Duplex, nonce: Buffer): Buffer | undefined {
  const tls = socket as Partial<TLSSocket>;
  if (typeof tls.exportKeyingMaterial !== 'function') return undefined;
  try {
    return tls.exportKeyingMaterial(EXPORTER_BYTES, EXPORTER_LABEL, nonce);
  } catch {
    return undefined;
  }
}

function signedData(nonce: Buffer, binding: Buffer | undefined): Buffer {
  return Buffer.concat([SIGNED_CONTEXT, nonce, binding ?? Buffer.alloc(0)]);
}

/** RSA keys sign with SHA-256 here (ssh2's default for them is SHA-1); others by their type. */
function hashFor(key: ParsedKey): string | undefined {
  return key.type === 'ssh-rsa' ? 'sha256' : undefined;
}

/** Broker: the HELLO payload proving `hostKey` to the CLI that sent `nonce`. */
export function makeHello(hostKey: ParsedKey, nonce: Buffer, binding: Buffer | undefined): Buffer {
  const sig = hostKey.sign(signedData(nonce, binding), hashFor(hostKey));
  if (sig instanceof Error) throw sig;
  const body: HelloBody = { v: 1, key: hostKey.getPublicSSH().toString('base64'), sig: sig.toString('base64'), binding: binding ? 'tls-exporter' : 'none' };
  return Buffer.from(JSON.stringify(body));
}

/**
 * CLI: check the broker's HELLO against the pinned fingerprint, our nonce and our own TLS
 * binding. Returns the verified host key blob; throws BrokerError AG_TUNNEL_HOST_KEY_MISMATCH.
 */
export function verifyHello(payload: Buffer, expect: { fingerprint: string; nonce: Buffer; binding: Buffer | undefined }): Buffer {
  const body = parseHello(payload);
  const blob = Buffer.from(body.key, 'base64');
  const offered = fingerprintOfPublicBlob(blob);
  if (!sameFingerprint(offered, expect.fingerprint)) {
    throw new BrokerError(
      'AG_TUNNEL_HOST_KEY_MISMATCH',
      `The broker's tunnel host key (${offered}) does not match the pinned fingerprint (${expect.fingerprint}). Refusing to connect.`,
      { hint: "Someone may be intercepting the connection, or the broker's host key changed. Confirm the fingerprint with the broker's operator before going on." },
    );
  }
  const unproven = (why: string): BrokerError =>
    new BrokerError(
      'AG_TUNNEL_HOST_KEY_MISMATCH',
      `The broker's tunnel host key (${offered}) matches the pinned fingerprint, but ${why}. Refusing to connect.`,
      { hint: 'A proxy that terminates TLS may sit between you and the broker (HTTPS_PROXY must relay CONNECT, and a load balancer must pass TCP through). Confirm with the broker\'s operator before going on.' },
    );
  // Our socket can bind, so the broker must have bound too: "none" from it means a
  // TLS-terminating hop between us, or a downgrade.
  if (expect.binding && body.binding !== 'tls-exporter') throw unproven('it could not bind its proof to this TLS connection');
  if (!expect.binding && body.binding !== 'none') throw unproven('this end cannot check its proof against the TLS connection');
  const parsed = ssh2.utils.parseKey(blob);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (key === undefined || key instanceof Error) throw unproven('its key could not be read');
  const ok = key.verify(signedData(expect.nonce, expect.binding), Buffer.from(body.sig, 'base64'), hashFor(key));
  if (ok !== true) throw unproven('its signature over this connection does not verify');
  return blob;
}

function parseHello(payload: Buffer): HelloBody {
  try {
    const v = JSON.parse(payload.toString('utf8')) as Partial<HelloBody>;
    if (v.v === 1 && typeof v.key === 'string' && typeof v.sig === 'string' && (v.binding === 'tls-exporter' || v.binding === 'none')) {
      return v as HelloBody;
    }
  } catch {
    // thrown below
  }
  throw new BrokerError('AG_TUNNEL_HANDSHAKE', "The broker's HELLO frame could not be read.", {
    hint: 'The CLI and the broker must be the same agentgate release; upgrade the older one.',
  });
}
