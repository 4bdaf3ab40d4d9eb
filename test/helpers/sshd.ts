/**
 * A real OpenSSH server for tests: its own host key, an authorized_keys holding the
 * broker's credential, listening on a free loopback port, in the foreground (-D -e).
 * Runs as the current user (root in CI is fine: StrictModes no, UsePAM no).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Sshd {
  port: number;
  user: string;
  /** `ssh-ed25519 AAAA…` of the server's host key. */
  hostKeyLine: string;
  /** `SHA256:…` of the server's host key. */
  hostKeyFingerprint: string;
  /** The private key the broker logs in with (OpenSSH format). */
  clientPrivateKey: string;
  close(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`sshd did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface StartSshdOptions {
  /**
   * Log the broker in as this account instead of the current user (an existing account
   * with a shell, e.g. `postgres`, which the PostgreSQL helper runs as). OpenSSH treats a
   * root login differently (no privilege separation after authentication, so e.g. it
   * refuses "signal" requests); a test of what a normal account gets uses this.
   */
  user?: string;
}

export async function startSshd(dir: string, opts: StartSshdOptions = {}): Promise<Sshd> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // sshd wants its privilege separation directory.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 }).catch(() => {});
  const hostKey = join(dir, 'ssh_host_ed25519_key');
  const clientKey = join(dir, 'broker_key');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', clientKey]);
  const hostKeyLine = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(' ').slice(0, 2).join(' ');
  const fp = (await run('ssh-keygen', ['-lf', `${hostKey}.pub`])).stdout.split(' ')[1] as string;
  const user = opts.user ?? userInfo().username;
  const otherUser = user !== userInfo().username;
  // sshd reads authorized_keys as the user logging in: another account must reach it.
  await writeFile(join(dir, 'authorized_keys'), await readFile(`${clientKey}.pub`, 'utf8'), { mode: otherUser ? 0o644 : 0o600 });
  if (otherUser) for (const d of [dirname(dir), dir]) await chmod(d, 0o711);
  const port = await freePort();
  const config = join(dir, 'sshd_config');
  await writeFile(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'StrictModes no',
      // Without PAM, sshd refuses an account whose password is locked (system accounts are).
      otherUser ? 'UsePAM yes' : 'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'PermitRootLogin prohibit-password',
      'AcceptEnv LANG LC_* GIT_PROTOCOL',
      'Subsystem sftp internal-sftp',
      `AllowUsers ${user}`,
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  try {
    await waitForPort(port, 10_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}: ${stderr}`);
  }
  return {
    port,
    user,
    hostKeyLine,
    hostKeyFingerprint: fp,
    clientPrivateKey: await readFile(clientKey, 'utf8'),
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
