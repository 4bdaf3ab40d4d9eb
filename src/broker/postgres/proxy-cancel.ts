/**
 * Cancel keys. Each client gets a broker-made BackendKeyData; a CancelRequest (which
 * arrives on a fresh connection, as PostgreSQL requires) is looked up here and forwarded
 * to the real server with the real key, which the client never sees.
 */
import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import type { PostgresTargetConfig } from '../config/types.js';
import type { BackendKeyData } from './decode-backend.js';

export interface CancelEntry {
  /** The identity (sub) that owns the session: only it may cancel. */
  owner: string;
  target: PostgresTargetConfig;
  upstreamKey: BackendKeyData;
  clientSecret: Buffer;
  /** Handles the cancel inside the broker instead (e.g. a statement held for approval); true when it did. */
  onCancel?: () => boolean;
}

export class CancelRegistry {
  readonly #entries = new Map<number, CancelEntry>();

  /** Make a fresh client-facing key for a session. */
  register(owner: string, target: PostgresTargetConfig, upstreamKey: BackendKeyData, onCancel?: () => boolean): BackendKeyData {
    let processId: number;
    do processId = randomInt(1, 0x7fff_ffff);
    while (this.#entries.has(processId));
    const clientSecret = randomBytes(4);
    this.#entries.set(processId, { owner, target, upstreamKey, clientSecret, ...(onCancel ? { onCancel } : {}) });
    return { processId, secretKey: clientSecret };
  }

  unregister(processId: number): void {
    this.#entries.delete(processId);
  }

  /** The entry a CancelRequest names, if its secret matches and the caller owns it. */
  lookup(processId: number, secret: Buffer, caller: string): CancelEntry | undefined {
    const e = this.#entries.get(processId);
    if (!e || e.clientSecret.length !== secret.length || !timingSafeEqual(e.clientSecret, secret)) return undefined;
    return e.owner === caller ? e : undefined;
  }

  get size(): number {
    return this.#entries.size;
  }
}
