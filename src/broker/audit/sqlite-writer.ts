/**
 * The audit store's writer thread. node:sqlite is synchronous: a commit (an fsync, with
 * `sync: full`) would stall every tunnel on the broker's event loop. Here it stalls only
 * this thread, and the appends that arrive meanwhile gather into the next batch.
 *
 * One batch = one transaction. The thread answers `committed` only after COMMIT returned;
 * on any error it rolls back and answers `failed`, and the store stops accepting events.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { INSERT_EVENT, describeFailure, pragmasFor, type FromWriter, type ToWriter, type WriterInit } from './sqlite-schema.js';

const port = parentPort;
if (!port) throw new Error('sqlite-writer must run as a worker thread');
const post = (m: FromWriter): void => port.postMessage(m);

const init = workerData as WriterInit;
let db: DatabaseSync | undefined;
let insert: StatementSync;
let begin: StatementSync;
let commit: StatementSync;
let rollback: StatementSync;

try {
  db = new DatabaseSync(init.path);
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
    case 'close':
      db?.close();
      db = undefined;
      port.close();
      return;
    default: {
      const unknown: never = msg;
      throw new Error(`sqlite-writer: unknown message ${JSON.stringify(unknown)}`);
    }
  }
});
