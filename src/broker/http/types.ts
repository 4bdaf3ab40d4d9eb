import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { BrokerConfig } from '../config/types.js';
import type { Identity, IdentityVerifier } from '../identity/types.js';
import type { BrokerKeys } from '../keys.js';
import type { Logger } from '../log.js';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** What every route can see about the broker it runs in. */
export interface BrokerContext {
  config: BrokerConfig;
  keys: BrokerKeys;
  verifier: IdentityVerifier;
  logger: Logger;
  /** The broker's own base URL (`https://host:port`), from the listen address. */
  url: string;
  /** Paths with an HTTP Upgrade handler (e.g. `/v1/tunnel`). */
  upgradePaths: readonly string[];
}

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  /** Values of `:name` path segments. */
  params: Record<string, string>;
  /** Set when the route requires auth (it then always is). */
  identity: Identity | undefined;
  /** The base URL the client used to reach us (Host header), else the listen URL. */
  baseUrl: string;
  broker: BrokerContext;
  logger: Logger;
}

export interface Route {
  method: HttpMethod;
  /** Exact path; segments starting with `:` capture, e.g. `/v1/requests/:id`. */
  path: string;
  /** When true the request needs a valid bearer token and `ctx.identity` is set. */
  auth: boolean;
  handle(ctx: RequestContext): void | Promise<void>;
}

/** Takes over an authenticated HTTP Upgrade request's socket (e.g. the SSH tunnel). */
export type UpgradeHandler = (ctx: { identity: Identity; req: IncomingMessage; socket: Duplex; head: Buffer }) => void;
