/**
 * Access to the OS keychain through `keytar`, which is an optional native module: it may
 * be missing, fail to load, or find no Secret Service. Worse, on Linux a keytar call can
 * block for a long time (D-Bus activation of a Secret Service that never answers), and a
 * blocked native call keeps the process alive after the command has finished. So on
 * Linux the first contact happens in a short-lived child process that we can kill.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** The part of keytar's API we use. */
export interface Keytar {
  getPassword(service: string, account: string): Promise<string | null>;
  setPassword(service: string, account: string, password: string): Promise<void>;
  deletePassword(service: string, account: string): Promise<boolean>;
}

export type KeychainProbe =
  | { ok: true; keytar: Keytar }
  /** `quiet`: the user chose this (AGENTGATE_KEYCHAIN=off), so no notice is due. */
  | { ok: false; reason: string; quiet?: boolean };

export const KEYCHAIN_SERVICE = 'agentgate';
const PROBE_ACCOUNT = '__agentgate_probe__';
export const KEYCHAIN_PROBE_TIMEOUT_MS = 3000;

// A variable specifier: keytar is optional, so the build must not require its types.
const KEYTAR_SPECIFIER = 'keytar';

export async function probeKeychain(env: NodeJS.ProcessEnv = process.env, timeoutMs = KEYCHAIN_PROBE_TIMEOUT_MS): Promise<KeychainProbe> {
  const setting = (env['AGENTGATE_KEYCHAIN'] ?? '').trim().toLowerCase();
  if (setting === 'off' || setting === '0' || setting === 'false') {
    return { ok: false, reason: 'AGENTGATE_KEYCHAIN=off', quiet: true };
  }
  if (process.platform === 'linux' && !hasSessionBus(env)) {
    return { ok: false, reason: 'no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set), so no Secret Service keychain' };
  }
  let url: string;
  try {
    url = import.meta.resolve(KEYTAR_SPECIFIER);
  } catch {
    return { ok: false, reason: 'the optional keytar module is not installed' };
  }
  if (process.platform === 'linux') {
    const failure = await probeInChild(url, timeoutMs);
    if (failure) return { ok: false, reason: failure };
  }
  let keytar: Keytar;
  try {
    const mod = (await import(url)) as { default?: Keytar } & Partial<Keytar>;
    keytar = (mod.default ?? mod) as Keytar;
    if (typeof keytar.getPassword !== 'function') throw new Error('unexpected module shape');
  } catch (err) {
    return { ok: false, reason: `keytar failed to load (${firstLine(err)})` };
  }
  if (process.platform !== 'linux') {
    const failure = await withTimeout(keytar.getPassword(KEYCHAIN_SERVICE, PROBE_ACCOUNT), timeoutMs);
    if (failure) return { ok: false, reason: failure };
  }
  return { ok: true, keytar };
}

function hasSessionBus(env: NodeJS.ProcessEnv): boolean {
  if ((env['DBUS_SESSION_BUS_ADDRESS'] ?? '').trim() !== '') return true;
  const runtime = env['XDG_RUNTIME_DIR'];
  return runtime !== undefined && runtime !== '' && existsSync(join(runtime, 'bus'));
}

/** Runs one keytar read in a child; returns why the keychain is unusable, or undefined. */
function probeInChild(keytarUrl: string, timeoutMs: number): Promise<string | undefined> {
  const script = `
    const [url, service, account] = process.argv.slice(1);
    try {
      const m = await import(url);
      await (m.default ?? m).getPassword(service, account);
      process.exit(0);
    } catch (e) {
      process.stderr.write(String(e && e.message || e));
      process.exit(1);
    }`;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', script, keytarUrl, KEYCHAIN_SERVICE, PROBE_ACCOUNT],
      { timeout: timeoutMs, killSignal: 'SIGKILL', windowsHide: true, encoding: 'utf8' },
      (err, _stdout, stderr) => {
        if (!err) resolve(undefined);
        else if ((err as { killed?: boolean }).killed) resolve(`the keychain (Secret Service over D-Bus) did not answer within ${timeoutMs / 1000} s`);
        else resolve(`the keychain is not usable (${firstLine(stderr || err)})`);
      },
    );
  });
}

async function withTimeout(p: Promise<unknown>, ms: number): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(resolve, ms, `the keychain did not answer within ${ms / 1000} s`);
  });
  try {
    return await Promise.race([p.then(() => undefined, (err: unknown) => `the keychain is not usable (${firstLine(err)})`), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function firstLine(err: unknown): string {
  const s = err instanceof Error ? err.message : String(err);
  return (s.split('\n').find((l) => l.trim() !== '') ?? s).trim().slice(0, 200);
}
