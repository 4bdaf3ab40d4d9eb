/** `agentgate requests [--all] [--limit N] [--after ID] [--json]` — approval requests you made or may review, one page at a time. */
import type { Command } from 'commander';
import { addBrokerOptions } from '../client/broker-options.js';
import { print, printJson, say } from './render.js';

interface RequestsFlags {
  broker?: string;
  ca?: string;
  fingerprint?: string;
  tokenFile?: string;
  all?: boolean;
  limit?: string;
  after?: string;
  json?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command('requests')
    .description('list approval requests you made or may review (pending ones; --all for decided, expired and withdrawn too)')
    .option('--all', 'include requests that are no longer pending')
    .option('--limit <n>', 'requests per page (1-200)', process.env['AGENTGATE_REQUESTS_LIMIT'] ?? '50')
    .option('--after <id>', 'the page after this request (the broker prints it when more follow)')
    .option('--json', 'print one JSON document on stdout');
  addBrokerOptions(cmd).action(async (flags: RequestsFlags) => {
    const { listRequests } = await import('../client/approvals.js');
    const { pageLimit } = await import('../client/page-limit.js');
    const page = { all: Boolean(flags.all), limit: pageLimit(flags.limit), ...(flags.after ? { after: flags.after } : {}) };
    const res = await listRequests({ broker: flags.broker, ca: flags.ca, fingerprint: flags.fingerprint, tokenFile: flags.tokenFile }, page);
    if (flags.json) {
      printJson(res);
      return;
    }
    if (res.requests.length === 0) {
      say(flags.all ? 'No requests: none you made or may review (the broker keeps them for 24 hours).' : 'No pending requests. Use --all to include decided ones.');
      return;
    }
    const { cutInTable, requestsTable } = await import('../ui/format.js');
    print(requestsTable(res.requests));
    for (const r of res.requests.filter((x) => x.can_decide && cutInTable(x))) say(`${r.id}: its statement is cut above (…(+N) says how much); read it whole first: agentgate approve ${r.id}`);
    if (res.next) say(`more follow: agentgate requests${flags.all ? ' --all' : ''} --limit ${page.limit} --after ${res.next}`);
    if (res.requests.some((r) => r.can_decide)) say('review with: agentgate approve   (or agentgate approve ID --approve | --deny --reason "…")');
  });
}
