/**
 * Receipt key rotation: the retired key's public half stays published in the JWKS (served
 * by a real broker), so a receipt signed before the rotation still verifies; new receipts
 * carry the new key id; the retired private key is gone.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureBrokerKeys, receiptJwks, retiredReceiptKeysDir, rotateReceiptKey } from '../../src/broker/keys.js';
import { createReceiptService } from '../../src/broker/receipts/service.js';
import { startBroker, type RunningBroker } from '../../src/broker/server.js';
import { silentLogger } from '../../src/broker/log.js';
import { ReceiptVerifyError, verifyReceipt, type DsseEnvelope } from '../../src/shared/receipt.js';
import { brokerClient } from '../broker/fixtures.js';
import { receiptFixture, recordSession, type ReceiptFixture } from './fixtures.js';

let fx: ReceiptFixture;
let broker: RunningBroker | undefined;

describe('receipt key rotation', () => {
  before(async () => {
    fx = await receiptFixture();
  });
  after(async () => {
    await broker?.close();
    await fx?.close();
  });

  test('an old receipt still verifies after rotation; the JWKS lists current and previous keys', async () => {
    const first = createReceiptService({ config: fx.config, keys: fx.keys, audit: fx.store, logger: silentLogger, brokerUrl: 'https://b' });
    const old: DsseEnvelope = await first.issue(await recordSession(fx.store, 'pgs_old'));
    first.close();
    const oldKid = fx.keys.receiptPublicJwk.kid;

    const rotated = await rotateReceiptKey(fx.config);
    assert.equal(rotated.retired.kid, oldKid);
    assert.notEqual(rotated.current.kid, oldKid);
    const files = await readdir(retiredReceiptKeysDir(fx.config));
    assert.deepEqual(files, [`${oldKid}.pub.jwk`]);
    assert.equal((await stat(fx.config.receiptKeyPath)).mode & 0o777, 0o600);

    // The broker's next start loads the new key and the retired one.
    const keys = await ensureBrokerKeys(fx.config);
    assert.equal(keys.receiptPublicJwk.kid, rotated.current.kid);
    assert.deepEqual(keys.receiptPreviousJwks.map((k) => k.kid), [oldKid]);

    broker = await startBroker(fx.config, { port: 0, logger: silentLogger, keys });
    const client = brokerClient(keys.tlsCertPem);
    let jwks: { keys: { kid: string; x: string; kty: string }[] };
    try {
      const res = await client.get<{ keys: { kid: string; x: string; kty: string }[] }>(`${broker.url}/.well-known/jwks.json`);
      assert.equal(res.status, 200);
      jwks = res.body;
    } finally {
      await client.close();
    }
    assert.deepEqual(jwks.keys.map((k) => k.kid), [rotated.current.kid, oldKid], 'current first, then the retired key');
    assert.ok(jwks.keys.every((k) => !('d' in k)), 'no private material is published');

    assert.equal(verifyReceipt(old, jwks).keyid, oldKid);
    const second = createReceiptService({ config: fx.config, keys, audit: fx.store, logger: silentLogger, brokerUrl: 'https://b' });
    const fresh = await second.issue(await recordSession(fx.store, 'pgs_new'));
    second.close();
    assert.equal(fresh.signatures[0]?.keyid, rotated.current.kid);
    assert.equal(verifyReceipt(fresh, jwks).keyid, rotated.current.kid);

    // Without the retired key in the set, the old receipt would not verify: the rotation bookkeeping matters.
    assert.throws(() => verifyReceipt(old, { keys: [keys.receiptPublicJwk] }), (e: unknown) => e instanceof ReceiptVerifyError && e.problem === 'unknown key');
    assert.deepEqual(receiptJwks(keys).keys.length, 2);
  });

  test('rotating twice keeps both retired keys, newest first', async () => {
    const before = await ensureBrokerKeys(fx.config);
    const r = await rotateReceiptKey(fx.config);
    assert.equal(r.retired.kid, before.receiptPublicJwk.kid);
    const keys = await ensureBrokerKeys(fx.config);
    assert.equal(keys.receiptPreviousJwks.length, 2);
    assert.equal(keys.receiptPreviousJwks[0]?.kid, before.receiptPublicJwk.kid);
    assert.equal((await readdir(join(fx.config.stateDir, 'receipt-keys'))).length, 2);
  });
});
