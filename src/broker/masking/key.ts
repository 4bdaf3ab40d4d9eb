/**
 * The broker's masking key: 32 random bytes in `<state_dir>/masking.key` (0600), created
 * on first start and read on every start after. `hash`-style masks are HMACs under it,
 * so they stay the same across sessions and restarts; losing or replacing the file
 * changes every hashed value, so a damaged key is an error, never silently replaced.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

import { KeyMaterialError } from '../keys.js';

export const MASKING_KEY_FILE = 'masking.key';
export const MASKING_KEY_BYTES = 32;

export function loadOrCreateMaskingKey(stateDir: string): Buffer {
  const path = join(stateDir, MASKING_KEY_FILE);
  try {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    if (!exists(path)) createKeyFile(path);
  } catch (err) {
    if (err instanceof KeyMaterialError) throw err;
    throw new KeyMaterialError('AG_KEY_UNWRITABLE', path, `cannot create the masking key ${path}: ${(err as Error).message}`, 'check that the broker user owns the state dir', err);
  }
  const st = statSync(path);
  if (!st.isFile()) {
    throw new KeyMaterialError('AG_KEY_INVALID', path, `masking key ${path} is not a regular file`, 'move it aside; the broker creates a new key on start (hash-masked values change)');
  }
  if ((st.mode & 0o077) !== 0) {
    throw new KeyMaterialError('AG_KEY_PERMISSIONS', path, `masking key ${path} is accessible to group or others (mode 0${(st.mode & 0o777).toString(8)}); refusing to use it`, `run: chmod 600 ${path}`);
  }
  let key: Buffer;
  try {
    key = readFileSync(path);
  } catch (err) {
    throw new KeyMaterialError('AG_KEY_UNREADABLE', path, `cannot read ${path}: ${(err as Error).message}`, 'check that the broker user owns the file', err);
  }
  if (key.length !== MASKING_KEY_BYTES) {
    throw new KeyMaterialError(
      'AG_KEY_INVALID',
      path,
      `masking key ${path} holds ${key.length} bytes, expected ${MASKING_KEY_BYTES}`,
      'restore it from a backup, or move it aside to have a new key created (every hash-masked value then changes)',
    );
  }
  return key;
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * All or nothing: the bytes go to a private temp file, fsynced, then hard-linked into
 * place. link() fails if the key appeared meanwhile (another broker starting on the same
 * state dir), and then theirs is kept.
 */
function createKeyFile(path: string): void {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, randomBytes(MASKING_KEY_BYTES));
    fchmodSync(fd, 0o600); // the umask may have narrowed the mode; never widened it
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
  }
}
