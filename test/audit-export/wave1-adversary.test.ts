/**
 * Red team, wave 1: audit evidence an auditor would wrongly accept. A real broker, exports
 * streamed by the real `agentgate audit export`, forged the way someone holding the file
 * can (edit lines, re-hash, rewrite the end record), then judged by the real
 * `agentgate audit verify` and `agentgate receipt verify --audit` with the broker's key.
 *
 * Each forgery below was accepted (exit 0, "OK") before the fix:
 * - a chain rewritten from genesis with an unsigned end record;
 * - a tail cut off behind a rewritten, unsigned end record;
 * - a resumed export with its middle segment dropped and the next header marked filtered
 *   (the header was not covered by the signature);
 * - the same, hiding a session's statements from `receipt verify --audit`;
 * - an OCSF export whose mapped fields (what a SIEM reads) were edited, raw_data intact;
 * - the receipt of a harmless session saved over the receipt file of another session;
 * - an event line that names a member twice: the verifier (JSON.parse) read the genuine
 *   last value, a reader keeping the first read the forged one.
 * Controls: the genuine exports (one segment, resumed, filtered, OCSF) verify.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBroker, type Broker } from '../../src/broker/index.js';
import { silentLogger } from '../../src/broker/log.js';
import { receiptJwks } from '../../src/broker/keys.js';
import { openBrokerSession } from '../../src/client/broker-session.js';
import { collectReceipts } from '../../src/client/receipts.js';
import { eventHash, type AuditRecord } from '../../src/shared/audit-hash.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { makeBrokerConfig, makeTempDir, type TempDir } from '../broker/fixtures.js';
import { AGENT, recordSession } from '../receipts/fixtures.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: NodeJS.ProcessEnv): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

let tmp: TempDir;
let issuer: TestIssuer;
let broker: Broker;
let auditorToken: string;
let jwksFile: string;

function env(token = ''): NodeJS.ProcessEnv {
  return {
    PATH: process.env['PATH'],
    HOME: tmp.path,
    XDG_CONFIG_HOME: join(tmp.path, 'xdg-config'),
    XDG_STATE_HOME: join(tmp.path, 'xdg-state'),
    AGENTGATE_BROKER: broker.url,
    AGENTGATE_FINGERPRINT: broker.fingerprint,
    AGENTGATE_TOKEN: token,
    AGENTGATE_KEYCHAIN: 'off',
    NO_COLOR: '1',
  };
}

function lines(text: string): string[] {
  return text.split('\n').slice(0, -1);
}

function isEvent(line: string): boolean {
  return line.includes('"hash":"') && !line.startsWith('{"anchor"') && !line.startsWith('{"checkpoint"');
}

/** A record line with new content and a correct hash (what a forger holding the file can write). */
function rehash(r: AuditRecord): string {
  const { hash: _h, ...rest } = r;
  return JSON.stringify({ ...rest, hash: eventHash(rest) });
}

async function exportTo(file: string, extra: string[] = []): Promise<void> {
  const r = await cli(['audit', 'export', '--out', file, ...extra], env(auditorToken));
  assert.equal(r.code, 0, r.stderr);
}

async function verify(file: string): Promise<Ran> {
  return cli(['audit', 'verify', file, '--key', jwksFile], env());
}

describe('wave 1: forged audit evidence against the real audit verify and receipt verify', { timeout: 120_000 }, () => {
  before(async () => {
    tmp = await makeTempDir('agentgate-audit-wave1-');
    issuer = await startTestIssuer();
    const config = makeBrokerConfig(tmp.path, { identity: { issuer: issuer.issuer }, auditors: { groups: ['security'] } });
    broker = await runBroker(config, { port: 0, logger: silentLogger });
    auditorToken = await issuer.sign({ sub: 'auditor-1', groups: ['security'] }, { expiresIn: 3600 });
    jwksFile = join(tmp.path, 'jwks.json');
    await writeFile(jwksFile, JSON.stringify(receiptJwks(broker.keys)));
    await recordSession(broker.audit, 'pgs_1', { statements: 3 });
    await recordSession(broker.audit, 'pgs_2', { statements: 2, actor: { ...AGENT, sub: 'agent-8' } });
    await recordSession(broker.audit, 'pgs_3', { statements: 4 });
  });
  after(async () => {
    await broker?.close();
    await issuer?.close();
    await tmp?.remove();
  });

  test('control: genuine exports verify with the key (whole, resumed, OCSF, filtered)', async () => {
    const whole = join(tmp.path, 'control.jsonl');
    await exportTo(whole);
    const ok = await verify(whole);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /signed by the broker's key \(checked\)/);

    const resumed = join(tmp.path, 'control-resumed.jsonl');
    await exportTo(resumed);
    const lastSeq = (JSON.parse(lines(await readFile(resumed, 'utf8')).at(-1)!) as { last: { seq: number } }).last.seq;
    await recordSession(broker.audit, 'pgs_4', { statements: 1 });
    await exportTo(resumed, ['--after-seq', String(lastSeq)]);
    const r2 = await cli(['audit', 'verify', resumed, '--key', jwksFile, '--json'], env());
    assert.equal(r2.code, 0, r2.stdout);
    assert.deepEqual([(JSON.parse(r2.stdout) as { segments: number }).segments, (JSON.parse(r2.stdout) as { endSigned: boolean }).endSigned], [2, true]);

    const ocsf = join(tmp.path, 'control.ocsf.jsonl');
    await exportTo(ocsf, ['--format', 'ocsf']);
    const r4 = await verify(ocsf);
    assert.equal(r4.code, 0, r4.stderr);

    const filtered = join(tmp.path, 'control-filtered.jsonl');
    await exportTo(filtered, ['--session', 'pgs_3']);
    const r3 = await verify(filtered);
    assert.equal(r3.code, 0, r3.stderr);
    assert.match(r3.stdout, /filtered export/);
  });

  test('a chain forged from genesis behind an unsigned end record is refused', async () => {
    const file = join(tmp.path, 'genuine-a.jsonl');
    await exportTo(file);
    const ls = lines(await readFile(file, 'utf8'));
    // Rewrite every event from seq 1: agent-7 becomes someone else, a deny becomes an allow.
    let prev = '0'.repeat(64);
    let count = 0;
    let last: { seq: number; hash: string } | null = null;
    const forged = ls.map((l) => {
      if (!isEvent(l)) return l;
      const r = JSON.parse(l) as AuditRecord;
      const actor = r.actor ? { ...r.actor, sub: r.actor.sub === 'agent-7' ? 'agent-9' : r.actor.sub } : null;
      const decision = r.decision ? { ...r.decision, effect: 'allow' as const } : null;
      const line = rehash({ ...r, actor, decision, prev });
      const h = (JSON.parse(line) as AuditRecord).hash;
      prev = h;
      count++;
      last = { seq: r.seq, hash: h };
      return line;
    });
    const end = JSON.parse(forged.at(-1)!) as Record<string, unknown>;
    forged[forged.length - 1] = JSON.stringify({ ...end, count, last, checkpoint: null });
    const out = join(tmp.path, 'forged-genesis.jsonl');
    await writeFile(out, forged.join('\n') + '\n');
    const r = await verify(out);
    assert.equal(r.code, 1, `accepted a forged chain: ${r.stdout}`);
    assert.match(r.stderr, /bad signature .*end record is not signed/);
  });

  test('a tail cut off behind a rewritten unsigned end record is refused', async () => {
    const file = join(tmp.path, 'genuine-b.jsonl');
    await exportTo(file);
    const ls = lines(await readFile(file, 'utf8'));
    // Drop the last session (pgs_3 onwards): keep the header and the events up to pgs_2's end.
    const cutAfter = ls.findIndex((l) => l.includes('"session":"pgs_2"') && l.includes('"type":"session.end"'));
    assert.ok(cutAfter > 0);
    const kept = ls.slice(0, cutAfter + 1);
    const lastRec = JSON.parse(kept.at(-1)!) as AuditRecord;
    const end = JSON.parse(ls.at(-1)!) as Record<string, unknown>;
    kept.push(JSON.stringify({ ...end, count: kept.filter(isEvent).length, last: { seq: lastRec.seq, hash: lastRec.hash }, checkpoint: null }));
    const out = join(tmp.path, 'cut-tail.jsonl');
    await writeFile(out, kept.join('\n') + '\n');
    const r = await verify(out);
    assert.equal(r.code, 1, `accepted a cut tail: ${r.stdout}`);
    assert.match(r.stderr, /bad signature/);
  });

  test('a resumed export with its middle segment dropped and the next marked filtered is refused', async () => {
    const file = join(tmp.path, 'three-segments.jsonl');
    await exportTo(file);
    const seqAfter = async (): Promise<number> => (JSON.parse(lines(await readFile(file, 'utf8')).at(-1)!) as { last: { seq: number } }).last.seq;
    await recordSession(broker.audit, 'pgs_hidden', { statements: 2, target: 'pg-prod' });
    await exportTo(file, ['--after-seq', String(await seqAfter())]);
    await recordSession(broker.audit, 'pgs_after', { statements: 1 });
    await exportTo(file, ['--after-seq', String(await seqAfter())]);
    const genuine = await verify(file);
    assert.equal(genuine.code, 0, genuine.stderr);

    const ls = lines(await readFile(file, 'utf8'));
    const headers = ls.map((l, i) => (l.includes('"type":"agentgate.audit.export"') && l.includes('"anchor"') ? i : -1)).filter((i) => i >= 0);
    assert.equal(headers.length, 3);
    const [, second, third] = headers as [number, number, number];
    const header3 = JSON.parse(ls[third]!) as Record<string, unknown>;
    const forged = [...ls.slice(0, second), JSON.stringify({ ...header3, filtered: true }), ...ls.slice(third + 1)];
    assert.equal(forged.some((l) => l.includes('pgs_hidden')), false);
    const out = join(tmp.path, 'middle-dropped.jsonl');
    await writeFile(out, forged.join('\n') + '\n');
    const r = await verify(out);
    assert.equal(r.code, 1, `accepted an export missing a segment: ${r.stdout}`);
    assert.match(r.stderr, /bad (anchor|signature)/);
  });

  test('receipt verify --audit does not accept an export that hides the session\'s statements in a dropped segment', async () => {
    const actor = { ...AGENT, sub: 'agent-7' };
    const file = join(tmp.path, 'receipt-proof.jsonl');
    const startedAt = new Date().toISOString();
    await broker.audit.append({ type: 'session.start', session: 'pgs_r', actor, target: 'pg-prod', detail: { protocol: 'postgres' }, decision: { effect: 'allow', rule: 'agents-read' }, outcome: null });
    await exportTo(file);
    const seqAfter = async (): Promise<number> => (JSON.parse(lines(await readFile(file, 'utf8')).at(-1)!) as { last: { seq: number } }).last.seq;
    for (const sql of ['delete from orders', 'drop table audit_shadow']) {
      await broker.audit.append({ type: 'query', session: 'pgs_r', actor, target: 'pg-prod', detail: { sql, protocol: 'simple', params: 0, tag: 'DELETE 1' }, decision: { effect: 'allow', rule: 'agents-read#1' }, outcome: { status: 'ok', rows: 1 } });
    }
    await exportTo(file, ['--after-seq', String(await seqAfter())]);
    await broker.audit.append({ type: 'session.end', session: 'pgs_r', actor, target: 'pg-prod', detail: { statements: 2 }, decision: null, outcome: { status: 'ok' } });
    const receipt = await broker.receipts.issue({
      session: 'pgs_r',
      connectSession: undefined,
      actor,
      target: 'pg-prod',
      protocol: 'postgres',
      startedAt,
      endedAt: new Date().toISOString(),
      statements: 2,
      allowed: 2,
      denied: 0,
      held: 0,
      masked: 0,
      approvals: [],
    });
    const receiptFile = join(tmp.path, 'pgs_r.receipt.json');
    await writeFile(receiptFile, JSON.stringify(receipt));
    await exportTo(file, ['--after-seq', String(await seqAfter())]);
    const genuine = await cli(['receipt', 'verify', receiptFile, '--key', jwksFile, '--audit', file], env());
    assert.equal(genuine.code, 0, genuine.stderr);
    assert.match(genuine.stdout, /\(2 statements\)/);

    const ls = lines(await readFile(file, 'utf8'));
    const headers = ls.map((l, i) => (l.includes('"type":"agentgate.audit.export"') && l.includes('"anchor"') ? i : -1)).filter((i) => i >= 0);
    const [, second, third] = headers as [number, number, number];
    const header3 = JSON.parse(ls[third]!) as Record<string, unknown>;
    const forged = [...ls.slice(0, second), JSON.stringify({ ...header3, filtered: true }), ...ls.slice(third + 1)];
    assert.equal(forged.some((l) => l.includes('drop table audit_shadow')), false);
    const out = join(tmp.path, 'receipt-proof-forged.jsonl');
    await writeFile(out, forged.join('\n') + '\n');
    const r = await cli(['receipt', 'verify', receiptFile, '--key', jwksFile, '--audit', out], env());
    assert.equal(r.code, 1, `accepted as proof: ${r.stdout}`);
    assert.match(r.stderr, /export does not verify/);
  });

  test('an OCSF export whose mapped fields were edited (raw_data intact) is refused', async () => {
    const file = join(tmp.path, 'edited.ocsf.jsonl');
    await exportTo(file, ['--format', 'ocsf']);
    const ls = lines(await readFile(file, 'utf8'));
    // The denied statement of pgs_1, as a SIEM sees it: make it an allowed one by someone else.
    const i = ls.findIndex((l) => l.includes('"class_uid"') && l.includes('"disposition":"Blocked"') && l.includes('pgs_1'));
    assert.ok(i > 0, 'a denied event in the export');
    const ev = JSON.parse(ls[i]!) as { actor: { user: { uid: string; name?: string } }; action: string; action_id: number; disposition: string; disposition_id: number; severity_id: number; severity: string };
    ev.actor.user.uid = 'agent-9';
    Object.assign(ev, { action: 'Allowed', action_id: 1, disposition: 'Allowed', disposition_id: 1, severity_id: 1, severity: 'Informational' });
    ls[i] = JSON.stringify(ev);
    const out = join(tmp.path, 'edited-out.ocsf.jsonl');
    await writeFile(out, ls.join('\n') + '\n');
    const r = await verify(out);
    assert.equal(r.code, 1, `accepted edited OCSF fields: ${r.stdout}`);
    assert.match(r.stderr, /hash mismatch .*the OCSF fields are not what its raw_data maps to/);
  });

  test('a harmless session\'s receipt saved over another session\'s receipt file is refused', async () => {
    // The agent's own receipts, fetched as `agentgate run` does; one session did the damage.
    await broker.receipts.issue(await recordSession(broker.audit, 'pgs_calm', { connect: 'ags_w1', statements: 1 }));
    await broker.receipts.issue(await recordSession(broker.audit, 'pgs_damage', { connect: 'ags_w1', statements: 5 }));
    const agentToken = await issuer.sign({ sub: 'agent-7', groups: ['ai-agents'] }, { expiresIn: 3600 });
    const dir = join(tmp.path, 'receipts-w1');
    const session = await openBrokerSession({}, env(agentToken));
    try {
      const saved = await collectReceipts(session, 'ags_w1', dir, { expected: 2, env: { XDG_CONFIG_HOME: join(tmp.path, 'xdg-config') } });
      assert.deepEqual(saved.map((r) => r.id).sort(), ['pgs_calm', 'pgs_damage']);
    } finally {
      await session.close();
    }
    // Control: both verify as saved.
    for (const id of ['pgs_calm', 'pgs_damage']) {
      const ok = await cli(['receipt', 'verify', join(dir, `${id}.receipt.json`), '--key', jwksFile], env());
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, new RegExp(`session: +${id}`));
    }
    // The swap: pgs_damage.receipt.json now holds pgs_calm's (validly signed) receipt.
    await copyFile(join(dir, 'pgs_calm.receipt.json'), join(dir, 'pgs_damage.receipt.json'));
    const swapped = await cli(['receipt', 'verify', join(dir, 'pgs_damage.receipt.json'), '--key', jwksFile], env());
    assert.equal(swapped.code, 1, `accepted as pgs_damage's receipt: ${swapped.stdout}`);
    assert.match(swapped.stderr, /session mismatch: the receipt is signed for session pgs_calm, but the file name pgs_damage\.receipt\.json names session pgs_damage/);
    // Renamed to a name that claims no session, it still verifies (no false denial), and
    // --session says which session it must attest.
    const renamed = join(dir, 'latest.receipt.json');
    await copyFile(join(dir, 'pgs_calm.receipt.json'), renamed);
    assert.equal((await cli(['receipt', 'verify', renamed, '--key', jwksFile], env())).code, 0);
    assert.equal((await cli(['receipt', 'verify', renamed, '--key', jwksFile, '--session', 'pgs_calm'], env())).code, 0);
    const asked = await cli(['receipt', 'verify', renamed, '--key', jwksFile, '--session', 'pgs_damage'], env());
    assert.equal(asked.code, 1, `accepted as pgs_damage's receipt: ${asked.stdout}`);
    assert.match(asked.stderr, /session mismatch/);
  });

  test('an event line naming a member twice (forged first, genuine last) is refused', async () => {
    const file = join(tmp.path, 'dup.jsonl');
    await exportTo(file);
    const ls = lines(await readFile(file, 'utf8'));
    const i = ls.findIndex((l) => isEvent(l) && l.includes('"session":"pgs_1"') && l.includes('"effect":"deny"'));
    assert.ok(i > 0, 'the denied statement of pgs_1');
    // What a first-wins reader sees: an allowed statement by agent-9.
    ls[i] = `{"decision":{"effect":"allow","rule":"agents-read#1"},"actor":{"sub":"agent-9","groups":[],"kind":"agent"},${ls[i]!.slice(1)}`;
    const out = join(tmp.path, 'dup-out.jsonl');
    await writeFile(out, ls.join('\n') + '\n');
    const r = await verify(out);
    assert.equal(r.code, 1, `accepted a line with repeated members: ${r.stdout}`);
    assert.match(r.stderr, /malformed line .*names a member twice/);
  });
});
