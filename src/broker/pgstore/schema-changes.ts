/**
 * Schema changes (postgres/schema-changes.ts) told between the brokers on one PostgreSQL
 * store. Behind a load balancer an agent's two sessions may land on two brokers: one
 * replaces a view, the other must not go on reading it through the definition it cached.
 *
 * - When a session's schema change ends (the server confirmed its transaction ended), the
 *   broker NOTIFYs `agentgate_schema_changes` with the target's name.
 * - Every broker LISTENs; a note from another broker drops every cache of that target's
 *   sessions (and moves the epoch, so statements described before are read as stale).
 * - While the LISTEN connection is down notes are lost, so each (re)connection drops every
 *   target's caches once it is up again.
 *
 * Not covered: a statement another broker judged while the change was in flight (the
 * brokers do not wait for each other's changes), and the milliseconds a note takes.
 */
import type pg from 'pg';
import type { Logger } from '../log.js';
import { SchemaChanges } from '../postgres/schema-changes.js';
import { parseNote, StoreListener } from './store-listener.js';

const CHANNEL = 'agentgate_schema_changes';

interface Note {
  target: string;
  broker: string;
}

export interface SharedSchemaChangesOptions {
  pool: pg.Pool;
  clientConfig: pg.ClientConfig;
  brokerId: string;
  logger: Logger;
  /** Delay before the LISTEN connection is made again after it dropped. Default 1 s. */
  retryMs?: number;
}

export interface SharedSchemaChanges {
  /** The target's schema changes, told to and by the other brokers. */
  open(target: string): SchemaChanges;
  /** Whether notifications are being received. */
  listening(): boolean;
  close(): Promise<void>;
}

export async function createSharedSchemaChanges(opts: SharedSchemaChangesOptions): Promise<SharedSchemaChanges> {
  const { pool, brokerId } = opts;
  const logger = opts.logger.child({ component: 'schema-changes', broker_id: brokerId });
  const opened = new Map<string, SchemaChanges>();

  const onNote = (payload: string | undefined): void => {
    const n = parseNote<Note>(payload);
    if (!n) return;
    if (typeof n.target !== 'string' || n.broker === brokerId) return;
    opened.get(n.target)?.endedElsewhere();
  };
  const listener = new StoreListener({
    clientConfig: opts.clientConfig,
    channel: CHANNEL,
    retryMs: opts.retryMs ?? 1000,
    logger,
    what: 'schema-change',
    onNote,
    // Notes sent while it was down are lost: every target's caches go.
    catchUp: () => {
      for (const s of opened.values()) s.endedElsewhere();
      return Promise.resolve();
    },
  });
  const publish = (target: string): void => {
    pool.query('SELECT pg_notify($1, $2)', [CHANNEL, JSON.stringify({ target, broker: brokerId } satisfies Note)]).catch((err: unknown) => {
      logger.warn('could not tell the other brokers of a schema change; their caches of the target expire within 30 s', { target, error: (err as Error).message });
    });
  };
  await listener.start().catch((err: unknown) => {
    logger.warn('could not listen for schema-change notifications; retrying', { error: (err as Error).message });
  });
  return {
    open(target) {
      let s = opened.get(target);
      if (!s) {
        s = new SchemaChanges({ published: () => publish(target) });
        opened.set(target, s);
      }
      return s;
    },
    listening: () => listener.up,
    close: () => listener.close(),
  };
}
