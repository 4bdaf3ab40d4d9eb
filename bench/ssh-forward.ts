/**
 * The `ssh -L` baseline: a throwaway OpenSSH sshd on a loopback port (its own host key,
 * config and authorized key in a temp dir) and an `ssh -N -L` client forwarding a local
 * port to PostgreSQL through it — the classic "bastion tunnel" agentgate replaces.
 */
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { accepts, freePort, isRunning, run, runOk, spawnTracked, stopChild, tail, waitUntil } from './procs.js';

export const SSHD = '/usr/sbin/sshd';
export const SSH = 'ssh';
/** sshd's compiled-in privilege separation dir; normally made by the service unit. */
const PRIVSEP_DIR = '/run/sshd';

export interface SshForward {
  /** Local port of the forward (connect PostgreSQL clients here). */
  port: number;
  version: string;
  close(): Promise<void>;
}

/** Direct children of a process (Linux /proc). */
async function childPids(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  return text.split(' ').filter(Boolean).map(Number);
}

export async function sshAvailable(): Promise<boolean> {
  return existsSync(SSHD) && (await runOk('sh', ['-c', 'command -v ssh && command -v ssh-keygen']).then(() => true, () => false));
}

export async function startSshForward(pgPort: number): Promise<SshForward> {
  const dir = await mkdtemp(join(tmpdir(), 'agentgate-bench-ssh-'));
  await chmod(dir, 0o700);
  let madePrivsep = false;
  let sshd: ChildProcess | undefined;
  let ssh: ChildProcess | undefined;
  const close = async (): Promise<void> => {
    // Client first, then let sshd reap its per-connection child before it goes itself,
    // so no orphaned session process is left for init.
    if (ssh) await stopChild(ssh);
    if (sshd?.pid !== undefined && isRunning(sshd)) {
      const pid = sshd.pid;
      await waitUntil('sshd session to end', async () => (await childPids(pid)).length === 0, { timeoutMs: 5_000 }).catch(() => {});
    }
    if (sshd) await stopChild(sshd);
    await rm(dir, { recursive: true, force: true });
    if (madePrivsep) await rmdir(PRIVSEP_DIR).catch(() => {});
  };
  try {
    const hostKey = join(dir, 'host_ed25519');
    const userKey = join(dir, 'id_ed25519');
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'agentgate-bench-host', '-f', hostKey]);
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'agentgate-bench-user', '-f', userKey]);
    const authorized = join(dir, 'authorized_keys');
    await copyFile(`${userKey}.pub`, authorized);
    await chmod(authorized, 0o600);
    if (!existsSync(PRIVSEP_DIR)) {
      await mkdir(PRIVSEP_DIR, { mode: 0o755 });
      madePrivsep = true;
    }
    const version = (await run(SSH, ['-V'])).stderr.trim(); // ssh -V answers on stderr
    const sshPort = await freePort();
    const config = join(dir, 'sshd_config');
    await writeFile(config, [
      `Port ${sshPort}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${authorized}`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'AllowTcpForwarding yes',
      'UsePAM no',
      'StrictModes no',
      'PidFile none',
      'LogLevel ERROR',
      '',
    ].join('\n'));
    sshd = spawnTracked(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    const sshdLog = tail(sshd.stderr);
    await waitUntil('sshd to listen', () => accepts(sshPort), { child: sshd, log: sshdLog });

    const localPort = await freePort();
    ssh = spawnTracked(SSH, [
      '-F', '/dev/null', '-N', '-T',
      '-L', `127.0.0.1:${localPort}:127.0.0.1:${pgPort}`,
      '-p', String(sshPort), '-i', userKey,
      '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
      '-o', 'ExitOnForwardFailure=yes', '-o', 'LogLevel=ERROR',
      'root@127.0.0.1',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    const sshLog = tail(ssh.stderr);
    await waitUntil('the ssh -L forward to accept connections', () => accepts(localPort), { child: ssh, log: () => sshLog() + sshdLog() });
    return { port: localPort, version, close };
  } catch (err) {
    await close();
    throw err;
  }
}
