/**
 * Real write failures for the audit store, for fail-closed tests.
 *
 * The journal is where an event becomes durable, so that is what must fail. `chattr +i`
 * makes the live segment immutable: the broker's next write(2) on its open descriptor gets
 * EPERM from the kernel, as a failing disk or a revoked volume would give it. (Needs root
 * and a filesystem with inode flags, as CI has; it throws rather than skip otherwise.)
 */
import { execFileSync } from 'node:child_process';
import { listSegments } from '../../src/broker/audit/event-journal.js';

/** Freezes the journal segments of the audit database at `dbPath`; returns the undo. */
export function freezeAuditJournal(dbPath: string): () => void {
  const segments = listSegments(dbPath).map((s) => s.path);
  if (segments.length === 0) throw new Error(`no audit journal segment next to ${dbPath}: append an event first`);
  execFileSync('chattr', ['+i', ...segments]);
  let undone = false;
  return () => {
    if (undone) return;
    undone = true;
    execFileSync('chattr', ['-i', ...segments]);
  };
}
