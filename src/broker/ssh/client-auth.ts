/**
 * Who may speak SSH on a tunnel channel: only the holder of the session's key. The CLI
 * generates a key pair per `connect`/`run` session and sends only its public half on the
 * tunnel upgrade (as it sends the session secret's SCRAM verifier); the private half
 * stays in the session's 0600 directory.
 */
import ssh2 from 'ssh2';
import type { AuthContext, ParsedKey } from 'ssh2';

/** The session's client key from its `ssh-ed25519 AAAA…` line; undefined when absent or unreadable. */
export function parseSessionClientKey(line: string | undefined): ParsedKey | undefined {
  if (!line) return undefined;
  const parsed = ssh2.utils.parseKey(line);
  if (parsed instanceof Error) return undefined;
  return Array.isArray(parsed) ? parsed[0] : parsed;
}

/** Publickey with exactly the session's key, signature checked; every other method refused. */
export function authenticate(ctx: AuthContext, key: ParsedKey | undefined): void {
  if (!key || ctx.method !== 'publickey') {
    ctx.reject(key ? ['publickey'] : []);
    return;
  }
  const offered = ctx.key;
  if (offered.algo !== key.type || !offered.data.equals(key.getPublicSSH())) {
    ctx.reject(['publickey']);
    return;
  }
  if (!ctx.signature || !ctx.blob) {
    // The client asks whether this key would do; it signs next.
    ctx.accept();
    return;
  }
  if (key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) === true) ctx.accept();
  else ctx.reject(['publickey']);
}
