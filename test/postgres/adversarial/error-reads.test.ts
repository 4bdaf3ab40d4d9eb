/**
 * Errors and notices of a statement that reads a masked column anywhere (notice-fields.ts,
 * masking/statement-reads.ts), on the real stack: quoted values in the message are masked
 * whole and the fields that echo input unquoted are withheld, for a simple Query, Parse/
 * Bind/Execute, a pipeline (the error is the second statement's) and FunctionCall (COPY,
 * which this file's policy denies, is in test/policy/postgres-masking-e2e.test.ts);
 * a statement that reads no masked column keeps its error as the server wrote it.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertAbsent,
  BackendType,
  describeMsgs,
  errorsOf,
  exchange,
  fe,
  functionCall,
  simple,
  useAdversary,
  type Adversary,
  type Msg,
  SHORT_FRAGMENTS,
} from './harness.js';
import { decodeErrorResponse } from '../../../src/broker/postgres/decode-backend.js';
import { READS_MASKED_TEXT } from '../../../src/broker/masking/notice-fields.js';

const SHORT = SHORT_FRAGMENTS;
const LEAK = "select current_setting(split_part(email, '@', 1)) from users";

/** The first ErrorResponse's fields, by code. */
function errorFields(msgs: Msg[]): Map<string, string> {
  const m = msgs.find((x) => x.type === BackendType.errorResponse);
  assert.ok(m, `no error: ${describeMsgs(msgs)}`);
  const out = new Map<string, string>();
  const body = m.body;
  let p = 0;
  while (p < body.length && body[p] !== 0) {
    const end = body.indexOf(0, p + 1);
    out.set(String.fromCharCode(body[p]!), body.toString('utf8', p + 1, end));
    p = end + 1;
  }
  return out;
}

function assertMaskedLeak(msgs: Msg[]): void {
  const f = errorFields(msgs);
  assert.equal(f.get('C'), '42704', describeMsgs(msgs));
  assert.equal(f.get('M'), 'unrecognized configuration parameter "********"');
}

describe('errors of statements that read a masked column', () => {
  let adv!: Adversary;
  void adv;
  const withClient = useAdversary((a) => (adv = a), {
    check: (cl) => {
      for (const f of SHORT) assertAbsent(cl.bytes(), f);
    },
  });

  test('simple Query: the quoted value is masked; the SQLSTATE and position stay', () =>
    withClient(async ({ c }) => {
      assertMaskedLeak(await simple(c, LEAK));
    }));

  test('a WHERE clause reading the masked column is enough', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, "select 1 from users where current_setting(split_part(email, '@', 1)) is null");
      assertMaskedLeak(msgs);
    }));

  test('a subquery reading the masked column is enough', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, "select current_setting((select split_part(email, '@', 1) from users where id = 1))");
      assertMaskedLeak(msgs);
    }));

  test('a view over the masked column is followed', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, "select current_setting(split_part(contact, '@', 1)) from v_users");
      assertMaskedLeak(msgs);
    }));

  test('CONTEXT and DETAIL (JSON) are withheld whole', () =>
    withClient(async ({ c }) => {
      const f = errorFields(await simple(c, "select ('{\"a\": ' || split_part(email, '@', 1) || '}')::json from users"));
      assert.equal(f.get('C'), '22P02');
      assert.equal(f.get('D'), READS_MASKED_TEXT);
      assert.equal(f.get('W'), READS_MASKED_TEXT);
    }));

  test('Parse/Bind/Execute: the error at Execute is masked', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [fe.parse('', "select current_setting(split_part(email, '@', $1::int)) from users"), fe.bind('', '', ['1']), fe.execute('', 0), fe.SYNC]);
      assertMaskedLeak(msgs);
    }));

  test('a pipeline: the error of the second statement is judged by the second statement', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [
        fe.parse('a', 'select 1'),
        fe.bind('', 'a', []),
        fe.execute('', 0),
        fe.parse('b', LEAK),
        fe.bind('', 'b', []),
        fe.execute('', 0),
        fe.SYNC,
      ]);
      assertMaskedLeak(msgs);
    }));

  test('a pipeline: a statement that reads no masked column keeps its message after one that does', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [
        fe.parse('a', 'select email from users'),
        fe.bind('', 'a', []),
        fe.execute('', 0),
        fe.parse('b', "select current_setting('nosuch.param')"),
        fe.bind('', 'b', []),
        fe.execute('', 0),
        fe.SYNC,
      ]);
      assert.equal(errorFields(msgs).get('M'), 'unrecognized configuration parameter "nosuch.param"');
    }));

  test('a multi-statement Query: the error of a later statement is masked', () =>
    withClient(async ({ c }) => {
      assertMaskedLeak(await simple(c, `select 1; ${LEAK}`));
    }));

  test('FunctionCall: what runs is not shown by any text, so its error is masked', () =>
    withClient(async ({ c }) => {
      const [oidRow] = (await simple(c, "select 'current_setting(text)'::regprocedure::oid")).filter((m) => m.type === BackendType.dataRow);
      assert.ok(oidRow);
      const oid = Number(oidRow.body.toString('utf8', 6));
      const msgs = await exchange(c, [functionCall(oid, ['nosuch.param'])]);
      const e = msgs.find((m) => m.type === BackendType.errorResponse);
      assert.ok(e, describeMsgs(msgs));
      const f = decodeErrorResponse(e.body);
      // Refused by the gate, or answered by the server with the value masked.
      if (f.code === '42704') assert.equal(f.message, 'unrecognized configuration parameter "********"');
    }));

  test('a statement reading only unmasked columns keeps its message (name holds no secret)', () =>
    withClient(async ({ c }) => {
      const f = errorFields(await simple(c, 'select current_setting(name) from users'));
      assert.equal(f.get('M'), 'unrecognized configuration parameter "Alpha"');
    }));
});
