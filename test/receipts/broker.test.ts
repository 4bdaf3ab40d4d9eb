/**
 * Receipts and audit export through a real broker and the real CLI: who may read what
 * (own receipts, auditors everything, non-auditors no export), the export streamed over
 * HTTPS and recorded as an audit event, and `agentgate audit export|verify` and
 * `agentgate receipt verify` as child processes of bin/agentgate.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, readdir, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBroker, type Broker } from '../../src/broker/index.js';
import { silentLogger } from '../../src/broker/log.js';
import { receiptJwks } from '../../src/broker/keys.js';
import { openBrokerSession } from '../../src/client/broker-session.js';
import { collectReceipts } from '../../src/client/receipts.js';
import { verifyExport } from '../../src/shared/audit-export.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';
import type { DsseEnvelope, ReceiptListResponse } from '../../src/shared/receipt.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { brokerClient, makeBrokerConfig, makeTempDir, type BrokerClient, type TempDir } from '../broker/fixtures.js';
import { AGENT, recordSession } from './fixtures.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: NodeJS.ProcessEnv): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

let tmp: TempDir;
let issuer: TestIssuer;
let broker: Broker;
let client: BrokerClient;
let tokens: { agent: string; other: string; auditor: string };
let receipt: DsseEnvelope;
let jwksFile: string;

function env(token: string): NodeJS.ProcessEnv {
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

describe('receipts and audit export through the broker and the CLI', { timeout: 60_000 }, () => {
  before(async () => {
    tmp = await makeTempDir('agentgate-receipts-cli-');
    issuer = await startTestIssuer();
    const config = makeBrokerConfig(tmp.path, { identity: { issuer: issuer.issuer }, auditors: { groups: ['security'] } });
    broker = await runBroker(config, { port: 0, logger: silentLogger });
    client = brokerClient(broker.keys.tlsCertPem);
    tokens = {
      agent: await issuer.sign({ sub: 'agent-7', groups: ['ai-agents'] }, { expiresIn: 3600 }),
      other: await issuer.sign({ sub: 'agent-8', groups: ['ai-agents'] }, { expiresIn: 3600 }),
      auditor: await issuer.sign({ sub: 'auditor-1', groups: ['security'] }, { expiresIn: 3600 }),
    };
    await recordSession(broker.audit, 'pgs_8', { actor: { ...AGENT, sub: 'agent-8' }, connect: 'ags_8' });
    receipt = await broker.receipts.issue(await recordSession(broker.audit, 'pgs_7', { connect: 'ags_7', statements: 4 }));
    jwksFile = join(tmp.path, 'jwks.json');
    await writeFile(jwksFile, JSON.stringify(receiptJwks(broker.keys)));
  });
  after(async () => {
    await client?.close();
    await broker?.close();
    await issuer?.close();
    await tmp?.remove();
  });

  test("a receipt is readable by its actor and by auditors; to anyone else it does not exist", async () => {
    const own = await client.get<DsseEnvelope>(`${broker.url}/v1/receipts/pgs_7`, { token: tokens.agent });
    assert.equal(own.status, 200);
    assert.deepEqual(own.body, receipt);
    const other = await client.get<{ error: { code: string } }>(`${broker.url}/v1/receipts/pgs_7`, { token: tokens.other });
    assert.equal(other.status, 404);
    assert.equal(other.body.error.code, 'AG_RECEIPT_NOT_FOUND');
    const missing = await client.get<{ error: { code: string } }>(`${broker.url}/v1/receipts/pgs_nope`, { token: tokens.other });
    assert.deepEqual([missing.status, missing.body.error.code], [404, 'AG_RECEIPT_NOT_FOUND'], 'same answer as for a receipt that exists');
    const auditor = await client.get<DsseEnvelope>(`${broker.url}/v1/receipts/pgs_7`, { token: tokens.auditor });
    assert.equal(auditor.status, 200);
    const anon = await client.get(`${broker.url}/v1/receipts/pgs_7`);
    assert.equal(anon.status, 401);
  });

  test('listing by connect session shows only the caller\'s own receipts', async () => {
    const mine = await client.get<ReceiptListResponse>(`${broker.url}/v1/receipts?connect=ags_7`, { token: tokens.agent });
    assert.equal(mine.status, 200);
    assert.deepEqual(mine.body.receipts.map((r) => r.session), ['pgs_7']);
    const theirs = await client.get<ReceiptListResponse>(`${broker.url}/v1/receipts?connect=ags_7`, { token: tokens.other });
    assert.deepEqual(theirs.body.receipts, []);
    const bad = await client.get(`${broker.url}/v1/receipts`, { token: tokens.agent });
    assert.equal(bad.status, 400);
  });

  test('export: 403 for non-auditors, 400 for a bad query, a verifiable stream for auditors that records itself', async () => {
    const denied = await client.get<{ error: { code: string; hint: string } }>(`${broker.url}/v1/audit/export`, { token: tokens.agent });
    assert.equal(denied.status, 403);
    assert.equal(denied.body.error.code, 'AG_NOT_AUDITOR');
    assert.match(denied.body.error.hint, /security/);
    const badFormat = await client.get(`${broker.url}/v1/audit/export?format=xml`, { token: tokens.auditor });
    assert.equal(badFormat.status, 400);
    const badTime = await client.get(`${broker.url}/v1/audit/export?since=yesterday`, { token: tokens.auditor });
    assert.equal(badTime.status, 400);

    const res = await fetchText(`${broker.url}/v1/audit/export`, tokens.auditor);
    assert.equal(res.status, 200);
    assert.match(res.type ?? '', /application\/x-ndjson/);
    const records: AuditRecord[] = [];
    const v = await verifyExport([res.text], { jwks: receiptJwks(broker.keys), onRecord: (r) => records.push(r) });
    assert.ok(v.ok, JSON.stringify(v));
    assert.equal(v.endSigned, true);
    const last = records[records.length - 1]!;
    assert.equal(last.type, 'audit.export', 'the export is itself the last event it contains');
    assert.equal(last.actor?.sub, 'auditor-1');
    assert.deepEqual(last.detail, { format: 'jsonl', query: { after_seq: 0 } });
  });

  test('agentgate audit export writes a 0600 file that agentgate audit verify accepts; tampering exits 1 naming the link', async () => {
    const out = join(tmp.path, 'audit.jsonl');
    const r = await cli(['audit', 'export', '--out', out], env(tokens.auditor));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Wrote .*audit\.jsonl: \d+ events, seq 1–\d+/);
    assert.equal((await stat(out)).mode & 0o777, 0o600);

    const ok = await cli(['audit', 'verify', out, '--key', jwksFile], env(''));
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^OK .*audit\.jsonl: \d+ events, seq 1–\d+, jsonl; chain intact from the start of the log \(genesis\)/);
    assert.match(ok.stdout, /signed by the broker's key \(checked\)/);

    const text = await readFile(out, 'utf8');
    const bad = join(tmp.path, 'tampered.jsonl');
    await writeFile(bad, text.replace('"sql":"select 2"', '"sql":"select 3"'));
    const caught = await cli(['audit', 'verify', bad], env(''));
    assert.equal(caught.code, 1);
    assert.match(caught.stderr, /hash mismatch at seq \d+ \(line \d+\): seq \d+: its content hashes to/);

    const json = await cli(['audit', 'verify', bad, '--json'], env(''));
    assert.equal(json.code, 1);
    const doc = JSON.parse(json.stdout) as { ok: boolean; problem: string; seq: number };
    assert.deepEqual([doc.ok, doc.problem], [false, 'hash mismatch']);

    // With no key set (no --key, no broker configured) an intact chain proves nothing about
    // who wrote it: refused unless --chain-only asks for the integrity check alone.
    const offline = env('');
    delete offline['AGENTGATE_BROKER'];
    delete offline['AGENTGATE_FINGERPRINT'];
    const unkeyed = await cli(['audit', 'verify', out], offline);
    assert.equal(unkeyed.code, 1, unkeyed.stdout);
    assert.equal(unkeyed.stdout, '');
    assert.match(unkeyed.stderr, /the hash chain is intact, but no key set was available to check the broker's signatures/);
    assert.match(unkeyed.stderr, /--chain-only accepts the integrity check alone/);
    const unkeyedJson = await cli(['audit', 'verify', out, '--json'], offline);
    assert.equal(unkeyedJson.code, 1);
    assert.deepEqual(
      (({ ok, authenticated }) => [ok, authenticated])(JSON.parse(unkeyedJson.stdout) as { ok: boolean; authenticated: boolean }),
      [true, false],
    );
    const chainOnly = await cli(['audit', 'verify', out, '--chain-only'], offline);
    assert.equal(chainOnly.code, 0, chainOnly.stderr);
    assert.match(chainOnly.stdout, /^OK .*chain intact from the start of the log \(genesis\)/);
    assert.match(chainOnly.stdout, /present \(signature not checked\)/);
    const keyedJson = await cli(['audit', 'verify', out, '--key', jwksFile, '--json'], offline);
    assert.equal(keyedJson.code, 0, keyedJson.stderr);
    assert.equal((JSON.parse(keyedJson.stdout) as { authenticated: boolean }).authenticated, true);
  });

  test('an interrupted export says how to resume, and --after-seq resumes it into a file that verifies', async () => {
    const out = join(tmp.path, 'resume.jsonl');
    assert.equal((await cli(['audit', 'export', '--out', out], env(tokens.auditor))).code, 0);
    const text = await readFile(out, 'utf8');
    const ls = text.split('\n');
    // Cut it inside the 5th event: what a killed export leaves behind.
    const cutAt = ls.slice(0, 5).join('\n').length + 1 + 30;
    await truncate(out, cutAt);
    const refused = await cli(['audit', 'export', '--out', out], env(tokens.auditor));
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /already exists/);
    assert.match(refused.stderr, /it was cut off after seq 4; to resume, run the same command with --after-seq 4/);
    const wrong = await cli(['audit', 'export', '--out', out, '--after-seq', '2'], env(tokens.auditor));
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /does not continue .* last complete event is seq 4/);
    const resumed = await cli(['audit', 'export', '--out', out, '--after-seq', '4', '--json'], env(tokens.auditor));
    assert.equal(resumed.code, 0, resumed.stderr);
    const summary = JSON.parse(resumed.stdout) as { resumed: boolean; first_seq: number };
    assert.deepEqual([summary.resumed, summary.first_seq], [true, 5]);
    const v = await cli(['audit', 'verify', out, '--json', '--chain-only'], env(''));
    assert.equal(v.code, 0, v.stdout);
    const doc = JSON.parse(v.stdout) as { ok: boolean; segments: number; anchor: string };
    assert.deepEqual([doc.ok, doc.segments, doc.anchor], [true, 2, 'genesis']);
  });

  test('a non-auditor running agentgate audit export is denied (exit 4)', async () => {
    const r = await cli(['audit', 'export', '--out', join(tmp.path, 'nope.jsonl')], env(tokens.agent));
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /agent-7 may not export the audit log/);
  });

  test('collectReceipts saves 0600 receipts; receipt verify checks them offline, with and against an export', async () => {
    const dir = join(tmp.path, 'receipts');
    const session = await openBrokerSession({}, env(tokens.agent));
    let saved;
    try {
      saved = await collectReceipts(session, 'ags_7', dir, { expected: 1, env: { XDG_CONFIG_HOME: join(tmp.path, 'xdg-config') } });
    } finally {
      await session.close();
    }
    assert.equal(saved.length, 1);
    assert.equal(saved[0]!.id, 'pgs_7');
    assert.equal(saved[0]!.verified, true);
    assert.match(saved[0]!.summary, /^agent-7 on pg-prod \(postgres\)/);
    assert.equal((await stat(saved[0]!.path)).mode & 0o777, 0o600);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.deepEqual((await readdir(dir)).sort(), ['jwks.json', 'pgs_7.receipt.json']);

    // Offline, with the key set pinned when the receipts were collected over verified TLS.
    const ok = await cli(['receipt', 'verify', saved[0]!.path], env(''));
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^OK .*pgs_7\.receipt\.json: signed by \S+ \(the key set pinned for https:\/\/127\.0\.0\.1:\d+ /);
    assert.match(ok.stdout, /agent-7 on pg-prod \(postgres\) .*: 4 statements \(3 allowed, 1 denied, 0 held\), 2 masked/);
    assert.match(ok.stdout, /connect session ags_7/);

    // Against an export: the session's events are there and the chain reaches the head.
    const out = join(tmp.path, 'for-receipt.jsonl');
    assert.equal((await cli(['audit', 'export', '--out', out], env(tokens.auditor))).code, 0);
    const withAudit = await cli(['receipt', 'verify', saved[0]!.path, '--key', jwksFile, '--audit', out], env(''));
    assert.equal(withAudit.code, 0, withAudit.stderr);
    assert.match(withAudit.stdout, /chain intact through the receipt's head; 6 events of this session \(4 statements\)/);

    // An export that stops before the session is not accepted as proof.
    const early = join(tmp.path, 'early.jsonl');
    assert.equal((await cli(['audit', 'export', '--out', early, '--session', 'pgs_8'], env(tokens.auditor))).code, 0);
    const notProof = await cli(['receipt', 'verify', saved[0]!.path, '--key', jwksFile, '--audit', early], env(''));
    assert.equal(notProof.code, 1);
    assert.match(notProof.stderr, /session missing from export/);

    // A tampered receipt fails, naming why.
    const env7 = JSON.parse(await readFile(saved[0]!.path, 'utf8')) as DsseEnvelope;
    const body = Buffer.from(env7.payload, 'base64').toString('utf8').replace('"denied":1', '"denied":0');
    const forged = join(dir, 'forged.receipt.json');
    await writeFile(forged, JSON.stringify({ ...env7, payload: Buffer.from(body).toString('base64') }));
    const caught = await cli(['receipt', 'verify', forged], env(''));
    assert.equal(caught.code, 1);
    assert.match(caught.stderr, /bad signature: the signature by key .* does not match the payload/);
    const noKey = await cli(['receipt', 'verify', join(tmp.path, 'jwks.json')], env(''));
    assert.equal(noKey.code, 1, 'a JWKS is not a receipt');
    assert.match(noKey.stderr, /malformed envelope/);
  });
});

async function fetchText(url: string, token: string): Promise<{ status: number; type: string | null; text: string }> {
  const { Agent, fetch } = await import('undici');
  const dispatcher = new Agent({ connect: { ca: broker.keys.tlsCertPem } });
  try {
    const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, dispatcher });
    return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
  } finally {
    await dispatcher.close();
  }
}
