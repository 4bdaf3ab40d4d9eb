/**
 * The kubeconfig a `connect`/`run` session hands to kubectl: written 0600 in a private
 * 0700 directory (the session secret is its bearer token), removed when the session ends
 * unless the caller chose the directory.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeKubeconfig } from './kubeconfig.js';

export async function writeSessionKubeconfig(opts: {
  dir: string | undefined;
  target: string;
  host: string;
  port: number;
  secret: string;
  /** The local listener's TLS certificate, trusted as the cluster CA. */
  caPem: string;
}): Promise<{ path: string; remove(): Promise<void> }> {
  const own = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'agentgate-kube-')));
  const path = await writeKubeconfig({ dir, target: opts.target, host: opts.host, port: opts.port, secret: opts.secret, caPem: opts.caPem });
  return { path, remove: () => (own ? rm(dir, { recursive: true, force: true }) : rm(path, { force: true })) };
}
