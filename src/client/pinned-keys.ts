/**
 * The broker's signing keys as this CLI first saw them over verified TLS (pinned like an
 * SSH known_hosts entry): `receipt verify` and `audit verify` check against these by
 * default, not against a jwks.json lying beside the file, which whoever swapped the file
 * could have swapped too. Pinned when receipts are collected (connect, run) or, for a
 * configured broker, on first use; new keys (rotation) are added, none removed.
 * `$XDG_CONFIG_HOME/agentgate/keys/<host>_<port>.jwks.json`, 0600.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { resolveBroker, openSettings } from './settings.js';
import { ensurePrivateDir, loadJwks, mergeJwks } from './receipts.js';

/** Beside config.json (`$XDG_CONFIG_HOME/agentgate`, as conf resolves it for this process; env given: from it). */
function configDir(env?: NodeJS.ProcessEnv): string {
  if (!env) return openSettings().dir;
  const xdg = env['XDG_CONFIG_HOME'];
  return xdg && xdg.startsWith('/') ? join(xdg, 'agentgate') : join(env['HOME'] ?? homedir(), '.config', 'agentgate');
}

export function pinnedJwksPath(brokerUrl: string, env?: NodeJS.ProcessEnv): string {
  const u = new URL(brokerUrl);
  return join(configDir(env), 'keys', `${u.hostname.replace(/[^A-Za-z0-9.-]/g, '_')}_${u.port || '443'}.jwks.json`);
}

export async function pinJwks(brokerUrl: string, jwks: { keys: unknown[] }, env?: NodeJS.ProcessEnv): Promise<string> {
  const path = pinnedJwksPath(brokerUrl, env);
  await ensurePrivateDir(join(path, '..'));
  await mergeJwks(path, jwks);
  return path;
}

export interface TrustedKeys {
  jwks: { keys: unknown[] };
  /** Said to the user: which key set was used and why it is trusted. */
  from: string;
}

/**
 * The key set for a file signed by the broker at brokerUrl (undefined: the file does not
 * say): pinned, else fetched from that broker over verified TLS when it is the configured
 * one (then pinned), else undefined.
 */
export async function trustedKeysFor(brokerUrl: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<TrustedKeys | undefined> {
  const configured = resolveBroker({}, env, false);
  const url = brokerUrl ?? configured?.url;
  if (!url) return undefined;
  const path = pinnedJwksPath(url);
  if (existsSync(path)) return { jwks: await loadJwks(path), from: `the key set pinned for ${new URL(url).origin} (${path})` };
  if (!configured || new URL(configured.url).origin !== new URL(url).origin) return undefined;
  const jwks = await loadJwks(`${configured.url}/.well-known/jwks.json`, configured.trust, env);
  const pinned = await pinJwks(configured.url, jwks);
  return { jwks, from: `the key set fetched from ${new URL(url).origin} over verified TLS, now pinned in ${pinned}` };
}
