/**
 * The broker's key material, created on first start and loaded on every start after:
 * the TLS certificate (self-signed when the config asks for a generated one), the Ed25519
 * key that signs session receipts, and the SSH host key the tunnel presents.
 * Key files are 0600 in a 0700 state dir, written atomically and never overwritten —
 * except by rotateReceiptKey(), which retires the receipt key on purpose.
 *
 * Retired receipt keys: their public halves stay in `<state_dir>/receipt-keys/<kid>.pub.jwk`
 * and are published beside the current key in /.well-known/jwks.json, so receipts signed
 * before a rotation still verify. Their private halves are destroyed: a retired key can
 * verify but never sign again.
 */
import { createPrivateKey, createPublicKey, createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { link, mkdir, open, readFile, readdir, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import ssh2 from 'ssh2';
import { calculateJwkThumbprint } from 'jose';
import { AgentgateError } from '../errors.js';
import { certFingerprint } from '../shared/fingerprint.js';
import { makeSelfSignedCert } from '../shared/self-signed-cert.js';
import { syncDir, writeFileAtomic } from '../shared/atomic-file.js';
import { generateSshKeyPair } from '../tunnel/host-key.js';
import type { BrokerConfig } from './config/types.js';

export interface ReceiptPublicJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  /** RFC 7638 thumbprint of {crv, kty, x}. */
  kid: string;
  alg: 'EdDSA';
  use: 'sig';
}

export interface BrokerKeys {
  tlsCertPem: string;
  tlsKeyPem: string;
  /** SHA-256 of the certificate, `AB:CD:…`. */
  tlsFingerprint: string;
  receiptPrivateKey: KeyObject;
  receiptPublicJwk: ReceiptPublicJwk;
  /** Retired receipt keys (public halves only), newest first: old receipts verify against these. */
  receiptPreviousJwks: ReceiptPublicJwk[];
  /** OpenSSH private key text, as ssh2's Server takes in `hostKeys`. */
  sshHostKey: string;
  /** OpenSSH `SHA256:<base64>` fingerprint of the host key's public half. */
  sshHostKeyFingerprint: string;
}

/** A key file or the state dir is missing, unreadable or too open. */
export class KeyMaterialError extends AgentgateError {
  override readonly name = 'KeyMaterialError';
  readonly path: string;
  constructor(code: string, path: string, message: string, hint: string, cause?: unknown) {
    super(code, message, undefined, { hint, cause });
    this.path = path;
  }
}

const TLS_VALIDITY_DAYS = 365;

export async function ensureBrokerKeys(config: BrokerConfig): Promise<BrokerKeys> {
  await ensureStateDir(config.stateDir);

  const certPresent = await exists(config.tls.cert);
  const keyPresent = await exists(config.tls.key);
  if (config.tls.generated) {
    if (certPresent !== keyPresent) {
      const missing = certPresent ? config.tls.key : config.tls.cert;
      throw new KeyMaterialError(
        'AG_TLS_INCOMPLETE',
        missing,
        `TLS ${certPresent ? 'key' : 'certificate'} ${missing} is missing but its other half exists`,
        `restore it, or delete both ${config.tls.cert} and ${config.tls.key} to generate a new pair (clients pinned to the old fingerprint must re-pin)`,
      );
    }
    if (!certPresent) {
      const { certPem, keyPem } = await makeSelfSignedCert({ commonName: 'agentgate broker', host: config.listen.host, validityDays: TLS_VALIDITY_DAYS, subjectKeyId: true });
      // Key first: a crash between the two leaves "cert missing", which the check above names.
      await writeNewFile(config.tls.key, keyPem, 0o600);
      await writeNewFile(config.tls.cert, certPem, 0o644);
    }
  } else {
    for (const [path, what] of [
      [config.tls.cert, 'certificate'],
      [config.tls.key, 'key'],
    ] as const) {
      if (!(await exists(path))) {
        throw new KeyMaterialError('AG_TLS_MISSING', path, `TLS ${what} ${path} does not exist`, 'fix tls.cert / tls.key in the broker config, or remove the tls section to have the broker generate a certificate');
      }
    }
  }

  if (!(await exists(config.receiptKeyPath))) {
    const { privateKey } = generateKeyPairSync('ed25519');
    await writeNewFile(config.receiptKeyPath, privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), 0o600);
  }
  if (!(await exists(config.sshHostKeyPath))) {
    const pair = generateSshKeyPair('agentgate-broker');
    await writeNewFile(config.sshHostKeyPath, pair.private, 0o600);
  }

  const tlsKeyPem = await readSecretFile(config.tls.key);
  const tlsCertPem = await readFileOrThrow(config.tls.cert);
  const receiptPem = await readSecretFile(config.receiptKeyPath);
  const sshHostKey = await readSecretFile(config.sshHostKeyPath);

  let tlsFingerprint: string;
  try {
    tlsFingerprint = certFingerprint(tlsCertPem);
  } catch (err) {
    throw new KeyMaterialError('AG_TLS_INVALID', config.tls.cert, `${config.tls.cert} is not a PEM certificate`, 'point tls.cert at a PEM-encoded X.509 certificate', err);
  }

  let receiptPrivateKey: KeyObject;
  try {
    receiptPrivateKey = createPrivateKey(receiptPem);
  } catch (err) {
    throw new KeyMaterialError('AG_KEY_INVALID', config.receiptKeyPath, `${config.receiptKeyPath} is not a PEM private key`, `move it aside and restart the broker to generate a new receipt key`, err);
  }
  if (receiptPrivateKey.asymmetricKeyType !== 'ed25519') {
    throw new KeyMaterialError('AG_KEY_INVALID', config.receiptKeyPath, `${config.receiptKeyPath} holds a ${receiptPrivateKey.asymmetricKeyType ?? 'unknown'} key; receipts are signed with Ed25519`, 'move it aside and restart the broker to generate a new receipt key');
  }

  const parsedSsh = ssh2.utils.parseKey(sshHostKey);
  if (parsedSsh instanceof Error || Array.isArray(parsedSsh)) {
    throw new KeyMaterialError('AG_KEY_INVALID', config.sshHostKeyPath, `${config.sshHostKeyPath} is not an SSH private key`, 'move it aside and restart the broker to generate a new host key', parsedSsh instanceof Error ? parsedSsh : undefined);
  }
  const sshHostKeyFingerprint = 'SHA256:' + createHash('sha256').update(parsedSsh.getPublicSSH()).digest('base64').replace(/=+$/, '');
  const receiptPublicJwk = await receiptJwk(receiptPrivateKey);

  return {
    tlsCertPem,
    tlsKeyPem,
    tlsFingerprint,
    receiptPrivateKey,
    receiptPublicJwk,
    receiptPreviousJwks: await loadRetiredReceiptKeys(config, receiptPublicJwk.kid),
    sshHostKey,
    sshHostKeyFingerprint,
  };
}

async function receiptJwk(privateKey: KeyObject): Promise<ReceiptPublicJwk> {
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') throw new Error('receipt key did not export as an Ed25519 JWK');
  const kid = await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: jwk.x }, 'sha256');
  return { kty: 'OKP', crv: 'Ed25519', x: jwk.x, kid, alg: 'EdDSA', use: 'sig' };
}

/** Where retired receipt keys' public halves are kept. */
export function retiredReceiptKeysDir(config: Pick<BrokerConfig, 'stateDir'>): string {
  return join(config.stateDir, 'receipt-keys');
}

/** The JWKS the broker publishes: the current receipt key first, then retired ones. */
export function receiptJwks(keys: Pick<BrokerKeys, 'receiptPublicJwk' | 'receiptPreviousJwks'>): { keys: ReceiptPublicJwk[] } {
  return { keys: [keys.receiptPublicJwk, ...keys.receiptPreviousJwks.filter((k) => k.kid !== keys.receiptPublicJwk.kid)] };
}

async function loadRetiredReceiptKeys(config: Pick<BrokerConfig, 'stateDir'>, currentKid: string): Promise<ReceiptPublicJwk[]> {
  const dir = retiredReceiptKeysDir(config);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new KeyMaterialError('AG_KEY_UNREADABLE', dir, `cannot read ${dir}: ${(err as Error).message}`, 'check that the broker user owns the state dir', err);
  }
  const found: { jwk: ReceiptPublicJwk; retiredAt: number }[] = [];
  for (const name of names.filter((n) => n.endsWith('.pub.jwk')).sort()) {
    const path = join(dir, name);
    let jwk: ReceiptPublicJwk;
    let retiredAt = 0;
    try {
      const parsed = JSON.parse(await readFile(path, 'utf8')) as { kty?: unknown; crv?: unknown; x?: unknown; retired_at?: unknown };
      if (parsed.kty !== 'OKP' || parsed.crv !== 'Ed25519' || typeof parsed.x !== 'string') throw new Error('not an Ed25519 public JWK');
      // The kid is recomputed, never read from the file: a renamed or edited file cannot claim another key's id.
      createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: parsed.x }, format: 'jwk' });
      const kid = await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: parsed.x }, 'sha256');
      jwk = { kty: 'OKP', crv: 'Ed25519', x: parsed.x, kid, alg: 'EdDSA', use: 'sig' };
      if (typeof parsed.retired_at === 'string') retiredAt = Date.parse(parsed.retired_at) || 0;
    } catch (err) {
      throw new KeyMaterialError('AG_KEY_INVALID', path, `${path} is not a retired receipt key (${(err as Error).message})`, `move it out of ${dir} and restart the broker`, err);
    }
    if (jwk.kid !== currentKid && !found.some((f) => f.jwk.kid === jwk.kid)) found.push({ jwk, retiredAt });
  }
  return found.sort((a, b) => b.retiredAt - a.retiredAt).map((f) => f.jwk);
}

export interface RotatedReceiptKey {
  /** The key that signed until now; still published, never used to sign again. */
  retired: ReceiptPublicJwk;
  /** The key that signs from the next broker start on. */
  current: ReceiptPublicJwk;
}

/**
 * Replaces the receipt-signing key. The old key's public half is kept first (so no crash
 * can leave receipts that nothing verifies), then the new private key atomically replaces
 * the old file. A running broker keeps signing with the key it loaded: restart it.
 */
export async function rotateReceiptKey(config: Pick<BrokerConfig, 'stateDir' | 'receiptKeyPath'>): Promise<RotatedReceiptKey> {
  await ensureStateDir(config.stateDir);
  const oldPem = await readSecretFile(config.receiptKeyPath);
  let oldKey: KeyObject;
  try {
    oldKey = createPrivateKey(oldPem);
  } catch (err) {
    throw new KeyMaterialError('AG_KEY_INVALID', config.receiptKeyPath, `${config.receiptKeyPath} is not a PEM private key`, 'restore it from a backup before rotating', err);
  }
  const retired = await receiptJwk(oldKey);
  const dir = retiredReceiptKeysDir(config);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const record = { kty: retired.kty, crv: retired.crv, x: retired.x, kid: retired.kid, alg: retired.alg, use: retired.use, retired_at: new Date().toISOString() };
  await writeNewFile(join(dir, `${retired.kid}.pub.jwk`), JSON.stringify(record, null, 2) + '\n', 0o644);

  const { privateKey } = generateKeyPairSync('ed25519');
  await writeFileAtomic(config.receiptKeyPath, privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), { mode: 0o600, durable: true });
  return { retired, current: await receiptJwk(privateKey) };
}

async function ensureStateDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new KeyMaterialError('AG_STATE_DIR', dir, `cannot create the state dir ${dir}: ${(err as Error).message}`, 'check state_dir in the broker config and that the broker user may write its parent', err);
  }
  const st = await stat(dir);
  if (!st.isDirectory()) {
    throw new KeyMaterialError('AG_STATE_DIR', dir, `state dir ${dir} is not a directory`, 'point state_dir at a directory');
  }
  // Others must not be able to swap files in under us; reading is guarded per file (0600).
  if ((st.mode & 0o022) !== 0) {
    throw new KeyMaterialError('AG_KEY_PERMISSIONS', dir, `state dir ${dir} is writable by group or others (mode ${octal(st.mode)})`, `run: chmod 700 ${dir}`);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new KeyMaterialError('AG_KEY_UNREADABLE', path, `cannot read ${path}: ${(err as Error).message}`, 'check that the broker user owns the state dir', err);
  }
}

/** Reads a private-key file, refusing it when group or others may read or write it. */
async function readSecretFile(path: string): Promise<string> {
  const st = await stat(path);
  if ((st.mode & 0o077) !== 0) {
    throw new KeyMaterialError('AG_KEY_PERMISSIONS', path, `key file ${path} is accessible to group or others (mode ${octal(st.mode)}); refusing to use it`, `run: chmod 600 ${path}`);
  }
  return readFileOrThrow(path);
}

async function readFileOrThrow(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new KeyMaterialError('AG_KEY_UNREADABLE', path, `cannot read ${path}: ${(err as Error).message}`, 'check that the broker user owns the file', err);
  }
}

/**
 * Writes a complete file at `path` or nothing: the bytes go to a private temp file that is
 * fsynced and then hard-linked into place. link() fails when `path` exists, so a
 * concurrent start or a file created meanwhile is never overwritten; we keep theirs.
 */
async function writeNewFile(path: string, contents: string, mode: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(contents, 'utf8');
    await fh.chmod(mode); // the umask may have narrowed `mode` on open; never widened it
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await link(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  await syncDir(dirname(path));
}

function octal(mode: number): string {
  return '0' + (mode & 0o777).toString(8);
}
