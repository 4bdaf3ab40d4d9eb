/**
 * The pipeline tracker on its own: names follow the server's confirmations, not what the
 * client sent; what an unconfirmed earlier batch did makes a lookup wait.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { followFrontend, PipelineTracker, type PreparedStatement, type StatementRecord } from '../../src/broker/postgres/pipeline.js';
import { FrontendType } from '../../src/broker/postgres/protocol.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';

function tracker(): { t: PipelineTracker; records: StatementRecord[] } {
  const records: StatementRecord[] = [];
  return { t: new PipelineTracker((r) => records.push(r)), records };
}

function known(x: unknown): PreparedStatement {
  assert.equal(typeof x, 'object', `expected a known statement, got ${String(x)}`);
  return x as PreparedStatement;
}

test('a statement exists once ParseComplete confirms it, not when Parse is sent', () => {
  const { t } = tracker();
  t.parse('d', 'delete from t', 0);
  // Same batch: taken as given (if the Parse fails, the server skips what refers to it).
  assert.equal(known(t.statement('d')).sql, 'delete from t');
  t.sync();
  // A later batch may not assume the Parse succeeded.
  assert.equal(t.statement('d'), 'wait');
  t.parseComplete();
  t.ready('I');
  assert.equal(known(t.statement('d')).sql, 'delete from t');
});

test('a Close the server skips after an error closes nothing (the Close/Sync trick)', () => {
  const { t } = tracker();
  t.parse('d', 'delete from t', 0);
  t.sync();
  t.parseComplete();
  t.ready('I');
  // A failing message, then Close of "d", in one batch; then Bind of "d" in the next.
  t.parse('x', 'selec 1', 0);
  t.close('S', 'd');
  assert.equal(t.statement('d'), 'unknown', 'within the batch the Close is taken as given');
  t.sync();
  // Before the server answered, the Close is not yet confirmed: a Bind must wait.
  assert.equal(t.statement('d'), 'wait');
  t.error('42601');
  // The error means the server skips the rest of the batch, the Close with it.
  assert.equal(known(t.statement('d')).sql, 'delete from t');
  t.ready('I');
  // The server skipped the Close after the error: "d" still runs DELETE, and the gate sees it.
  assert.equal(known(t.statement('d')).sql, 'delete from t');
});

test('a Close confirmed by CloseComplete removes the statement; Bind of it is unknown', () => {
  const { t } = tracker();
  t.parse('s', 'select 1', 0);
  t.sync();
  t.parseComplete();
  t.ready('I');
  t.close('S', 's');
  assert.equal(t.statement('s'), 'unknown', 'in the same batch the Close is taken as given');
  t.sync();
  t.closeComplete();
  t.ready('I');
  assert.equal(t.statement('s'), 'unknown');
});

test('a Parse that fails leaves the earlier statement of that name in place', () => {
  const { t } = tracker();
  t.parse('s', 'delete from t', 0);
  t.sync();
  t.parseComplete();
  t.ready('I');
  t.parse('s', 'select 1', 0); // the server refuses: "s" already exists
  t.sync();
  assert.equal(t.statement('s'), 'wait');
  t.error('42P05');
  t.ready('I');
  assert.equal(known(t.statement('s')).sql, 'delete from t');
});

test('portals end with the transaction and with the unnamed statement after a simple Query', () => {
  const { t } = tracker();
  t.parse('', 'select 1', 0);
  const st = known(t.statement(''));
  t.bind('p', st, 0, []);
  t.sync();
  t.parseComplete();
  t.bindComplete();
  t.ready('T');
  assert.equal(typeof t.portal('p'), 'object', 'a portal lives on inside the transaction');
  t.query('commit', undefined);
  t.commandComplete('COMMIT', null);
  t.ready('I');
  assert.equal(t.portal('p'), 'unknown');
  assert.equal(t.statement(''), 'unknown', 'a simple Query destroys the unnamed statement');
});

test('SQL PREPARE, DEALLOCATE, DECLARE and CLOSE change the names, as far as the Query ran', () => {
  const { t } = tracker();
  t.parse('s', 'select 1', 0);
  t.sync();
  t.parseComplete();
  t.ready('I');
  t.query('deallocate all; prepare q as select 2', undefined, [
    { op: { op: 'deallocate', name: undefined }, text: 'deallocate all' },
    { op: { op: 'prepare', name: 'q' }, text: 'prepare q as select 2' },
  ]);
  assert.equal(t.statement('s'), 'wait');
  t.commandComplete('DEALLOCATE ALL', null);
  t.commandComplete('PREPARE', null);
  t.ready('I');
  assert.equal(t.statement('s'), 'unknown');
  assert.equal(known(t.statement('q')).sql, 'prepare q as select 2');
  // A Query that fails after its first statement: only the first one's change holds.
  t.query('prepare r as select 3; select 1/0; prepare z as select 4', undefined, [
    { op: { op: 'prepare', name: 'r' }, text: 'prepare r as select 3' },
    undefined,
    { op: { op: 'prepare', name: 'z' }, text: 'prepare z as select 4' },
  ]);
  t.commandComplete('PREPARE', null);
  t.error('22012');
  t.ready('I');
  assert.equal(known(t.statement('r')).sql, 'prepare r as select 3');
  assert.equal(t.statement('z'), 'unknown');
  t.query('begin; declare c cursor for select 1', undefined, [undefined, { op: { op: 'declare', name: 'c' }, text: 'declare c cursor for select 1' }]);
  t.commandComplete('BEGIN', null);
  t.commandComplete('DECLARE CURSOR', null);
  t.ready('T');
  const c = t.portal('c');
  assert.equal(typeof c === 'object' ? c.statement.sql : c, 'declare c cursor for select 1');
  t.query('commit', undefined);
  t.commandComplete('COMMIT', null);
  t.ready('I');
  assert.equal(t.portal('c'), 'unknown', 'a cursor ends with its transaction');
});

test('the proxy own refusal: swallowed ParseComplete/BindComplete, and the unnamed statement is gone', () => {
  const { t, records } = tracker();
  t.parse('', 'select 1', 0);
  t.sync();
  t.parseComplete();
  t.ready('I');
  t.refusal('delete from t', 0, '', { effect: 'deny', rule: 'r', reason: 'no' });
  t.sync();
  assert.equal(t.parseComplete(), true);
  assert.equal(t.bindComplete(), true);
  assert.equal(t.refusalHead, 'statement');
  t.error('42501');
  t.ready('I');
  assert.equal(t.statement(''), 'unknown');
  assert.equal(records.length, 1);
  assert.equal(records[0]!.sql, 'delete from t');
  assert.equal(records[0]!.status, 'error');
});

test('Execute records carry the confirmed statement text, and rows count per statement', () => {
  const { t, records } = tracker();
  t.parse('q', 'select * from t', 0);
  const st = known(t.statement('q'));
  const portal = t.bind('', st, 1, [1]);
  t.execute(portal, { effect: 'allow', rule: 'r' });
  t.sync();
  t.parseComplete();
  t.bindComplete();
  t.row(20);
  t.row(20);
  t.commandComplete('SELECT 2', 2);
  t.ready('I');
  assert.equal(records.length, 1);
  assert.deepEqual([records[0]!.sql, records[0]!.rows, records[0]!.bytes, records[0]!.statement, records[0]!.params], ['select * from t', 2, 40, 'q', 1]);
});

test('an error before the client sent its Sync: the server ignores everything until that Sync, a Query or FunctionCall too, and so does the tracker', () => {
  const { t, records } = tracker();
  t.parse('', 'select 1/0', 0);
  const portal = t.bind('', { name: '', sql: 'select 1/0', paramTypes: 0 }, 0, []);
  t.execute(portal, undefined);
  // (Flush: the server answers what it has, with no Sync yet.)
  t.parseComplete();
  t.bindComplete();
  t.error('22012');
  assert.equal(t.discarding, true, 'no Sync was sent: the server skips what comes next');
  // What the client sends now is ignored by the server: nothing may be queued as owed an answer.
  followFrontend(t, FrontendType.query, fe.query('select 1').subarray(5));
  followFrontend(t, FrontendType.functionCall, Buffer.alloc(0));
  followFrontend(t, FrontendType.parse, fe.parse('p', 'select 2').subarray(5));
  assert.equal(t.busy, false, 'nothing queued while the server discards');
  followFrontend(t, FrontendType.sync, Buffer.alloc(0));
  assert.equal(t.discarding, false, 'the Sync ends the skipping');
  t.ready('I');
  assert.equal(t.busy, false, 'the ReadyForQuery answered the Sync: nothing left behind it');
  assert.equal(t.statement('p'), 'unknown', 'the ignored Parse created nothing');
  // The next batch lines up with its own answers.
  t.parse('', 'select 3', 0);
  t.sync();
  assert.equal(t.head?.kind, 'parse');
  assert.ok(records.every((r) => r.sql !== 'select 1'), 'the ignored Query is not recorded as run');
});

test('an error with the Sync already sent: only the batch is skipped, later messages are queued', () => {
  const { t } = tracker();
  t.parse('', 'select 1/0', 0);
  t.sync();
  t.error('22012');
  assert.equal(t.discarding, false, 'the Sync is on its way: the server stops skipping there');
  t.query('select 1', undefined);
  assert.equal(t.busy, true);
});
