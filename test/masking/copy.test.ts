import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ResultMasker } from '../../src/broker/postgres/proxy-masking.js';
import type { MaskingPlan } from '../../src/broker/masking/rules.js';
import type { MaskingConfig } from '../../src/broker/config/types.js';
import type { FieldDescription } from '../../src/broker/postgres/decode-backend.js';
import { col, copyData, copyOutResponse, copyPayload, fixedCatalog, frames, maskingPlan } from './helpers.js';

const KEY = Buffer.alloc(32, 5);

const plan = (config: Partial<MaskingConfig>): MaskingPlan => maskingPlan({ style: 'partial', ...config });

/** The fixed catalog describes `SELECT id, email, note FROM users` and friends. */
function describeUsers(sql: string): FieldDescription[] | undefined {
  const m = /^SELECT (.*) FROM (?:public\.)?users$/.exec(sql);
  if (!m) return undefined;
  const byName: Record<string, number> = { id: 1, email: 2, ssn: 3, note: 4, password_hash: 5, profile: 6, birth_date: 7, code: 8 };
  const names = m[1] === '*' ? Object.keys(byName) : m[1]!.split(', ');
  return names.map((n) => col(byName[n]!));
}

async function start(m: ResultMasker, sql: string, columns: number, format = 0): Promise<void> {
  m.frontend(0x51, Buffer.from(`${sql}\0`));
  const r = m.backend({ type: 0x48, frame: copyOutResponse(format, columns), body: copyOutResponse(format, columns).subarray(5) });
  if (r instanceof Promise) await r;
}

test('COPY text: whole columns and detector spans, escapes kept valid, NULL untouched, HEADER passed', async () => {
  const catalog = fixedCatalog(describeUsers);
  const m = new ResultMasker(plan({ columns: ['*.email'], detectors: ['credit_card'], style: 'partial' }), KEY, catalog);
  await start(m, 'COPY users (id, email, note) TO STDOUT WITH (HEADER)', 3);
  assert.deepEqual(catalog.described, ['SELECT id, email, note FROM users']);

  const header = copyData('id\temail\tnote\n');
  assert.equal(m.copyData(header), header, 'the header row is not data');
  assert.equal(copyPayload([m.copyData(copyData('1\talice@example.com\tcard 4111111111111111 ok\n'))]), '1\t****@example.com\tcard ****1111 ok\n');
  const nulls = copyData('2\t\\N\t\\N\n');
  assert.equal(m.copyData(nulls), nulls);
  // The kept suffix holds a tab: written back escaped.
  assert.equal(copyPayload([m.copyData(copyData('3\t12345\\t78\tline\\nbreak\n'))]), '3\t****5\\t78\tline\\nbreak\n');
  assert.equal(m.copyDone(), undefined);
  assert.deepEqual(m.counts().byRule, { 'column:*.email': 2, credit_card: 1 });
});

test('COPY CSV: quoted fields with delimiters, quotes and newlines, rows split across CopyData', async () => {
  const m = new ResultMasker(plan({ columns: ['*.email'], detectors: ['email'], style: 'partial' }), KEY, fixedCatalog(describeUsers));
  await start(m, 'copy public.users (id, email, note) to stdout with (format csv, header true)', 3);
  const data =
    'id,email,note\n' +
    '1,alice@example.com,"paid, thanks to bob@example.org"\n' +
    '2,"dave@example.com","multi\nline ""quoted"" note for carol@example.com"\n' +
    '3,,plain\n' +
    '4,"",\n';
  const expected =
    'id,email,note\n' +
    '1,****@example.com,"paid, thanks to ****@example.org"\n' +
    '2,****@example.com,"multi\nline ""quoted"" note for ****@example.com"\n' +
    '3,,plain\n' +
    '4,********,\n';
  // Whole, then cut into two messages at every offset, then into three at a few.
  const len = Buffer.byteLength(data);
  const cutsList: number[][] = [[], [37, 80], [60, 61], [data.indexOf('multi') + 6, len - 1]];
  for (let c = 1; c < len; c++) cutsList.push([c]);
  for (const cuts of cutsList) {
    const mm = new ResultMasker(plan({ columns: ['*.email'], detectors: ['email'], style: 'partial' }), KEY, fixedCatalog(describeUsers));
    await start(mm, 'copy public.users (id, email, note) to stdout with (format csv, header true)', 3);
    const bytes = Buffer.from(data);
    const parts: Buffer[] = [];
    let prev = 0;
    for (const c of [...cuts, bytes.length]) {
      parts.push(mm.copyData(copyData(bytes.subarray(prev, c))));
      prev = c;
    }
    const tail = mm.copyDone();
    if (tail) parts.push(tail);
    assert.equal(copyPayload(parts), expected, `cut at ${cuts.join(',')}`);
    for (const p of parts) for (const f of frames(p)) assert.equal(f.type, 0x64);
  }
  // A final row with no newline is flushed by CopyDone.
  m.copyData(copyData('id,email,note\n'));
  assert.equal(copyPayload([m.copyData(copyData('5,erin@example.com,x'))]), '');
  assert.equal(copyPayload([m.copyDone()!]), '5,****@example.com,x');
});

test('COPY CSV: hash of a quoted value equals the hash of the same value in a result row', async () => {
  const m = new ResultMasker(plan({ columns: ['*.email'], style: 'hash' }), KEY, fixedCatalog(describeUsers));
  await start(m, "COPY users (email) TO STDOUT (FORMAT 'csv')", 1);
  const out = copyPayload([m.copyData(copyData('"o\'neil@example.com"\n'))]);
  const { maskText } = await import('../../src/broker/masking/styles.js');
  assert.equal(out, `${maskText("o'neil@example.com", 'hash', KEY)}\n`);
});

test('COPY of a query that cannot be described: every field masked, with a notice', async () => {
  const m = new ResultMasker(plan({ columns: ['users.ssn'], style: 'full' }), KEY, fixedCatalog(() => undefined));
  await start(m, 'COPY (SELECT id, ssn FROM users) TO STDOUT', 2);
  // What the columns compute is not known either: the rows are held until CopyDone.
  const held = m.copyData(copyData('1\t123-45-6789\n2\t\\N\n'));
  assert.equal(held.length, 0);
  assert.equal(copyPayload([m.copyDone()!]), '********\t********\n********\t\\N\n');
  assert.match(m.takeNotice() ?? '', /COPY could not be identified/);
});

test('COPY with detectors only: no lookup, spans masked in any column', async () => {
  const catalog = fixedCatalog(describeUsers);
  const m = new ResultMasker(plan({ detectors: ['us_ssn'], style: 'full' }), KEY, catalog);
  await start(m, 'COPY users TO STDOUT', 2);
  assert.equal(catalog.described.length, 0);
  assert.equal(copyPayload([m.copyData(copyData('1\tssn 123-45-6789\n'))]), '1\tssn ********\n');
});

test('COPY BINARY: text-like fields masked, others NULL, tuples split across messages', async () => {
  const m = new ResultMasker(plan({ columns: ['*.email', '*.birth_date'], style: 'full' }), KEY, fixedCatalog(describeUsers));
  await start(m, 'COPY users (id, email, birth_date) TO STDOUT (FORMAT binary)', 3, 1);
  const header = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
  const tuple = (id: number, email: string | null, date: Buffer): Buffer => {
    const parts = [Buffer.from([0, 3]), int32(4), int32(id)];
    if (email === null) parts.push(int32(-1));
    else parts.push(int32(Buffer.byteLength(email)), Buffer.from(email));
    parts.push(int32(date.length), date);
    return Buffer.concat(parts);
  };
  const date = Buffer.from([0, 0, 0x20, 0x00]);
  const stream = Buffer.concat([header, tuple(1, 'alice@example.com', date), tuple(2, null, date), Buffer.from([0xff, 0xff])]);
  const out: Buffer[] = [];
  out.push(m.copyData(copyData(stream.subarray(0, 30))));
  out.push(m.copyData(copyData(stream.subarray(30))));
  const bytes = Buffer.concat(out.flatMap((b) => frames(b).map((f) => f.body)));
  const expected = Buffer.concat([
    header,
    Buffer.concat([Buffer.from([0, 3]), int32(4), int32(1), int32(8), Buffer.from('********'), int32(-1)]),
    Buffer.concat([Buffer.from([0, 3]), int32(4), int32(2), int32(-1), int32(-1)]),
    Buffer.from([0xff, 0xff]),
  ]);
  assert.deepEqual(bytes, expected);
  assert.match(m.takeNotice() ?? '', /masked binary column public\.users\.birth_date returned as NULL/);
});

test('COPY BINARY with detectors only: the COPY is described, so a text field is scanned and masked in place, an int4 passes', async () => {
  const catalog = fixedCatalog(describeUsers);
  const m = new ResultMasker(plan({ detectors: ['credit_card'], style: 'full' }), KEY, catalog);
  await start(m, 'COPY users (id, note) TO STDOUT (FORMAT binary)', 2, 1);
  assert.deepEqual(catalog.described, ['SELECT id, note FROM users'], 'binary fields are read by their type');
  const header = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
  const note = 'card 4111111111111111 ok';
  const tuple = Buffer.concat([Buffer.from([0, 2]), int32(4), int32(7), int32(note.length), Buffer.from(note)]);
  const out = m.copyData(copyData(Buffer.concat([header, tuple, Buffer.from([0xff, 0xff])])));
  const bytes = Buffer.concat(frames(out).map((f) => f.body));
  assert.ok(!bytes.includes(Buffer.from('4111111111111111')), 'the card number is masked');
  assert.ok(bytes.includes(Buffer.concat([int32(4), int32(7)])), 'the int4 passes as it was');
  assert.deepEqual(m.counts().byRule, { credit_card: 1 });
});

function int32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return b;
}
