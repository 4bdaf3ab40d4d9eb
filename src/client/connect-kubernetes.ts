/**
 * The CLI side of a Kubernetes target in one call: a loopback listener that speaks TLS
 * with a per-session certificate (kubectl sends its token only over https), whose
 * decrypted bytes travel through a tunnel channel to the broker's Kubernetes proxy, and
 * the kubeconfig that trusts that certificate and carries the session secret as token.
 *
 *   kubectl ──TLS (loopback)──► listener ──plain HTTP in an SSH channel──► broker (TLS tunnel)
 */
import type { ConnectSession } from '../tunnel/connect-session.js';
import type { LocalListener } from '../tunnel/local-listener.js';
import { makeLocalTlsIdentity } from './local-tls.js';
import { writeKubeconfig } from './kubeconfig.js';

export interface KubernetesListenOptions {
  target: string;
  host: string;
  /** 0 (the default for Kubernetes) lets the system pick. */
  port: number;
  allowRemote?: boolean;
  /** How long a local connection waits for a lost tunnel to come back. */
  channelTimeoutMs?: number;
  /** kubectl must finish the TLS handshake within this (ms). */
  loginTimeoutMs?: number;
}

export { tlsFront } from '../tunnel/tls-front.js';

export interface KubernetesListener {
  listener: LocalListener;
  /** The listener's certificate: the kubeconfig's certificate-authority-data. */
  caPem: string;
  close(): Promise<void>;
}

/** Listens for kubectl on `host:port`; each TLS connection becomes one tunnel channel to `target`. */
export async function listenKubernetes(session: ConnectSession, o: KubernetesListenOptions): Promise<KubernetesListener> {
  const identity = await makeLocalTlsIdentity(o.host);
  const listener = await session.listen({
    target: o.target,
    type: 'kubernetes',
    host: o.host,
    port: o.port,
    secureContext: identity.secureContext,
    ...(o.allowRemote ? { allowRemote: true } : {}),
    ...(o.channelTimeoutMs !== undefined ? { channelTimeoutMs: o.channelTimeoutMs } : {}),
    ...(o.loginTimeoutMs !== undefined ? { loginTimeoutMs: o.loginTimeoutMs } : {}),
  });
  return { listener, caPem: identity.certPem, close: () => listener.close() };
}

export interface KubernetesEndpoint extends KubernetesListener {
  /** Path of the 0600 kubeconfig. */
  kubeconfig: string;
}

/** The listener and its kubeconfig in `dir` (e.g. a private temp dir the caller removes). */
export async function connectKubernetes(session: ConnectSession, o: KubernetesListenOptions & { dir: string }): Promise<KubernetesEndpoint> {
  const k = await listenKubernetes(session, o);
  try {
    const { host, port } = k.listener.address;
    const kubeconfig = await writeKubeconfig({ dir: o.dir, target: o.target, host, port, secret: session.secret, caPem: k.caPem });
    return { ...k, kubeconfig };
  } catch (err) {
    await k.close();
    throw err;
  }
}
