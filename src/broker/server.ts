/**
 * The broker's one HTTPS port: control API, discovery, and HTTP Upgrade for the tunnel.
 * startBroker loads (or creates) the key material, builds the identity verifier, and
 * serves until close().
 */
import { createServer } from 'node:https';
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { BrokerConfig } from './config/types.js';
import { createRequestHandler } from './http/handler.js';
import { Router } from './http/router.js';
import type { BrokerContext, Route, UpgradeHandler } from './http/types.js';
import { createUpgradeListener } from './http/upgrade.js';
import { targetsRoute, whoamiRoute } from './http/v1.js';
import { discoveryRoute, healthzRoute, jwksRoute } from './http/well-known.js';
import { createIdentityVerifier } from './identity/verifier.js';
import type { IdentityVerifier } from './identity/types.js';
import { ensureBrokerKeys } from './keys.js';
import type { BrokerKeys } from './keys.js';
import { createLogger } from './log.js';
import type { Logger } from './log.js';
import { BrokerError } from '../errors.js';

export type { Route, RequestContext, UpgradeHandler, BrokerContext } from './http/types.js';

export interface StartBrokerOptions {
  logger?: Logger;
  /** Floor between JWKS refetches on unknown kids (default 30 s). */
  jwksCooldownMs?: number;
  /** Overrides config.listen.port; 0 picks a free port (tests). */
  port?: number;
  /** HTTP Upgrade handlers by exact path, e.g. `{ '/v1/tunnel': … }`. */
  upgradeHandlers?: Record<string, UpgradeHandler>;
  /** Extra endpoints (approvals, audit export, …) served beside the built-in ones. */
  routes?: Route[];
  /** Key material already loaded by the caller (runBroker); loaded here when absent. */
  keys?: BrokerKeys;
  /** How long close() lets in-flight requests finish before cutting them. Default 5 000. */
  closeGraceMs?: number;
}

export interface RunningBroker {
  /** `https://host:port` as clients on this machine reach it. */
  url: string;
  port: number;
  /** SHA-256 of the TLS certificate, `AB:CD:…`. */
  fingerprint: string;
  keys: BrokerKeys;
  verifier: IdentityVerifier;
  close(): Promise<void>;
}

const LIMITS = {
  maxHeaderSize: 16 * 1024,
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  keepAliveTimeout: 5_000,
} as const;

export async function startBroker(config: BrokerConfig, options: StartBrokerOptions = {}): Promise<RunningBroker> {
  const logger = options.logger ?? createLogger();
  const keys = options.keys ?? (await ensureBrokerKeys(config));
  const verifier = createIdentityVerifier(config.identity, { logger: logger.child({ component: 'identity' }), ...(options.jwksCooldownMs === undefined ? {} : { jwksCooldownMs: options.jwksCooldownMs }) });
  const upgradeHandlers = options.upgradeHandlers ?? {};

  const router = new Router();
  for (const route of [healthzRoute, discoveryRoute, jwksRoute, whoamiRoute, targetsRoute, ...(options.routes ?? [])]) router.add(route);

  const server: Server = createServer({
    cert: keys.tlsCertPem,
    key: keys.tlsKeyPem,
    minVersion: 'TLSv1.2',
    // A connection that never starts (or never finishes) TLS is cut here (Node's default is 120 s).
    handshakeTimeout: config.sessions.tlsHandshakeTimeoutMs,
    maxHeaderSize: LIMITS.maxHeaderSize,
    headersTimeout: LIMITS.headersTimeout,
    requestTimeout: LIMITS.requestTimeout,
    keepAliveTimeout: LIMITS.keepAliveTimeout,
  });

  const host = config.listen.host;
  const port = options.port ?? config.listen.port;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(
        new BrokerError('AG_LISTEN_FAILED', `cannot listen on ${host}:${port}: ${err.code ?? err.message}`, {
          hint: err.code === 'EADDRINUSE' ? `another process holds port ${port}; stop it or change listen in ${config.configPath}` : `check listen in ${config.configPath}`,
          cause: err,
        }),
      );
    };
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const actualPort = (server.address() as AddressInfo).port;
  const url = `https://${urlHost(host)}:${actualPort}`;

  const context: BrokerContext = { config, keys, verifier, logger, url, upgradePaths: Object.keys(upgradeHandlers) };
  server.on('request', createRequestHandler(router, context));

  const upgraded = new Set<Duplex>();
  server.on(
    'upgrade',
    createUpgradeListener(upgradeHandlers, context, (socket) => {
      upgraded.add(socket);
      socket.once('close', () => upgraded.delete(socket));
    }),
  );
  server.on('tlsClientError', (err) => logger.debug('TLS handshake failed', { error: err }));
  server.on('error', (err) => logger.error('server error', { error: err }));

  logger.info('broker listening', { url, fingerprint: keys.tlsFingerprint });

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      // Tunnels are long-lived by nature; their handlers should have drained them by now.
      for (const s of upgraded) s.destroy();
      setTimeout(() => server.closeAllConnections(), options.closeGraceMs ?? 5_000).unref();
    }).then(() => logger.info('broker stopped', { url })));

  return { url, port: actualPort, fingerprint: keys.tlsFingerprint, keys, verifier, close };
}

/** A URL host for the listen address; wildcard binds are reached via loopback locally. */
function urlHost(host: string): string {
  if (host === '' || host === '0.0.0.0') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '[::1]';
  if (host.includes(':') && !host.startsWith('[')) return `[${host}]`;
  return host;
}
