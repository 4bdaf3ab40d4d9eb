/** What `agentgate dev` prints once everything runs: where things are, and six steps to try in a second terminal. */
import type { DevRole } from './config.js';

export interface TourInput {
  dir: string;
  brokerUrl: string;
  issuer: string;
  target: string;
  database: string;
  envFile: string;
  logFile: string;
  receiptDir: string;
  tokenFiles: Record<DevRole, string>;
  /** Said first when the requested port was taken. */
  portNote?: string;
}

/** Quotes a path for a POSIX shell when it needs it, so every printed command pastes as is. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function renderTour(t: TourInput): string {
  const q = shellQuote;
  const agent = q(t.tokenFiles.agent);
  const reviewer = q(t.tokenFiles.reviewer);
  return [
    ...(t.portNote ? [t.portNote, ''] : []),
    'agentgate dev is up:',
    `  broker    ${t.brokerUrl}   (state in ${t.dir}, log ${t.logFile})`,
    `  issuer    ${t.issuer}   (demo users dev-human, dev-reviewer, dev-agent)`,
    `  target    ${t.target}: ${t.database}; tables customers, orders`,
    `  tokens    ${t.tokenFiles.human}, ${t.tokenFiles.reviewer}, ${t.tokenFiles.agent} (0600; valid while this runs)`,
    '',
    'Try it in a second terminal. First point the CLI at this broker:',
    `    . ${q(t.envFile)}          # sets AGENTGATE_BROKER and AGENTGATE_FINGERPRINT`,
    '',
    '  1. Connect as the agent (dev-agent, group ai-agents): psql runs through the broker',
    `       agentgate run --target ${t.target} --token-file ${agent} --receipt-dir ${q(t.receiptDir)} -- psql`,
    `     (or keep a tunnel open: agentgate connect ${t.target} --port 0 --token-file ${agent})`,
    '  2. Read: emails and card numbers leave the broker masked',
    '       select * from customers;',
    '  3. Write: the UPDATE is held until a reviewer (group dba) approves it; a DROP is denied outright',
    "       update orders set status = 'refunded' where id = 2;",
    `  4. Approve it from another terminal (after the same \`. ${q(t.envFile)}\`), as dev-reviewer`,
    `       agentgate approve --token-file ${reviewer}`,
    '  5. Quit psql (\\q), then export and check the audit log as dev-reviewer (an auditor)',
    `       agentgate audit export --token-file ${reviewer} --out audit.jsonl`,
    '       agentgate audit verify audit.jsonl',
    '  6. Verify the session\'s signed receipt offline (agentgate run printed its path; this takes the newest)',
    `       agentgate receipt verify "$(ls -t ${q(t.receiptDir)}/*.receipt.json | head -1)"`,
    '',
    '  People log in for real too: agentgate login   (device flow; sign in as dev-human, any password)',
    '  (the demo lets people in developers and dba run anything, DROP included: policy "people" in agentgate.yaml)',
  ].join('\n');
}
