/**
 * `agentgate sessions [--target T] [--actor SUB] [--since TIME] [--json]` — sessions from
 * the audit log with actor, target, start, duration, counts and whether a recording exists.
 * Auditors see every session; anyone else their own.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { addBrokerOptions } from '../client/broker-options.js';
import { visible } from '../shared/display-text.js';
import { print, printJson, say } from './render.js';

interface SessionsOptions {
  broker?: string;
  ca?: string;
  fingerprint?: string;
  tokenFile?: string;
  target?: string;
  actor?: string;
  since?: string;
  limit?: number;
  json?: boolean;
}

function limitArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new InvalidArgumentError('expected a whole number 1-10000');
  return n;
}

export function register(program: Command): void {
  const cmd = program.command('sessions').description('list recorded sessions (auditors: all; others: their own) and whether a recording exists');
  addBrokerOptions(cmd)
    .option('--target <name>', "only this target's sessions")
    .option('--actor <sub>', "only this actor's sessions (auditors)")
    .option('--since <time>', 'only sessions started at or after this time (ISO-8601)')
    .option('--limit <n>', 'at most this many (the newest); default 200', limitArg)
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: SessionsOptions) => {
      const { fetchSessions } = await import('../client/recordings.js');
      const sessions = await fetchSessions(opts, { target: opts.target, actor: opts.actor, since: opts.since, limit: opts.limit });
      if (opts.json) {
        printJson({ sessions });
        return;
      }
      if (sessions.length === 0) {
        say('no sessions that you may read');
        return;
      }
      for (const s of sessions) {
        const dur = s.duration_ms === null ? 'open' : `${(s.duration_ms / 1000).toFixed(1)}s`;
        const counts = s.statements === null ? '' : ` ${s.statements} statements${s.denied ? `, ${s.denied} denied` : ''}`;
        const rec = s.recordings.length ? `recording: ${s.recordings.map((r) => r.name).join(', ')}` : 'timeline only';
        // The actor comes from a token (a CI subject names a branch): shown escaped.
        print(visible(`${s.session}  ${s.actor} → ${s.target ?? '-'} (${s.protocol ?? '?'})  ${s.started_at} ${dur}${counts}  ${rec}`, true));
      }
    });
}
