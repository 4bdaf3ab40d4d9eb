/**
 * The broker's side towards a Kubernetes API server: one undici Pool per target (TLS
 * verified against the target's CA, or the system CAs without one; the target's bearer
 * token or client certificate); the same TLS settings serve upgraded requests (exec,
 * attach, port-forward), which go through node:https.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type tls from 'node:tls';
import { Pool } from 'undici';
import type { KubernetesTargetConfig } from '../config/types.js';
import { BrokerError } from '../../errors.js';

export interface K8sUpstream {
  target: KubernetesTargetConfig;
  /** `https://host:port`. */
  origin: string;
  /** Path prefix of the server URL (`''`, or e.g. `/k8s/clusters/c-1`), prepended to every request path. */
  basePath: string;
  /** `host:port` for the Host header. */
  host: string;
  pool: Pool;
  /** `Bearer <token>` when the target authenticates with a token. Never log it. */
  authorization: string | undefined;
  /** Where and how to connect for an upgraded request (node:https). */
  hostname: string;
  port: number;
  tls: tls.ConnectionOptions;
}

export class K8sUpstreams {
  readonly #byTarget = new Map<string, K8sUpstream>();

  /** Throws BrokerError when the target's CA or client certificate cannot be read. */
  get(target: KubernetesTargetConfig): K8sUpstream {
    const known = this.#byTarget.get(target.name);
    if (known) return known;
    const up = makeUpstream(target);
    this.#byTarget.set(target.name, up);
    return up;
  }

  async close(): Promise<void> {
    const pools = [...this.#byTarget.values()].map((u) => u.pool);
    this.#byTarget.clear();
    await Promise.allSettled(pools.map((p) => p.destroy()));
  }
}

function makeUpstream(target: KubernetesTargetConfig): K8sUpstream {
  const url = new URL(target.server);
  const read = (what: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new BrokerError('AG_K8S_UPSTREAM_CONFIG', `cannot read the ${what} of target ${target.name} (${path}): ${(err as NodeJS.ErrnoException).code ?? 'error'}`, {
        cause: err,
        hint: 'check the target\'s file paths in the broker config',
      });
    }
  };
  const port = Number(url.port || 443);
  const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const tlsOptions: tls.ConnectionOptions = { minVersion: 'TLSv1.2' };
  if (target.ca) tlsOptions.ca = read('CA', target.ca);
  if (target.clientCert) tlsOptions.cert = read('client certificate', target.clientCert);
  if (target.clientKey) tlsOptions.key = target.clientKey.reveal();
  if (net.isIP(hostname) === 0) tlsOptions.servername = hostname;
  const pool = new Pool(url.origin, {
    connect: { ...tlsOptions } as Pool.Options['connect'],
    // Watches and log follows stay quiet for minutes: the client decides when to give up.
    bodyTimeout: 0,
    headersTimeout: 120_000,
    keepAliveTimeout: 30_000,
  });
  return {
    target,
    origin: url.origin,
    basePath: url.pathname.replace(/\/+$/, ''),
    host: url.host,
    pool,
    authorization: target.token ? `Bearer ${target.token.reveal()}` : undefined,
    hostname,
    port,
    tls: tlsOptions,
  };
}
