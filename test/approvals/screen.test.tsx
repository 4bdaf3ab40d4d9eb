/**
 * The reviewer's Ink screen in a fixed-width fake terminal (ink-testing-library): first on
 * its own, fed through its store and `decide` prop; then wired to a real broker through
 * the API client and the live event stream, as `agentgate approve` runs it.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { render } from 'ink-testing-library';
import { ApproveScreen } from '../../src/ui/approve-screen.js';
import { createRequestStore, followRequests, type RequestStore } from '../../src/ui/request-store.js';
import { openApprovalsClient, type ApprovalsClient, type Decision } from '../../src/client/approvals.js';
import { requestView } from '../../src/broker/approvals/view.js';
import type { ApprovalRequest } from '../../src/broker/approvals/types.js';
import { runBroker, type Broker } from '../../src/broker/index.js';
import { silentLogger } from '../../src/broker/log.js';
import type { RequestView } from '../../src/shared/api-types.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { makeBrokerConfig, makeTempDir, waitFor, type TempDir } from '../broker/fixtures.js';
import { BOB, held } from './fixtures.js';
import { requestDetails } from '../../src/ui/format.js';

// The API client reads CLI settings: keep them out of the real home directory.
const settingsDir = mkdtempSync(join(tmpdir(), 'agentgate-screen-settings-'));
process.env['XDG_CONFIG_HOME'] = settingsDir;

const KEY = { up: '\u001B[A', down: '\u001B[B', enter: '\r', escape: '\u001B', backspace: '\u007F' } as const;
const NOW = Date.parse('2030-01-01T12:00:00Z');

// eslint-disable-next-line no-control-regex
const plain = (s: string | undefined): string => (s ?? '').replace(/\u001B\[[0-9;?]*[A-Za-z]/g, '');

type Rendered = ReturnType<typeof render>;
const mounted: Rendered[] = [];

/** Polls the last frame until it matches, failing with the frame when it does not. */
async function frameMatching(ui: Rendered, re: RegExp, what = String(re)): Promise<string> {
  try {
    return await waitFor(what, () => {
      const f = plain(ui.lastFrame());
      return re.test(f) ? f : undefined;
    });
  } catch (err) {
    throw new Error(`${(err as Error).message}; last frame:\n${plain(ui.lastFrame())}`);
  }
}

let seq = 0;
/** A view as the broker would send it to bob. */
function view(over: Partial<ApprovalRequest> = {}, ageMs = 90_000): RequestView {
  const created = NOW - ageMs;
  const r: ApprovalRequest = {
    ...held(),
    id: `apr_test${String(++seq).padStart(8, '0')}`,
    status: 'pending',
    created_at: new Date(created).toISOString(),
    expires_at: new Date(created + 600_000).toISOString(),
    decisions: [],
    revision: 1,
    ...over,
  };
  return requestView(r, BOB);
}

interface Decided {
  id: string;
  decision: Decision;
  reason: string | null;
}

function mount(store: RequestStore, opts: { fail?: string } = {}) {
  const calls: Decided[] = [];
  let exits = 0;
  const decide = async (id: string, decision: Decision, reason: string | null): Promise<RequestView> => {
    calls.push({ id, decision, reason });
    if (opts.fail) throw Object.assign(new Error(opts.fail), { hint: 'try again' });
    const current = store.getState().requests.find((r) => r.id === id)!;
    const at = new Date(NOW).toISOString();
    return {
      ...current,
      status: decision === 'approve' ? 'approved' : 'denied',
      can_decide: false,
      revision: current.revision + 1,
      decisions: [{ approver: { sub: 'bob' }, decision, reason, at }],
    };
  };
  const ui = render(<ApproveScreen store={store} decide={decide} onExit={() => exits++} now={() => NOW} viewer="bob" />);
  mounted.push(ui);
  return { ui, calls, exits: () => exits };
}

afterEach(() => {
  for (const ui of mounted.splice(0)) ui.unmount();
});
after(() => rmSync(settingsDir, { recursive: true, force: true }));

describe('approve screen', () => {
  test('stays usable with hundreds pending: a window around the selection, moving with it', async () => {
    const many = Array.from({ length: 400 }, (_, i) => view({ statement: `UPDATE t SET v = ${i}`, fingerprint: `many-${i}` }, 1_000 + i * 1_000));
    const { ui, calls } = mount(createRequestStore(many, 'live'));
    const first = await frameMatching(ui, /400 waiting for your review/);
    assert.ok(first.split('\n').length < 60, 'the frame shows a window, not every request');
    assert.match(first, /… \d+ older/);
    for (let i = 0; i < 30; i++) ui.stdin.write(KEY.down);
    const moved = await frameMatching(ui, /› .*UPDATE t SET v = 30\b/);
    assert.match(moved, /… \d+ newer/);
    ui.stdin.write('a');
    await frameMatching(ui, /Reason \(optional\):/);
    ui.stdin.write(KEY.enter);
    await waitFor('the decision', () => calls[0]);
    assert.equal(calls[0]?.id, many[30]?.id);
  });

  test('an empty list says so clearly', async () => {
    const { ui } = mount(createRequestStore([], 'live'));
    const frame = await frameMatching(ui, /Nothing waiting for your review/);
    assert.match(frame, /● live/);
    assert.match(frame, /q quit/);
  });

  test('lists age, requester, target, rule, statement and why held; arrows move, Enter shows details, Esc goes back', async () => {
    const older = view({ statement: 'DELETE FROM orders WHERE id = 7', fingerprint: 'a' }, 5 * 60_000);
    const newer = view({ reason: 'writes to public.users', rule: 'agents#3', fingerprint: 'b' }, 42_000);
    const mine = { ...view({ fingerprint: 'c' }), mine: true, can_decide: false };
    const { ui } = mount(createRequestStore([older, newer, mine], 'live'));

    const frame = await frameMatching(ui, /2 waiting for your review/);
    assert.match(frame, /AGE\s+REQUESTER\s+TARGET\s+RULE\s+STATEMENT/);
    assert.match(frame, /› 42s\s+Agent Seven\s+pg-prod\s+agents#3\s+UPDATE users SET plan = 'pro' WHERE id = 42/);
    assert.match(frame, /held: writes to public\.users · 0 of 1 approvals from dba/);
    assert.match(frame, /\s{2}5m\s+Agent Seven\s+pg-prod\s+agents#2\s+DELETE FROM orders WHERE id = 7/);
    assert.equal(frame.match(/Agent Seven/g)?.length, 2, 'a request the viewer cannot decide is not listed');

    ui.stdin.write(KEY.down);
    await frameMatching(ui, /› 5m\s+Agent Seven/);
    ui.stdin.write(KEY.down);
    await frameMatching(ui, /› 5m/, 'the cursor stays on the last row');
    ui.stdin.write(KEY.up);
    await frameMatching(ui, /› 42s/);
    ui.stdin.write(KEY.down);
    await frameMatching(ui, /› 5m/);

    ui.stdin.write(KEY.enter);
    const details = await frameMatching(ui, new RegExp(`Request ${older.id}`));
    assert.match(details, /Why held\s+update needs review by dba/);
    assert.match(details, /Requester\s+Agent Seven \(agent-7\), agent/);
    assert.match(details, /Status\s+pending, expires in 5m/);
    assert.match(details, /DELETE FROM orders WHERE id = 7/);
    // The classification in words, not JSON.
    assert.match(details, /Classification\s+update; writes public\.users/);
    ui.stdin.write(KEY.escape);
    await frameMatching(ui, /AGE\s+REQUESTER/);
  });

  test('`a` asks for confirmation (Esc cancels), then Enter approves and the request leaves the list', async () => {
    const store = createRequestStore([view()], 'live');
    const { ui, calls } = mount(store);
    await frameMatching(ui, /1 waiting/);
    ui.stdin.write('a');
    await frameMatching(ui, /Approve apr_test\d+ \(agent-7 on pg-prod\)\? .*\n.*Reason \(optional\):/);
    ui.stdin.write(KEY.escape);
    await frameMatching(ui, /Approve cancelled; apr_test\d+ is still pending/);
    assert.equal(calls.length, 0, 'a single key decides nothing');
    ui.stdin.write('a');
    await frameMatching(ui, /Reason \(optional\):/);
    ui.stdin.write(KEY.enter);
    const frame = await frameMatching(ui, /Approved apr_test\d+: the held statement runs now/);
    assert.match(frame, /Nothing waiting for your review/);
    assert.deepEqual(
      calls.map((c) => [c.decision, c.reason]),
      [['approve', null]],
    );
  });

  test('`d` asks for a reason: typing and Backspace edit it, Enter sends it, an empty one is refused', async () => {
    const target = view();
    const { ui, calls } = mount(createRequestStore([target], 'live'));
    await frameMatching(ui, /1 waiting/);
    ui.stdin.write('d');
    await frameMatching(ui, /Reason:/);
    ui.stdin.write(KEY.enter);
    await frameMatching(ui, /A denial needs a reason/);
    assert.equal(calls.length, 0);
    for (const ch of 'not nowx') ui.stdin.write(ch);
    ui.stdin.write(KEY.backspace);
    await frameMatching(ui, /Reason: not now\s/);
    ui.stdin.write(' (freeze)');
    await frameMatching(ui, /Reason: not now \(freeze\)/);
    ui.stdin.write(KEY.enter);
    await frameMatching(ui, /Denied apr_test\d+: not now \(freeze\)/);
    assert.deepEqual(calls, [{ id: target.id, decision: 'deny', reason: 'not now (freeze)' }]);
  });

  test('Esc cancels the reason entry and nothing is decided', async () => {
    const { ui, calls } = mount(createRequestStore([view()], 'live'));
    await frameMatching(ui, /1 waiting/);
    ui.stdin.write('d');
    await frameMatching(ui, /Reason:/);
    ui.stdin.write('nope');
    await frameMatching(ui, /Reason: nope/);
    ui.stdin.write(KEY.escape);
    const frame = await frameMatching(ui, /Deny cancelled; apr_test\d+ is still pending/);
    assert.match(frame, /› 1m/);
    assert.equal(calls.length, 0);
  });

  test('a refused decision is shown with its hint and the request stays', async () => {
    const { ui } = mount(createRequestStore([view()], 'live'), { fail: 'bob has already decided request apr_x' });
    await frameMatching(ui, /1 waiting/);
    ui.stdin.write('a');
    await frameMatching(ui, /Reason \(optional\):/);
    ui.stdin.write(KEY.enter);
    const frame = await frameMatching(ui, /Could not approve apr_test\d+: bob has already decided request apr_x \(try again\)/);
    assert.match(frame, /1 waiting/);
  });

  test('terminal controls and bidi overrides in a statement are shown as escapes, never obeyed', async () => {
    const sneaky = view({ statement: 'DROP TABLE t;\r\u001b[2KSELECT 1\u202e', fingerprint: 'sneaky' });
    const shown = String.raw`DROP TABLE t;\x0d\x1b[2KSELECT 1\u{202e}`;
    const { ui } = mount(createRequestStore([sneaky], 'live'));
    const list = await frameMatching(ui, /1 waiting/);
    // One line per request: line breaks (a CR too) become spaces there.
    assert.ok(list.includes(String.raw`DROP TABLE t; \x1b[2KSELECT 1\u{202e}`), list);
    ui.stdin.write(KEY.enter);
    const details = await frameMatching(ui, /Request apr_test/);
    assert.ok(details.includes(shown), details);
    // eslint-disable-next-line no-control-regex -- the raw controls it looks for
    assert.ok(!/[\u001b\r\u202e]/.test(plain(requestDetails(sneaky))), 'the no-TTY details print no raw controls either');
  });

  test('a held Kubernetes write shows its Content-Type and body (escaped) in the list and the details', async () => {
    const patch = view({
      protocol: 'kubernetes',
      statement: 'PATCH /api/v1/namespaces/default/configmaps/app-config',
      body: { contentType: 'application/merge-patch+json', text: '{\n  "data": {\n    "UPSTREAM": "https://attacker.example/\u202ecollect"\n  }\n}' },
      fingerprint: 'k8s-body',
    });
    const { ui } = mount(createRequestStore([patch], 'live'));
    const list = await frameMatching(ui, /1 waiting/);
    assert.ok(list.includes('body: application/merge-patch+json { "data": { "UPSTREAM"'), list);
    ui.stdin.write(KEY.enter);
    const details = await frameMatching(ui, /Request apr_test/);
    assert.match(details, /Content-Type\s+application\/merge-patch\+json/);
    assert.ok(details.includes(String.raw`"UPSTREAM": "https://attacker.example/\u{202e}collect"`), details);
    assert.match(details, /exactly this body and Content-Type/);
    const text = requestDetails(patch);
    assert.match(text, /Body\s+\{/);
    assert.ok(!text.includes('\u202e'), 'the no-TTY details print no raw bidi override');
  });

  test('new requests appear live, and q quits', async () => {
    const store = createRequestStore([], 'connecting');
    const { ui, exits } = mount(store);
    await frameMatching(ui, /connecting/);
    store.setStatus('live');
    store.upsert(view({ statement: 'TRUNCATE audit_tmp', fingerprint: 'live' }, 3_000));
    const frame = await frameMatching(ui, /1 waiting for your review/);
    assert.match(frame, /› 3s\s+Agent Seven\s+pg-prod\s+agents#2\s+TRUNCATE audit_tmp/);
    ui.stdin.write('q');
    await waitFor('onExit', () => (exits() === 1 ? true : undefined));
  });
});

describe('approve screen against a real broker', () => {
  let tmp: TempDir;
  let issuer: TestIssuer;
  let broker: Broker;
  let client: ApprovalsClient;
  let store: RequestStore;
  const feed = new AbortController();
  let following: Promise<void>;

  before(async () => {
    tmp = await makeTempDir('agentgate-screen-');
    issuer = await startTestIssuer();
    broker = await runBroker(makeBrokerConfig(tmp.path, { identity: { issuer: issuer.issuer } }), { port: 0, logger: silentLogger, closeGraceMs: 100 });
    const token = await issuer.sign({ sub: 'bob', groups: ['dba'] }, { expiresIn: 3600 });
    client = await openApprovalsClient({}, { AGENTGATE_BROKER: broker.url, AGENTGATE_FINGERPRINT: broker.fingerprint, AGENTGATE_TOKEN: token });
    store = createRequestStore();
    following = followRequests(client, store, feed.signal, { retryMs: 50 });
  });

  after(async () => {
    feed.abort();
    await following;
    await client?.close();
    await broker?.close();
    await issuer?.close();
    await tmp?.remove();
  });

  test('a held statement appears live; `a` approves it through the API and releases it, `d` denies with a reason', async () => {
    const first = broker.approvals.request(held({ fingerprint: 'fp-screen-1', statement: 'UPDATE accounts SET frozen = true WHERE id = 9' }));
    const ui = render(<ApproveScreen store={store} decide={(id, d, r) => client.decide(id, d, r)} onExit={() => {}} viewer="bob" />);
    mounted.push(ui);
    await frameMatching(ui, /● live/);
    await frameMatching(ui, /UPDATE accounts SET frozen = true WHERE id = 9/, 'the request that was waiting before the screen opened');

    const second = broker.approvals.request(held({ fingerprint: 'fp-screen-2', statement: 'DELETE FROM sessions WHERE expired' }));
    await frameMatching(ui, /2 waiting for your review[\s\S]*› \d+s\s+Agent Seven\s+pg-prod\s+agents#2\s+DELETE FROM sessions WHERE expired/);

    ui.stdin.write(KEY.down);
    await frameMatching(ui, /› \d+s\s+Agent Seven\s+pg-prod\s+agents#2\s+UPDATE accounts/);
    ui.stdin.write('a');
    await frameMatching(ui, /Reason \(optional\):/);
    ui.stdin.write('checked the ticket');
    await frameMatching(ui, /Reason \(optional\): checked the ticket/);
    ui.stdin.write(KEY.enter);
    await frameMatching(ui, new RegExp(`Approved ${first.request.id}`));
    assert.equal((await first.outcome).status, 'approved');

    ui.stdin.write('d');
    await frameMatching(ui, /Reason:/);
    ui.stdin.write('expire them in the nightly job');
    await frameMatching(ui, /Reason: expire them in the nightly job/);
    ui.stdin.write(KEY.enter);
    await frameMatching(ui, new RegExp(`Denied ${second.request.id}: expire them in the nightly job`));
    const o = await second.outcome;
    assert.equal(o.status === 'denied' ? o.reason : o.status, 'expire them in the nightly job');
    await frameMatching(ui, /Nothing waiting for your review/);
  });
});
