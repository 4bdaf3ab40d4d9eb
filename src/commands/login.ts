/** `agentgate login [--broker URL] [--ca FILE] [--fingerprint SHA256]` — device-flow login. */
import type { Command } from 'commander';
import { addBrokerOptions } from '../client/broker-options.js';
import type { DevicePrompt } from '../client/device-login.js';
import { print, say } from './render.js';

interface LoginOptions {
  broker?: string;
  ca?: string;
  fingerprint?: string;
}

export function register(program: Command): void {
  const cmd = program
    .command('login')
    .description('log in to a broker as yourself (OAuth device flow with the IdP the broker names)')
    .addHelpText(
      'after',
      `
Tokens go to the OS keychain (service "agentgate") when one is reachable, otherwise to
$XDG_CONFIG_HOME/agentgate/tokens.json (mode 0600). AGENTGATE_KEYCHAIN=off always uses the file.
On success the broker and its --ca/--fingerprint become the defaults for later commands.

Scripts and CI need no login; the first of these that is set is used:
  AGENTGATE_TOKEN, --token-file FILE, AGENTGATE_CLIENT_ID + AGENTGATE_CLIENT_SECRET,
  GitHub Actions OIDC (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN; needs permissions: id-token: write).`,
    );
  addBrokerOptions(cmd, { tokenFile: false }).action(async (opts: LoginOptions) => {
    // Ctrl-C stops the wait cleanly instead of killing the process mid-write.
    const cancel = new AbortController();
    const onSigint = (): void => cancel.abort();
    process.once('SIGINT', onSigint);
    try {
      // Loaded on use: other commands need not pay for the OIDC and HTTP stack at startup.
      const { login } = await import('../client/identity.js');
      const r = await login(opts, { say, prompt: showPrompt, signal: cancel.signal });
      const who = r.identity;
      const name = who.name ? `${who.name} (${who.sub})` : who.sub;
      say(`Tokens are stored in ${r.storedIn}.`);
      print(`Logged in to ${r.broker} as ${name}, ${who.kind}, groups: ${who.groups.join(', ') || '(none)'}`);
    } finally {
      process.off('SIGINT', onSigint);
    }
  });
}

function showPrompt(p: DevicePrompt): void {
  const minutes = Math.max(1, Math.round(p.expires_in / 60));
  const lines = [
    '',
    'To sign in, open this page in a browser:',
    '',
    `    ${p.verification_uri}`,
    '',
    `and enter the code:  ${p.user_code}`,
    '',
  ];
  if (p.verification_uri_complete) lines.push(`(or open ${p.verification_uri_complete} directly)`);
  lines.push(`Waiting for the sign-in to finish; the code expires in ${minutes} minute${minutes === 1 ? '' : 's'}…`);
  say(lines.join('\n'));
}
