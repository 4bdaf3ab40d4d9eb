/**
 * SSH terminal recordings end to end: a real ssh client in a real pty (node-pty) through
 * the broker to a real sshd, typed commands and a resize; the .cast the broker wrote is
 * read back by a small reader written here (not the project's), and its output equals, byte
 * for byte, what the client's pty received — masked values included.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as pty from 'node-pty';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { TARGET, eventually, startSshStack, type SshStack } from '../ssh/stack.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';
import { writeExport } from '../../src/broker/audit/export.js';
import { runAgentgate, type CliResult } from './agentgate-cli.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

const POLICIES: PolicyConfig[] = [
  {
    name: 'agents-ssh',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'shell', ssh: { shell: true }, effect: 'allow', extra: {} },
      { name: 'echo', ssh: { commands: ['echo *'] }, effect: 'allow', extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';

/** An asciicast v2 reader of its own: header object, then [number, string, string] lines. */
function readCast(text: string): { header: Record<string, unknown>; events: [number, string, string][] } {
  assert.ok(text.endsWith('\n'), 'a cast ends with a newline');
  const [first, ...rest] = text.slice(0, -1).split('\n');
  const header = JSON.parse(first!) as Record<string, unknown>;
  assert.equal(header['version'], 2);
  const events = rest.map((l) => JSON.parse(l) as [number, string, string]);
  let last = 0;
  for (const e of events) {
    assert.equal(e.length, 3);
    assert.equal(typeof e[0], 'number');
    assert.ok(e[0] >= last, 'times never go back');
    last = e[0];
    assert.ok(['o', 'r', 'm', 'i'].includes(e[1]), `event code ${e[1]}`);
    assert.equal(typeof e[2], 'string');
  }
  return { header, events };
}

describe('ssh terminal recordings', () => {
  let stack: SshStack;
  before(async () => {
    stack = await startSshStack(POLICIES);
  });
  after(async () => {
    await stack?.close();
  });

  const agentgate = (args: string[]): Promise<CliResult> =>
    runAgentgate({ home: stack.tmp.path, brokerUrl: stack.broker.url, fingerprint: stack.broker.fingerprint, token: stack.token }, args);

  /** Filled by the first test: the recorded session, what its client saw, its receipt and cast. */
  const shared: { session: string; name: string; seen: string; receipt: string; jwks: string; cast: Buffer } = { session: '', name: '', seen: '', receipt: '', jwks: '', cast: Buffer.alloc(0) };

  const recordingEnds = async (): Promise<AuditRecord[]> => (await stack.events()).filter((e) => e.type === 'recording.end');

  test('a pty shell with typed commands and a resize: the cast holds exactly what the client was shown', async () => {
    const term = pty.spawn('ssh', ['-F', stack.sshConfig, '-tt', '-q', TARGET], { name: 'xterm', cols: 80, rows: 24, cwd: stack.tmp.path, env: { ...stack.env(), TERM: 'xterm' } });
    let seen = '';
    term.onData((d) => (seen += d));
    const exited = new Promise<number>((res) => term.onExit(({ exitCode }) => res(exitCode)));
    const waitFor = (marker: string): Promise<true> => eventually(`"${marker}" on the client's pty`, () => seen.includes(marker), 20_000);

    // Remote output arrives only once ssh has put the local tty in raw mode: typing before
    // would be echoed by the local line discipline, which is not the session's output.
    await eventually('the remote shell', () => seen.length > 0, 20_000);
    term.write('echo ready-$((6*7))\r');
    await waitFor('ready-42');
    term.write(`echo AWS_ACCESS_KEY_ID=${AWS_KEY}\r`);
    await waitFor('AWS_ACCESS_KEY_ID=');
    term.resize(100, 30);
    term.write('stty size | sed s/^/size-/\r');
    await waitFor('size-30 100');
    term.write('exit\r');
    assert.equal(await exited, 0);

    const [end] = await eventually('recording.end in the chain', async () => {
      const r = await recordingEnds();
      return r.length === 1 ? r : undefined;
    });
    const name = String(end!.detail['name']);
    const path = join(stack.config.stateDir, 'recordings', name);
    const bytes = await readFile(path);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal((await stat(join(stack.config.stateDir, 'recordings'))).mode & 0o777, 0o700);
    assert.equal(end!.detail['sha256'], createHash('sha256').update(bytes).digest('hex'));
    assert.equal(end!.detail['bytes'], bytes.length);

    const cast = readCast(bytes.toString('utf8'));
    assert.equal(cast.header['width'], 80);
    assert.equal(cast.header['height'], 24);
    assert.equal(typeof cast.header['timestamp'], 'number');
    assert.match(String(cast.header['title']), new RegExp(`agent-7 @ ${TARGET} session ${end!.session}`));
    assert.equal(cast.header['env'], undefined);
    const output = cast.events.filter((e) => e[1] === 'o').map((e) => e[2]).join('');
    assert.equal(output, seen, 'the recording replays exactly what the pty received');
    assert.ok(!output.includes(AWS_KEY), 'the secret is masked in the recording');
    assert.match(output, /AWS_ACCESS_KEY_ID=/);
    assert.deepEqual(cast.events.filter((e) => e[1] === 'r').map((e) => e[2]), ['100x30']);
    // The resize comes before the output that reports the new size.
    const resizeAt = cast.events.findIndex((e) => e[1] === 'r');
    const sizeAt = cast.events.findIndex((e) => e[1] === 'o' && e[2].includes('size-30 100'));
    assert.ok(resizeAt < sizeAt);
    // Input is not recorded.
    assert.equal(cast.events.filter((e) => e[1] === 'i').length, 0);

    // The session's receipt lists the recording as a subject, with the digest in the chain.
    const receipt = await eventually('the receipt', async () => stack.broker.receipts.get(end!.session!));
    const statement = JSON.parse(Buffer.from(receipt.envelope.payload, 'base64').toString('utf8')) as { subject: { name: string; digest: { sha256: string } }[] };
    assert.deepEqual(statement.subject.slice(1), [{ name: `agentgate-recording:${name}`, digest: { sha256: end!.detail['sha256'] } }]);

    shared.session = end!.session!;
    shared.name = name;
    shared.seen = seen;
    shared.cast = bytes;
    shared.receipt = join(stack.tmp.path, `${shared.session}.receipt.json`);
    shared.jwks = join(stack.tmp.path, 'jwks.json');
    await writeFile(shared.receipt, JSON.stringify(receipt.envelope));
    await writeFile(shared.jwks, JSON.stringify(stack.broker.receipts.signer.publicJwks()));
  });

  test('agentgate sessions lists the session with its recording; replay plays it back byte for byte', async () => {
    const list = await agentgate(['sessions', '--json']);
    assert.equal(list.code, 0, list.stderr);
    const sessions = (JSON.parse(list.stdout) as { sessions: { session: string; actor: string; target: string; protocol: string; recordings: { name: string; sha256: string }[] }[] }).sessions;
    const mine = sessions.find((x) => x.session === shared.session);
    assert.deepEqual(
      { actor: mine?.actor, target: mine?.target, protocol: mine?.protocol, recordings: mine?.recordings.map((r) => r.name) },
      { actor: 'agent-7', target: TARGET, protocol: 'ssh', recordings: [shared.name] },
    );
    const played = await agentgate(['replay', shared.session, '--speed', '1000', '--idle-limit', '0.01']);
    assert.equal(played.code, 0, played.stderr);
    assert.equal(played.stdout, shared.seen, 'replayed output equals what the client pty received');
    const out = join(stack.tmp.path, 'saved.cast');
    const saved = await agentgate(['replay', shared.session, '--format', 'asciicast', '--out', out]);
    assert.equal(saved.code, 0, saved.stderr);
    assert.deepEqual(await readFile(out), shared.cast);
    // Each read is on record: who read which session's recording.
    const reads = (await stack.events()).filter((e) => e.type === 'session.replay' && e.detail['of_session'] === shared.session && e.detail['what'] === 'recording');
    assert.deepEqual(reads.map((e) => [e.actor?.sub, e.detail['name']]), [['agent-7', shared.name], ['agent-7', shared.name]]);
    const timeline = await agentgate(['replay', shared.session, '--json']);
    assert.equal(timeline.code, 0, timeline.stderr);
    const entries = timeline.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; text: string; decision: { effect: string; rule: string }; outcome: { exit_status: number } });
    assert.deepEqual(entries.map((e) => [e.type, e.text, e.decision.effect, e.decision.rule, e.outcome.exit_status]), [['ssh.command', 'shell', 'allow', 'shell', 0]]);
  });

  test('replay on a terminal: → seeks ahead (all of it, at once), q quits', async () => {
    const run = (keys: string): Promise<{ code: number; out: string }> =>
      new Promise((resolve) => {
        const term = pty.spawn(process.execPath, [BIN, 'replay', shared.session, '--speed', '0.001'], {
          name: 'xterm',
          cols: 80,
          rows: 24,
          cwd: stack.tmp.path,
          env: {
            PATH: process.env['PATH'] ?? '/usr/bin:/bin',
            HOME: stack.tmp.path,
            XDG_CONFIG_HOME: join(stack.tmp.path, 'xdg-config'),
            XDG_STATE_HOME: join(stack.tmp.path, 'xdg-state'),
            AGENTGATE_BROKER: stack.broker.url,
            AGENTGATE_FINGERPRINT: stack.broker.fingerprint,
            AGENTGATE_KEYCHAIN: 'off',
            AGENTGATE_TOKEN: stack.token,
          },
        });
        let out = '';
        let sent = false;
        term.onData((d) => {
          out += d;
          // At this speed the first event is minutes away: only a key moves it.
          if (!sent && out.includes('q quits')) {
            sent = true;
            term.write(keys);
          }
        });
        term.onExit(({ exitCode }) => resolve({ code: exitCode, out }));
      });
    const ahead = await run('\x1b[C'.repeat(60));
    assert.equal(ahead.code, 0);
    // The replaying process's own tty turns each \n into \r\n (byte equality is the pipe test's).
    const lines = (t: string): string => t.replace(/\r*\n/g, '\n');
    assert.ok(lines(ahead.out).includes(lines(shared.seen)), 'all of the recording was played');
    const quit = await run('q');
    assert.equal(quit.code, 0);
    assert.ok(!quit.out.includes('ready-42'), 'nothing of the recording was played');
  });

  test('replay --verify and receipt verify --recording: the recording matches its receipt; a flipped byte is caught', async () => {
    const ok = await agentgate(['replay', shared.session, '--verify', '--receipt', shared.receipt, '--key', shared.jwks]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`^OK .*${shared.name} sha256:[0-9a-f]{64} is attested by the signed receipt`));

    const copy = join(stack.tmp.path, shared.name);
    await writeFile(copy, shared.cast);
    const good = await agentgate(['receipt', 'verify', shared.receipt, '--key', shared.jwks, '--recording', copy, '--json']);
    assert.equal(good.code, 0, good.stderr);
    assert.equal((JSON.parse(good.stdout) as { ok: boolean }).ok, true);

    const flipped = Buffer.from(shared.cast);
    const at = flipped.length - 10;
    flipped[at] = flipped[at]! ^ 0x01;
    await writeFile(copy, flipped);
    const bad = await agentgate(['replay', shared.session, '--verify', '--cast', copy, '--receipt', shared.receipt, '--key', shared.jwks]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /digest mismatch: .* hashes to [0-9a-f]{64}, but the receipt attests [0-9a-f]{64} for .*: the recording was altered/);
    const bad2 = await agentgate(['receipt', 'verify', shared.receipt, '--key', shared.jwks, '--recording', copy, '--json']);
    assert.equal(bad2.code, 1);
    assert.equal((JSON.parse(bad2.stdout) as { problem: string }).problem, 'digest mismatch');

    // With an audit export: the chain verifies and its recording.end carries the same digest.
    const exported = join(stack.tmp.path, 'audit.jsonl');
    let text = '';
    await writeExport(
      { store: stack.broker.audit, signer: stack.broker.receipts.signer, brokerUrl: stack.broker.url, jwksUri: `${stack.broker.url}/.well-known/jwks.json` },
      { format: 'jsonl' },
      { write: (chunk) => ((text += chunk), true), drain: async () => {} },
    );
    await writeFile(exported, text);
    await writeFile(copy, shared.cast);
    const chained = await agentgate(['replay', shared.session, '--verify', '--cast', copy, '--receipt', shared.receipt, '--key', shared.jwks, '--audit', exported, '--json']);
    assert.equal(chained.code, 0, chained.stdout + chained.stderr);
    const seq = (await recordingEnds()).find((e) => e.detail['name'] === shared.name)!.seq;
    assert.deepEqual((JSON.parse(chained.stdout) as { ok: boolean; chain: unknown }).chain, { seq });
    await writeFile(copy, flipped);
    const chainedBad = await agentgate(['replay', shared.session, '--verify', '--cast', copy, '--receipt', shared.receipt, '--key', shared.jwks, '--audit', exported, '--json']);
    assert.equal(chainedBad.code, 1);
    assert.equal((JSON.parse(chainedBad.stdout) as { problem: string }).problem, 'digest mismatch');
  });

  test('recording: { input: true } on the target records what was typed as i events, in order with the output', async () => {
    // Same broker, the target opts in: the target's config object is read per recording.
    const target = stack.config.targets[TARGET] as { recording?: unknown };
    const before = (await recordingEnds()).length;
    target.recording = { enabled: true, maxBytes: 1 << 20, results: 0, input: true };
    let typed = '';
    let seen = '';
    try {
      const term = pty.spawn('ssh', ['-F', stack.sshConfig, '-tt', '-q', TARGET], { name: 'xterm', cols: 80, rows: 24, cwd: stack.tmp.path, env: { ...stack.env(), TERM: 'xterm' } });
      term.onData((d) => (seen += d));
      const exited = new Promise<number>((res) => term.onExit(({ exitCode }) => res(exitCode)));
      const type = (text: string): void => {
        typed += text;
        term.write(text);
      };
      await eventually('the remote shell', () => seen.length > 0, 20_000);
      type('echo typed-$((6*7))\r');
      await eventually('the answer', () => seen.includes('typed-42'), 20_000);
      type('exit\r');
      assert.equal(await exited, 0);
    } finally {
      delete target.recording;
    }
    const ends = await eventually('the recording.end', async () => {
      const e = await recordingEnds();
      return e.length === before + 1 ? e : undefined;
    });
    const cast = readCast((await readFile(join(stack.config.stateDir, 'recordings', String(ends.at(-1)!.detail['name'])))).toString('utf8'));
    assert.equal(cast.events.filter((e) => e[1] === 'i').map((e) => e[2]).join(''), typed);
    assert.equal(cast.events.filter((e) => e[1] === 'o').map((e) => e[2]).join(''), seen);
    // The command was typed before its answer was shown.
    assert.ok(cast.events.findIndex((e) => e[1] === 'i') < cast.events.findIndex((e) => e[1] === 'o' && e[2].includes('typed-42')));
  });

  test('a recording over max_bytes is cut with a marker that says where; the digest covers what was written', async () => {
    // Same broker, smaller cap: the config object is read per recording.
    const before = (await recordingEnds()).length;
    (stack.config as { recording?: unknown }).recording = { enabled: true, maxBytes: 4096 };
    try {
      const r = await stack.run('ssh', ['-F', stack.sshConfig, TARGET, `echo ${'y'.repeat(9000)}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.length, 9001, 'the client gets all of it');
    } finally {
      delete (stack.config as { recording?: unknown }).recording;
    }
    const ends = await eventually('the second recording.end', async () => {
      const e = await recordingEnds();
      return e.length === before + 1 ? e : undefined;
    });
    const end = ends.at(-1)!;
    const bytes = await readFile(join(stack.config.stateDir, 'recordings', String(end.detail['name'])));
    assert.ok(bytes.length <= 4096);
    assert.equal(end.detail['sha256'], createHash('sha256').update(bytes).digest('hex'));
    const cast = readCast(bytes.toString('utf8'));
    const last = cast.events.at(-1)!;
    assert.equal(last[1], 'm');
    assert.match(last[2], /^agentgate: recording cut at [\d.]+s after \d+ bytes \(max_bytes 4096\); output went on unrecorded$/);
    assert.equal(typeof end.detail['cut_at'], 'number');
  });
});
