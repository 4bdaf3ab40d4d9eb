/**
 * The Ed25519 file-key signer (the key ensureBrokerKeys loads from state_dir), and the
 * one place that turns a payload into a signed DSSE envelope.
 */
import { sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { dssePae, type DsseEnvelope } from '../../shared/receipt.js';
import { receiptJwks, type BrokerKeys } from '../keys.js';
import type { ReceiptSigner } from './types.js';

export function createFileKeySigner(keys: Pick<BrokerKeys, 'receiptPrivateKey' | 'receiptPublicJwk' | 'receiptPreviousJwks'>): ReceiptSigner {
  const key: KeyObject = keys.receiptPrivateKey;
  const keyid = keys.receiptPublicJwk.kid;
  const jwks = receiptJwks(keys);
  return {
    keyid,
    // Ed25519 in node:crypto is synchronous and takes ~50 µs; async to fit remote signers.
    sign: async (data) => ({ sig: sign(null, data, key), keyid }),
    publicJwks: () => ({ keys: jwks.keys.map((k) => ({ ...k })) }),
  };
}

/** Signs `payload` as a DSSE envelope (standard base64, one signature). */
export async function signEnvelope(signer: ReceiptSigner, payloadType: string, payload: Buffer): Promise<DsseEnvelope> {
  const { sig, keyid } = await signer.sign(dssePae(payloadType, payload));
  return { payloadType, payload: payload.toString('base64'), signatures: [{ keyid, sig: sig.toString('base64') }] };
}
