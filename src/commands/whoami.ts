/** `agentgate whoami [--json]` — who the broker thinks you are. */
import type { Command } from 'commander';
import { addBrokerOptions } from '../client/broker-options.js';
import type { WhoAmIResult } from '../client/identity.js';
import { print, printJson } from './render.js';

interface WhoamiOptions {
  broker?: string;
  ca?: string;
  fingerprint?: string;
  tokenFile?: string;
  json?: boolean;
}

const SOURCE_LABEL: Record<WhoAmIResult['token_source'], string> = {
  env: 'AGENTGATE_TOKEN',
  'token-file': '--token-file',
  'client-credentials': 'client credentials (AGENTGATE_CLIENT_ID)',
  'github-actions': 'GitHub Actions OIDC',
  login: 'stored login',
};

export function register(program: Command): void {
  const cmd = program.command('whoami').description('show your identity, groups and token expiry as the broker sees them');
  addBrokerOptions(cmd)
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: WhoamiOptions) => {
      // Loaded on use: other commands need not pay for the OIDC and HTTP stack at startup.
      const { whoami } = await import('../client/identity.js');
      const who = await whoami(opts);
      if (opts.json) {
        printJson(who);
        return;
      }
      const title = who.name ? `${who.sub} (${who.name}${who.email ? ` <${who.email}>` : ''})` : who.sub;
      print(
        [
          title,
          `  kind:     ${who.kind}`,
          `  groups:   ${who.groups.join(', ') || '(none)'}`,
          `  issuer:   ${who.issuer}`,
          `  expires:  ${localTime(who.expires_at)} (${relative(who.expires_at)})`,
          `  broker:   ${who.broker}`,
          `  token:    ${SOURCE_LABEL[who.token_source]}`,
        ].join('\n'),
      );
    });
}

/** `2026-11-22 14:03:10 +01:00` in the machine's time zone. */
export function localTime(unixSec: number): string {
  const d = new Date(unixSec * 1000);
  const p = (n: number): string => String(Math.abs(n)).padStart(2, '0');
  const off = -d.getTimezoneOffset();
  const zone = `${off >= 0 ? '+' : '-'}${p(Math.trunc(off / 60))}:${p(off % 60)}`;
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${zone}`;
}

/** `in 9 minutes`, `2 hours ago`. */
export function relative(unixSec: number, nowMs = Date.now()): string {
  const diff = Math.round(unixSec - nowMs / 1000);
  const abs = Math.abs(diff);
  const [n, unit] =
    abs < 60 ? [abs, 'second'] : abs < 3600 ? [Math.round(abs / 60), 'minute'] : abs < 86400 ? [Math.round(abs / 3600), 'hour'] : [Math.round(abs / 86400), 'day'];
  const text = `${n} ${unit}${n === 1 ? '' : 's'}`;
  return diff >= 0 ? `in ${text}` : `${text} ago`;
}
