/** `agentgate connect <target>` — a local, authenticated endpoint for a target, until Ctrl-C. */
import type { Command } from 'commander';
import { addBrokerOptions, addReasonOption } from '../client/broker-options.js';
import { normalizeReason } from '../shared/reason.js';
import { UsageError } from '../errors.js';
import { parseDurationMs } from '../shared/duration.js';
import { print, printJson, say } from './render.js';
import { waitForStopSignal } from './signals.js';

interface ConnectFlags {
  broker?: string;
  ca?: string;
  fingerprint?: string;
  tokenFile?: string;
  port?: string;
  bind: string;
  allowRemote?: boolean;
  loginTimeout?: string;
  receiptDir?: string;
  json?: boolean;
  reason?: string;
}

function parsePort(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`--port: expected 0-65535, got "${raw}"`, { hint: '--port 0 picks any free port' });
  return n;
}

function parseLoginTimeout(raw: string | undefined): { loginTimeoutMs?: number } {
  if (raw === undefined) return {};
  const ms = parseDurationMs(raw);
  if (ms === undefined) throw new UsageError(`--login-timeout: expected a duration like 500ms, 20s or 1m, got "${raw}"`, { hint: 'the default is 20s' });
  return { loginTimeoutMs: ms };
}

export function register(program: Command): void {
  const cmd = program
    .command('connect')
    .description('open a local endpoint for a target (Postgres: 127.0.0.1:5432) through the broker; runs until Ctrl-C')
    .argument('<target>', 'target name, as listed by agentgate targets')
    .option('--port <n>', 'local port (default: 5432 for Postgres; 0 = any free port)')
    .option('--bind <addr>', 'local address to listen on', '127.0.0.1')
    .option('--allow-remote', 'permit a non-loopback --bind address (anyone who can reach it still needs the session secret)')
    .option('--login-timeout <duration>', 'close a local connection that has not logged in within this (500ms, 20s, 1m; env AGENTGATE_LOGIN_TIMEOUT; default 20s)', process.env['AGENTGATE_LOGIN_TIMEOUT'])
    .option('--receipt-dir <dir>', 'where to save the session receipts (default: $XDG_STATE_HOME/agentgate/receipts)')
    .option('--json', 'print the connection details as one JSON document on stdout');
  addBrokerOptions(addReasonOption(cmd)).action(async (target: string, flags: ConnectFlags) => {
    const reason = normalizeReason(flags.reason);
    // Loaded here so other commands do not pay for the tunnel's modules at start-up.
    const { openConnection } = await import('../client/connect.js');
    const { renewalNotices } = await import('../client/renewal-notice.js');
    const { CLIENT_PROTOCOLS } = await import('../client/protocols.js');
    const renewalNotice = renewalNotices();
    const conn = await openConnection({
      flags: { broker: flags.broker, ca: flags.ca, fingerprint: flags.fingerprint, tokenFile: flags.tokenFile },
      target,
      port: parsePort(flags.port),
      bind: flags.bind,
      allowRemote: Boolean(flags.allowRemote),
      ...parseLoginTimeout(flags.loginTimeout),
      ...(reason !== undefined ? { reason } : {}),
      onState: (state, change) => {
        if (state === 'down') say(`agentgate: broker connection lost${change.error ? ` (${change.error.message})` : ''}, reconnecting…`);
        else if (state === 'up') say('agentgate: connected to the broker');
      },
      onRenewal: (event) => {
        const text = renewalNotice(event);
        if (text) say(text);
      },
    });
    if (flags.allowRemote && flags.bind !== '127.0.0.1') {
      say(`warning: listening on ${conn.host}, reachable from other machines; clients still need the session secret`);
    }
    if (flags.json) {
      printJson({
        target: conn.target.name,
        type: conn.target.type,
        host: conn.host,
        port: conn.port,
        ...(conn.url ? { url: conn.url } : {}),
        ...(conn.kubeconfig ? { kubeconfig: conn.kubeconfig } : {}),
        ...(conn.sshConfig ? { ssh_config: conn.sshConfig, ssh: `ssh -F ${conn.sshConfig} ${conn.target.name}` } : {}),
        session: conn.session.id,
      });
    } else {
      for (const line of CLIENT_PROTOCOLS[conn.target.type].hint(conn)) {
        if ('print' in line) print(line.print);
        else say(line.say);
      }
      say('press Ctrl-C to end the session');
    }
    await waitForStopSignal();
    say('closing the session…');
    const channels = conn.session.channels;
    await conn.closeTunnel();
    try {
      const { collectReceipts } = await import('../client/receipts.js');
      const receipts = await collectReceipts(conn.broker, conn.session.id, flags.receiptDir, { expected: channels, timeoutMs: 5_000 });
      for (const r of receipts) say(`receipt ${r.id}: ${r.path}\n  ${r.summary}`);
      if (receipts.length === 0) say('no receipts: no connection went through this session');
    } catch (err) {
      say(`agentgate: could not fetch the session receipts: ${(err as Error).message}`);
    } finally {
      await conn.close();
    }
    say(`session ${conn.session.id} closed`);
  });
}
