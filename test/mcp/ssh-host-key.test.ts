/**
 * `ssh_exec` trusts only the broker host key the session's known_hosts pins: an endpoint
 * presenting any other key fails the call before the session's key is offered or a command
 * is sent. A real ssh2 server on loopback plays the local endpoint.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import ssh2 from 'ssh2';
import type { AuthContext, Connection, Server, Session } from 'ssh2';
import { generateSshKeyPair, parseSshKey } from '../../src/tunnel/host-key.js';
import { writeSessionSshConfig, type SessionSshConfig } from '../../src/client/session-ssh-config.js';
import { HostKeyMismatchError, pinnedHostKey, sshExec } from '../../src/client/mcp/ssh.js';

describe('ssh_exec host key pinning', () => {
  const hostKey = generateSshKeyPair('endpoint');
  const otherKey = generateSshKeyPair('someone else');
  const clientKey = generateSshKeyPair('session');
  const blob = (k: { public: string }): Buffer => parseSshKey(k.public).getPublicSSH();
  let server: Server;
  let port = 0;
  const seen: string[] = [];
  const written: SessionSshConfig[] = [];

  before(async () => {
    server = new ssh2.Server({ hostKeys: [hostKey.private] }, (conn: Connection) => {
      conn.on('authentication', (ctx: AuthContext) => {
        seen.push(`auth ${ctx.method} ${ctx.username}`);
        if (ctx.method === 'publickey' && ctx.key.data.equals(blob(clientKey))) ctx.accept();
        else ctx.reject(['publickey']);
      });
      conn.on('ready', () => {
        conn.on('session', (accept: () => Session) => {
          accept().on('exec', (acceptExec: () => ssh2.ServerChannel, _reject: unknown, info: { command: string }) => {
            seen.push(`exec ${info.command}`);
            const ch = acceptExec();
            ch.write('ran\n');
            ch.exit(0);
            ch.end();
          });
        });
      });
      conn.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    for (const w of written) await w.remove();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const pinned = async (key: { public: string }): Promise<Buffer> => {
    const w = await writeSessionSshConfig({ target: 'box', host: '127.0.0.1', port, privateKey: clientKey.private, brokerHostKey: blob(key) });
    written.push(w);
    const found = await pinnedHostKey(w.path, '127.0.0.1', port);
    assert.ok(found, 'the known_hosts file pins a key for the endpoint');
    return found;
  };

  test('pinnedHostKey reads back the key the session known_hosts pins for [host]:port, and nothing for another port', async () => {
    const w = await writeSessionSshConfig({ target: 'box', host: '127.0.0.1', port, privateKey: clientKey.private, brokerHostKey: blob(hostKey) });
    written.push(w);
    assert.deepEqual(await pinnedHostKey(w.path, '127.0.0.1', port), blob(hostKey));
    assert.equal(await pinnedHostKey(w.path, '127.0.0.1', port + 1), undefined);
  });

  test('an endpoint presenting another host key fails the call; no key offered, nothing sent', async () => {
    seen.length = 0;
    const key = await pinned(otherKey);
    await assert.rejects(
      sshExec({ host: '127.0.0.1', port, privateKey: clientKey.private, pinnedHostKey: key, command: 'uptime', maxBytes: 1024, signal: new AbortController().signal }),
      (err: unknown) => err instanceof HostKeyMismatchError && /presented a host key other than the broker's pinned one; nothing was sent/.test(err.message),
    );
    assert.deepEqual(seen, []);
  });

  test('the pinned key: the session key logs in as the ssh config user and the command runs', async () => {
    seen.length = 0;
    const key = await pinned(hostKey);
    const r = await sshExec({ host: '127.0.0.1', port, privateKey: clientKey.private, pinnedHostKey: key, command: 'uptime', maxBytes: 1024, signal: new AbortController().signal });
    assert.deepEqual(r, { exit_code: 0, stdout: 'ran\n', stderr: '', truncated: false });
    // publickey is asked twice (may I use this key? then signed); no other method is tried.
    assert.deepEqual([...new Set(seen.filter((s) => !s.startsWith('auth none')))], ['auth publickey agentgate', 'exec uptime']);
  });
});
