/**
 * A psql session's timeline, built from the session's own audit events: the allowed
 * statement with its tag and rows, the denied one with its rule and SQLSTATE — through the
 * real psql, the broker, a real PostgreSQL, and the real CLI (`sessions`, `replay --json`).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as pty from 'node-pty';
import { startPgStack, TARGET, type PgStack } from '../postgres/stack.js';
import { eventually } from '../helpers/eventually.js';
import type { TimelineEntry } from '../../src/shared/recording.js';
import { runAgentgate, type CliResult } from './agentgate-cli.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

/** The statement as the audit log holds it: the detector's hit masked. */
const MASKED_TEXT = "SELECT '********' AS who";

describe('SQL timelines', () => {
  let stack: PgStack;
  before(async () => {
    stack = await startPgStack({
      policies: [
        {
          name: 'ro',
          subjects: { groups: ['ai-agents'] },
          targets: [TARGET],
          rules: [
            { name: 'reads', sql: ['select'], effect: 'allow', extra: {} },
            { name: 'notes-held', sql: ['insert'], effect: 'review', approvers: { groups: ['dba'], count: 1 }, extra: {} },
            { name: 'no-writes', effect: 'deny', extra: {} },
          ],
        },
      ],
      config: { masking: { [TARGET]: { columns: [], detectors: ['email'], style: 'full' } } },
    });
    await stack.pg.psql('CREATE TABLE notes (id int); GRANT ALL ON notes TO app;', { database: 'app' });
  });
  after(async () => {
    await stack?.close();
  });

  const agentgate = (args: string[], token?: string): Promise<CliResult> =>
    runAgentgate({ home: stack.tmp.path, brokerUrl: stack.broker.url, fingerprint: stack.broker.fingerprint, token: token ?? stack.token }, args);

  test('psql: an allowed, a masked, a denied and a held-then-approved statement, in order, with decision and outcome', async () => {
    const ran = new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile('psql', ['-X', '-At', '-c', 'SELECT 40 + 2 AS answer', '-c', "SELECT 'alice@example.com' AS who", '-c', 'CREATE TABLE nope (id int)', '-c', 'INSERT INTO notes VALUES (7)'], { env: stack.env }, (err, _stdout, stderr) =>
        resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0, stderr: String(stderr) }),
      );
    });
    const dba = { sub: 'dba-1', groups: ['dba'], kind: 'human' as const, issuer: 'test', expiresAt: Math.floor(Date.now() / 1000) + 3600 };
    const held = await eventually('the held INSERT', () => stack.broker.approvals.list(dba, {}).requests.find((q) => q.status === 'pending' && q.statement.includes('INSERT INTO notes')));
    await stack.broker.approvals.decide(held.id, dba, 'approve', null);
    const r = await ran;
    assert.equal(r.code, 0, 'psql goes on after the denied statement and its last one ran');
    assert.match(r.stderr, /no-writes/);
    const end = await eventually('session.end of the psql session', async () => (await stack.events()).find((e) => e.type === 'session.end' && e.target === TARGET));
    const session = end.session!;

    const list = await agentgate(['sessions', '--target', TARGET, '--json']);
    assert.equal(list.code, 0, list.stderr);
    const listed = (JSON.parse(list.stdout) as { sessions: { session: string; protocol: string; statements: number; denied: number; recordings: unknown[] }[] }).sessions.find((s) => s.session === session);
    assert.deepEqual({ protocol: listed?.protocol, statements: listed?.statements, denied: listed?.denied, recordings: listed?.recordings }, { protocol: 'postgres', statements: 4, denied: 1, recordings: [] });

    const out = await agentgate(['replay', session, '--json']);
    assert.equal(out.code, 0, out.stderr);
    const entries = out.stdout.trim().split('\n').map((l) => JSON.parse(l) as TimelineEntry);
    assert.deepEqual(
      entries.map((e) => ({ type: e.type, text: e.text, decision: e.decision && { effect: e.decision.effect, rule: e.decision.rule }, status: e.outcome?.status, tag: e.outcome?.tag, rows: e.outcome?.rows, sqlstate: e.outcome?.sqlstate })),
      [
        { type: 'query', text: 'SELECT 40 + 2 AS answer', decision: { effect: 'allow', rule: 'reads' }, status: 'ok', tag: 'SELECT 1', rows: 1, sqlstate: undefined },
        { type: 'query', text: MASKED_TEXT, decision: { effect: 'allow', rule: 'reads' }, status: 'ok', tag: 'SELECT 1', rows: 1, sqlstate: undefined },
        { type: 'query', text: 'CREATE TABLE nope (id int)', decision: { effect: 'deny', rule: 'no-writes' }, status: 'error', tag: undefined, rows: 0, sqlstate: '42501' },
        { type: 'query', text: 'INSERT INTO notes VALUES (7)', decision: { effect: 'allow', rule: 'notes-held' }, status: 'ok', tag: 'INSERT 0 1', rows: 1, sqlstate: undefined },
      ],
    );
    assert.ok(!out.stdout.includes('alice@example.com'), 'the timeline holds the masked statement');
    assert.equal(entries[3]!.decision?.approval, held.id);
    assert.deepEqual(entries[3]!.approvals, [{ id: held.id, approver: 'dba-1', decision: 'approve' }]);
    for (let i = 1; i < entries.length; i++) assert.ok(entries[i - 1]!.offset <= entries[i]!.offset);

    const human = await agentgate(['replay', session]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /SELECT 40 \+ 2 AS answer\n\s+allow by reads; ok, SELECT 1, 1 rows/);
    assert.match(human.stdout, /CREATE TABLE nope \(id int\)\n\s+deny by no-writes; error, 0 rows, SQLSTATE 42501/);
    assert.match(human.stdout, /INSERT INTO notes VALUES \(7\)\n\s+allow by notes-held approved: dba-1 approve; ok, INSERT 0 1, 1 rows/);

    // On a terminal the timeline goes through $PAGER (here one that numbers the lines).
    const paged = await new Promise<string>((resolve) => {
      const term = pty.spawn(process.execPath, [BIN, 'replay', session], {
        name: 'xterm',
        cols: 200,
        rows: 50,
        env: {
          PATH: process.env['PATH'] ?? '/usr/bin:/bin',
          HOME: stack.tmp.path,
          XDG_CONFIG_HOME: join(stack.tmp.path, 'xdg-config'),
          XDG_STATE_HOME: join(stack.tmp.path, 'xdg-state'),
          AGENTGATE_BROKER: stack.broker.url,
          AGENTGATE_FINGERPRINT: stack.broker.fingerprint,
          AGENTGATE_KEYCHAIN: 'off',
          AGENTGATE_TOKEN: stack.token,
          PAGER: 'sed "s/^/paged: /"',
        },
      });
      let seen = '';
      term.onData((d) => (seen += d));
      term.onExit(() => resolve(seen));
    });
    assert.match(paged, /paged: \+[\d.]+s  SELECT 40 \+ 2 AS answer/);

    // Someone else sees neither the session nor its timeline (the same 404 as no session);
    // an auditor sees both.
    const other = await stack.issuer.sign({ sub: 'dev-2', groups: ['developers'] }, { expiresIn: 3600 });
    const otherList = await agentgate(['sessions', '--json'], other);
    assert.equal(otherList.code, 0, otherList.stderr);
    assert.deepEqual((JSON.parse(otherList.stdout) as { sessions: unknown[] }).sessions, []);
    const otherReplay = await agentgate(['replay', session, '--json'], other);
    assert.equal(otherReplay.code, 1);
    assert.match(otherReplay.stderr, /no session .* that you may read/);
    const auditor = await stack.issuer.sign({ sub: 'sec-1', groups: ['security'] }, { expiresIn: 3600 });
    const audited = await agentgate(['sessions', '--actor', 'agent-7', '--json'], auditor);
    assert.equal(audited.code, 0, audited.stderr);
    assert.ok((JSON.parse(audited.stdout) as { sessions: { session: string }[] }).sessions.some((x) => x.session === session));
    const auditorReplay = await agentgate(['replay', session, '--json'], auditor);
    assert.equal(auditorReplay.code, 0, auditorReplay.stderr);
    assert.equal(auditorReplay.stdout, out.stdout);
  });
});
