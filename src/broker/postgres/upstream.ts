/**
 * The broker's connection to the real PostgreSQL server of a target: TCP, optional TLS
 * (per the target's `tls` mode), StartupMessage and authentication with the target's
 * credentials (SCRAM-SHA-256, md5 or cleartext), up to the first ReadyForQuery.
 *
 * The handshake is a handful of messages, so it is written as a plain async exchange;
 * once the server is ready the socket and its BackendReader go to the relay.
 *
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';

import type { PostgresTargetConfig } from '../config/types.js';
import { BackendReader } from './reader.js';
import { AuthCode, BackendType, SCRAM_SHA_256 } from './protocol.js';
import {
  decodeAuthentication,
  decodeBackendKeyData,
  decodeErrorResponse,
  decodeSASLMechanisms,
  type BackendKeyData,
} from './decode-backend.js';
import { cancelRequest, passwordMessage, saslInitialResponse, saslResponse, SSL_REQUEST, startupMessage } from './build-frontend.js';
import { md5Password } from './md5.js';
import { ScramClient } from './scram.js';
import { PgError, SqlState } from './errors.js';

/** A copied message from the handshake (the reader's views do not outlive its callback). */
interface OwnedMessage {
  type: number;
  frame: Buffer;
  body: Buffer;
}

export interface UpstreamReady {
  socket: Duplex;
  reader: BackendReader;
  /** ParameterStatus and NoticeResponse frames to relay to the client, in order. */
  relayFrames: Buffer[];
  /** The server's real cancel key: never shown to the client. */
  key: BackendKeyData;
}

export interface UpstreamOptions {
  connectTimeoutMs?: number;
  maxMessageLength?: number;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** Reads whole messages off a socket during the handshake, one await at a time. */
class HandshakeReader {
  readonly #queue: OwnedMessage[] = [];
  #waiter: ((m: OwnedMessage | Error) => void) | undefined;
  #error: Error | undefined;
  readonly #onData = (chunk: Buffer): void => {
    try {
      this.reader.push(chunk, (m) => {
        this.#deliver({ type: m.type, frame: Buffer.from(m.frame), body: Buffer.from(m.body) });
      });
    } catch (err) {
      this.#fail(err as Error);
    }
  };
  readonly #onEnd = (): void => this.#fail(new PgError(SqlState.connectionFailure, 'the server closed the connection during startup'));
  readonly #onError = (err: Error): void => this.#fail(err);

  constructor(
    readonly socket: Duplex,
    readonly reader: BackendReader,
  ) {
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onEnd);
    socket.on('error', this.#onError);
  }

  next(): Promise<OwnedMessage> {
    const m = this.#queue.shift();
    if (m) return Promise.resolve(m);
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#waiter = (v) => (v instanceof Error ? reject(v) : resolve(v));
    });
  }

  /** Stop listening: the relay takes the socket over. */
  detach(): void {
    this.socket.off('data', this.#onData);
    this.socket.off('end', this.#onEnd);
    this.socket.off('close', this.#onEnd);
    this.socket.off('error', this.#onError);
  }

  #deliver(m: OwnedMessage): void {
    const w = this.#waiter;
    if (w) {
      this.#waiter = undefined;
      w(m);
    } else this.#queue.push(m);
  }

  #fail(err: Error): void {
    if (this.#error) return;
    this.#error = err;
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.(err);
  }
}

function connectTcp(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    socket.setNoDelay(true);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new PgError(SqlState.connectionFailure, `could not connect to the target's server at ${host}:${port}: timed out`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(new PgError(SqlState.connectionFailure, `could not connect to the target's server at ${host}:${port}: ${err.message}`));
    });
  });
}

/** SSLRequest, then TLS on the same socket. `require` encrypts without checking the peer, as libpq does. */
async function startTls(socket: net.Socket, target: PostgresTargetConfig): Promise<Duplex> {
  const reply = await new Promise<number>((resolve, reject) => {
    const onData = (b: Buffer): void => {
      socket.off('error', reject);
      // A compliant server sends exactly one byte and waits (CVE-2021-23222).
      if (b.length !== 1) {
        reject(new PgError(SqlState.protocolViolation, 'unexpected reply to SSLRequest from the target'));
        return;
      }
      resolve(b[0] as number);
    };
    socket.once('data', onData);
    socket.once('error', reject);
    socket.write(SSL_REQUEST);
  });
  if (reply !== 0x53) {
    throw new PgError(SqlState.connectionFailure, `target ${target.name}: the server does not support TLS, but the target says tls: ${target.tls}`, {
      hint: 'enable ssl on the server, or set the target to tls: disable if the network path is trusted',
    });
  }
  const verify = target.tls === 'verify-full';
  const servername = net.isIP(target.host) ? undefined : target.host;
  return await new Promise<Duplex>((resolve, reject) => {
    const secure = tls.connect({
      socket,
      ...(servername ? { servername } : {}),
      ...(target.ca ? { ca: readFileSync(target.ca) } : {}),
      rejectUnauthorized: verify,
      checkServerIdentity: verify ? (host, cert) => tls.checkServerIdentity(target.host || host, cert) : () => undefined,
    });
    secure.once('secureConnect', () => {
      secure.removeAllListeners('error');
      resolve(secure);
    });
    secure.once('error', (err) =>
      reject(
        new PgError(SqlState.connectionFailure, `target ${target.name}: TLS to the server failed: ${err.message}`, {
          hint: verify ? "check the target's ca file and that the certificate names the host" : undefined,
        }),
      ),
    );
  });
}

/** Open a transport to the target (TCP, and TLS when configured). */
export async function dialTarget(target: PostgresTargetConfig, options: UpstreamOptions = {}): Promise<Duplex> {
  const socket = await connectTcp(target.host, target.port, options.connectTimeoutMs ?? 10_000);
  if (target.tls === 'disable') return socket;
  try {
    return await startTls(socket, target);
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/**
 * Connect and log in to the target as its configured user. `clientParams` are the
 * client's own startup parameters worth keeping (application_name, client_encoding, …);
 * user and database always come from the target.
 */
export async function connectUpstream(
  target: PostgresTargetConfig,
  clientParams: ReadonlyMap<string, string>,
  options: UpstreamOptions = {},
): Promise<UpstreamReady> {
  const socket = await dialTarget(target, options);
  const reader = new BackendReader(options.maxMessageLength === undefined ? {} : { maxMessageLength: options.maxMessageLength });
  const hs = new HandshakeReader(socket, reader);
  try {
    const params: Record<string, string> = {};
    for (const [k, v] of clientParams) params[k] = v;
    params['user'] = target.user;
    params['database'] = target.database;
    socket.write(startupMessage(params));

    const relayFrames: Buffer[] = [];
    let key: BackendKeyData | undefined;
    let scram: ScramClient | undefined;
    const password = (): string => {
      if (!target.password) {
        throw new PgError(SqlState.connectionFailure, `target ${target.name}: the server asks for a password but the target has none configured`, {
          hint: 'set targets.<name>.password in the broker config',
        });
      }
      return target.password.reveal();
    };
    for (;;) {
      const m = await hs.next();
      switch (m.type) {
        case BackendType.authentication: {
          const auth = decodeAuthentication(m.body);
          switch (auth.code) {
            case AuthCode.ok:
              if (scram && !scram.verified) {
                throw new PgError(SqlState.connectionFailure, `target ${target.name}: the server skipped SCRAM's final proof`);
              }
              break;
            case AuthCode.cleartextPassword:
              if (target.tls === 'disable' && !LOOPBACK.has(target.host)) {
                throw new PgError(SqlState.connectionFailure, `target ${target.name}: refusing to send a cleartext password over an unencrypted connection`, {
                  hint: 'set the target to tls: require or verify-full, or use scram-sha-256 on the server',
                });
              }
              socket.write(passwordMessage(password()));
              break;
            case AuthCode.md5Password:
              socket.write(passwordMessage(md5Password(target.user, password(), auth.data)));
              break;
            case AuthCode.sasl: {
              const mechanisms = decodeSASLMechanisms(auth.data);
              if (!mechanisms.includes(SCRAM_SHA_256)) {
                throw new PgError(SqlState.featureNotSupported, `target ${target.name}: the server offers ${mechanisms.join(', ')}, none of which the broker supports`);
              }
              scram = new ScramClient(password());
              socket.write(saslInitialResponse(SCRAM_SHA_256, scram.clientFirst()));
              break;
            }
            case AuthCode.saslContinue:
              if (!scram) throw new PgError(SqlState.protocolViolation, 'SASLContinue before SASL');
              socket.write(saslResponse(await scram.clientFinal(auth.data)));
              break;
            case AuthCode.saslFinal:
              if (!scram) throw new PgError(SqlState.protocolViolation, 'SASLFinal before SASL');
              scram.verifyServerFinal(auth.data);
              break;
            default:
              throw new PgError(SqlState.featureNotSupported, `target ${target.name}: the server asks for authentication method ${auth.code}, which the broker does not support`);
          }
          break;
        }
        case BackendType.parameterStatus:
        case BackendType.noticeResponse:
          relayFrames.push(m.frame);
          break;
        case BackendType.backendKeyData:
          key = decodeBackendKeyData(m.body);
          break;
        case BackendType.negotiateProtocolVersion:
          break; // we ask for nothing optional; the server's answer changes nothing
        case BackendType.errorResponse: {
          const f = decodeErrorResponse(m.body);
          throw new PgError((f.code as SqlState) ?? SqlState.connectionFailure, `target ${target.name}: ${f.message}`, {
            severity: 'FATAL',
            ...(f.detail ? { detail: f.detail } : {}),
            ...(f.code === '28P01' || f.code === '28000' ? { hint: "the broker's credentials for this target were refused; tell the broker's operator" } : {}),
          });
        }
        case BackendType.readyForQuery:
          hs.detach();
          // The server sends nothing after ReadyForQuery until asked, so the reader is empty here.
          // Some poolers send no key: cancel then has nothing to aim at.
          if (!key) key = { processId: 0, secretKey: Buffer.alloc(4) };
          return { socket, reader, relayFrames, key };
        default:
          throw new PgError(SqlState.protocolViolation, `target ${target.name}: unexpected message during startup`);
      }
    }
  } catch (err) {
    hs.detach();
    socket.destroy();
    throw err;
  }
}

/** Send a CancelRequest for `key` on a fresh connection, as PostgreSQL requires. Best effort. */
export async function sendCancel(target: PostgresTargetConfig, key: BackendKeyData, options: UpstreamOptions = {}): Promise<void> {
  const socket = await dialTarget(target, { connectTimeoutMs: options.connectTimeoutMs ?? 5_000 });
  await new Promise<void>((resolve) => {
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
    socket.end(cancelRequest(key.processId, key.secretKey));
  });
}
