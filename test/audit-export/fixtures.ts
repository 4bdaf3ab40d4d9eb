/** Builds exports in memory from a real store, and re-hashes records for forgery tests. */
import { generateKeyPairSync } from 'node:crypto';
import { eventHash, type AuditRecord } from '../../src/shared/audit-hash.js';
import { verifyExport, type ExportVerifyOptions, type ExportVerifyResult } from '../../src/shared/audit-export.js';
import { writeExport, type ExportRequest } from '../../src/broker/audit/export.js';
import type { AuditStore } from '../../src/broker/audit/store.js';
import type { ReceiptSigner } from '../../src/broker/receipts/types.js';
import { createFileKeySigner } from '../../src/broker/receipts/signer.js';
import { jwkThumbprint } from '../../src/shared/receipt.js';
import type { ReceiptPublicJwk } from '../../src/broker/keys.js';

export async function exportText(store: AuditStore, signer: ReceiptSigner, req: Partial<ExportRequest> = {}): Promise<string> {
  let out = '';
  await writeExport(
    { store, signer, brokerUrl: 'https://broker.test', jwksUri: 'https://broker.test/.well-known/jwks.json' },
    { format: 'jsonl', ...req },
    { write: (c) => ((out += c), true), drain: async () => {} },
  );
  return out;
}

export async function verifyText(text: string, opts: ExportVerifyOptions = {}): Promise<ExportVerifyResult> {
  async function* one(): AsyncIterable<string> {
    // Split into odd-sized chunks so lines straddle chunk boundaries.
    for (let i = 0; i < text.length; i += 997) yield text.slice(i, i + 997);
  }
  return verifyExport(one(), opts);
}

export function lines(text: string): string[] {
  return text.split('\n').slice(0, -1);
}

export function joinLines(ls: string[]): string {
  return ls.join('\n') + '\n';
}

/** A record line with new content and a correct hash for it (what a forger with the file can do). */
export function rehash(record: AuditRecord): string {
  const { hash: _h, ...rest } = record;
  return JSON.stringify({ ...rest, hash: eventHash(rest) });
}

/** A signer over a fresh key: "another broker". */
export function otherSigner(): ReceiptSigner {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const x = publicKey.export({ format: 'jwk' }).x as string;
  const kid = jwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x });
  const jwk: ReceiptPublicJwk = { kty: 'OKP', crv: 'Ed25519', x, kid, alg: 'EdDSA', use: 'sig' };
  return createFileKeySigner({ receiptPrivateKey: privateKey, receiptPublicJwk: jwk, receiptPreviousJwks: [] });
}
