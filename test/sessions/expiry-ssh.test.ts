/**
 * An SSH session dies with its credential, like a Postgres or Kubernetes one: a running
 * command on a tunnel whose token expires is cut (session.end `credential_expired`), and a
 * new ssh on the same tunnel is refused before sshd runs anything; a session that only
 * forwards a port (`ssh -N -L`) ends too, and so does the connection it carried. Real ssh
 * and sshd, the real broker and tunnel.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { connect, createServer, type Socket } from 'node:net';
import { TARGET, eventually, startSshStack, type SshStack } from '../ssh/stack.js';
import { freePort } from '../helpers/sshd.js';

const POLICIES: PolicyConfig[] = [
  { name: 'agents-ssh', subjects: { groups: ['ai-agents'] }, targets: [TARGET], rules: [{ name: 'any', ssh: { commands: ['*'] }, effect: 'allow', extra: {} }] },
];

describe('ssh sessions end with their credential', () => {
  let stack: SshStack;
  before(async () => {
    stack = await startSshStack(POLICIES, undefined, { tokenExpiresIn: 12, sessions: { expiryLeewaySeconds: 0 } });
  });
  after(async () => {
    await stack?.close();
  });

  test('at expiry a running command is cut, and a new one is refused unrun', async () => {
    const child = stack.spawn('ssh', ['-F', stack.sshConfig, TARGET, 'sleep 60']);
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    const started = Date.now();
    await eventually('the command is running', async () => (await stack.events()).find((e) => e.type === 'ssh.command.intent' && e.detail['command'] === 'sleep 60'), 15_000);

    const end = await eventually(
      'the ssh session to end for expiry',
      async () => (await stack.events()).find((e) => e.type === 'session.end' && e.actor?.sub === 'agent-7' && e.detail['reason'] === 'credential_expired'),
      20_000,
    );
    assert.match(String(end.detail['message']), /credential of agent-7 expired/);
    const code = await exited;
    assert.notEqual(code, 0);
    assert.ok(Date.now() - started < 45_000, 'ssh ended with the credential, not with sleep 60');

    const commandsBefore = (await stack.events()).filter((e) => e.type === 'ssh.command.intent').length;
    const again = await stack.run('ssh', ['-F', stack.sshConfig, TARGET, 'echo again'], { timeoutMs: 20_000 });
    assert.notEqual(again.code, 0);
    assert.ok(!again.stdout.includes('again'), again.stdout);
    const events = await stack.events();
    assert.equal(events.filter((e) => e.type === 'ssh.command.intent').length, commandsBefore, 'no command intent after expiry');
  });
});

describe('an ssh session that only forwards a port ends with its credential', () => {
  let stack: SshStack;
  before(async () => {
    const forwarding: PolicyConfig[] = [
      { name: 'agents-ssh', subjects: { groups: ['ai-agents'] }, targets: [TARGET], masking: { mode: 'off' }, rules: [{ name: 'tunnels', ssh: { forwarding: true }, effect: 'allow', extra: {} }] },
    ];
    stack = await startSshStack(forwarding, undefined, { tokenExpiresIn: 12, sessions: { expiryLeewaySeconds: 0 } });
  });
  after(async () => {
    await stack?.close();
  });

  test('at expiry `ssh -N -L` with a live forwarded connection is ended, and the connection to the service closed', async () => {
    // A service on the target's side that keeps its connections open.
    const held: Socket[] = [];
    const service = createServer((s) => {
      held.push(s);
      s.on('error', () => {});
      s.write('hello\n');
    });
    await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve));
    const servicePort = (service.address() as { port: number }).port;
    const local = await freePort();
    const child = stack.spawn('ssh', ['-F', stack.sshConfig, '-N', '-L', `${local}:127.0.0.1:${servicePort}`, TARGET]);
    try {
      // A forwarded connection, open: the service greets it through the tunnel.
      const conn = await eventually('the forwarding to carry a connection', () =>
        new Promise<Socket | undefined>((resolve) => {
          const c = connect(local, '127.0.0.1');
          c.once('data', () => resolve(c));
          c.once('error', () => resolve(undefined));
        }), 15_000);
      const closed = new Promise<void>((resolve) => conn.once('close', () => resolve()));
      conn.on('error', () => {});
      assert.equal(held.length, 1, 'the service holds the forwarded connection');

      const end = await eventually(
        'the forwarding session to end for expiry',
        async () => (await stack.events()).find((e) => e.type === 'session.end' && e.actor?.sub === 'agent-7' && e.detail['reason'] === 'credential_expired'),
        25_000,
      );
      assert.match(String(end.detail['message']), /credential of agent-7 expired/);
      // The service side of the forwarded connection is closed too (nothing keeps using the target).
      await eventually('the service to see its connection closed', () => held.every((s) => s.destroyed || s.readableEnded), 10_000);
      await closed;
      const events = await stack.events();
      const fwd = events.find((e) => e.type === 'ssh.command' && String(e.detail['command'] ?? e.detail['text'] ?? '').includes(`tcpip 127.0.0.1:${servicePort}`));
      assert.ok(fwd, `the forwarding is on record: ${JSON.stringify(events.map((e) => [e.type, e.detail]))}`);
    } finally {
      child.kill('SIGKILL');
      for (const s of held) s.destroy();
      service.close();
    }
  });
});
