/**
 * `audit.retention_days`: prunes events older than N days behind a signed checkpoint, at
 * broker start and then once a day. The timer is unref'd (it never keeps the process up).
 * stop() only stops the schedule: closing the store interrupts a prune under way between
 * two of its transactions, and the next start carries on from there.
 */
import { CHECKPOINT_PAYLOAD_TYPE, statementBytes } from '../../shared/receipt.js';
import type { BrokerConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { ReceiptSigner } from '../receipts/types.js';
import { signEnvelope } from '../receipts/signer.js';
import type { AuditStore, PruneResult } from './store.js';

export const DAY_MS = 86_400_000;

export interface Retention {
  /** Prunes now (if a retention period is configured); resolves with what was done. */
  runOnce(): Promise<PruneResult | undefined>;
  stop(): void;
}

export interface RetentionDeps {
  config: Pick<BrokerConfig, 'audit'>;
  audit: AuditStore;
  signer: ReceiptSigner;
  logger: Logger;
  now?: () => Date;
  /** Between runs. Default one day. */
  intervalMs?: number;
  /** After each prune: deletes what else follows the audit cut (recordings); resolves with how many went. */
  alsoPrune?: (before: Date) => Promise<number>;
}

export function startRetention(deps: RetentionDeps): Retention {
  const days = deps.config.audit.retentionDays;
  const now = deps.now ?? (() => new Date());
  let running: Promise<PruneResult | undefined> | undefined;
  let stopped = false;

  const runOnce = (): Promise<PruneResult | undefined> => {
    if (days === undefined || !deps.audit.prune || stopped) return Promise.resolve(undefined);
    running ??= (async () => {
      const before = new Date(now().getTime() - days * DAY_MS);
      try {
        const r = await deps.audit.prune!({ before, sign: (cp) => signEnvelope(deps.signer, CHECKPOINT_PAYLOAD_TYPE, statementBytes(cp)) });
        if (r.deleted > 0 || r.checkpoint) {
          deps.logger.info('audit retention: pruned old events behind a signed checkpoint', {
            deleted: r.deleted,
            checkpoint_seq: r.checkpoint?.seq,
            before: before.toISOString(),
            ...(r.interrupted ? { interrupted: true } : {}),
          });
        }
        if (deps.alsoPrune) {
          const gone = await deps.alsoPrune(before);
          if (gone > 0) deps.logger.info('audit retention: deleted recordings of pruned sessions', { deleted: gone, before: before.toISOString() });
        }
        return r;
      } catch (err) {
        deps.logger.error('audit retention: pruning failed; the log is intact and pruning is retried at the next run', { error: (err as Error).message });
        return undefined;
      } finally {
        running = undefined;
      }
    })();
    return running;
  };

  let timer: NodeJS.Timeout | undefined;
  if (days !== undefined && deps.audit.prune) {
    // runOnce catches and logs every failure: it never rejects.
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- see above
    void runOnce();
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- see above
    timer = setInterval(() => void runOnce(), deps.intervalMs ?? DAY_MS);
    timer.unref();
  }
  return {
    runOnce,
    stop() {
      stopped = true;
      if (timer) clearInterval(timer);
    },
  };
}
