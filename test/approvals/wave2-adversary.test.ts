/**
 * Wave 2 of the approvals red team: "what the reviewer sees is what runs", tried as an agent
 * whose request a human reviews. Real PostgreSQL, broker and tunnel; the reviewer's views
 * are the ones `agentgate requests`, `agentgate approve ID` and the approve screen (rendered
 * in a fake terminal, as screen.test.tsx does) print for the request the service holds.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createElement } from 'react';
import { render } from 'ink-testing-library';
import pg from 'pg';
import { startPgStack, type PgStack } from '../postgres/stack.js';
import { TARGET as SSH_TARGET, eventually, startSshStack, type SshStack } from '../ssh/stack.js';
import { APPROVAL_POLICIES as POLICIES, failure, pgApprovalHelpers } from './pg-helpers.js';
import { RawPg, errorMessages } from '../postgres/raw-client.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import type { ApprovalRequest } from '../../src/broker/approvals/types.js';
import type { Identity } from '../../src/broker/identity/types.js';
import type { ApprovalWebhookPayload, RequestView } from '../../src/shared/api-types.js';
import { requestView } from '../../src/broker/approvals/view.js';
import { requestDetails, requestsTable } from '../../src/ui/format.js';
import { ApproveScreen } from '../../src/ui/approve-screen.js';
import { createRequestStore } from '../../src/ui/request-store.js';
import { waitFor } from '../broker/fixtures.js';
import { HELD_PRINTENV_SSH, identity } from './fixtures.js';


const human = (sub: string): Identity => identity(sub, ['dba']);
const DBA = human('dba-1');

/**
 * What a terminal would obey, hide or draw as something else: controls, format characters
 * (bidi, zero-width, BOM, soft hyphen, tags), lone surrogates, separators, spaces other than
 * U+0020, default-ignorables (fillers, variation selectors).
 */
const HIDDEN = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]|(?! )\p{Zs}/u;
/** The same, newlines and the screen's own colours (SGR) aside: what a rendered frame may contain. */
const frameText = (s: string | undefined): string =>
  // eslint-disable-next-line no-control-regex -- the screen's own colour codes
  (s ?? '').replace(/\u001B\[[0-9;?]*[A-Za-z]/g, '').replace(/\n/g, ' ');

const KEY = { enter: '\r', escape: '\u001B', pageDown: '\u001B[6~' } as const;

type Rendered = ReturnType<typeof render>;
const mounted: Rendered[] = [];
afterEach(() => {
  for (const ui of mounted.splice(0)) ui.unmount();
});

/** The approve screen over these requests, as `agentgate approve` draws it for dba-1; decisions are only recorded. */
function screen(views: RequestView[]) {
  const calls: { id: string; decision: string }[] = [];
  const store = createRequestStore(views, 'live');
  const ui = render(
    createElement(ApproveScreen, {
      store,
      decide: async (id, decision) => {
        calls.push({ id, decision });
        throw new Error('recorded only');
      },
      onExit: () => {},
      viewer: 'dba-1',
    }),
  );
  mounted.push(ui);
  const frame = (re: RegExp): Promise<string> =>
    waitFor(String(re), () => {
      const f = ui.lastFrame() ?? '';
      return re.test(frameText(f)) ? f : undefined;
    }).catch((err: Error) => {
      throw new Error(`${err.message}; last frame:\n${ui.lastFrame() ?? ''}`);
    });
  return { ui, calls, frame };
}

describe('approvals, wave 2 adversary (Postgres)', () => {
  let stack: PgStack;
  const { pending, held, direct, client } = pgApprovalHelpers(() => stack, human('auditor'));
  const view = (r: ApprovalRequest): RequestView => requestView(r, DBA);
  /** Every text a reviewer reads for this request, without a terminal: `agentgate requests` and `agentgate approve ID`. */
  const printed = (r: ApprovalRequest): string[] => [requestsTable([view(r)]), requestDetails(view(r))];

  /** What the approval webhook delivered: the payload a chat tool renders to reviewers. */
  const hooks: ApprovalWebhookPayload[] = [];
  let hook: http.Server | undefined;
  const delivered = (id: string): Promise<ApprovalWebhookPayload['request']> => eventually('the webhook', () => hooks.find((h) => h.request.id === id)?.request);

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
    stack = await startPgStack({ policies: POLICIES, config: { approvals: { timeoutSeconds: 600, webhooks: [{ url, secret: undefined, events: ['created'] }] } } });
    await stack.pg.psql(
      "CREATE TABLE orders (id int PRIMARY KEY, status text); INSERT INTO orders SELECT g, 'new' FROM generate_series(1, 10) g;" +
        'CREATE TABLE users (id int PRIMARY KEY, name text); INSERT INTO users SELECT g, \'u\' || g FROM generate_series(1, 5) g;' +
        // The same name with a Cyrillic е (U+0435): another table.
        'CREATE TABLE "us\u0435rs" (id int PRIMARY KEY, name text); INSERT INTO "us\u0435rs" VALUES (1, \'decoy\');' +
        'CREATE TABLE notes (id int PRIMARY KEY, body text);' +
        // A role whose name is a schema: under it, the default search_path ("$user", public) finds archive.orders first.
        "CREATE ROLE archive; GRANT archive TO app; CREATE SCHEMA archive AUTHORIZATION archive; CREATE TABLE archive.orders (id int PRIMARY KEY, status text); INSERT INTO archive.orders SELECT g, 'kept' FROM generate_series(1, 10) g; ALTER TABLE archive.orders OWNER TO archive;" +
        'GRANT ALL ON orders, users, "us\u0435rs", notes TO app;',
      { database: 'app' },
    );
  });
  after(async () => {
    await stack?.close();
    await new Promise<void>((resolve) => (hook ? hook.close(() => resolve()) : resolve()));
  });

  test('a2-01: invisible characters in SQL and in the reason (zero-width, BOM, soft hyphen, NBSP, fillers, tags, separators) are shown as escapes everywhere a reviewer reads', async () => {
    const invisibles = '\u200b\u200c\u200d\u2060\ufeff\u00ad\u00a0\u3164\u115f\u2028\u{e0041}\ufe0f\u034f';
    // In a string literal the server stores them; in a comment they hide nothing from the server but would from the reviewer.
    const sql = `UPDATE orders SET status = 'ok${invisibles}' /* ${invisibles} */ WHERE id = 1`;
    const c = new pg.Client({ connectionString: stack.url, options: `-c agentgate.reason=fix${invisibles}it` });
    await c.connect();
    const ran = failure(c.query(sql));
    const req = await held("SET status = 'ok");
    assert.equal(req.statement, sql, 'the service holds the text as sent');
    const expected = ['\\u{200b}', '\\u{200c}', '\\u{200d}', '\\u{2060}', '\\u{feff}', '\\xad', '\\xa0', '\\u{3164}', '\\u{115f}', '\\u{2028}', '\\u{e0041}', '\\u{fe0f}', '\\u{34f}'];
    for (const text of printed(req)) assert.doesNotMatch(text.replace(/\n/g, ' '), HIDDEN, text);
    // `requests` cuts the statement at 80 characters; the details show every one.
    assert.ok(requestsTable([view(req)]).includes("'ok\\u{200b}\\u{200c}"));
    for (const e of expected) assert.ok(requestDetails(view(req)).includes(e), `${e} shown in:\n${requestDetails(view(req))}`);
    assert.ok(requestDetails(view(req)).includes(`fix${expected.join('')}it`), 'the requester reason is escaped too');
    const payload = await delivered(req.id);
    assert.ok(payload.statement.includes(`'ok${expected.join('')}'`), payload.statement);
    assert.equal(payload.requester_reason, `fix${expected.join('')}it`);
    assert.doesNotMatch(JSON.stringify(payload), HIDDEN);
    const { ui, frame } = screen([view(req)]);
    const list = await frame(/1 waiting for your review/);
    assert.doesNotMatch(frameText(list), HIDDEN, list);
    ui.stdin.write(KEY.enter);
    const details = await frame(/Reason given/);
    assert.doesNotMatch(frameText(details), HIDDEN, details);
    assert.ok(frameText(details).includes('\\u{200b}\\u{200c}\\u{200d}'), details);
    await stack.broker.approvals.decide(req.id, DBA, 'deny', 'invisible');
    assert.match(await ran, /invisible/);
    await c.end();
    assert.equal(await direct('SELECT status FROM orders WHERE id = 1'), 'new');
  });

  test('a2-02: a table name with a look-alike letter (Cyrillic е in usеrs) is marked, in the statement, the classification and the screen; the Latin name is not', async () => {
    const c = await client();
    const decoy = failure(c.query('DELETE FROM us\u0435rs WHERE id = 1'));
    const req = await held('DELETE FROM us\u0435rs');
    assert.deepEqual(req.classification['writes'], ['public.us\u0435rs']);
    for (const text of printed(req)) {
      assert.ok(text.includes('DELETE FROM us\\u{435}rs WHERE id = 1'), text);
      assert.doesNotMatch(text, /DELETE FROM users/);
    }
    assert.match(requestDetails(view(req)), /writes public\.us\\u\{435\}rs/);
    const payload = await delivered(req.id);
    assert.equal(payload.statement, 'DELETE FROM us\\u{435}rs WHERE id = 1');
    assert.deepEqual(payload.classification['writes'], ['public.us\\u{435}rs'], 'the webhook escapes the classification too');
    const { ui, frame } = screen([view(req)]);
    await frame(/DELETE FROM us\\u\{435\}rs/);
    ui.stdin.write(KEY.enter);
    await frame(/Classification\s+delete; writes public\.us\\u\{435\}rs/);
    await stack.broker.approvals.decide(req.id, DBA, 'deny', 'look-alike');
    assert.match(await decoy, /look-alike/);

    // The real table reads as written; so do other scripts' own words (a Russian comment).
    const real = failure(c.query('DELETE FROM users WHERE id = 2 -- Привет, café'));
    const plain = await held('DELETE FROM users WHERE id = 2');
    assert.ok(requestDetails(view(plain)).includes('DELETE FROM users WHERE id = 2 -- Привет, café'));
    await stack.broker.approvals.decide(plain.id, DBA, 'deny', 'not now');
    assert.match(await real, /not now/);
    await c.end();
    assert.equal(await direct('SELECT count(*) FROM users'), '5');
    assert.equal(await direct('SELECT count(*) FROM "us\u0435rs"'), '1');
  });

  test('a2-03: what padding pushes out of sight cannot be approved unseen: the list sends `a` to the details, blank runs are counted, a long statement must be read to its end', async () => {
    const c = await client();
    // The comment reads as if the WHERE were gone; 300 blank lines later it widens the update to every row.
    const padded = `UPDATE orders SET status = 'void' WHERE id = 3 -- only this one${'\n'.repeat(300)}OR id > 0`;
    const ran = failure(c.query(padded));
    const req = await held("SET status = 'void'");
    const details = requestDetails(view(req));
    assert.match(details, /-- only this one\n⋯ 299 blank lines ⋯\nOR id > 0/);
    assert.match(details, /Statement\s+301 lines/);
    const s = screen([view(req)]);
    await s.frame(/1 waiting for your review/);
    s.ui.stdin.write('a');
    const shown = await s.frame(/read it whole here/);
    assert.match(frameText(shown), /⋯ 299 blank lines ⋯/);
    assert.match(frameText(shown), /OR id > 0/);
    assert.doesNotMatch(frameText(shown), /Reason \(optional\)/, 'no approval from a row that cut the statement');
    await stack.broker.approvals.decide(req.id, DBA, 'deny', 'padded');
    assert.match(await ran, /padded/);

    // 400 lines of real text: the details show a window, and approving needs the last line on screen first.
    const long = `UPDATE orders SET status = 'void' WHERE id = 4\n${Array.from({ length: 400 }, (_, i) => `-- reviewed line ${i + 1}`).join('\n')}\nOR true`;
    const ran2 = failure(c.query(long));
    const req2 = await held('-- reviewed line 1\n');
    const s2 = screen([view(req2)]);
    await s2.frame(/1 waiting for your review/);
    s2.ui.stdin.write(KEY.enter);
    await s2.frame(/statement lines 1–\d+ of 402/);
    s2.ui.stdin.write('a');
    await s2.frame(/Read the statement to its end before approving: lines \d+–402 of 402/);
    for (let i = 0; i < 200; i++) s2.ui.stdin.write(KEY.pageDown);
    await s2.frame(/OR true/);
    s2.ui.stdin.write('a');
    await s2.frame(/Reason \(optional\)/);
    await stack.broker.approvals.decide(req2.id, DBA, 'deny', 'read it');
    assert.match(await ran2, /read it/);
    await c.end();
    assert.equal(await direct("SELECT count(*) FROM orders WHERE status = 'void'"), '0');
  });

  test('a2-04: look-alike subjects from other scripts (Cyrillic а, Greek ο) neither approve their own request nor count twice', async () => {
    const c = await client();
    const ran = failure(c.query('DELETE FROM orders WHERE id = 8'));
    const req = await held('DELETE FROM orders WHERE id = 8');
    for (const sub of ['\u0430gent-7', 'ag\u0435nt-7', '\u0391GENT-7']) {
      await assert.rejects(stack.broker.approvals.decide(req.id, human(sub), 'approve', null), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'AG_SELF_APPROVAL', sub);
        return true;
      });
    }
    await stack.broker.approvals.decide(req.id, human('bob'), 'approve', null);
    await assert.rejects(stack.broker.approvals.decide(req.id, human('b\u03bfb'), 'approve', null), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'AG_ALREADY_DECIDED');
      return true;
    });
    assert.equal(stack.broker.approvals.get(req.id)?.status, 'pending', 'one person, one of the two approvals');
    // Not even listed as theirs to decide.
    assert.equal(view(req).can_decide, true);
    assert.equal(requestView(stack.broker.approvals.get(req.id) as ApprovalRequest, human('\u0430gent-7')).can_decide, false);
    await stack.broker.approvals.decide(req.id, human('carol'), 'deny', 'no');
    assert.match(await ran, /no/);
    await c.end();
    assert.equal(await direct('SELECT count(*) FROM orders WHERE id = 8'), '1');
  });

  test('a2-05: a grant does not cover the same text in a session started with -c role=… (options): the startup settings are part of the session state', async () => {
    const sql = "UPDATE orders SET status = 'paid' WHERE id = 2";
    const a = await client();
    const first = a.query(sql);
    const req = await held(sql);
    await stack.broker.approvals.decide(req.id, DBA, 'approve', null);
    await first;
    await a.query(sql); // the grant covers it here
    await a.end();
    assert.equal(await direct('SELECT status FROM orders WHERE id = 2'), 'paid');

    // As role archive, "$user" in the default search_path puts archive.orders first.
    const b = new pg.Client({ connectionString: stack.url, options: '-c role=archive' });
    await b.connect();
    assert.equal((await b.query('SELECT current_user AS u')).rows[0]?.u, 'archive');
    const redirected = failure(b.query(sql));
    const again = await held(sql, [req.id]);
    assert.notEqual(again.fingerprint, req.fingerprint);
    assert.deepEqual(again.classification['session_state'], ['SET "role" TO \'archive\' (at connect)']);
    assert.match(requestDetails(view(again)), /runs after this session's SET "role" TO 'archive' \(at connect\)/);
    assert.equal(await direct("SELECT status FROM archive.orders WHERE id = 2"), 'kept', 'the grant did not run it as archive');
    await stack.broker.approvals.decide(again.id, DBA, 'deny', 'not as archive');
    assert.match(await redirected, /denied by dba-1: not as archive/);
    await b.end();
    assert.equal(await direct("SELECT count(*) FROM archive.orders WHERE status = 'paid'"), '0');
  });

  test('a2-06: a one-shot approval releases one of two identical pipelined copies; the second is held again', async () => {
    const raw = await RawPg.login(stack.port, stack.session.secret);
    await direct('CREATE TABLE copies (body text); GRANT ALL ON copies TO app');
    const copy = [fe.parse('', "INSERT INTO copies VALUES ('copy')"), fe.bind('', '', []), fe.execute(''), fe.SYNC];
    raw.send(...copy, ...copy);
    const first = await held("'copy'");
    await stack.broker.approvals.decide(first.id, DBA, 'approve', null);
    assert.deepEqual(errorMessages(await raw.untilReady()), []);
    const second = await held("'copy'", [first.id]);
    assert.equal(await direct("SELECT count(*) FROM copies"), '1', 'the approval ran once');
    await stack.broker.approvals.decide(second.id, DBA, 'deny', 'once');
    assert.match(errorMessages(await raw.untilReady()).join('\n'), /denied by dba-1: once/);
    raw.close();
    assert.equal(await direct("SELECT count(*) FROM copies"), '1');
  });

  test('a2-07: a grant for values bound as text does not cover the same bytes bound in binary, nor the same values under other declared parameter types', async () => {
    const sql = 'UPDATE notes SET body = $1 WHERE id = 500';
    await direct("INSERT INTO notes VALUES (500, 'start')");
    const raw = await RawPg.login(stack.port, stack.session.secret);
    const run = (types: number[], formats: number[]): void => raw.send(fe.parse('', sql, types), fe.bind('', '', [Buffer.from('now')], { paramFormats: formats }), fe.execute(''), fe.SYNC);
    run([], []);
    const textReq = await held('WHERE id = 500');
    await stack.broker.approvals.decide(textReq.id, DBA, 'approve', null);
    assert.deepEqual(errorMessages(await raw.untilReady()), []);
    assert.equal(await direct('SELECT body FROM notes WHERE id = 500'), 'now');
    run([], []);
    assert.deepEqual(errorMessages(await raw.untilReady()), [], 'the grant covers the same text and value');

    // The same three bytes, binary: another request.
    run([], [1]);
    const binary = await held('WHERE id = 500', [textReq.id]);
    assert.deepEqual(binary.parameters, ['binary \\x6e6f77']);
    await stack.broker.approvals.decide(binary.id, DBA, 'deny', 'binary');
    assert.match(errorMessages(await raw.untilReady()).join('\n'), /binary/);

    // The same text value declared timestamptz (OID 1184): 'now' becomes the current time.
    run([1184], []);
    const typed = await held('WHERE id = 500', [textReq.id, binary.id]);
    assert.notEqual(typed.fingerprint, textReq.fingerprint);
    assert.deepEqual(typed.parameters, ["'now' (declared type OID 1184)"]);
    await stack.broker.approvals.decide(typed.id, DBA, 'deny', 'typed');
    assert.match(errorMessages(await raw.untilReady()).join('\n'), /typed/);
    raw.close();
    assert.equal(await direct('SELECT body FROM notes WHERE id = 500'), 'now');
    assert.deepEqual(pending(), []);
  });
});

describe('approvals, wave 2 adversary (SSH)', () => {
  let stack: SshStack;
  before(async () => {
    stack = await startSshStack(
      HELD_PRINTENV_SSH,
      undefined,
      { reason: 'routine\u200b\u2067 check\u2069 \u001b]8;;https://attacker.example\u0007link\u001b]8;;\u0007' },
    );
  });
  after(async () => {
    await stack?.close();
  });

  test('a2-08: a held SSH command and the session reason show invisible characters, isolates and OSC 8 links as escapes, in the screen and `requests`', async () => {
    const command = 'printenv HOME\u200b \u001b]8;;https://attacker.example\u0007PATH\u001b]8;;\u0007 \u0455hell';
    const ran = stack.run('ssh', ['-F', stack.sshConfig, SSH_TARGET, command]);
    const req = await eventually('the printenv held', () => stack.broker.approvals.list(stack.reviewer()).requests.find((r) => r.status === 'pending' && r.statement.startsWith('printenv HOME')));
    assert.equal(req.statement, command);
    const v = requestView(req, stack.reviewer());
    for (const text of [requestsTable([v]), requestDetails(v)]) assert.doesNotMatch(text.replace(/\n/g, ' '), HIDDEN, text);
    const details = requestDetails(v);
    assert.ok(details.includes('printenv HOME\\u{200b} \\x1b]8;;https://attacker.example\\x07PATH\\x1b]8;;\\x07 \\u{455}hell'), details);
    // The reason's controls are dropped when it is recorded; its invisible and bidi characters are shown.
    assert.ok(details.includes('routine\\u{200b}\\u{2067} check\\u{2069} '), details);
    const { ui, frame } = screen([v]);
    const list = await frame(/1 waiting for your review/);
    assert.doesNotMatch(frameText(list), HIDDEN, list);
    ui.stdin.write(KEY.enter);
    const shown = await frame(/Reason given/);
    assert.doesNotMatch(frameText(shown), HIDDEN, shown);
    assert.ok(frameText(shown).includes('\\x1b]8;;https://attacker.example'), shown);
    await stack.broker.approvals.decide(req.id, stack.reviewer(), 'deny', 'escaped');
    const out = await ran;
    assert.equal(out.code, 126, out.stderr);
    assert.match(out.stderr, /escaped/);
  });
});
