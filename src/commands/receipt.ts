/**
 * `agentgate receipt verify FILE [--key JWKS] [--audit EXPORT] [--json]` — check a session
 * receipt's signature offline and print what it attests; with --audit, also check that an
 * export holds the session's events and that its chain reaches the receipt's head.
 */
import type { Command } from 'commander';
import { AgentgateError, ExitCode } from '../errors.js';
import type { ReceiptCheck } from '../client/receipt-check.js';
import { describeReceipt } from '../shared/receipt.js';
import { visible } from '../shared/display-text.js';
import { trustOf } from './audit.js';
import { print, printJson } from './render.js';

interface VerifyOptions {
  key?: string;
  session?: string;
  audit?: string;
  recording?: string;
  recordingName?: string;
  ca?: string;
  fingerprint?: string;
  json?: boolean;
}

export function register(program: Command): void {
  const receipt = program.command('receipt').description('verify signed session receipts');
  receipt
    .command('verify <file>')
    .description("verify a receipt's signature offline and print what it attests")
    .option('--key <jwks>', "the broker's JWKS: a file, or an https URL (fetched only when given); default: the key set pinned for the receipt's broker (at login, connect/run, or first use over verified TLS)")
    .option('--session <id>', 'the session the receipt must attest (a file named <session>.receipt.json must attest that session anyway)')
    .option('--audit <export>', "an audit export to check the receipt against (the session's events, the chain up to its head)")
    .option('--recording <file>', 'a session recording (.cast) whose SHA-256 the receipt must list (and, with --audit, the chain)')
    .option('--recording-name <name>', "the recording's name at the broker (<session>.<n>.cast) when the file was renamed")
    .option('--ca <file>', 'PEM file to trust when --key is an https URL (env AGENTGATE_CA)')
    .option('--fingerprint <sha256>', 'pin the certificate when --key is an https URL (env AGENTGATE_FINGERPRINT)')
    .option('--json', 'print one JSON document on stdout')
    .action(async (file: string, opts: VerifyOptions) => {
      if (opts.recording) {
        const { checkRecording } = await import('../client/recordings.js');
        const rc = await checkRecording(opts.recording, file, { ...(opts.key ? { key: opts.key } : {}), ...(opts.audit ? { audit: opts.audit } : {}), trust: trustOf(opts), ...(opts.recordingName ? { name: opts.recordingName } : {}) });
        if (opts.json) {
          printJson(rc);
          if (!rc.ok) process.exitCode = ExitCode.error;
          return;
        }
        if (!rc.ok) throw new AgentgateError('AG_RECORDING_MISMATCH', `${rc.file}: ${rc.problem}: ${rc.message}`, ExitCode.error, { hint: rc.hint });
        print(`OK ${rc.file}: ${rc.name} sha256:${rc.sha256} is attested by the signed receipt ${file}${rc.chain ? ` and by recording.end at seq ${rc.chain.seq} of a verified chain` : ''}`);
        return;
      }
      const { checkReceipt } = await import('../client/receipt-check.js');
      const check = await checkReceipt(file, { ...(opts.key ? { key: opts.key } : {}), ...(opts.audit ? { audit: opts.audit } : {}), ...(opts.session ? { session: opts.session } : {}), trust: trustOf(opts) });
      if (opts.json) {
        printJson(check);
        if (!check.ok) process.exitCode = ExitCode.error;
        return;
      }
      if (!check.ok) {
        throw new AgentgateError(check.error.code, `${file}: ${check.error.message}`, ExitCode.error, { hint: check.error.hint });
      }
      print(describe(file, check));
    });
}

function describe(file: string, c: Extract<ReceiptCheck, { ok: true }>): string {
  // Signed is not safe to print: the actor's name is the IdP's `name` claim, which its owner
  // may edit; a newline or escape in it must not print a line the receipt does not hold
  // (each line is escaped below).
  const p = c.statement.predicate;
  const lines = [
    `OK ${file}: signed by ${c.keyid} (${c.keysFrom})`,
    `  ${describeReceipt(p)}`,
    `  session:   ${p.session}${p.connect_session ? ` (connect session ${p.connect_session})` : ''}`,
    `  actor:     ${p.actor.sub}${p.actor.name ? ` (${p.actor.name})` : ''}, ${p.actor.kind}, groups ${p.actor.groups.join(', ') || '(none)'}`,
    ...(p.reason ? [`  reason:    ${p.reason}`] : []),
    `  policy:    ${p.policy.name ?? '(none)'} sha256:${p.policy.sha256}`,
    `  audit:     events from seq ${p.audit.first_seq}, chain head seq ${p.audit.head_seq} ${p.audit.head_hash}`,
    `  broker:    ${p.broker.url}, issued ${p.issued_at}`,
    ...p.approvals.map((a) => `  approval:  ${a.id} ${a.decision} by ${a.approver ?? '(nobody)'} at ${a.at}${a.reason ? `: ${a.reason}` : ''}`),
  ];
  if (c.audit) {
    lines.push(
      `  export:    ${c.audit.file}: chain intact through the receipt's head; ${c.audit.sessionEvents} events of this session (${c.audit.statements} statements)`,
    );
    for (const n of c.audit.notes) lines.push(`  note: ${n}`);
  }
  // The actor's subject and name come from a token, a reason from the agent: each line is
  // escaped on its own, so a newline in them cannot forge another line (an approval).
  return lines.map((l) => visible(l, true)).join('\n');
}
