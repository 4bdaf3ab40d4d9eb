/**
 * `agentgate approve [ID] [--approve|--deny] [--reason TEXT] [--json]` — review held
 * statements. On a terminal without flags: a live screen. With flags, or without a
 * terminal, it never prompts: it decides, or prints what waits and how to decide it.
 */
import type { Command } from 'commander';
import { addBrokerOptions } from '../client/broker-options.js';
import { UsageError } from '../errors.js';
import { print, printJson, say } from './render.js';

interface ApproveFlags {
  broker?: string;
  ca?: string;
  fingerprint?: string;
  tokenFile?: string;
  approve?: boolean;
  deny?: boolean;
  reason?: string;
  json?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command('approve')
    .description('review requests held for approval: a live screen on a terminal, or decide one with --approve / --deny')
    .argument('[id]', 'request ID, as printed when the statement was held (apr_…)')
    .option('--approve', 'approve the request')
    .option('--deny', 'deny the request (needs --reason)')
    .option('--reason <text>', 'why; the requester sees it (required with --deny)')
    .option('--json', 'print one JSON document on stdout; never opens the screen');
  addBrokerOptions(cmd).action(async (id: string | undefined, flags: ApproveFlags) => {
    const decision = checkFlags(id, flags);
    const broker = { broker: flags.broker, ca: flags.ca, fingerprint: flags.fingerprint, tokenFile: flags.tokenFile };

    if (decision && id) {
      const { decideRequest } = await import('../client/approvals.js');
      const view = await decideRequest(broker, id, decision, flags.reason);
      if (flags.json) printJson(view);
      else {
        const { decisionSummary } = await import('../ui/format.js');
        print(decisionSummary(view));
      }
      return;
    }

    if (!flags.json && process.stdin.isTTY && process.stderr.isTTY) {
      const { runApproveScreen } = await import('../ui/approve-app.js');
      await runApproveScreen(broker, id ? { initialId: id } : {});
      return;
    }

    // No terminal to ask on: show what there is and how to decide it.
    const { getRequest, listRequests } = await import('../client/approvals.js');
    const { cutInTable, requestDetails, requestsTable } = await import('../ui/format.js');
    if (id) {
      const view = await getRequest(broker, id);
      if (flags.json) printJson(view);
      else print(requestDetails(view));
      if (view.can_decide) say(`decide with: agentgate approve ${view.id} --approve   or   agentgate approve ${view.id} --deny --reason "…"`);
      return;
    }
    const { requests } = await listRequests(broker);
    const waiting = requests.filter((r) => r.can_decide);
    if (flags.json) {
      printJson({ requests: waiting });
      return;
    }
    if (waiting.length === 0) {
      say('Nothing waiting for your review.');
      return;
    }
    print(requestsTable(waiting));
    // An approval covers all of a statement: a cut one is named, with where to read it whole.
    for (const r of waiting.filter(cutInTable)) say(`${r.id}: its statement is cut above (…(+N) says how much); read it whole first: agentgate approve ${r.id}`);
    say('decide with: agentgate approve ID --approve   or   agentgate approve ID --deny --reason "…"');
  });
}

/** The decision the flags ask for, after checking they make sense together. */
export function checkFlags(id: string | undefined, flags: Pick<ApproveFlags, 'approve' | 'deny' | 'reason'>): 'approve' | 'deny' | undefined {
  if (flags.approve && flags.deny) throw new UsageError('--approve and --deny cannot be used together', { hint: 'pick one' });
  const decision = flags.approve ? 'approve' : flags.deny ? 'deny' : undefined;
  if (decision && !id) throw new UsageError(`--${decision} needs the request ID`, { hint: `agentgate approve apr_… --${decision}; list them with: agentgate requests` });
  if (decision === 'deny' && !(flags.reason ?? '').trim()) {
    throw new UsageError('--deny needs --reason', { hint: 'say why, e.g. --reason "run it in the maintenance window"; the requester sees it' });
  }
  if (!decision && flags.reason !== undefined) throw new UsageError('--reason goes with --approve or --deny', { hint: `agentgate approve ${id ?? 'ID'} --deny --reason "…"` });
  return decision;
}
