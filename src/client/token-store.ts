/**
 * Where a login's tokens live, per broker URL: the OS keychain (keytar: service
 * `agentgate`, account = broker URL) or, where no keychain is reachable, a JSON file
 * `$XDG_CONFIG_HOME/agentgate/tokens.json` (0600, in a 0700 folder).
 *
 * `AGENTGATE_KEYCHAIN=off` forces the file (for machines where a keychain exists but
 * should not be used, e.g. a shared CI runner with a desktop session).
 */
import { chmod, mkdir, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentgateError } from '../errors.js';
import { writeFileAtomic } from '../shared/atomic-file.js';
import { firstLine, KEYCHAIN_SERVICE, probeKeychain, type Keytar } from './keychain.js';
import { openSettings } from './settings.js';

/** One login's tokens and what we know about who they belong to. */
export interface StoredLogin {
  access_token: string;
  refresh_token?: string;
  /** Unix seconds when the access token expires. */
  expires_at: number;
  /** The IdP that issued them (refresh and revocation go there). */
  issuer: string;
  client_id: string;
  /** Summary of the ID token's claims (never the ID token itself). */
  claims: { sub: string; name?: string; email?: string; preferred_username?: string };
  scope?: string;
}

export interface TokenStore {
  readonly kind: 'keychain' | 'file';
  /** Where tokens go, for messages: `the OS keychain` or the file's path. */
  readonly location: string;
  get(broker: string): Promise<StoredLogin | undefined>;
  set(broker: string, login: StoredLogin): Promise<void>;
  /** True when something was removed. */
  delete(broker: string): Promise<boolean>;
}

interface TokenFile {
  version: 1;
  brokers: Record<string, StoredLogin>;
}

export class FileTokenStore implements TokenStore {
  readonly kind = 'file' as const;
  readonly location: string;
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
    this.location = join(dir, 'tokens.json');
  }

  async get(broker: string): Promise<StoredLogin | undefined> {
    return (await this.#read()).brokers[broker];
  }

  async set(broker: string, login: StoredLogin): Promise<void> {
    const data = await this.#read();
    data.brokers[broker] = login;
    await this.#write(data);
  }

  async delete(broker: string): Promise<boolean> {
    const data = await this.#read();
    if (!(broker in data.brokers)) return false;
    delete data.brokers[broker];
    await this.#write(data);
    return true;
  }

  async #read(): Promise<TokenFile> {
    let text: string;
    try {
      const st = await stat(this.location);
      // Someone loosened it; tokens must stay private to this user.
      if ((st.mode & 0o077) !== 0) await chmod(this.location, 0o600);
      text = await readFile(this.location, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, brokers: {} };
      throw err;
    }
    try {
      const parsed = JSON.parse(text) as Partial<TokenFile>;
      if (parsed && typeof parsed.brokers === 'object' && parsed.brokers !== null) return { version: 1, brokers: parsed.brokers };
    } catch {
      // fall through
    }
    throw new AgentgateError('AG_TOKEN_FILE_CORRUPT', `the token file ${this.location} is not valid JSON`, 1, {
      hint: `delete it and log in again: rm ${this.location} && agentgate login`,
    });
  }

  async #write(data: TokenFile): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    await chmod(this.#dir, 0o700);
    if (Object.keys(data.brokers).length === 0) {
      await unlink(this.location).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      return;
    }
    // Readers never see half a file, and the refresh token survives a crash.
    await writeFileAtomic(this.location, JSON.stringify(data, null, 2) + '\n', { mode: 0o600, durable: true });
  }
}

/**
 * The keychain, with the file behind it: a write the keychain refuses (no default
 * collection, locked, …) lands in the file instead, and reads look in both.
 */
export class KeychainTokenStore implements TokenStore {
  readonly kind = 'keychain' as const;
  readonly location = `the OS keychain (service "${KEYCHAIN_SERVICE}")`;
  readonly #keytar: Keytar;
  readonly #file: FileTokenStore;
  readonly #onFallback: (reason: string) => void;

  constructor(keytar: Keytar, file: FileTokenStore, onFallback: (reason: string) => void) {
    this.#keytar = keytar;
    this.#file = file;
    this.#onFallback = onFallback;
  }

  async get(broker: string): Promise<StoredLogin | undefined> {
    try {
      const value = await this.#keytar.getPassword(KEYCHAIN_SERVICE, broker);
      if (value) return parseLogin(value);
    } catch {
      // unreadable keychain entry: the file may still hold a login
    }
    return this.#file.get(broker);
  }

  async set(broker: string, login: StoredLogin): Promise<void> {
    try {
      await this.#keytar.setPassword(KEYCHAIN_SERVICE, broker, JSON.stringify(login));
    } catch (err) {
      this.#onFallback(`the keychain refused to store it (${firstLine(err)})`);
      await this.#file.set(broker, login);
      return;
    }
    // One place per broker: drop any older copy from the file (a broken file is not this write's problem).
    await this.#file.delete(broker).catch(() => false);
  }

  async delete(broker: string): Promise<boolean> {
    let removed = false;
    try {
      removed = await this.#keytar.deletePassword(KEYCHAIN_SERVICE, broker);
    } catch {
      // nothing we can do about the keychain; still clear the file
    }
    return (await this.#file.delete(broker)) || removed;
  }
}

/** A file store that tells the user, once, why tokens are in a file. */
class NoticeFileStore implements TokenStore {
  readonly kind = 'file' as const;
  readonly location: string;
  readonly #file: FileTokenStore;
  readonly #notify: () => void;

  constructor(file: FileTokenStore, notify: () => void) {
    this.#file = file;
    this.location = file.location;
    this.#notify = notify;
  }

  get(broker: string): Promise<StoredLogin | undefined> {
    return this.#file.get(broker);
  }

  async set(broker: string, login: StoredLogin): Promise<void> {
    await this.#file.set(broker, login);
    // Told on write (login, refresh), not on every read: the news is where tokens went.
    this.#notify();
  }

  delete(broker: string): Promise<boolean> {
    return this.#file.delete(broker);
  }
}

export interface OpenTokenStoreOptions {
  env?: NodeJS.ProcessEnv;
  /** Where the one fallback notice goes. Default: stderr. */
  notice?: (message: string) => void;
  /** Folder of the token file. Default: the settings folder. */
  dir?: string;
}

let opened: Promise<TokenStore> | undefined;

/** The process's token store: the keychain is probed once, on first use. */
export function openTokenStore(options: OpenTokenStoreOptions = {}): Promise<TokenStore> {
  opened ??= createTokenStore(options);
  return opened;
}

/** Probes the keychain and returns the store to use; at most one fallback notice per store. */
export async function createTokenStore(options: OpenTokenStoreOptions = {}): Promise<TokenStore> {
  const env = options.env ?? process.env;
  const notice = options.notice ?? ((m: string) => process.stderr.write(`agentgate: ${m}\n`));
  const file = new FileTokenStore(options.dir ?? openSettings().dir);
  let told = false;
  const tell = (reason: string): void => {
    if (told) return;
    told = true;
    notice(
      `tokens are kept in the file ${file.location} (mode 0600) because ${reason}. ` +
        'Set AGENTGATE_KEYCHAIN=off to use the file without this notice.',
    );
  };
  const probe = await probeKeychain(env);
  if (probe.ok) return new KeychainTokenStore(probe.keytar, file, tell);
  return new NoticeFileStore(file, () => {
    if (!probe.quiet) tell(probe.reason);
  });
}

function parseLogin(value: string): StoredLogin | undefined {
  try {
    const v = JSON.parse(value) as Partial<StoredLogin>;
    if (typeof v.access_token === 'string' && typeof v.expires_at === 'number') return v as StoredLogin;
  } catch {
    // not ours
  }
  return undefined;
}
