/**
 * The CLI's own settings (not secrets): the default broker and, per broker, how to trust
 * its certificate. Stored with `conf` in `$XDG_CONFIG_HOME/agentgate/config.json`.
 * Precedence for every value: command-line flag, then environment twin, then settings.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Conf from 'conf';
import { AgentgateError, UsageError } from '../errors.js';
import { normalizeFingerprint } from '../shared/fingerprint.js';
import type { BrokerTrust } from './broker-http.js';

export type { BrokerTrust };

interface SettingsShape {
  defaultBroker?: string;
  brokers?: Record<string, BrokerTrust>;
}

/** What a command was given on its command line. */
export interface BrokerFlags {
  broker?: string;
  ca?: string;
  fingerprint?: string;
}

export interface ResolvedBroker {
  /** Normalized broker URL (`https://host[:port][/path]`, no trailing slash). */
  url: string;
  /**
   * Further brokers given after the first (`--broker https://a,https://b`): several brokers
   * on one store, with the same TLS certificate; tried in turn. Empty for one broker.
   */
  alternates: string[];
  trust: BrokerTrust;
  /** Where the URL came from, for messages. */
  from: 'flag' | 'env' | 'settings';
}

export const LOGIN_HINT = 'agentgate login --broker https://…';

export class CliSettings {
  readonly #conf: Conf<SettingsShape>;

  constructor() {
    try {
      this.#conf = new Conf<SettingsShape>({
        projectName: 'agentgate',
        projectSuffix: '',
        // Broker URLs contain dots; keys are never paths.
        accessPropertiesByDotNotation: false,
        configFileMode: 0o600,
      });
    } catch (err) {
      throw new AgentgateError('AG_SETTINGS_UNREADABLE', `cannot read the agentgate CLI settings: ${err instanceof Error ? err.message : String(err)}`, 1, {
        hint: 'fix or delete config.json in $XDG_CONFIG_HOME/agentgate (~/.config/agentgate), then log in again',
        cause: err,
      });
    }
  }

  /** Folder that holds config.json (and the token file when there is no keychain). */
  get dir(): string {
    return dirname(this.#conf.path);
  }

  get defaultBroker(): string | undefined {
    return this.#conf.get('defaultBroker');
  }

  trustFor(url: string): BrokerTrust {
    return { ...this.#conf.get('brokers')?.[url] };
  }

  /** Remembers a broker that a login succeeded against, and makes it the default. */
  saveBroker(url: string, trust: BrokerTrust): void {
    const brokers = { ...this.#conf.get('brokers') };
    const entry: BrokerTrust = {};
    if (trust.ca) entry.ca = trust.ca;
    if (trust.fingerprint) entry.fingerprint = trust.fingerprint;
    brokers[url] = entry;
    // Shared with the token file: keep the folder private. Only on write, so a read-only HOME still works.
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    chmodSync(this.dir, 0o700);
    this.#conf.set('brokers', brokers);
    this.#conf.set('defaultBroker', url);
  }
}

let shared: CliSettings | undefined;

export function openSettings(): CliSettings {
  shared ??= new CliSettings();
  return shared;
}

/** `https://broker.example:8443/` → `https://broker.example:8443`. Only https is accepted. */
export function normalizeBrokerUrl(input: string): string {
  const u = URL.parse(input.trim());
  if (!u || (u.protocol !== 'https:' && u.protocol !== 'http:')) {
    throw new UsageError(`not a broker URL: ${JSON.stringify(input)}`, { hint: LOGIN_HINT });
  }
  if (u.protocol !== 'https:') {
    throw new UsageError(`the broker must be reached over https, got ${u.origin}`, {
      hint: `use ${u.origin.replace(/^http:/, 'https:')} (the broker always serves TLS)`,
    });
  }
  if (u.username || u.password || u.search || u.hash) {
    throw new UsageError('the broker URL must not carry credentials, a query or a fragment', { hint: LOGIN_HINT });
  }
  return (u.origin + u.pathname).replace(/\/+$/, '');
}

/**
 * Resolves which broker to talk to and how to trust it.
 * `required: false` returns undefined instead of throwing when none is configured.
 */
export function resolveBroker(flags: BrokerFlags, env?: NodeJS.ProcessEnv): ResolvedBroker;
export function resolveBroker(flags: BrokerFlags, env: NodeJS.ProcessEnv | undefined, required: false): ResolvedBroker | undefined;
export function resolveBroker(flags: BrokerFlags, env: NodeJS.ProcessEnv = process.env, required = true): ResolvedBroker | undefined {
  const envBroker = nonEmpty(env['AGENTGATE_BROKER']);
  let raw: string | undefined;
  let from: ResolvedBroker['from'];
  if (nonEmpty(flags.broker)) {
    raw = flags.broker;
    from = 'flag';
  } else if (envBroker) {
    raw = envBroker;
    from = 'env';
  } else {
    raw = openSettings().defaultBroker;
    from = 'settings';
  }
  if (!raw) {
    if (!required) return undefined;
    throw new UsageError('no broker configured', {
      hint: `log in once with ${LOGIN_HINT} (or set AGENTGATE_BROKER)`,
    });
  }
  const [url, ...alternates] = raw.split(',').filter((u) => u.trim() !== '').map(normalizeBrokerUrl) as [string, ...string[]];

  const saved = openSettings().trustFor(url);
  const ca = nonEmpty(flags.ca) ?? nonEmpty(env['AGENTGATE_CA']) ?? saved.ca;
  const fp = nonEmpty(flags.fingerprint) ?? nonEmpty(env['AGENTGATE_FINGERPRINT']) ?? saved.fingerprint;
  const trust: BrokerTrust = {};
  if (ca) trust.ca = resolve(ca);
  if (fp) trust.fingerprint = normalizeFingerprint(fp);
  return { url, alternates, trust, from };
}

function nonEmpty(s: string | undefined): string | undefined {
  return s !== undefined && s.trim() !== '' ? s.trim() : undefined;
}
