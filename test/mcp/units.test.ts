/** The pure parts of `agentgate mcp`: API paths from a tool call, the text table, reasons. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { k8sPath } from '../../src/client/mcp/kubernetes.js';
import { sqlText } from '../../src/client/mcp/text-table.js';
import { sshGrantedRequestId, sshHoldRequestId } from '../../src/client/mcp/ssh-lines.js';
import { answerWithin } from '../helpers/hang-guard.js';
import { decodeReasonHeader, encodeReasonHeader, normalizeReason, MAX_REASON_CHARS } from '../../src/shared/reason.js';
import { withReasonRequirement } from '../../src/broker/policy/reason.js';
import type { PolicyDecision } from '../../src/broker/policy/decision.js';

test('k8sPath: core and grouped resources, namespaced or not; names checked; path and resource exclusive', () => {
  assert.equal(k8sPath({ verb: 'list', resource: 'pods', namespace: 'default' }), '/api/v1/namespaces/default/pods');
  assert.equal(k8sPath({ verb: 'get', resource: 'deployments', namespace: 'web', name: 'api', api_version: 'apps/v1' }), '/apis/apps/v1/namespaces/web/deployments/api');
  assert.equal(k8sPath({ verb: 'list', resource: 'namespaces' }), '/api/v1/namespaces');
  assert.equal(k8sPath({ verb: 'get', path: '/api/v1/namespaces/default/pods/web-1' }), '/api/v1/namespaces/default/pods/web-1');
  assert.throws(() => k8sPath({ verb: 'get', resource: 'pods', namespace: 'default' }), /get needs a name/);
  assert.throws(() => k8sPath({ verb: 'list', resource: 'pods', name: 'x' }), /list takes no name/);
  assert.throws(() => k8sPath({ verb: 'get', resource: 'pods', namespace: '../kube-system', name: 'x' }), /namespace must be a Kubernetes name/);
  assert.throws(() => k8sPath({ verb: 'get', path: '/api/v1/pods', resource: 'pods' }), /either path or resource/);
  // A stream never answers once, however the API server is asked for it (it decodes the key
  // and reads the value with Go's ParseBool); a false one is an ordinary request.
  for (const q of ['watch=t', 'watch=TRUE', 'w%61tch=1', 'follow=T', 'limit=1&watch=True']) {
    assert.throws(() => k8sPath({ verb: 'list', path: `/api/v1/namespaces/default/pods?${q}` }), /stream without end/, q);
  }
  assert.equal(k8sPath({ verb: 'list', path: '/api/v1/pods?watch=false&limit=5' }), '/api/v1/pods?watch=false&limit=5');
  assert.throws(() => k8sPath({ verb: 'get', path: 'api/v1/pods' }), /absolute API path/);
  assert.throws(() => k8sPath({ verb: 'list', path: '/api/v1/pods?labelSelector=a&watch=1' }), /stream without end/);
  assert.throws(() => k8sPath({ verb: 'get', resource: 'pods', api_version: 'apps/v1/../../x', name: 'a' }), /api_version must look like/);
});

test('sqlText: an aligned table, NULL spelled out, long and multi-line cells cut to one line, the tail says what was left out', () => {
  const long = 'x'.repeat(200);
  const text = sqlText(
    { command: 'SELECT 3', columns: [{ name: 'id', type_oid: 23 }, { name: 'note', type_oid: 25 }], rows: [['1', 'a\nb'], ['22', null]], row_count: 3, truncated: true },
    2,
  );
  assert.equal(text, ['id | note', '---+-----', '1  | a\\nb', '22 | NULL', '(SELECT 3; showing the first 2 of 3 rows — max_rows is 2)'].join('\n'));
  const cut = sqlText({ command: 'SELECT 1', columns: [{ name: 'v', type_oid: 25 }], rows: [[long]], row_count: 1, truncated: false }, 100);
  assert.match(cut, /^v\n-+\nx{79}…\n\(SELECT 1\)$/);
  assert.equal(sqlText({ command: 'UPDATE 1', columns: [], rows: [], row_count: 0, truncated: false }, 100), '(UPDATE 1)');
});

test('reasons: normalized (trimmed, control characters out, capped), and carried through a header unchanged', () => {
  assert.equal(normalizeReason('  fix \u001b[31mit\n now '), 'fix [31mit now');
  assert.equal(normalizeReason(' \n\t '), undefined);
  assert.equal(normalizeReason(undefined), undefined);
  assert.equal(normalizeReason('y'.repeat(MAX_REASON_CHARS + 10))?.length, MAX_REASON_CHARS);
  const reason = 'ticket ÖPS-42: refund, then "check" 100% ✓';
  const header = encodeReasonHeader(reason);
  assert.match(header, /^[\x21-\x7e]+$/, 'header-safe');
  assert.equal(decodeReasonHeader(header), reason);
  assert.equal(decodeReasonHeader('%E0%A4%A'), undefined, 'undecodable is no reason');
});

test('require_reason turns allow and review into a deny naming the policy; deny, or a reason given, stays as it was', () => {
  const review: PolicyDecision = { effect: 'review', policy: 'careful', rule: 'writes', reason: 'rule writes holds update', approvers: { groups: ['dba'], count: 1 } };
  const refused = withReasonRequirement(review, true, undefined);
  assert.equal(refused.effect, 'deny');
  assert.equal(refused.rule, 'require_reason');
  assert.equal(refused.approvers, undefined);
  assert.match(refused.reason, /^policy careful requires a reason and none was given/);
  assert.equal(withReasonRequirement(review, true, 'INC-1'), review);
  assert.equal(withReasonRequirement(review, false, undefined), review);
  const deny: PolicyDecision = { effect: 'deny', policy: 'careful', rule: 'rest', reason: 'rule rest denies drop' };
  assert.equal(withReasonRequirement(deny, true, undefined), deny);
});

test("sshHoldRequestId / sshGrantedRequestId: the SSH proxy's own lines, and nothing else", () => {
  const hold = 'agentgate: rule ops#2 holds `systemctl restart api`; held for approval by 1 of [dba]: apr_7k2x — an approver runs: agentgate approve apr_7k2x (waiting…)';
  assert.equal(sshHoldRequestId(hold), 'apr_7k2x');
  assert.equal(sshHoldRequestId(hold.replace(' (waiting…)', '')), undefined, 'not waiting');
  assert.equal(sshHoldRequestId(`x${hold}`), undefined, 'not at the start');
  assert.equal(sshHoldRequestId('agentgate: ; held for approval by : apr_1 — (waiting…)'), undefined, 'an approver is named');
  assert.equal(sshHoldRequestId('agentgate: ; held for approval by a: apr_ — b: apr_9 — (waiting…)'), 'apr_9', 'the first well-formed id');
  assert.equal(sshHoldRequestId('agentgate: ; held for approval by a: apr_Q1 — (waiting…)'), undefined, 'ids are lower-case');
  assert.equal(sshGrantedRequestId('agentgate: approval apr_7k2x granted; running'), 'apr_7k2x');
  assert.equal(sshGrantedRequestId('agentgate: approval apr_7k2x granted; running now'), undefined);
  assert.equal(sshGrantedRequestId('agentgate:approval apr_7k2x granted; running'), undefined);
});

// The command's own stderr is parsed with these, and the earlier pattern backtracked
// cubically (27 kB took 7 s; this line would take days).
test('sshHoldRequestId is linear on a crafted megabyte of look-alike hold fragments', async () => {
  const out = await answerWithin<unknown>(
    `import(workerData.lines).then(({ sshHoldRequestId }) => {
      const frag = '; held for approval by x: apr_a — ';
      parentPort.postMessage([sshHoldRequestId('agentgate: ' + frag.repeat(30_000)), sshHoldRequestId('agentgate: ' + frag.repeat(30_000) + '(waiting…)')]);
    });`,
    { lines: new URL('../../src/client/mcp/ssh-lines.js', import.meta.url).href },
  );
  assert.deepEqual(out, [undefined, 'apr_a']);
});
