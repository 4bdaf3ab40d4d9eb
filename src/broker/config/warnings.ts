/**
 * A config can be valid and still not what its operator meant: the template's placeholder
 * issuer, no targets, no policies, TLS verification against CAs nobody named. `broker
 * start` says each of these once, before it listens; none stops it.
 */
import type { BrokerConfig } from './types.js';

/** The issuer `broker init` writes when none is given. */
export const PLACEHOLDER_ISSUER_HOST = 'login.example.com';

export function configWarnings(config: BrokerConfig): string[] {
  const out: string[] = [];
  if (URL.parse(config.identity.issuer)?.hostname === PLACEHOLDER_ISSUER_HOST) {
    out.push(`identity.issuer is the template's placeholder ${config.identity.issuer}: no one can log in until it names your IdP`);
  }
  const targets = Object.values(config.targets);
  if (targets.length === 0) out.push('targets: none configured, so there is nothing to connect to');
  if (config.policies.length === 0) out.push('policies: none configured, so every request is denied');
  for (const t of targets) {
    if (t.type === 'postgres' && t.tls === 'verify-full' && t.ca === undefined) {
      out.push(`targets.${t.name}.tls: verify-full without ca checks the server's certificate against the system CAs`);
    }
  }
  return out;
}
