/**
 * One `ssh_exec` tool call: a fresh SSH connection (ssh2 Client) to the local end of this
 * `agentgate mcp` session's tunnel for the target, one `exec`, then the end. So each call
 * is one proxy session at the broker, judged, held, masked and recorded like an
 * `ssh -F <session config> target cmd` of `agentgate run` — nothing here decides anything.
 *
 * The local endpoint must present the broker's host key, the one the session's
 * known_hosts pins (the key the tunnel verified against discovery's fingerprint): any
 * other key fails the call before the session's key is offered or the command sent.
 *
 * Output is what the broker let through (masked where policy masks). At most `maxBytes`
 * bytes of stdout and stderr together are kept; past that the rest is read and dropped,
 * so the command still runs to its end (cancelling the call ends it).
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';
import { SSH_CLIENT_USER } from '../session-ssh-config.js';

export interface SshExecResult {
  /** The command's exit status; null when it ended on a signal or the channel closed without one. */
  exit_code: number | null;
  signal?: string;
  stdout: string;
  stderr: string;
  /** More output came than max_bytes: what is here is the first of it. */
  truncated: boolean;
}

export interface SshExecOptions {
  host: string;
  port: number;
  /** The session's client key (OpenSSH private key); only its public half went to the broker. */
  privateKey: string;
  /** SSH wire blob of the broker's host key: the only key the endpoint may present. */
  pinnedHostKey: Buffer;
  command: string;
  /** This call's reason: sent as the `AGENTGATE_REASON` env request, which the broker keeps for the audit and never forwards. */
  reason?: string | undefined;
  maxBytes: number;
  /** Aborting closes the connection: the broker withdraws a held command, ends a running one. */
  signal: AbortSignal;
  /** Each complete stderr line (without its line break) as it arrives. */
  onStderrLine?: (line: string) => void;
  readyTimeoutMs?: number;
}

/** The endpoint presented a host key other than the pinned one (or none was pinned). */
export class HostKeyMismatchError extends Error {
  override readonly name = 'HostKeyMismatchError';
}

/**
 * The broker host key the session's known_hosts pins for `[host]:port` (written next to
 * the session's ssh config by session-ssh-config.ts). Undefined when there is none.
 */
export async function pinnedHostKey(sshConfig: string, host: string, port: number): Promise<Buffer | undefined> {
  const text = await readFile(join(dirname(sshConfig), 'known_hosts'), 'utf8');
  const pattern = port === 22 ? host : `[${host}]:${port}`;
  for (const line of text.split('\n')) {
    const [hosts, , blob] = line.trim().split(/\s+/);
    if (hosts === undefined || blob === undefined || !hosts.split(',').includes(pattern)) continue;
    const key = Buffer.from(blob, 'base64');
    if (key.length > 0) return key;
  }
  return undefined;
}

export function sshExec(o: SshExecOptions): Promise<SshExecResult> {
  return new Promise<SshExecResult>((resolve, reject) => {
    if (o.signal.aborted) {
      reject(abortError(o.signal));
      return;
    }
    const client = new ssh2.Client();
    let settled = false;
    let wrongKey = false;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let kept = 0;
    let truncated = false;
    let exit: { code: number | null; signal?: string } = { code: null };
    let errLine = '';
    let channel: ClientChannel | undefined;

    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      o.signal.removeEventListener('abort', abort);
      fn();
      client.end();
    };
    // Cancelled: the channel is closed, then the connection. (The broker's SSH proxy does not
    // yet notice a held exec's channel or connection closing: the caller also withdraws the request.)
    const abort = (): void =>
      finish(() => {
        channel?.close();
        reject(abortError(o.signal));
      });
    o.signal.addEventListener('abort', abort, { once: true });

    const keep = (into: Buffer[], b: Buffer): void => {
      const room = o.maxBytes - kept;
      if (b.length > room) truncated = true;
      if (room <= 0) return;
      const part = b.length > room ? b.subarray(0, room) : b;
      into.push(part);
      kept += part.length;
    };
    const result = (): SshExecResult => ({
      exit_code: exit.code,
      ...(exit.signal ? { signal: exit.signal } : {}),
      stdout: Buffer.concat(out).toString('utf8'),
      stderr: Buffer.concat(err).toString('utf8'),
      truncated,
    });

    client.on('error', (e: Error & { level?: string }) => {
      finish(() =>
        reject(
          wrongKey
            ? new HostKeyMismatchError(`the local SSH endpoint ${o.host}:${o.port} presented a host key other than the broker's pinned one; nothing was sent`)
            : e.level === 'client-authentication'
              ? new Error(`the local SSH endpoint refused this session's key (${e.message})`)
              : e,
        ),
      );
    });
    client.on('close', () => finish(() => reject(new Error('the SSH connection closed before the command finished'))));
    client.once('ready', () => {
      client.exec(o.command, o.reason !== undefined ? { env: { AGENTGATE_REASON: o.reason } } : {}, (e: Error | undefined, ch: ClientChannel) => {
        if (e) {
          finish(() => reject(e));
          return;
        }
        channel = ch;
        ch.on('error', () => {
          // the channel's close follows and ends the call
        });
        ch.on('data', (b: Buffer) => keep(out, b));
        ch.stderr.on('data', (b: Buffer) => {
          keep(err, b);
          if (!o.onStderrLine) return;
          errLine += b.toString('utf8');
          let nl: number;
          while ((nl = errLine.indexOf('\n')) >= 0) {
            o.onStderrLine(errLine.slice(0, nl).replace(/\r$/, ''));
            errLine = errLine.slice(nl + 1);
          }
          // A line longer than this is no broker message: stop holding it.
          if (errLine.length > 64 * 1024) errLine = '';
        });
        ch.on('exit', (code: number | null, signal?: string) => {
          exit = code !== null && code !== undefined ? { code } : { code: null, ...(signal ? { signal } : {}) };
        });
        ch.once('close', () => finish(() => resolve(result())));
      });
    });
    try {
      client.connect({
        host: o.host,
        port: o.port,
        username: SSH_CLIENT_USER,
        privateKey: o.privateKey,
        agent: undefined,
        tryKeyboard: false,
        readyTimeout: o.readyTimeoutMs ?? 20_000,
        hostVerifier: (key: Buffer): boolean => {
          const ok = o.pinnedHostKey.length > 0 && key.equals(o.pinnedHostKey);
          wrongKey = !ok;
          return ok;
        },
      });
    } catch (e) {
      finish(() => reject(e as Error));
    }
  });
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('the call was cancelled');
}
