/**
 * The kubeconfig for one `connect`/`run` session: a cluster and a context named after
 * the target, pointing at the local listener, whose only credential is the session secret
 * as a bearer token. The listener speaks TLS with a per-session certificate, which the
 * kubeconfig trusts as its CA: kubectl sends a token only to an https server (see
 * local-tls.ts). From the listener on, the tunnel to the broker is TLS as well.
 *
 * Written 0600 (the token is a live credential while the session runs) in a directory
 * made 0700 if it does not exist; replaced atomically so kubectl never reads half a file.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { writeFileAtomic } from '../shared/atomic-file.js';

export interface KubeconfigOptions {
  /** Directory to write into (created 0700 when missing). */
  dir: string;
  target: string;
  /** Local listener address; default 127.0.0.1. */
  host?: string;
  port: number;
  /** The session secret: the kubeconfig's bearer token. */
  secret: string;
  /**
   * The listener's certificate (PEM), trusted as the cluster's CA; the server is then
   * https. Without it the server is http, and kubectl will not send the token.
   */
  caPem?: string;
}

/** The file name used for a target: its name with anything unusual replaced. */
export function kubeconfigFileName(target: string): string {
  return `${target.replace(/[^A-Za-z0-9._-]/g, '_')}.kubeconfig`;
}

/** The kubeconfig document (exported for tests and `--print`-style callers). */
export function kubeconfigYaml(o: Omit<KubeconfigOptions, 'dir'>): string {
  const host = o.host ?? '127.0.0.1';
  const scheme = o.caPem ? 'https' : 'http';
  const server = `${scheme}://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${o.port}`;
  const user = `agentgate-${o.target}`;
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: o.target, cluster: { server, ...(o.caPem ? { 'certificate-authority-data': Buffer.from(o.caPem, 'utf8').toString('base64') } : {}) } }],
    contexts: [{ name: o.target, context: { cluster: o.target, user } }],
    users: [{ name: user, user: { token: o.secret } }],
    'current-context': o.target,
    preferences: {},
  };
  return `# Written by agentgate for this session; the token dies when the session ends.\n${stringify(doc)}`;
}

/** Writes the kubeconfig and returns its path. */
export async function writeKubeconfig(o: KubeconfigOptions): Promise<string> {
  await mkdir(o.dir, { recursive: true, mode: 0o700 });
  const path = join(o.dir, kubeconfigFileName(o.target));
  await writeFileAtomic(path, kubeconfigYaml(o), { mode: 0o600 });
  return path;
}
