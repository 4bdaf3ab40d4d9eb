/**
 * The broker's own SSH connection to a target: the target's credential (private key or
 * password) from the broker config, and its pinned host key checked before anything is
 * sent. The agent's client never sees either.
 */
import ssh2 from 'ssh2';
import type { Client } from 'ssh2';
import type { SshTargetConfig } from '../config/types.js';
import { fingerprintOfPublicBlob, hostKeyMatches } from './host-key-pin.js';
import { SshUpstreamError } from './errors.js';

export interface UpstreamOptions {
  /** Connect and handshake within this (ms); default 15 s. */
  readyTimeoutMs?: number;
}

export function connectUpstream(target: SshTargetConfig, o: UpstreamOptions = {}): Promise<Client> {
  return new Promise<Client>((resolve, reject) => {
    const client = new ssh2.Client();
    let offered: string | undefined;
    let mismatch = false;
    let settled = false;
    const where = `${target.host}:${target.port}`;
    client.once('ready', () => {
      settled = true;
      client.on('error', () => {});
      resolve(client);
    });
    client.on('error', (err: Error & { level?: string }) => {
      if (settled) return;
      settled = true;
      client.end();
      if (mismatch) {
        reject(
          new SshUpstreamError(
            'AG_SSH_HOST_KEY_MISMATCH',
            `the host key of ${target.name} (${where}) is ${offered ?? 'unknown'}, not the one pinned in the broker config (${target.hostKey.slice(0, 80)}); nothing was sent`,
            `if the host key changed on purpose, the broker operator updates host_key of ${target.name} (ssh-keyscan ${target.host} | ssh-keygen -lf -)`,
          ),
        );
      } else if (err.level === 'client-authentication') {
        reject(new SshUpstreamError('AG_SSH_UPSTREAM_AUTH', `${target.name} (${where}) refused the broker's credential for ${target.user}`, `the broker operator checks private_key / password of ${target.name}`));
      } else {
        reject(new SshUpstreamError('AG_SSH_UPSTREAM_UNREACHABLE', `cannot reach ${target.name} (${where}): ${err.message}`, 'try again; if it persists, the broker operator checks the target'));
      }
    });
    try {
      client.connect({
        host: target.host,
        port: target.port,
        username: target.user,
        ...(target.privateKey ? { privateKey: target.privateKey.reveal() } : {}),
        ...(target.password ? { password: target.password.reveal() } : {}),
        readyTimeout: o.readyTimeoutMs ?? 15_000,
        hostVerifier: (key: Buffer): boolean => {
          offered = fingerprintOfPublicBlob(key);
          const ok = hostKeyMatches(target.hostKey, key);
          mismatch = !ok;
          return ok;
        },
      });
    } catch (err) {
      settled = true;
      reject(new SshUpstreamError('AG_SSH_UPSTREAM_UNREACHABLE', `cannot connect to ${target.name} (${where}): ${(err as Error).message}`, 'the broker operator checks the target\'s credential format'));
    }
  });
}
