/**
 * The whole of `agentgate run`: tunnels → child process → receipts → summary. Held
 * statements are announced on stderr while the child runs (and as GitHub Actions
 * annotations there), because the child's own client may not show PostgreSQL notices.
 */
import { appendFile } from 'node:fs/promises';
import type { BrokerSessionFlags } from './broker-session.js';
import { openConnections } from './connect.js';
import { endpointEnv, FORWARDED, runChild } from './run.js';
import { collectReceipts, type CollectedReceipt } from './receipts.js';
import { openApprovalsClient } from './approvals.js';
import { renewalNotices } from './renewal-notice.js';
import { holdNotice } from '../shared/hold-notice.js';
import { visible } from '../shared/display-text.js';

export interface RunWrappedOptions {
  flags: BrokerSessionFlags;
  targets: string[];
  command: string;
  args: string[];
  pty: boolean;
  /** See RunChildOptions.stdoutToStderr. */
  stdoutToStderr?: boolean;
  timeoutMs?: number;
  receiptDir?: string;
  env?: NodeJS.ProcessEnv;
  say: (line: string) => void;
  /** The session's reason (`--reason` / AGENTGATE_REASON). */
  reason?: string;
}

export interface RunSummary {
  exit_code: number;
  signal: string | null;
  timed_out: boolean;
  session: string;
  targets: { name: string; type: string; host: string; port: number }[];
  statements: number;
  allowed: number;
  denied: number;
  held: number;
  masked: number;
  receipts: { id: string; path: string; summary: string; verified: boolean }[];
}

export async function runWrapped(o: RunWrappedOptions): Promise<RunSummary> {
  const env = o.env ?? process.env;
  const gha = env['GITHUB_ACTIONS'] === 'true';
  let wasDown = false;
  const renewalNotice = renewalNotices();
  const conns = await openConnections({
    flags: o.flags,
    targets: o.targets.map((name) => ({ name, port: 0 })),
    bind: '127.0.0.1',
    allowRemote: false,
    env,
    ...(o.reason !== undefined ? { reason: o.reason } : {}),
    onState: (state, change) => {
      if (state === 'down') {
        wasDown = true;
        o.say(`agentgate: broker connection lost${change.error ? ` (${change.error.message})` : ''}, reconnecting…`);
      } else if (state === 'up' && wasDown) {
        wasDown = false;
        o.say('agentgate: reconnected to the broker');
      }
    },
    onRenewal: (event) => {
      const text = renewalNotice(event);
      if (text) o.say(text);
    },
  });
  const watch = new AbortController();
  // Once the child is gone, a signal must not cut the receipts short: a process the child
  // left behind can signal us (its PPID) just then. Collecting them is bounded (5 s), so a
  // user's Ctrl-C still ends this soon (a second one too: it is noted once). Installed before the child starts, so the default
  // action (exit) is never in place in between; while it runs, runChild forwards signals.
  let finishing = false;
  let noted = false;
  const hold = (sig: NodeJS.Signals): void => {
    if (!finishing || noted) return;
    noted = true;
    o.say(`agentgate: ${sig} received; saving the session's receipts first`);
  };
  for (const s of FORWARDED) process.on(s, hold);
  try {
    for (const e of conns.endpoints) o.say(`agentgate: ${e.target.name} (${e.target.type}) at ${e.host}:${e.port}`);
    const stopWatching = watchHeld(o, env, gha, watch.signal);
    const result = await runChild({
      command: o.command,
      args: o.args,
      env: endpointEnv(conns.endpoints, conns.session, env),
      pty: o.pty,
      ...(o.stdoutToStderr ? { stdoutToStderr: true } : {}),
      ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    });
    finishing = true;
    if (result.timedOut) o.say(`agentgate: ${o.command} ran past --timeout and was stopped`);
    watch.abort();
    await stopWatching;
    const channels = conns.session.channels;
    await conns.closeTunnel();
    let receipts: CollectedReceipt[] = [];
    try {
      receipts = await collectReceipts(conns.broker, conns.session.id, o.receiptDir, { expected: channels, timeoutMs: 5_000, env });
    } catch (err) {
      o.say(`agentgate: could not fetch the session receipts: ${(err as Error).message}`);
    }
    const totals = { statements: 0, allowed: 0, denied: 0, held: 0, masked: 0 };
    for (const { predicate: p } of receipts) {
      if (!p) continue;
      totals.statements += p.counts.statements;
      totals.allowed += p.counts.allowed;
      totals.denied += p.counts.denied;
      totals.held += p.counts.held;
      totals.masked += p.counts.masked;
    }
    const summary: RunSummary = {
      exit_code: result.exitCode,
      signal: result.signal,
      timed_out: result.timedOut,
      session: conns.session.id,
      targets: conns.endpoints.map((e) => ({ name: e.target.name, type: e.target.type, host: e.host, port: e.port })),
      ...totals,
      receipts: receipts.map((r) => ({ id: r.id, path: r.path, summary: r.summary, verified: r.verified })),
    };
    report(o, summary);
    if (gha) await reportToActions(env, summary);
    return summary;
  } finally {
    watch.abort();
    await conns.close().catch(() => {});
    // `hold` stays: the process ends right after the summary, and until then a leftover
    // process's signal would still turn our exit status into its own (a signal listener
    // does not keep the process alive).
  }
}

/**
 * Every statement ends allowed or denied; "held" counts those among them that waited for
 * a reviewer first (approved ones ran, the rest were denied), so it is not a third bucket.
 */
export function countsLine(s: Pick<RunSummary, 'statements' | 'allowed' | 'denied' | 'held'>): string {
  const held = s.held > 0 ? `; ${s.held} of them waited for approval first` : '';
  return `${s.statements} statement${s.statements === 1 ? '' : 's'}: ${s.allowed} allowed, ${s.denied} denied${held}`;
}

function report(o: RunWrappedOptions, s: RunSummary): void {
  o.say(`agentgate: ${countsLine(s)}, ${s.masked} value${s.masked === 1 ? '' : 's'} masked; exit ${s.exit_code}`);
  for (const r of s.receipts) o.say(`  receipt ${r.id}: ${r.path}${r.verified ? '' : ' (signature NOT verified)'}`);
  if (s.receipts.length === 0) o.say('  no receipts (no connection went through the tunnel)');
}

/** Announces this identity's requests held while the child runs. */
async function watchHeld(o: RunWrappedOptions, env: NodeJS.ProcessEnv, gha: boolean, signal: AbortSignal): Promise<void> {
  let client;
  try {
    client = await openApprovalsClient(o.flags, env);
  } catch {
    return; // announcements are a courtesy; the statement itself still waits
  }
  const seen = new Set<string>();
  try {
    await client.events(
      {
        onEvent(type, r) {
          if (!r.mine) return;
          if (type === 'created' && !seen.has(r.id)) {
            seen.add(r.id);
            // The reason names tables from the statement: escaped for the terminal.
            o.say(`agentgate: ${holdNotice(r)} (${r.rule}: ${visible(r.reason, true)})`);
            if (gha) o.say(`::notice title=agentgate: waiting for approval::${escapeAnnotation(`${r.statement} — ${holdNotice(r)}`)}`);
          } else if (type === 'decided' && r.status !== 'pending') {
            o.say(`agentgate: ${r.id} ${r.status}`);
            if (gha && r.status === 'denied') o.say(`::warning title=agentgate: denied::${escapeAnnotation(`${r.statement} — ${r.decisions.at(-1)?.reason ?? ''}`)}`);
          }
        },
      },
      signal,
    );
  } catch {
    // stream ended or failed: nothing to announce
  } finally {
    await client.close().catch(() => {});
  }
}

function escapeAnnotation(s: string): string {
  return s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

async function reportToActions(env: NodeJS.ProcessEnv, s: RunSummary): Promise<void> {
  if (s.denied > 0) process.stderr.write(`::warning title=agentgate::${s.denied} statement(s) were denied by policy\n`);
  const file = env['GITHUB_STEP_SUMMARY'];
  if (!file) return;
  const lines = [
    '### agentgate',
    '',
    `${countsLine(s)}; ${s.masked} values masked. Exit code ${s.exit_code}.`,
    '',
    '| receipt | file | summary |',
    '|---|---|---|',
    ...s.receipts.map((r) => `| \`${r.id}\` | \`${r.path}\` | ${r.summary.replace(/\|/g, '\\|')} |`),
    '',
  ];
  await appendFile(file, lines.join('\n') + '\n');
}
