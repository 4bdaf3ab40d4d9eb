/**
 * A broker's name in a store several brokers share: `brk_` and 12 random hex digits, made
 * at the first start and kept in `<state_dir>/broker.id`, so a restarted broker knows its
 * own events (crash recovery closes only the sessions it left open). Each broker has its
 * own state directory.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../shared/atomic-file.js';

const FILE = 'broker.id';
const ID = /^brk_[0-9a-f]{12}$/;

export async function loadOrCreateBrokerId(stateDir: string): Promise<string> {
  const path = join(stateDir, FILE);
  try {
    const id = readFileSync(path, 'utf8').trim();
    if (ID.test(id)) return id;
  } catch {
    // none yet: made below
  }
  const id = `brk_${randomBytes(6).toString('hex')}`;
  await writeFileAtomic(path, `${id}\n`, { mode: 0o600, durable: true });
  return id;
}
