/**
 * Where a target's write taint (written-relations.ts) survives a broker restart: one JSON
 * list of relation names per target under the state dir, replaced whole (atomically, and
 * fsynced) after each new taint, before the write that caused it is forwarded. Brokers on a
 * PostgreSQL store share the list there instead (pgstore/written-relations.ts); this file is
 * then only read, once, for names it held from before.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentgateError } from '../../errors.js';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import { WrittenRelations } from './written-relations.js';

export function writtenRelationsPath(stateDir: string, target: string): string {
  return join(stateDir, 'written-relations', `${encodeURIComponent(target)}.json`);
}

/** The target's taint as saved (none yet: an empty list); a file that cannot be read is an error, never an empty list. */
export function openWrittenRelations(stateDir: string, target: string): WrittenRelations {
  const path = writtenRelationsPath(stateDir, target);
  mkdirSync(join(stateDir, 'written-relations'), { recursive: true, mode: 0o700 });
  let text: string | undefined;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw unreadable(path, err);
  }
  let names: string[] = [];
  if (text !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw unreadable(path, err);
    }
    if (!Array.isArray(parsed) || !parsed.every((n) => typeof n === 'string')) throw unreadable(path, new Error('not a JSON list of relation names'));
    names = parsed as string[];
  }
  return new WrittenRelations(names, { persist: (list) => writeFileAtomic(path, `${JSON.stringify(list)}\n`, { mode: 0o600, durable: true }) });
}

function unreadable(path: string, cause: unknown): AgentgateError {
  return new AgentgateError('AG_WRITTEN_RELATIONS_UNREADABLE', `cannot read ${path}: ${cause instanceof Error ? cause.message : String(cause)}`, undefined, {
    cause,
    hint: 'restore the file from a backup; deleting it forgets which relations hold copies of masked values, and they would be read unmasked',
  });
}
