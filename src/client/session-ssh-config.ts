/**
 * The OpenSSH client files a `connect`/`run` session hands to ssh and git, in a private
 * 0700 directory removed when the session ends:
 *
 * - `id_ed25519`: the session's client key (0600); only its public half went to the broker.
 * - `known_hosts`: the local endpoint pinned to the broker's host key (the one the tunnel
 *   verified against discovery's fingerprint), so ssh trusts nothing else on that port.
 * - `config`: `Host <target>` with the port, user, key and known_hosts; agent and X11
 *   forwarding off (the broker refuses them anyway).
 *
 * Use: `ssh -F <config> <target>`, `GIT_SSH_COMMAND="ssh -F <config>" git clone <target>:repo.git`.
 */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The user name ssh sends: the broker ignores it (it logs in as the target's configured user). */
export const SSH_CLIENT_USER = 'agentgate';

export interface SessionSshConfig {
  /** Path of the `config` file (0600). */
  path: string;
  /** The Host alias in it (the target's name). */
  alias: string;
  remove(): Promise<void>;
}

/** `ssh-ed25519 AAAA…` from the SSH wire blob of a public key. */
export function publicKeyLine(blob: Buffer): string {
  const len = blob.readUInt32BE(0);
  const type = blob.subarray(4, 4 + len).toString('latin1');
  return `${type} ${blob.toString('base64')}`;
}

/** Host aliases ssh reads literally: the target name when it is plain, else refused. */
function aliasFor(target: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(target)) throw new Error(`target name "${target}" cannot be an ssh Host alias`);
  return target;
}

export async function writeSessionSshConfig(o: { target: string; host: string; port: number; privateKey: string; brokerHostKey: Buffer }): Promise<SessionSshConfig> {
  const alias = aliasFor(o.target);
  const dir = await mkdtemp(join(tmpdir(), 'agentgate-ssh-'));
  try {
    await chmod(dir, 0o700);
    const key = join(dir, 'id_ed25519');
    const known = join(dir, 'known_hosts');
    const path = join(dir, 'config');
    const hostPattern = o.port === 22 ? o.host : `[${o.host}]:${o.port}`;
    await writeFile(key, o.privateKey.endsWith('\n') ? o.privateKey : `${o.privateKey}\n`, { mode: 0o600 });
    await writeFile(known, `${hostPattern} ${publicKeyLine(o.brokerHostKey)}\n`, { mode: 0o600 });
    const q = (p: string): string => `"${p.replace(/"/g, '\\"')}"`;
    const config = [
      `# agentgate session for ${o.target}: removed when the session ends`,
      `Host ${alias}`,
      `  HostName ${o.host}`,
      `  Port ${o.port}`,
      `  User ${SSH_CLIENT_USER}`,
      `  IdentityFile ${q(key)}`,
      '  IdentitiesOnly yes',
      '  IdentityAgent none',
      `  UserKnownHostsFile ${q(known)}`,
      '  GlobalKnownHostsFile /dev/null',
      '  StrictHostKeyChecking yes',
      '  UpdateHostKeys no',
      '  PasswordAuthentication no',
      '  KbdInteractiveAuthentication no',
      '  ForwardAgent no',
      '  ForwardX11 no',
      '  ControlMaster no',
      '  ControlPath none',
      '',
    ].join('\n');
    await writeFile(path, config, { mode: 0o600 });
    return { path, alias, remove: () => rm(dir, { recursive: true, force: true }) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
