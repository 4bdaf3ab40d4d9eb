/**
 * `agentgate replay SESSION` — plays a session's terminal recording with its timing, or
 * prints its SQL / Kubernetes / SSH timeline. `--format asciicast --out F` saves the .cast
 * (asciinema plays it); `--json` prints the timeline as JSON lines; `--verify` checks the
 * recording against the session's signed receipt (and with --audit, the chain) offline.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { addBrokerOptions } from '../client/broker-options.js';
import { AgentgateError, ExitCode, UsageError } from '../errors.js';
import { trustOf } from './audit.js';
import { terminalJson, visible } from '../shared/display-text.js';
import { print, printJson, say } from './render.js';

interface ReplayOptions {
  broker?: string;
  ca?: string;
  fingerprint?: string;
  tokenFile?: string;
  speed: number;
  idleLimit: number;
  format?: 'asciicast' | 'timeline';
  out?: string;
  json?: boolean;
  verify?: boolean;
  cast?: string;
  receipt?: string;
  audit?: string;
  key?: string;
  raw?: boolean;
}

/** Shows `text` through the user's pager; false when no pager could be started. */
async function page(text: string): Promise<boolean> {
  const { spawn } = await import('node:child_process');
  const pager = process.env['PAGER']?.trim() || 'less -FRX';
  return new Promise<boolean>((resolve) => {
    const child = spawn('sh', ['-c', pager], { stdio: ['pipe', 'inherit', 'inherit'] });
    let started = true;
    child.once('error', () => {
      started = false;
      resolve(false);
    });
    child.stdin.on('error', () => {});
    child.stdin.end(text);
    child.once('close', (code) => {
      if (started) resolve(code !== 127);
    });
  });
}

function positive(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

export function register(program: Command): void {
  const cmd = program.command('replay <session>').description("play a session's terminal recording, or print its SQL/Kubernetes timeline");
  addBrokerOptions(cmd)
    .option('--speed <n>', 'playback speed factor', positive, 1)
    .option('--idle-limit <seconds>', 'shorten pauses longer than this', positive, 2)
    .addOption(new Option('--format <format>', 'with --out: asciicast (the .cast) or timeline (JSON lines)').choices(['asciicast', 'timeline']))
    .option('--out <file>', 'write the recording or timeline to this file (0600) instead of playing it')
    .option('--json', 'print the timeline as JSON lines on stdout')
    .option('--verify', "check the recording against the session's receipt (and --audit export) offline")
    .option('--cast <file>', 'with --verify: a downloaded recording to check (default: fetched from the broker)')
    .option('--receipt <file>', 'with --verify: the receipt (default: <receipt dir>/<session>.receipt.json)')
    .option('--audit <export>', 'with --verify: an audit export whose chain must hold the recording digest')
    .option('--key <jwks>', "with --verify: the broker's JWKS (default: the pinned key set)")
    .option('--raw', 'play the terminal output exactly as recorded, titles, clipboard writes, links and terminal queries included (default: removed, shown escaped)')
    .action(async (session: string, opts: ReplayOptions) => {
      const rec = await import('../client/recordings.js');
      if (opts.verify) {
        const { defaultReceiptDir } = await import('../client/receipts.js');
        const receipt = opts.receipt ?? join(defaultReceiptDir(), `${session}.receipt.json`);
        let file = opts.cast;
        let name: string | undefined;
        let tempDir: string | undefined;
        if (!file) {
          const { casts } = await rec.fetchSession(opts, session, true);
          const first = casts[0];
          if (!first) throw new UsageError(`session ${session} has no recording to verify`, { hint: 'SQL and Kubernetes sessions have a timeline, which is the audit chain itself: check it with agentgate receipt verify --audit' });
          const { mkdtemp } = await import('node:fs/promises');
          const { tmpdir } = await import('node:os');
          tempDir = await mkdtemp(join(tmpdir(), 'agentgate-replay-'));
          file = join(tempDir, first.name);
          await writeFile(file, first.bytes, { mode: 0o600 });
          name = first.name;
        }
        let check: Awaited<ReturnType<typeof rec.checkRecording>>;
        try {
          check = await rec.checkRecording(file, receipt, { ...(opts.key ? { key: opts.key } : {}), ...(opts.audit ? { audit: opts.audit } : {}), trust: trustOf(opts), ...(name ? { name } : {}) });
        } finally {
          if (tempDir) await rm(tempDir, { recursive: true, force: true });
        }
        if (opts.json) {
          printJson(check);
          if (!check.ok) process.exitCode = ExitCode.error;
          return;
        }
        if (!check.ok) throw new AgentgateError('AG_RECORDING_MISMATCH', `${check.file}: ${check.problem}: ${check.message}`, ExitCode.error, { hint: check.hint });
        print(`OK ${check.file}: ${check.name} sha256:${check.sha256} is attested by the signed receipt ${check.receipt}${check.chain ? ` and by recording.end at seq ${check.chain.seq} of a verified chain` : ''}`);
        return;
      }
      const wantCast = opts.format === 'asciicast' || (!opts.json && opts.format !== 'timeline');
      const { detail, casts } = await rec.fetchSession(opts, session, wantCast);
      if (opts.out) {
        if (opts.format === 'asciicast' || (opts.format === undefined && casts.length > 0)) {
          const first = casts[0];
          if (!first) throw new UsageError(`session ${session} has no terminal recording`, { hint: 'write its timeline instead: --format timeline' });
          await writeFile(opts.out, first.bytes, { mode: 0o600 });
          say(`Wrote ${opts.out} (${first.name}, ${first.bytes.length} bytes)${casts.length > 1 ? `; the session has ${casts.length} recordings, this is the first` : ''}. Play it with: asciinema play ${opts.out}`);
        } else {
          await writeFile(opts.out, detail.timeline.map((e) => JSON.stringify(e)).join('\n') + (detail.timeline.length ? '\n' : ''), { mode: 0o600 });
          say(`Wrote ${opts.out}: ${detail.timeline.length} timeline entries`);
        }
        return;
      }
      if (opts.json) {
        for (const e of detail.timeline) process.stdout.write(`${terminalJson(e)}\n`);
        return;
      }
      if (casts.length > 0) {
        for (const c of casts) {
          const cast = rec.parseCast(c.bytes.toString('utf8'));
          say(`agentgate: playing ${visible(c.name, true)} (${cast.header.width}x${cast.header.height}${opts.speed !== 1 ? `, ${opts.speed}x` : ''}; pauses over ${opts.idleLimit}s shortened)`);
          // On a terminal: space pauses, arrows seek, q quits. Without one, it just plays.
          const keys = process.stdin.isTTY && process.stdout.isTTY ? rec.keyControl(process.stdin) : undefined;
          if (keys) say('agentgate: space pauses, ← → seek 5 s, q quits');
          let r: Awaited<ReturnType<typeof rec.playCast>>;
          try {
            r = await rec.playCast(cast, { speed: opts.speed, idleLimit: opts.idleLimit, raw: opts.raw === true, ...(keys ? { control: keys.control } : {}) });
          } finally {
            keys?.stop();
          }
          for (const m of r.markers) say(`\r\n${visible(m, true)}`);
          if (keys?.control.quit) break;
        }
        return;
      }
      // The actor's subject and name come from a token; shown escaped like everything else.
      say(visible(`${detail.session}: ${detail.actor ?? '?'} → ${detail.target ?? '-'} (${detail.protocol ?? '?'}), started ${detail.started_at}, ${detail.timeline.length} entries`, true));
      const text = rec.formatTimeline(detail.timeline).join('\n');
      // On a terminal the timeline is paged ($PAGER, else less); piped, it is printed.
      if (!process.stdout.isTTY || !text || !(await page(`${text}\n`))) print(text);
    });
}
