/**
 * Receipts: issued as a DSSE envelope over an in-toto Statement, verified by our verifier
 * and — to prove the format is standard — by an independent path in this test (node:crypto
 * over the DSSE PAE built here, jose for the RFC 7638 thumbprint); every kind of tampering
 * is refused with a message naming it.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint } from 'jose';
import { createReceiptService, policiesDigest, type ReceiptService } from '../../src/broker/receipts/service.js';
import { receiptJwks } from '../../src/broker/keys.js';
import {
  DSSE_PAYLOAD_TYPE,
  IN_TOTO_STATEMENT_TYPE,
  RECEIPT_PREDICATE_TYPE,
  ReceiptVerifyError,
  describeReceipt,
  verifyReceipt,
  type DsseEnvelope,
  type SessionReceiptStatement,
} from '../../src/shared/receipt.js';
import { silentLogger } from '../../src/broker/log.js';
import { receiptFixture, recordSession, type ReceiptFixture } from './fixtures.js';

let fx: ReceiptFixture;
let service: ReceiptService;
let envelope: DsseEnvelope;

function decoded(env: DsseEnvelope): SessionReceiptStatement {
  return JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8')) as SessionReceiptStatement;
}

function refused(fn: () => unknown, problem: string, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ReceiptVerifyError, `expected ReceiptVerifyError, got ${String(e)}`);
    assert.equal(e.problem, problem);
    assert.match(e.message, pattern);
    return true;
  });
}

describe('session receipts', () => {
  before(async () => {
    fx = await receiptFixture();
    service = createReceiptService({ config: fx.config, keys: fx.keys, audit: fx.store, logger: silentLogger, brokerUrl: 'https://broker.test:8443' });
    await recordSession(fx.store, 'pgs_other', { statements: 1 });
    const facts = await recordSession(fx.store, 'pgs_1', { connect: 'ags_1', statements: 3 });
    facts.approvals = [
      { id: 'req_1', status: 'approved', decisions: [{ approver: 'dba-1', decision: 'approve', reason: 'looks fine', at: '2024-05-01T10:00:00.000Z' }] },
      { id: 'req_2', status: 'expired', decisions: [] },
    ];
    envelope = await service.issue(facts);
  });
  after(async () => {
    service?.close();
    await fx?.close();
  });

  test('the envelope is DSSE over an in-toto Statement v1 that names the session', () => {
    assert.equal(envelope.payloadType, DSSE_PAYLOAD_TYPE);
    assert.equal(envelope.signatures.length, 1);
    const s = decoded(envelope);
    assert.equal(s._type, IN_TOTO_STATEMENT_TYPE);
    assert.equal(s.predicateType, RECEIPT_PREDICATE_TYPE);
    const p = s.predicate;
    assert.equal(p.session, 'pgs_1');
    assert.equal(p.connect_session, 'ags_1');
    assert.equal(p.actor.sub, 'agent-7');
    assert.equal(p.target, 'pg-prod');
    assert.equal(p.protocol, 'postgres');
    assert.deepEqual(p.counts, { statements: 3, allowed: 2, denied: 1, held: 0, masked: 2 });
    assert.deepEqual(p.approvals, [
      { id: 'req_1', approver: 'dba-1', decision: 'approve', reason: 'looks fine', at: '2024-05-01T10:00:00.000Z' },
      { id: 'req_2', approver: null, decision: 'expired', reason: null, at: p.ended_at },
    ]);
    // pgs_other took seq 1..3; pgs_1 starts at 4 and ends at 8, the head.
    assert.deepEqual(p.audit, { first_seq: 4, head_seq: 8, head_hash: fx.store.head().hash });
    assert.deepEqual(p.policy, { name: 'agents-read', sha256: policiesDigest(fx.config) });
    assert.deepEqual(p.broker, { url: 'https://broker.test:8443', keyid: fx.keys.receiptPublicJwk.kid });
    assert.deepEqual(s.subject, [{ name: 'agentgate-audit-chain@8', digest: { sha256: fx.store.head().hash } }]);
    assert.match(describeReceipt(p), /agent-7 on pg-prod \(postgres\).*3 statements \(2 allowed, 1 denied, 0 held\), 2 masked, 2 approval decisions/);
  });

  test('our verifier accepts it against the published JWKS', () => {
    const r = verifyReceipt(envelope, receiptJwks(fx.keys));
    assert.equal(r.ok, true);
    assert.equal(r.keyid, fx.keys.receiptPublicJwk.kid);
    assert.equal(r.statement.predicate.session, 'pgs_1');
  });

  test('an independent check (node:crypto over a PAE built here, jose thumbprint) accepts it too', async () => {
    const jwk = receiptJwks(fx.keys).keys[0]!;
    const thumbprint = await calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x }, 'sha256');
    const sig = envelope.signatures[0]!;
    assert.equal(sig.keyid, thumbprint, 'keyid is the RFC 7638 thumbprint of the JWKS key');
    const body = Buffer.from(envelope.payload, 'base64');
    const type = Buffer.from(envelope.payloadType);
    // DSSE v1: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
    const pae = Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${body.length} `), body]);
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
    assert.equal(verify(null, pae, key, Buffer.from(sig.sig, 'base64')), true);
    // The same check fails on one changed byte, so it is not vacuous.
    const flipped = Buffer.from(pae);
    flipped[flipped.length - 5] = (flipped[flipped.length - 5] ?? 0) ^ 1;
    assert.equal(verify(null, flipped, key, Buffer.from(sig.sig, 'base64')), false);
  });

  test('one flipped byte of the payload is refused: bad signature', () => {
    const body = Buffer.from(envelope.payload, 'base64');
    const at = body.indexOf('"statements":3');
    assert.ok(at > 0);
    body[at + '"statements":'.length] = '9'.charCodeAt(0);
    refused(() => verifyReceipt({ ...envelope, payload: body.toString('base64') }, receiptJwks(fx.keys)), 'bad signature', /does not match the payload/);
  });

  test("another key's signature is refused: unknown key, or bad signature when it claims the broker's keyid", async () => {
    const other = generateKeyPairSync('ed25519');
    const x = other.publicKey.export({ format: 'jwk' }).x as string;
    const otherKid = await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x }, 'sha256');
    const body = Buffer.from(envelope.payload, 'base64');
    const type = Buffer.from(envelope.payloadType);
    const pae = Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${body.length} `), body]);
    const forged = sign(null, pae, other.privateKey).toString('base64');
    refused(
      () => verifyReceipt({ ...envelope, signatures: [{ keyid: otherKid, sig: forged }] }, receiptJwks(fx.keys)),
      'unknown key',
      new RegExp(`signed by ${otherKid}, which is not in the key set`),
    );
    refused(
      () => verifyReceipt({ ...envelope, signatures: [{ keyid: fx.keys.receiptPublicJwk.kid, sig: forged }] }, receiptJwks(fx.keys)),
      'bad signature',
      /does not match/,
    );
    // And a key set that is not the broker's does not vouch for the real receipt.
    refused(() => verifyReceipt(envelope, { keys: [{ kty: 'OKP', crv: 'Ed25519', x }] }), 'unknown key', /not in the key set/);
    // A JWKS entry whose `kid` lies about its key is matched by its real thumbprint, not the label.
    refused(() => verifyReceipt({ ...envelope, signatures: [{ keyid: fx.keys.receiptPublicJwk.kid, sig: forged }] }, { keys: [{ kty: 'OKP', crv: 'Ed25519', x, kid: fx.keys.receiptPublicJwk.kid }] }), 'unknown key', /not in the key set/);
  });

  test('a wrong payload type or a mangled envelope is named', () => {
    refused(() => verifyReceipt({ ...envelope, payloadType: 'application/json' }, receiptJwks(fx.keys)), 'wrong payload type', /payloadType is "application\/json"/);
    refused(() => verifyReceipt({ ...envelope, payload: 'not*base64' }, receiptJwks(fx.keys)), 'malformed envelope', /not valid base64/);
    refused(() => verifyReceipt({ payloadType: DSSE_PAYLOAD_TYPE, payload: envelope.payload, signatures: [] }, receiptJwks(fx.keys)), 'malformed envelope', /signatures/);
    refused(() => verifyReceipt('nope', receiptJwks(fx.keys)), 'malformed envelope', /not a JSON object/);
  });

  test('issuing again returns the stored receipt; receipts are kept in a 0600 database', async () => {
    const again = await service.issue({ ...(await recordSession(fx.store, 'pgs_tmp', { statements: 0 })), session: 'pgs_1' });
    assert.deepEqual(again, envelope);
    assert.deepEqual((await service.get('pgs_1'))?.envelope, envelope);
    assert.equal((await service.listForConnect('ags_1', 'agent-7')).length, 1);
    assert.equal((await service.listForConnect('ags_1', 'someone-else')).length, 0);
    assert.equal((await stat(join(fx.config.stateDir, 'receipts.db'))).mode & 0o777, 0o600);
  });

  test('a session with no audit events gets no receipt', async () => {
    const facts = await recordSession(fx.store, 'pgs_x', { statements: 0 });
    await assert.rejects(service.issue({ ...facts, session: 'pgs_never_started' }), /no durable audit events for session pgs_never_started/);
  });
});
