/**
 * `agentgate audit export` — stream the audit log out (auditors only), resumable.
 * `agentgate audit verify FILE` — re-check an export's hash chain offline; names the first broken link.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { addBrokerOptions } from '../client/broker-options.js';
import type { ExportProgress, ExportResult } from '../client/audit-export.js';
import { AgentgateError, ExitCode, UsageError } from '../errors.js';
import type { ExportVerifyResult } from '../shared/audit-export.js';
import { print, printJson, say, useColor } from './render.js';

interface ExportOptions {
  broker?: string;
  ca?: string;
  fingerprint?: string;
  tokenFile?: string;
  since?: string;
  until?: string;
  target?: string;
  session?: string;
  afterSeq?: number;
  format: 'jsonl' | 'csv' | 'ocsf';
  out?: string;
  json?: boolean;
}

interface VerifyOptions {
  key?: string;
  ca?: string;
  fingerprint?: string;
  json?: boolean;
  chainOnly?: boolean;
}

function seqArg(v: string): number {
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new InvalidArgumentError('expected a whole number (an event seq)');
  return Number(v);
}

export function register(program: Command): void {
  const audit = program.command('audit').description('export the audit log and verify exports');

  const exp = audit
    .command('export')
    .description('stream the audit log (auditors only) to a file or stdout, with a progress bar on a terminal');
  addBrokerOptions(exp)
    .option('--since <time>', 'from the first event at or after this time (ISO-8601)')
    .option('--until <time>', 'up to the first event at or after this time (ISO-8601)')
    .option('--target <name>', 'only events on this target (a filtered export: gaps between events are not checkable)')
    .option('--session <id>', "only this session's events (filtered, like --target)")
    .option('--after-seq <n>', 'only events after this seq; resumes an interrupted --out file', seqArg)
    .addOption(new Option('--format <format>', 'jsonl, csv or ocsf').choices(['jsonl', 'csv', 'ocsf']).default('jsonl'))
    .option('--out <file>', 'write to this file (0600) instead of stdout')
    .option('--json', 'print a summary as one JSON document on stdout (needs --out)')
    .action(async (opts: ExportOptions) => {
      if (opts.json && !opts.out) throw new UsageError('--json needs --out: without it the export itself goes to stdout');
      const { exportAudit } = await import('../client/audit-export.js');
      const bar = process.stderr.isTTY && !opts.json ? progressBar() : undefined;
      let result: ExportResult;
      try {
        result = await exportAudit({
          flags: opts,
          selection: {
            format: opts.format,
            ...(opts.since !== undefined ? { since: opts.since } : {}),
            ...(opts.until !== undefined ? { until: opts.until } : {}),
            ...(opts.target !== undefined ? { target: opts.target } : {}),
            ...(opts.session !== undefined ? { session: opts.session } : {}),
            ...(opts.afterSeq !== undefined ? { afterSeq: opts.afterSeq } : {}),
          },
          ...(opts.out !== undefined ? { out: opts.out } : {}),
          ...(bar ? { onProgress: bar.update } : {}),
        });
      } finally {
        bar?.done();
      }
      if (opts.json) {
        printJson(result);
        return;
      }
      const range = result.first_seq === null ? 'no events' : `${fmt(result.events)} events, seq ${fmt(result.first_seq)}–${fmt(result.last_seq ?? 0)}`;
      if (opts.out) say(`${result.resumed ? 'Appended to' : 'Wrote'} ${opts.out}: ${range} (${mb(result.bytes)}). Check it with: agentgate audit verify ${opts.out}`);
    });

  audit
    .command('verify <file>')
    .description("re-check an export's hash chain and anchors offline; names the first broken link")
    .option('--key <jwks>', "the broker's JWKS (file, or URL) to check the signed anchor and end records; default: the configured broker's key set, pinned at first use over verified TLS")
    .option('--ca <file>', 'PEM file to trust when --key is an https URL (env AGENTGATE_CA)')
    .option('--fingerprint <sha256>', 'pin the certificate when --key is an https URL (env AGENTGATE_FINGERPRINT)')
    .option('--chain-only', 'accept a check of the hash chain alone when no key set is available (it proves integrity, not who wrote the file)')
    .option('--json', 'print one JSON document on stdout')
    .action(async (file: string, opts: VerifyOptions) => {
      const { verifyExportFile } = await import('../client/audit-export.js');
      const { loadJwks } = await import('../client/receipts.js');
      // Default: the configured broker's key set, pinned over verified TLS (see pinned-keys.ts).
      const { trustedKeysFor } = await import('../client/pinned-keys.js');
      const trusted = opts.key
        ? { jwks: await loadJwks(opts.key, trustOf(opts)), from: `key set ${opts.key}` }
        : await trustedKeysFor(undefined).catch((err: unknown) => {
            say(`warning: could not get the configured broker's key set (${(err as Error).message}); signatures are not checked: pass --key`);
            return undefined;
          });
      if (trusted) say(`checking signatures with ${trusted.from}`);
      const jwks = trusted?.jwks;
      const result = await verifyExportFile(file, jwks ? { jwks } : {});
      // Anyone can write a chain that hashes right: without a key it proves nothing about
      // who wrote it, so it passes only when asked for that alone.
      const unauthenticated = result.ok && !jwks && !opts.chainOnly;
      if (opts.json) {
        printJson(result.ok ? { ...result, authenticated: jwks !== undefined } : result);
        if (!result.ok || unauthenticated) process.exitCode = ExitCode.error;
        if (unauthenticated) say(unauthenticatedError(file).message);
        return;
      }
      if (!result.ok) throw verifyError(file, result);
      if (unauthenticated) throw unauthenticatedError(file);
      print(describeVerified(file, result));
    });
}

export function trustOf(opts: { ca?: string; fingerprint?: string }, env: NodeJS.ProcessEnv = process.env): { ca?: string; fingerprint?: string } {
  const ca = opts.ca ?? env['AGENTGATE_CA'];
  const fingerprint = opts.fingerprint ?? env['AGENTGATE_FINGERPRINT'];
  return { ...(ca ? { ca } : {}), ...(fingerprint ? { fingerprint } : {}) };
}

function unauthenticatedError(file: string): AgentgateError {
  return new AgentgateError('AG_AUDIT_UNAUTHENTICATED', `${file}: the hash chain is intact, but no key set was available to check the broker's signatures, so nothing shows the broker wrote it (anyone can write a chain that hashes right)`, ExitCode.error, {
    hint: "pass --key with the broker's JWKS, or configure the broker (agentgate login --broker URL) so its key set is pinned; --chain-only accepts the integrity check alone",
  });
}

export function verifyError(file: string, r: Extract<ExportVerifyResult, { ok: false }>): AgentgateError {
  const where = r.seq !== null ? `seq ${r.seq}` : `line ${r.line}`;
  return new AgentgateError('AG_AUDIT_VERIFY_FAILED', `${file}: ${r.problem} at ${where} (line ${r.line}): ${r.message}`, ExitCode.error, {
    hint:
      r.problem === 'truncated export' || r.problem === 'truncated line'
        ? 'the file is incomplete: export again, or resume it with agentgate audit export --out FILE --after-seq N'
        : `do not trust this export from ${where} on; export the same range again from the broker and compare`,
  });
}

function describeVerified(file: string, r: Extract<ExportVerifyResult, { ok: true }>): string {
  const anchor =
    r.anchor === 'genesis'
      ? 'from the start of the log (genesis)'
      : r.anchor === 'checkpoint'
        ? `from a retention checkpoint${r.anchorSigned ? ' (signature checked)' : ''}`
        : r.anchor === 'empty'
          ? 'empty'
          : `from seq ${r.first?.seq} (anchor not tied to genesis or a checkpoint)`;
  const lines = [
    `OK ${file}: ${fmt(r.count)} events${r.last ? `, seq ${fmt(r.first?.seq ?? 0)}–${fmt(r.last.seq)}` : ''}, ${r.format}${r.segments > 1 ? `, ${r.segments} segments` : ''}; chain intact ${anchor}`,
    `  end record${r.segments > 1 ? 's' : ''}: ${r.endSigned ? "signed by the broker's key (checked)" : 'present (signature not checked)'}`,
    ...(r.filtered ? [`  filtered export: ${r.gaps} gap${r.gaps === 1 ? '' : 's'} between selected events`] : []),
    ...r.notes.map((n) => `  note: ${n}`),
  ];
  return lines.join('\n');
}

function fmt(n: number): string {
  return n.toLocaleString('en-US');
}

function mb(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

/** A one-line bar on stderr, redrawn at most ten times a second. */
function progressBar(): { update: (p: ExportProgress) => void; done: () => void } {
  const color = useColor(process.stderr);
  let drawn = false;
  const width = 30;
  return {
    update(p) {
      const from = p.fromSeq ?? 0;
      const total = p.untilSeq !== null && p.fromSeq !== null ? Math.max(1, p.untilSeq - from + 1) : undefined;
      const doneCount = p.seq !== null ? p.seq - from + 1 : 0;
      const frac = total ? Math.min(1, Math.max(0, doneCount / total)) : 0;
      const filled = Math.round(frac * width);
      const bar = (color ? '\x1b[32m' : '') + '█'.repeat(filled) + (color ? '\x1b[0m' : '') + '░'.repeat(width - filled);
      const text = `${bar} ${total ? `${Math.floor(frac * 100)}%`.padStart(4) : ''} seq ${fmt(p.seq ?? 0)}${p.untilSeq !== null ? ` / ${fmt(p.untilSeq)}` : ''}  ${mb(p.bytes)}`;
      process.stderr.write(`\r${text}\x1b[K`);
      drawn = true;
    },
    done() {
      if (drawn) process.stderr.write('\n');
    },
  };
}
