/**
 * Whole-file writes that a reader never sees half of: write a fresh temp file beside the
 * target with the final mode (chmod too, so the umask cannot matter), then rename it over
 * the target. `durable` also fsyncs the file and its folder, for keys that must survive a
 * power cut.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

export async function writeFileAtomic(path: string, contents: string, opts: { mode: number; durable?: boolean }): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', opts.mode);
  try {
    await fh.writeFile(contents, 'utf8');
    await fh.chmod(opts.mode);
    if (opts.durable) await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  if (opts.durable) await syncDir(dirname(path));
}

/** Makes a rename in `dir` durable; some filesystems cannot fsync a directory, which is fine. */
export async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // best effort
  }
}
