/**
 * Wires the approvals screen to the broker: one API client, the live feed, and decisions.
 * Drawn on stderr (stdout stays free for what scripts read), until `q` or Ctrl-C.
 */
import { render } from 'ink';
import type { BrokerSessionFlags } from '../client/broker-session.js';
import { openApprovalsClient } from '../client/approvals.js';
import { ApproveScreen } from './approve-screen.js';
import { createRequestStore, followRequests } from './request-store.js';

export async function runApproveScreen(flags: BrokerSessionFlags, options: { initialId?: string } = {}, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const client = await openApprovalsClient(flags, env);
  try {
    // Before drawing anything: a refused token ends here with its advice (exit 3).
    const me = await client.whoami();
    const store = createRequestStore();
    const feed = new AbortController();
    const following = followRequests(client, store, feed.signal);
    const app = render(
      <ApproveScreen
        store={store}
        decide={(id, decision, reason) => client.decide(id, decision, reason)}
        onExit={() => app.unmount()}
        viewer={me.name ?? me.sub}
        {...(options.initialId ? { initialId: options.initialId } : {})}
      />,
      { stdout: process.stderr, exitOnCtrlC: true },
    );
    try {
      await app.waitUntilExit();
    } finally {
      feed.abort();
      await following;
    }
  } finally {
    await client.close();
  }
}
