/**
 * Bind parameter values of a held statement, as the reviewer and the audit log see them:
 * a value the statement ties to a masked column (`UPDATE users SET ssn = $1`) is masked
 * like a literal in its place would be; a binary-format value whose bytes hold a detector
 * hit is shown as masked text, not as hex (which no detector reads); other values are shown
 * as sent, so the reviewer still approves what they can read. Real PostgreSQL, real broker,
 * node-postgres and a raw protocol client; the log is read back from the broker's store.
 * Before this, every one of these values was written raw (the binary one as its hex).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPgStack, TARGET, type PgStack } from './stack.js';
import { RawPg } from './raw-client.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';
import { pgApprovalHelpers } from '../approvals/pg-helpers.js';
import type { Identity } from '../../src/broker/identity/types.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';

const SSN = '931-40-5527';
const SSN2 = '931-40-5528';
const EMAIL = 'qmvzr.tellen@victim.example';
const VISIBLE = 'visible-name-4471';

const POLICIES: PolicyConfig[] = [
  {
    name: 'agents',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'reads', sql: ['select'], effect: 'allow', extra: {} },
      { name: 'writes', sql: ['update', 'insert'], effect: 'review', approvers: { groups: ['dba'], count: 1 }, extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

const DBA: Identity = { sub: 'dba-1', groups: ['dba'], kind: 'human', issuer: 'test', expiresAt: Math.floor(Date.now() / 1000) + 3600 };

/** Every spelling of a secret that would let it be read back: as is, and its UTF-8 in hex. */
function spellings(secret: string): string[] {
  return [secret, Buffer.from(secret, 'utf8').toString('hex')];
}

describe('audit log and reviewers: Bind values tied to a masked column or holding a detector hit', () => {
  let stack: PgStack;
  const { held, direct, client } = pgApprovalHelpers(() => stack, DBA);

  before(async () => {
    stack = await startPgStack({
      policies: POLICIES,
      config: {
        approvals: { timeoutSeconds: 600, webhooks: [] },
        masking: { [TARGET]: { columns: ['users.ssn'], detectors: ['email'], style: 'full' } },
      },
    });
    await stack.pg.psql("CREATE TABLE users (id int PRIMARY KEY, name text, ssn text); INSERT INTO users VALUES (1, 'ada', '000-00-0001'); GRANT ALL ON users TO app;", {
      database: 'app',
    });
  });

  after(async () => {
    await stack?.close();
  });

  test('tied values are masked, detector hits in binary values too, other values shown as sent', async () => {
    const c = await client();
    c.on('error', () => {});
    // node-postgres: extended protocol, text-format values.
    const assigned = c.query('UPDATE users SET ssn = $1 WHERE id = $2 /* assigned */', [SSN, 1]).catch(() => undefined);
    const a = await held('/* assigned */');
    assert.equal(a.parameters?.length, 2);
    assert.doesNotMatch(a.parameters?.[0] ?? '', /931/, 'the value assigned to ssn is masked');
    assert.match(a.parameters?.[0] ?? '', /\*{4}/);
    assert.equal(a.parameters?.[1], "'1'", 'the id is shown as sent');
    await stack.broker.approvals.decide(a.id, DBA, 'deny', 'test');
    await assigned;

    // No column list: the values' columns are the table's, unknown here, so each is masked.
    const c2 = await client();
    c2.on('error', () => {});
    const positional = c2.query('INSERT INTO users VALUES ($1, $2, $3) /* positional */', [7, 'n', SSN2]).catch(() => undefined);
    const p = await held('/* positional */');
    assert.ok(p.parameters?.every((v) => !v.includes(SSN2)), `positional values: ${JSON.stringify(p.parameters)}`);
    await stack.broker.approvals.decide(p.id, DBA, 'deny', 'test');
    await positional;

    // Control: a value tied to no masked column is shown as sent.
    const c3 = await client();
    c3.on('error', () => {});
    const named = c3.query('UPDATE users SET name = $1 WHERE id = $2 /* control */', [VISIBLE, 1]).catch(() => undefined);
    const n = await held('/* control */');
    assert.deepEqual(n.parameters, [`'${VISIBLE}'`, "'1'"]);
    await stack.broker.approvals.decide(n.id, DBA, 'deny', 'test');
    await named;

    // A raw client sends an email in binary format: shown as masked text, not as hex.
    const raw = await RawPg.login(stack.port, stack.session.secret);
    try {
      raw.send(fe.parse('', 'UPDATE users SET name = $1 WHERE id = 1 /* binary */', [25]), fe.bind('', '', [Buffer.from(EMAIL, 'utf8')], { paramFormats: [1] }), fe.execute(), fe.SYNC);
      const b = await held('/* binary */');
      const shown = b.parameters?.[0] ?? '';
      for (const s of spellings(EMAIL)) assert.equal(shown.includes(s), false, `binary value shown as ${shown}`);
      assert.match(shown, /^binary, as text '/);
      await stack.broker.approvals.decide(b.id, DBA, 'deny', 'test');
      await raw.untilReady();
    } finally {
      raw.close();
    }
    for (const x of [c, c2, c3]) await x.end().catch(() => {});

    // Nothing ran; the log holds the requests, none with a secret in any spelling.
    assert.equal(await direct('SELECT ssn FROM users WHERE id = 1'), '000-00-0001');
    const requested = (await stack.events()).filter((e) => e.type === 'approval.requested');
    assert.equal(requested.length, 4);
    const log = JSON.stringify(requested);
    for (const secret of [SSN, SSN2, EMAIL]) for (const s of spellings(secret)) assert.equal(log.includes(s), false, `${s} in the audit log`);
    assert.ok(log.includes(VISIBLE), 'the control value is on record');
  });
});
