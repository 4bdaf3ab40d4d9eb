/**
 * The audit store's writer thread. node:sqlite is synchronous: a commit (an fsync, with
 * `sync: full`) would stall every tunnel on the broker's event loop. Here it stalls only
 * this thread, and the appends that arrive meanwhile gather into the next batch.
 *
 * One batch = one transaction. The thread answers `committed` only after COMMIT returned;
 * on any error it rolls back and answers `failed`, and the store stops accepting events.
 *
 * Prunes (retention) run here too, as short transactions of a few thousand deletes with a
 * turn of the event loop between them, so commits that arrive meanwhile are not held up
 * for the length of a large prune.
 */
import { statSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { INSERT_CHECKPOINT, INSERT_EVENT, describeFailure, pragmasFor, type FromWriter, type PruneRequest, type ToWriter, type WriterInit } from './sqlite-schema.js';

const port = parentPort;
if (!port) throw new Error('sqlite-writer must run as a worker thread');
const post = (m: FromWriter): void => port.postMessage(m);

const init = workerData as WriterInit;
let db: DatabaseSync | undefined;
let insert: StatementSync;
let begin: StatementSync;
let commit: StatementSync;
let rollback: StatementSync;
/** The database file this connection writes (device and inode), checked after each commit. */
let fileId: string | undefined;

/**
 * A database file removed (or replaced) under an open connection keeps taking commits, into
 * an inode nobody will open again: the next start would find an empty log. So each commit
 * checks that the path still names the file the connection opened (one stat per batch).
 */
function idOf(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

function checkFileStillThere(): void {
  if (idOf(init.path) !== fileId) {
    throw new Error(`the audit database ${init.path} was removed or replaced while the broker had it open; what it took since is not in the file`);
  }
}

try {
  db = new DatabaseSync(init.path);
  fileId = idOf(init.path);
  db.exec(pragmasFor(init.sync));
  insert = db.prepare(INSERT_EVENT);
  // IMMEDIATE takes the write lock up front, so a conflict shows at BEGIN, not mid-batch.
  begin = db.prepare('BEGIN IMMEDIATE');
  commit = db.prepare('COMMIT');
  rollback = db.prepare('ROLLBACK');
  post({ type: 'ready' });
} catch (e) {
  db?.close();
  db = undefined;
  post({ type: 'open-failed', error: describeFailure(e) });
}

/** The prune under way, if any; `close` waits for its current chunk, then ends it. */
let pruning: { closeAfter: boolean } | undefined;

function rollbackQuietly(): void {
  if (db?.isTransaction) {
    try {
      rollback.run();
    } catch {
      // The connection is closing or broken; SQLite rolls back on close.
    }
  }
}

function prune(req: PruneRequest): void {
  const state = { closeAfter: false };
  pruning = state;
  let deleted = 0;
  const finish = (m: FromWriter): void => {
    pruning = undefined;
    post(m);
    if (state.closeAfter) closeDb();
  };
  if (!db) {
    finish({ type: 'prune-failed', id: req.id, deleted, error: { message: 'audit database is not open', errcode: undefined, errstr: undefined } });
    return;
  }
  const conn = db;
  const minSeq = conn.prepare('SELECT min(seq) AS seq FROM audit_events');
  const del = conn.prepare('DELETE FROM audit_events WHERE seq <= ?');
  try {
    // The checkpoint goes in first and on its own: no event is deleted before it is durable.
    begin.run();
    conn.prepare(INSERT_CHECKPOINT).run(req.checkpoint.seq, req.checkpoint.hash, req.checkpoint.time, req.checkpoint.envelope);
    commit.run();
  } catch (e) {
    rollbackQuietly();
    finish({ type: 'prune-failed', id: req.id, deleted, error: describeFailure(e) });
    return;
  }
  const step = (): void => {
    if (state.closeAfter) {
      finish({ type: 'pruned', id: req.id, deleted, interrupted: true });
      return;
    }
    try {
      const low = (minSeq.get() as { seq: number | null }).seq;
      if (low === null || low > req.upTo) {
        finish({ type: 'pruned', id: req.id, deleted, interrupted: false });
        return;
      }
      begin.run();
      const r = del.run(Math.min(req.upTo, low + req.chunk - 1));
      commit.run();
      deleted += Number(r.changes);
    } catch (e) {
      rollbackQuietly();
      finish({ type: 'prune-failed', id: req.id, deleted, error: describeFailure(e) });
      return;
    }
    setImmediate(step);
  };
  step();
}

function closeDb(): void {
  db?.close();
  db = undefined;
  port!.close();
}

port.on('message', (msg: ToWriter) => {
  switch (msg.type) {
    case 'commit': {
      if (!db) {
        post({ type: 'failed', id: msg.id, error: { message: 'audit database is not open', errcode: undefined, errstr: undefined } });
        return;
      }
      try {
        begin.run();
        for (const r of msg.rows) insert.run(r.seq, r.time, r.session, r.target, r.type, r.event, r.prev, r.hash);
        commit.run();
        checkFileStillThere();
        post({ type: 'committed', id: msg.id });
      } catch (e) {
        if (db.isTransaction) {
          try {
            rollback.run();
          } catch {
            // The store is failing anyway; an unfinished transaction is rolled back on close.
          }
        }
        post({ type: 'failed', id: msg.id, error: describeFailure(e) });
      }
      return;
    }
    case 'prune':
      if (pruning) {
        post({ type: 'prune-failed', id: msg.id, deleted: 0, error: { message: 'a prune is already running', errcode: undefined, errstr: undefined } });
        return;
      }
      prune(msg);
      return;
    case 'close':
      if (pruning) {
        pruning.closeAfter = true;
        return;
      }
      closeDb();
      return;
    default: {
      const unknown: never = msg;
      throw new Error(`sqlite-writer: unknown message ${JSON.stringify(unknown)}`);
    }
  }
});
