/**
 * The SSH proxy: each tunnel channel carries one local `ssh` (or git, scp…) connection.
 * The broker terminates it with an ssh2 Server (its host key is the broker's tunnel host
 * key, which the CLI pins in the session's known_hosts), accepts only the session's
 * client key, and opens its own ssh2 Client to the target with the broker's credential
 * and the target's pinned host key.
 *
 * Every request on the connection goes through the session core:
 *
 *   exec / shell / subsystem / forwarding → ProtocolSession.enforce → verdict
 *   → deny: a line on stderr, exit status 126 (subsystems, forwarding: the request refused)
 *   → hold (review): the channel waits, stderr says who must approve; resumes on approval
 *   → allow: `ssh.command.intent` durable, then the command is sent; output through the
 *     masking detectors in-stream; `ssh.command` with exit status, bytes, duration.
 *
 * Relayed: exec, shell with pty-req and window-change, signals, exit status; env only
 * for the names in SAFE_ENV, holding inert values (SAFE_ENV_VALUE). An exec keeps a pty only when the rule that lets it run says
 * `tty: true`: a terminal makes pagers and editors interactive (`man ls`, then `!sh` in
 * less), so the pty-req is answered at the exec, once its rule is known, and never
 * forwarded before the command is allowed; a pty-req after the exec is refused. An exec
 * whose terminal is refused is not run (exit 126): OpenSSH closes the channel when a pty
 * it was told to ask for (`-t`) is refused, so the command would run unseen.
 * Refused always: X11 and agent forwarding, remote port forwarding, unix sockets. Local
 * port forwarding and subsystems (sftp) only when a rule allows them, and only in a session
 * whose policy has masking off: their bytes are not text the detectors read. git's upload-pack / receive-pack speak a binary protocol: their output is
 * relayed unscanned (the audit event says so).
 */
import { createHash } from 'node:crypto';
import type { Duplex, Transform } from 'node:stream';
import type { Socket } from 'node:net';
import ssh2 from 'ssh2';
import type { AuthContext, Client, ClientChannel, Connection, PseudoTtyInfo, ServerChannel, Session, TcpipRequestInfo, WindowChangeInfo } from 'ssh2';

import type { BrokerConfig, SshTargetConfig } from '../config/types.js';
import type { AuditStore } from '../audit/store.js';
import type { AuditActor, AuditDecision, JsonValue } from '../../shared/audit-hash.js';
import type { Identity } from '../identity/types.js';
import type { Logger } from '../log.js';
import type { ApprovalService } from '../approvals/types.js';
import type { SessionLease } from '../live-sessions.js';
import type { SessionSummary } from '../session-summary.js';
import { ProtocolSession } from '../session/protocol-session.js';
import type { Verdict } from '../session/types.js';
import { parseCommand, type ParsedCommand } from '../policy/ssh-command.js';
import { sshExecTty, type SshExecTty, type SshRequest } from '../policy/ssh-rules.js';
import { createValueMasker, type ValueMasker } from '../masking/value-mask.js';
import { authenticate, parseSessionClientKey } from './client-auth.js';
import { connectUpstream } from './upstream.js';
import { SshUpstreamError } from './errors.js';
import { scanTextStream } from '../masking/text-stream.js';
import { CastWriter } from '../recording/cast.js';
import { recordingName, recordingSettings, recordingsDir } from '../recording/store.js';
import type { SessionRecording } from '../session-summary.js';

export interface SshProxyOptions {
  config: BrokerConfig;
  audit: AuditStore;
  approvals?: ApprovalService | undefined;
  logger: Logger;
  maskingKey: Buffer;
  /** The broker's SSH host key (private, OpenSSH or PEM): what local ssh clients pin. */
  hostKey: string | Buffer;
  upstreamTimeoutMs?: number;
}

export interface SshChannel {
  stream: Duplex;
  target: SshTargetConfig;
  identity: Identity;
  actor: AuditActor;
  /** The session's client public key from the tunnel; undefined = every client refused. */
  clientKey: string | undefined;
  connectSession: string | undefined;
  origin: Record<string, string | number>;
  lease?: SessionLease | undefined;
  onEnd?: ((summary: SessionSummary) => void) | undefined;
  /** The session's reason (`--reason`), as given: masked here before the log sees it. */
  reason?: string | undefined;
}

/** Environment names passed to the target; everything else a client sends is dropped. */
const SAFE_ENV = /^(?:LANG|LC_[A-Z]+|GIT_PROTOCOL|TZ)$/;
/**
 * What a passed variable may hold: a locale name (`en_US.UTF-8`, `sr_RS@latin`), a time
 * zone (`Europe/Paris`, `:/etc/localtime`, `<+0330>-3:30`), a git protocol (`version=2`).
 * A value is never judged as a command, yet the target's shell may run it: bash's arithmetic
 * (`let LC_X`, `declare -i`, an array index) evaluates `a[$(rm f)]` held in a variable.
 * So only inert data passes; anything else (`$`, brackets, quotes, blanks) is refused.
 */
const SAFE_ENV_VALUE: Record<'locale' | 'tz' | 'git', RegExp> = {
  locale: /^[A-Za-z0-9_.@+-]{0,128}$/,
  tz: /^:?[A-Za-z0-9_./+,:<>-]{0,128}$/,
  git: /^version=[0-9]{1,2}(?::[A-Za-z0-9_.=-]{1,64}){0,8}$/,
};

/** Whether the client's env request may reach the target (a safe name holding inert data). */
export function safeEnv(key: string, val: string): boolean {
  if (!SAFE_ENV.test(key)) return false;
  const kind = key === 'TZ' ? 'tz' : key === 'GIT_PROTOCOL' ? 'git' : 'locale';
  return SAFE_ENV_VALUE[kind].test(val);
}
/** An env request the broker keeps for itself: this command's reason (never forwarded). */
export const SSH_REASON_ENV = 'AGENTGATE_REASON';
/** Commands whose output is a binary protocol, relayed unscanned. */
const BINARY_COMMANDS = new Set(['git-upload-pack', 'git-receive-pack', 'git-upload-archive']);
/** The error code on record for a subsystem or forwarding refused because masking cannot read it. */
export const UNMASKABLE_STREAM = 'AG_SSH_UNMASKABLE_STREAM';
/** Exit status for a command agentgate did not run (as a shell reports "cannot execute"). */
export const REFUSED_EXIT = 126;

/** Told instead of the exit status of a command whose outcome the audit log could not take. */
const OUTCOME_UNRECORDED =
  'agentgate: AG_AUDIT_WRITE_FAILED: the audit log is unavailable, so the end of this command could not be recorded and its exit status is withheld ' +
  '(it ran; whether it finished as intended is unknown); the broker operator must restore the audit store';
/** A pty shell's unfinished line (a prompt) is released after this quiet time. */
const PROMPT_FLUSH_MS = 150;
/** The longest command recorded and shown to a reviewer whole; longer ones are refused. */
const MAX_SHOWN_COMMAND = 16_384;
/**
 * How long a pty-req's answer waits for the request it is for. OpenSSH sends pty-req, env
 * and exec together; a client that waits for the answer first (ssh2, paramiko) is told yes
 * after this, and its exec still gets a terminal only if its rule says `tty: true`.
 */
const PTY_ANSWER_WAIT_MS = 500;

export class SshProxy {
  readonly #o: SshProxyOptions;
  readonly #live = new Set<SshConnection>();

  constructor(o: SshProxyOptions) {
    this.#o = o;
  }

  get active(): number {
    return this.#live.size;
  }

  serve(ch: SshChannel): void {
    let masker: ValueMasker | undefined;
    try {
      masker = createValueMasker(this.#o.config, ch.identity, ch.target.name, this.#o.maskingKey);
    } catch (err) {
      this.#o.logger.error('ssh masking is not usable; connection refused', { target: ch.target.name, error: err });
      ch.stream.destroy();
      return;
    }
    const conn = new SshConnection(ch, this.#o, masker, () => this.#live.delete(conn));
    this.#live.add(conn);
  }

  close(): Promise<void> {
    for (const c of this.#live) c.destroy();
    return Promise.resolve();
  }
}

/** A session channel's live parts: window changes and signals go to them. */
interface LiveChannel {
  up?: ClientChannel;
  recorder?: CastWriter | undefined;
  /** The upstream channel has a pty (window changes go to it). */
  tty?: boolean;
  /** The command running on this channel (a late pty-req is noted on it). */
  rec?: CommandRecord;
}

/** A terminal the client asked for, and what the rule deciding its exec said when it arrived (a shell: always allowed). */
interface TtyRequest {
  pty: PseudoTtyInfo;
  /** The verdict must come from this rule for the pty to be forwarded. */
  decided: SshExecTty;
}

/** One command (exec), shell or subsystem on one session channel, as the audit records it. */
interface CommandRecord {
  id: number;
  kind: SshRequest['kind'];
  text: string;
  /** This command's own reason (the `AGENTGATE_REASON` env request), masked. */
  reason?: string;
  startedAt: number;
  bytesOut: number;
  bytesIn: number;
  scanned: boolean;
  /** A pty was asked for: given to the command, or refused (it ran without a terminal). */
  tty?: 'granted' | 'refused';
}

class SshConnection {
  readonly #ch: SshChannel;
  readonly #o: SshProxyOptions;
  readonly #masker: ValueMasker | undefined;
  readonly #session: ProtocolSession;
  readonly #onGone: () => void;
  readonly #channels = new Set<{ destroy(): void }>();
  readonly #pending = new Set<Promise<unknown>>();
  #conn: Connection | undefined;
  #upstream: Promise<Client> | undefined;
  #closed = false;
  /** Resolves when the session starts ending (#end): what waits on the target stops waiting. */
  readonly #ending: Promise<void>;
  #startEnding: () => void = () => {};
  /**
   * Resolves when the client's SSH connection (or the tunnel channel under it) is gone. A
   * held exec watches it as well as its own channel: ssh2 emits a channel's 'close' only
   * once its input has been read to the end, and nothing reads it while the command waits.
   */
  readonly #clientGone: Promise<void>;
  #markClientGone: () => void = () => {};
  /** Finished recordings, for the receipt's subjects. */
  readonly #recordings: SessionRecording[] = [];

  constructor(ch: SshChannel, o: SshProxyOptions, masker: ValueMasker | undefined, onGone: () => void) {
    this.#ch = ch;
    this.#o = o;
    this.#masker = masker;
    this.#onGone = onGone;
    this.#ending = new Promise<void>((resolve) => (this.#startEnding = resolve));
    this.#session = new ProtocolSession({
      protocol: 'ssh',
      idPrefix: 'sshs',
      identity: ch.identity,
      actor: ch.actor,
      target: ch.target.name,
      config: o.config,
      audit: o.audit,
      approvals: o.approvals,
      logger: o.logger,
      connectSession: ch.connectSession,
      origin: { ...ch.origin, upstream: { host: ch.target.host, port: ch.target.port, user: ch.target.user } },
      lease: ch.lease,
      onEnd: ch.onEnd ? (summary) => ch.onEnd?.({ ...summary, recordings: [...this.#recordings] }) : undefined,
      ...(ch.reason !== undefined ? { reason: masker?.field(ch.reason, 'reason')?.value ?? ch.reason } : {}),
    });
    this.#clientGone = new Promise<void>((resolve) => {
      this.#markClientGone = resolve;
    });
    const clientKey = parseSessionClientKey(ch.clientKey);
    const server = new ssh2.Server({ hostKeys: [o.hostKey], ident: 'agentgate' }, (conn: Connection) => {
      this.#conn = conn;
      conn.once('close', () => this.#markClientGone());
      conn.once('end', () => this.#markClientGone());
      conn.on('error', (err: Error) => this.#log.debug('ssh client connection error', { session: this.#session.id, error: err.message }));
      conn.on('authentication', (ctx: AuthContext) => authenticate(ctx, clientKey));
      conn.once('ready', () => this.#ready(conn));
    });
    server.on('error', (err: Error) => this.#log.debug('ssh server error', { error: err.message }));
    ch.stream.on('error', () => {});
    ch.stream.once('close', () => {
      this.#markClientGone();
      this.#track(this.#end());
    });
    server.injectSocket(ch.stream as Socket);
  }

  get #log(): Logger {
    return this.#o.logger;
  }

  destroy(): void {
    for (const c of this.#channels) c.destroy();
    this.#ch.stream.destroy();
  }

  #track(p: Promise<unknown>): void {
    this.#pending.add(p);
    p.catch((err: unknown) => this.#log.error('ssh session step failed', { session: this.#session.id, error: err })).finally(() => this.#pending.delete(p)).catch(() => {});
  }

  #ready(conn: Connection): void {
    this.#session.takeLease((notice) => {
      for (const c of this.#channels) c.destroy();
      this.#log.info('ssh session ended by the broker', { session: this.#session.id, reason: notice.reason });
      conn.end();
      // Ended here, not when the client hangs up: a client that keeps its end open (`ssh -N -L`
      // with a live forwarded connection) must not keep the upstream, or the session, alive.
      this.#track(this.#end());
      setTimeout(() => this.#ch.stream.destroy(), 2_000).unref();
    });
    this.#track(this.#session.start());
    conn.on('session', (accept: () => Session) => this.#onSession(accept()));
    conn.on('tcpip', (accept: () => ServerChannel, reject: () => void, info: TcpipRequestInfo) => {
      this.#track(this.#forwardTcpip(accept, reject, info));
    });
    // Remote forwarding, unix sockets and anything else global: refused, on record.
    conn.on('request', (_accept: (() => void) | undefined, reject: (() => void) | undefined, name: string) => {
      reject?.();
      this.#track(this.#recordRefused(name === 'tcpip-forward' ? 'remote-tcpip' : 'streamlocal', name));
    });
    conn.on('openssh.streamlocal', (_accept: unknown, reject: () => void) => {
      reject();
      this.#track(this.#recordRefused('streamlocal', 'direct-streamlocal'));
    });
  }

  #upstreamClient(): Promise<Client> {
    if (!this.#upstream) {
      this.#upstream = connectUpstream(this.#ch.target, this.#o.upstreamTimeoutMs !== undefined ? { readyTimeoutMs: this.#o.upstreamTimeoutMs } : {});
      this.#upstream
        .then((c) => {
          if (this.#closed) c.end();
          c.on('close', () => this.#conn?.end());
        })
        .catch(() => {});
    }
    return this.#upstream;
  }

  // ─────────────────────────────── session channels ───────────────────────────────

  #onSession(s: Session): void {
    let pty: PseudoTtyInfo | undefined;
    const env: Record<string, string> = {};
    let reason: string | undefined;
    const live: LiveChannel = {};
    let started = false;
    /** A pty-req's answer, held until the request it is for says what it is (or the wait ends). */
    let answerPty: ((yes: boolean) => void) | undefined;
    s.on('pty', (accept: (() => void) | undefined, reject: (() => void) | undefined, info: PseudoTtyInfo) => {
      if (started) {
        // After the exec: the command already runs with or without a terminal, decided by its rule.
        // (ssh2 sends no answer once the exec's channel is open; reject says what we mean regardless.)
        reject?.();
        if (live.rec && live.rec.tty === undefined) live.rec.tty = 'refused';
        return;
      }
      answerPty?.(true);
      pty = info;
      const timer = setTimeout(() => answerPty?.(true), PTY_ANSWER_WAIT_MS);
      timer.unref();
      answerPty = (yes) => {
        answerPty = undefined;
        clearTimeout(timer);
        if (yes) accept?.();
        else reject?.();
      };
    });
    s.on('window-change', (accept: (() => void) | undefined, _reject: unknown, info: WindowChangeInfo) => {
      if (pty) pty = { ...pty, cols: info.cols, rows: info.rows, width: info.width, height: info.height };
      if (live.tty) live.up?.setWindow(info.rows, info.cols, info.height, info.width);
      live.recorder?.resize(info.cols, info.rows);
      accept?.();
    });
    s.on('env', (accept: (() => void) | undefined, reject: (() => void) | undefined, info: { key: string; val: string }) => {
      // Answers go out in request order: a held pty answer first (a yes that forwards nothing by itself).
      answerPty?.(true);
      if (info.key === SSH_REASON_ENV && info.val.trim() !== '' && info.val.length <= 1000) {
        reason = info.val.trim();
        accept?.();
      } else if (safeEnv(info.key, info.val) && Object.keys(env).length < 32) {
        env[info.key] = info.val;
        accept?.();
      } else reject?.();
    });
    s.on('signal', (accept: (() => void) | undefined, _reject: unknown, info: { name: string }) => {
      live.up?.signal(info.name);
      accept?.();
    });
    s.on('auth-agent', (_accept: unknown, reject: (() => void) | undefined) => {
      answerPty?.(true);
      reject?.();
      this.#track(this.#recordRefused('agent', ''));
    });
    s.on('x11', (_accept: unknown, reject: (() => void) | undefined) => {
      answerPty?.(true);
      reject?.();
      this.#track(this.#recordRefused('x11', ''));
    });
    const once = (fn: () => Promise<void>): void => {
      if (started) return;
      started = true;
      this.#track(fn());
    };
    s.on('exec', (accept: () => ServerChannel, _reject: () => void, info: { command: string }) => {
      const req = { kind: 'exec' as const, command: parseCommand(info.command) };
      let tty: TtyRequest | undefined;
      if (pty && !started) {
        // The rule that will decide the command answers the pty-req, before the exec's own answer (replies go in order).
        const decided = sshExecTty(this.#ch.identity, this.#ch.target.name, this.#o.config.policies, req);
        tty = { pty, decided };
        answerPty?.(decided.tty);
      }
      const channel = accept();
      // The environment as it was when the command was judged: an env request while it is held does not ride on its approval.
      once(() => this.#run(channel, req, { env: { ...env }, tty, reason }, live));
    });
    s.on('shell', (accept: () => ServerChannel) => {
      // A shell is interactive by definition: its pty is what `shell: true` allows.
      answerPty?.(true);
      const channel = accept();
      once(() => this.#run(channel, { kind: 'shell' }, { env: { ...env }, tty: pty ? { pty, decided: { rule: null, effect: 'allow', tty: true } } : undefined, reason }, live));
    });
    // No 'sftp' listener: ssh2 would then hand out its own SFTP server, not the raw channel
    // relayed here; sftp comes as a subsystem like any other.
    s.on('subsystem', (accept: () => ServerChannel, _reject: () => void, info: { name: string }) => {
      answerPty?.(false);
      // Accepted at once, as an exec is: the client's first packet (sftp's INIT) follows the
      // request without waiting for its answer, and ssh2 drops data for a channel not yet
      // accepted. A refusal then says why on stderr and closes the channel.
      if (started) return;
      const channel = accept();
      once(() => this.#subsystem(info.name, channel));
    });
  }

  /** What a command is shown as (audit, reviewers): masked by the detectors. */
  /** A command as recorded and shown to a reviewer: masked, and whole (a longer one is refused before it is judged). */
  #shown(text: string): string {
    const m = this.#masker?.field(text, undefined);
    const t = m ? (m.value ?? '[masked]') : text;
    return t.length > MAX_SHOWN_COMMAND ? `${t.slice(0, MAX_SHOWN_COMMAND)}… [agentgate: ${t.length - MAX_SHOWN_COMMAND} more characters]` : t;
  }

  async #decide(req: SshRequest, text: string, reason?: string): Promise<Verdict> {
    const classification: Record<string, unknown> =
      req.kind === 'exec' ? { kind: 'exec', simple: req.command.simple, features: req.command.features } : { kind: req.kind };
    const fpText = req.kind === 'exec' ? `exec\n${req.command.forwarded}` : `${req.kind}\n${text}`;
    return this.#session.enforce({
      policy: { protocol: 'ssh', ssh: req },
      statement: text,
      classification,
      ...(reason !== undefined ? { requesterReason: reason } : {}),
      fingerprint: createHash('sha256').update(fpText).digest('hex'),
    });
  }

  /** A verdict that may be a hold: waits for the approval, telling the client on stderr. */
  async #settle(verdict: Verdict, say: (line: string) => void, gone: Promise<void>): Promise<Exclude<Verdict, { kind: 'hold' }>> {
    if (verdict.kind !== 'hold') return verdict;
    say(`${prefixed(verdict.message)} (waiting…)`);
    const left = gone.then(() => 'gone' as const);
    const r = await Promise.race([verdict.outcome, left]);
    if (r === 'gone') {
      verdict.withdraw('the client disconnected');
      return { kind: 'deny', decision: { ...verdict.decision, reason: 'the client disconnected while held' }, message: '' };
    }
    if (r.kind === 'allow') say(`agentgate: approval ${verdict.approval} granted; running`);
    return r as Exclude<Verdict, { kind: 'hold' }>;
  }

  async #run(channel: ServerChannel, req: Extract<SshRequest, { kind: 'exec' | 'shell' }>, opts: { env: Record<string, string>; tty: TtyRequest | undefined; reason: string | undefined }, live: LiveChannel): Promise<void> {
    this.#channels.add(channel);
    channel.on('error', () => {});
    const gone = Promise.race([new Promise<void>((res) => channel.once('close', () => res())), this.#clientGone]);
    const say = (line: string): void => {
      if (line && channel.writable) channel.stderr.write(`${line}\r\n`);
    };
    const refused = this.#session.refusal;
    const command: ParsedCommand | undefined = req.kind === 'exec' ? req.command : undefined;
    const text = command ? this.#shown(command.raw) : 'shell';
    const rec: CommandRecord = { id: this.#session.nextRequestId(), kind: req.kind, text, startedAt: performance.now(), bytesOut: 0, bytesIn: 0, scanned: this.#masker !== undefined };
    if (opts.reason !== undefined) rec.reason = this.#masker?.field(opts.reason, 'reason')?.value ?? opts.reason;
    // Refused until the verdict shows the rule that allowed the terminal is the one that let the command run.
    if (opts.tty) rec.tty = 'refused';
    live.rec = rec;
    if (refused) {
      this.#session.counts.statements++;
      this.#session.counts.denied++;
      await this.#recordOutcome(rec, { effect: 'deny', rule: null, reason: refused.message }, null, 'refused');
      this.#finish(channel, say, `${refused.message}; ${refused.hint}`);
      return;
    }
    // What a reviewer approves and the audit log holds is the whole command, or it does not run.
    if (command && command.raw.length > MAX_SHOWN_COMMAND) {
      const reason = `the command is longer than the ${MAX_SHOWN_COMMAND} characters agentgate records and shows a reviewer in full`;
      this.#session.counts.statements++;
      this.#session.counts.denied++;
      await this.#recordOutcome(rec, { effect: 'deny', rule: null, reason }, null, 'refused');
      this.#finish(channel, say, `agentgate: ${reason}; put it in a script on the host; nothing was run`);
      return;
    }
    const noTty = (rule: string | null, judged: boolean): Promise<void> => this.#refuseTerminal(channel, say, rec, rule, text, judged);
    // Refused before any hold: an approver is never asked about a run that cannot happen.
    if (opts.tty && !opts.tty.decided.tty && opts.tty.decided.effect !== 'deny') return noTty(opts.tty.decided.rule, false);
    const verdict = await this.#settle(await this.#decide(req, text, rec.reason), say, gone);
    if (verdict.kind === 'deny') {
      await this.#recordOutcome(rec, verdict.decision, null, 'refused');
      this.#finish(channel, say, verdict.message ? `${prefixed(verdict.message)}; nothing was run` : '');
      return;
    }
    // A shell keeps its pty; an exec only when the rule that let it run (or released its hold) says tty.
    const ttyInfo = opts.tty && (req.kind === 'shell' || (opts.tty.decided.tty && verdict.decision.rule === opts.tty.decided.rule)) ? opts.tty.pty : undefined;
    if (opts.tty && !ttyInfo) return noTty(verdict.decision.rule ?? null, true);
    if (ttyInfo) rec.tty = 'granted';
    // The intent is on record before the target sees the command.
    try {
      await this.#session.record({ type: 'ssh.command.intent', detail: this.#detail(rec, command), decision: verdict.decision, outcome: null });
    } catch {
      this.#finish(channel, say, 'agentgate: the audit log is unavailable, so nothing is forwarded; nothing was run');
      return;
    }
    let client: Client;
    try {
      client = await this.#upstreamClient();
    } catch (err) {
      const e = err instanceof SshUpstreamError ? err : undefined;
      this.#session.counts.errors++;
      await this.#recordOutcome(rec, verdict.decision, null, e?.code ?? 'upstream error');
      this.#finish(channel, say, e ? `agentgate: ${e.message}\r\nhint: ${e.hint ?? ''}` : 'agentgate: cannot reach the target', 255);
      return;
    }
    const pty = ttyInfo ? { rows: ttyInfo.rows, cols: ttyInfo.cols, width: ttyInfo.width, height: ttyInfo.height, term: ttyInfo.term } : undefined;
    let up: ClientChannel;
    try {
      up = await new Promise<ClientChannel>((resolve, reject) => {
        const cb = (err: Error | undefined, c: ClientChannel): void => (err ? reject(err) : resolve(c));
        if (command) client.exec(command.forwarded, { env: opts.env, ...(pty ? { pty } : {}) }, cb);
        else client.shell(pty ?? false, { env: opts.env }, cb);
      });
    } catch (err) {
      this.#session.counts.errors++;
      await this.#recordOutcome(rec, verdict.decision, null, (err as Error).message);
      this.#finish(channel, say, `agentgate: the target refused the ${req.kind}: ${(err as Error).message}`, 255);
      return;
    }
    live.up = up;
    live.tty = pty !== undefined;
    let exit: { code: number | null; signal?: string } | undefined;
    up.on('exit', (code: number | null, signal?: string) => {
      exit = code !== null && code !== undefined ? { code } : { code: null, ...(signal ? { signal } : {}) };
    });
    // Ending the session (the broker's end, the client gone) ends the command, not only its channel.
    const stop = { destroy: (): void => stopRemote(up, exit === undefined) };
    this.#channels.add(stop);
    // Only a plain `git-upload-pack …` is the binary protocol: in `git-upload-pack x; cat f` the rest is text, scanned.
    const binary = command !== undefined && command.simple && BINARY_COMMANDS.has(command.segments[0]?.[0] ?? '');
    // What the client is shown, recorded as it goes (binary protocols are not terminal sessions).
    const recorder = binary ? undefined : this.#startRecording(rec, pty);
    live.recorder = recorder;
    rec.scanned = this.#masker !== undefined && !binary;
    const scan = (): Transform | undefined =>
      rec.scanned && this.#masker ? scanTextStream(this.#masker, { onMasked: (n) => (this.#session.counts.masked += n), ...(pty ? { quietFlushMs: PROMPT_FLUSH_MS } : {}) }) : undefined;
    const outScan = scan();
    const errScan = scan();
    const count = (b: Buffer): void => {
      rec.bytesOut += b.length;
    };
    up.on('data', count);
    up.stderr.on('data', count);
    const outDone = relay(up, outScan, channel, recorder ? (b) => recorder.output(b, 'stdout') : undefined);
    const errDone = relay(up.stderr, errScan, channel.stderr, recorder ? (b) => recorder.output(b, 'stderr') : undefined);
    // The client's input, only when the target opts in (`recording: { input: true }`): it may hold typed passwords.
    const recordInput = recorder !== undefined && recordingSettings(this.#o.config, this.#ch.target).input;
    channel.on('data', (b: Buffer) => {
      rec.bytesIn += b.length;
      if (recordInput) recorder.input(b);
    });
    channel.pipe(up);
    const upClosed = new Promise<void>((res) => up.once('close', () => res()));
    await Promise.race([Promise.all([upClosed, outDone, errDone]), gone.then(() => stop.destroy())]);
    await upClosed;
    this.#channels.delete(stop);
    live.recorder = undefined;
    if (recorder) await this.#finishRecording(rec, recorder);
    if (exit && exit.code !== null && exit.code !== 0) this.#session.counts.errors++;
    this.#session.counts.bytes += rec.bytesOut;
    const recorded = await this.#recordOutcome(rec, verdict.decision, exit ?? { code: null }, null);
    if (channel.writable && !recorded) {
      // The client learns that the command finished only once that is on record: without
      // its outcome, no exit status goes out (the client reports the channel as lost).
      channel.stderr.write(`${OUTCOME_UNRECORDED}\r\n`);
      channel.end();
    } else if (channel.writable) {
      if (exit && exit.code !== null) channel.exit(exit.code);
      else if (exit?.signal) channel.exit(exit.signal.replace(/^SIG/, ''), false, '');
      else channel.exit(255);
      channel.end();
    }
    this.#channels.delete(channel);
  }

  async #subsystem(name: string, channel: ServerChannel): Promise<void> {
    const rec: CommandRecord = { id: this.#session.nextRequestId(), kind: 'subsystem', text: name, startedAt: performance.now(), bytesOut: 0, bytesIn: 0, scanned: false };
    this.#channels.add(channel);
    channel.on('error', () => {});
    const say = (line: string): void => {
      if (line && channel.writable) channel.stderr.write(`${line}\r\n`);
    };
    const reject = (message = `agentgate: the ${name} subsystem is refused`): void => this.#finish(channel, say, message);
    const refusal = this.#session.refusal;
    if (refusal) {
      reject(`${refusal.message}; ${refusal.hint}`);
      return;
    }
    // A subsystem cannot wait for a human: a hold is refused at once (the request stays for the approver).
    const verdict = await this.#decide({ kind: 'subsystem', name }, name);
    if (verdict.kind !== 'allow') {
      if (verdict.kind === 'hold') verdict.withdraw('subsystems are not held');
      await this.#recordOutcome(rec, verdict.kind === 'deny' ? verdict.decision : { ...verdict.decision, effect: 'deny', reason: 'subsystems cannot wait for approval' }, null, 'refused');
      reject(verdict.kind === 'deny' && verdict.message ? prefixed(verdict.message) : `agentgate: the ${name} subsystem needs an approval, and a subsystem cannot wait for one; refused`);
      return;
    }
    if (this.#masker) return this.#refuseUnmaskable(rec, verdict.decision, (why) => reject(`agentgate: ${why}`), `the ${name} subsystem carries files in a binary protocol`);
    await this.#session.record({ type: 'ssh.command.intent', detail: this.#detail(rec, undefined), decision: verdict.decision, outcome: null });
    let up: ClientChannel;
    try {
      const client = await this.#upstreamClient();
      up = await new Promise<ClientChannel>((resolve, rej) => client.subsys(name, (err, c) => (err ? rej(err) : resolve(c))));
    } catch (err) {
      this.#session.counts.errors++;
      await this.#recordOutcome(rec, verdict.decision, null, (err as Error).message);
      reject(`agentgate: the target refused the ${name} subsystem: ${(err as Error).message}`);
      return;
    }
    this.#channels.add(up);
    up.on('data', (b: Buffer) => (rec.bytesOut += b.length));
    channel.on('data', (b: Buffer) => (rec.bytesIn += b.length));
    up.pipe(channel);
    channel.pipe(up);
    await new Promise<void>((res) => up.once('close', () => res()));
    this.#channels.delete(up);
    this.#channels.delete(channel);
    this.#session.counts.bytes += rec.bytesOut;
    await this.#recordOutcome(rec, verdict.decision, { code: 0 }, null);
    channel.end();
  }

  async #forwardTcpip(accept: () => ServerChannel, reject: () => void, info: TcpipRequestInfo): Promise<void> {
    const destination = `${info.destIP}:${info.destPort}`;
    const rec: CommandRecord = { id: this.#session.nextRequestId(), kind: 'forwarding', text: `tcpip ${destination}`, startedAt: performance.now(), bytesOut: 0, bytesIn: 0, scanned: false };
    const verdict = this.#session.refusal ? undefined : await this.#decide({ kind: 'forwarding', what: 'tcpip', destination }, rec.text);
    if (!verdict || verdict.kind !== 'allow') {
      if (verdict?.kind === 'hold') verdict.withdraw('forwarding is not held');
      reject();
      await this.#recordOutcome(rec, verdict?.kind === 'deny' ? verdict.decision : { effect: 'deny', rule: null, reason: 'forwarding cannot wait for approval' }, null, 'refused');
      return;
    }
    if (this.#masker) return this.#refuseUnmaskable(rec, verdict.decision, () => reject(), `a forwarded connection (to ${destination}) carries whatever that service sends`);
    await this.#session.record({ type: 'ssh.command.intent', detail: this.#detail(rec, undefined), decision: verdict.decision, outcome: null });
    let up: ClientChannel;
    try {
      const client = await this.#upstreamClient();
      up = await new Promise<ClientChannel>((resolve, rej) => client.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, c) => (err ? rej(err) : resolve(c))));
    } catch (err) {
      reject();
      await this.#recordOutcome(rec, verdict.decision, null, (err as Error).message);
      return;
    }
    const channel = accept();
    channel.on('error', () => {});
    this.#channels.add(channel);
    up.on('data', (b: Buffer) => (rec.bytesOut += b.length));
    up.pipe(channel).pipe(up);
    // The forwarded connection ends with the session: a destroyed client channel does not end
    // the pipe into `up`, and ending the upstream connection does not close `up` either.
    const ended = await Promise.race([new Promise<boolean>((res) => up.once('close', () => res(false))), this.#ending.then(() => true)]);
    up.destroy();
    channel.destroy();
    this.#channels.delete(channel);
    await this.#recordOutcome(rec, verdict.decision, ended ? null : { code: 0 }, ended ? 'ended with the session' : null);
  }

  // ─────────────────────────────── recording ───────────────────────────────

  /** A recording for one exec or shell, when the target's (or broker's) `recording:` has it on. */
  #startRecording(rec: CommandRecord, pty: { cols: number; rows: number } | undefined): CastWriter | undefined {
    const settings = recordingSettings(this.#o.config, this.#ch.target);
    if (!settings.enabled) return undefined;
    try {
      return new CastWriter({
        dir: recordingsDir(this.#o.config),
        name: recordingName(this.#session.id, rec.id),
        maxBytes: settings.maxBytes,
        header: {
          width: pty?.cols || 80,
          height: pty?.rows || 24,
          timestamp: Math.floor(Date.now() / 1000),
          title: `agentgate ssh ${this.#ch.actor.sub} @ ${this.#ch.target.name} session ${this.#session.id} #${rec.id}: ${rec.text.length > 200 ? `${rec.text.slice(0, 200)}…` : rec.text}`,
        },
      });
    } catch (err) {
      this.#log.error('ssh recording could not be started; the command runs unrecorded', { session: this.#session.id, error: err });
      return undefined;
    }
  }

  /** Closes the file and puts its digest in the chain (`recording.end`); the receipt lists it. */
  async #finishRecording(rec: CommandRecord, recorder: CastWriter): Promise<void> {
    try {
      const f = await recorder.close();
      await this.#session.record({
        type: 'recording.end',
        detail: { id: rec.id, format: 'asciicast-v2', name: f.name, sha256: f.sha256, bytes: f.bytes, events: f.events, ...(f.cutAt !== null ? { cut_at: f.cutAt } : {}) },
        decision: null,
        outcome: { status: 'ok', bytes: f.bytes },
      });
      this.#recordings.push({ name: f.name, sha256: f.sha256 });
    } catch (err) {
      this.#log.error('ssh recording could not be finished', { session: this.#session.id, error: err });
    }
  }

  // ─────────────────────────────── audit ───────────────────────────────

  #detail(rec: CommandRecord, command: ParsedCommand | undefined): Record<string, JsonValue> {
    return {
      id: rec.id,
      kind: rec.kind,
      command: rec.text,
      ...(rec.reason !== undefined ? { reason: rec.reason } : {}),
      ...(command ? { simple: command.simple, ...(command.features.length ? { features: command.features } : {}) } : {}),
      ...(rec.kind === 'exec' || rec.kind === 'shell' ? { output_scanned: rec.scanned } : {}),
      ...(rec.tty !== undefined ? { tty: rec.tty } : {}),
    };
  }

  /**
   * `ssh.command` with the decision and, for what ran, its exit status, bytes and duration.
   * Whether it is on record (false: the audit log failed; the broker's log says why).
   */
  async #recordOutcome(rec: CommandRecord, decision: AuditDecision, exit: { code: number | null; signal?: string } | null, error: string | null): Promise<boolean> {
    const duration_ms = Math.round((performance.now() - rec.startedAt) * 1000) / 1000;
    try {
      await this.#session.record({
        type: 'ssh.command',
        detail: {
          ...this.#detail(rec, undefined),
          ...(exit ? { exit_status: exit.code, ...(exit.signal ? { signal: exit.signal } : {}), bytes_to_client: rec.bytesOut, bytes_to_target: rec.bytesIn } : {}),
          ...(error ? { error } : {}),
        },
        decision,
        outcome: { status: exit && exit.code === 0 ? 'ok' : 'error', bytes: rec.bytesOut + rec.bytesIn, duration_ms },
      });
      return true;
    } catch (err) {
      this.#log.error('could not record an ssh command', { session: this.#session.id, error: err });
      return false;
    }
  }

  /** An exec that asked for a terminal its rule does not give: not run, on record as refused. */
  async #refuseTerminal(channel: ServerChannel, say: (line: string) => void, rec: CommandRecord, rule: string | null, text: string, judged: boolean): Promise<void> {
    // `judged`: enforce already counted it (as allowed); else it is counted here, as refused.
    if (!judged) this.#session.counts.statements++;
    this.#session.counts.denied++;
    const reason = `rule ${rule ?? '(none)'} allows \`${text.slice(0, 200)}\` only without a terminal (a pty needs tty: true on the rule)`;
    await this.#recordOutcome(rec, { effect: 'deny', rule, reason }, null, 'refused');
    this.#finish(channel, say, `agentgate: ${reason}; run it without -t; nothing was run`);
  }

  /**
   * A subsystem or a forwarding a rule allows, in a session whose output is masked: its
   * bytes are not text the detectors can read (sftp's packets cut a file anywhere; a
   * forwarded port speaks any protocol), so nothing unmasked may pass through it. Refused
   * before the target sees it, on record with the way out (as Kubernetes port-forward).
   */
  async #refuseUnmaskable(rec: CommandRecord, decision: AuditDecision, reject: (why: string) => void, what: string): Promise<void> {
    this.#session.counts.denied++;
    const reason = `${what}, which agentgate cannot read to mask; refused because this session's output is masked (use an identity whose policy has masking: off for this target, or a command whose output is text)`;
    await this.#recordOutcome(rec, { ...decision, effect: 'deny', reason }, null, `${UNMASKABLE_STREAM}: refused`);
    reject(`${reason} [${UNMASKABLE_STREAM}]`);
  }

  /** A refused request's channel: the reason on stderr, the exit status, the end. */
  #finish(channel: ServerChannel, say: (line: string) => void, message: string, status = REFUSED_EXIT): void {
    say(message);
    if (channel.writable) {
      channel.exit(status);
      channel.end();
    }
    this.#channels.delete(channel);
  }

  async #recordRefused(what: Extract<SshRequest, { kind: 'forwarding' }>['what'], name: string): Promise<void> {
    this.#session.counts.statements++;
    this.#session.counts.denied++;
    const rec: CommandRecord = { id: this.#session.nextRequestId(), kind: 'forwarding', text: `${what}${name ? ` (${name})` : ''}`, startedAt: performance.now(), bytesOut: 0, bytesIn: 0, scanned: false };
    await this.#recordOutcome(rec, { effect: 'deny', rule: null, reason: `${what} forwarding is not relayed by agentgate` }, null, 'refused');
  }

  async #end(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#startEnding();
    for (const c of this.#channels) c.destroy();
    this.#upstream?.then((c) => c.end()).catch(() => {});
    const pending = [...this.#pending];
    await Promise.allSettled(pending);
    this.#onGone();
    await this.#session.end();
  }
}

/** Messages on the client's stderr say who speaks. */
function prefixed(message: string): string {
  return message.startsWith('agentgate:') ? message : `agentgate: ${message}`;
}

/** Output to the client, through the scanner when there is one; resolves when all of it was written. */
function relay(from: NodeJS.ReadableStream, scan: Transform | undefined, to: NodeJS.WritableStream, tap?: (b: Buffer | string) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    const src = scan ? from.pipe(scan) : from;
    src.on('data', (b: Buffer) => {
      tap?.(b);
      try {
        to.write(b);
      } catch {
        // the client went away
      }
    });
    src.once('end', () => resolve());
    src.once('error', () => resolve());
    scan?.once('error', (err: Error) => {
      const line = `\r\nagentgate: ${err.message}\r\n`;
      tap?.(line);
      try {
        to.write(line);
      } catch {
        // gone
      }
      resolve();
    });
  });
}

/**
 * Closes an upstream exec or shell channel; while its command still runs (no exit status
 * yet) its process group is killed first, with RFC 4254's "signal" request (OpenSSH
 * killpg()s the session's group). sshd leaves a command without a terminal running when its
 * channel closes (it only closes the pipes), so closing alone let a command the broker ended
 * run on at the target. What detaches itself (setsid, a job-control shell's background jobs)
 * is out of the group and out of reach.
 */
function stopRemote(up: ClientChannel, running: boolean): void {
  if (running) {
    try {
      up.signal('KILL');
    } catch {
      // The channel is already closing: nothing more can be asked of it.
    }
  }
  up.close();
}
