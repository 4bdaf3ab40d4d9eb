/** `agentgate logout [--broker URL]` — revoke the refresh token and forget the login. */
import type { Command } from 'commander';
import { print, say } from './render.js';

export function register(program: Command): void {
  program
    .command('logout')
    .description('forget the stored login (revoking its refresh token at the IdP where possible)')
    .option('--broker <url>', 'broker to log out of (env AGENTGATE_BROKER; default: the one you logged in to)')
    .action(async (opts: { broker?: string }) => {
      // Loaded on use: other commands need not pay for the OIDC and HTTP stack at startup.
      const { logout } = await import('../client/identity.js');
      const r = await logout(opts);
      if (!r.broker) {
        print('Not logged in to any broker; nothing to do.');
        return;
      }
      if (typeof r.revocation === 'object') say(`warning: ${r.revocation.failed}; the login is forgotten here anyway`);
      else if (r.revocation === 'unsupported') say('note: the IdP has no revocation endpoint; the refresh token stays valid there until it expires');
      print(r.removed ? `Logged out of ${r.broker}.` : `Not logged in to ${r.broker}; nothing to do.`);
    });
}
