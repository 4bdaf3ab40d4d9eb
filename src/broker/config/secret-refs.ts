/**
 * Credential values in the broker config: a literal, or `${env:NAME}` / `${file:PATH}`
 * references (also inside a longer string, e.g. a store URL). `$${` writes a literal `${`.
 *
 * Problems name the reference, never the value: the caller prefixes the key path.
 */
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { Secret } from '../../shared/secret.js';

export interface SecretContext {
  env: NodeJS.ProcessEnv;
  /** Relative `${file:…}` paths resolve against this folder (the config file's). */
  baseDir: string;
}

export type SecretResolution = { ok: true; secret: Secret } | { ok: false; problems: string[] };

/** A file reference larger than this is surely a mistake (and must not be slurped). */
const MAX_SECRET_FILE_BYTES = 1024 * 1024;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const REF_HELP = 'expected ${env:NAME} or ${file:PATH}';

export type SecretPiece = { literal: string } | { ref: string; kind: 'env' | 'file'; arg: string };

/**
 * Splits a value into literal text and references. Malformed references become problems;
 * their text is shown only when it is clearly a reference (env/file kind), because a
 * literal secret that happens to contain `${` must not be echoed.
 */
export function parseSecretValue(value: string): { pieces: SecretPiece[]; problems: string[] } {
  const pieces: SecretPiece[] = [];
  const problems: string[] = [];
  let literal = '';
  let i = 0;
  while (i < value.length) {
    if (value.startsWith('$${', i)) {
      literal += '${';
      i += 3;
      continue;
    }
    if (!value.startsWith('${', i)) {
      literal += value[i];
      i += 1;
      continue;
    }
    if (literal) {
      pieces.push({ literal });
      literal = '';
    }
    const close = value.indexOf('}', i + 2);
    if (close < 0) {
      problems.push(`has an unclosed "\${" (${REF_HELP}; write $\${ for a literal \${)`);
      break;
    }
    const ref = value.slice(i, close + 1);
    const inner = value.slice(i + 2, close);
    i = close + 1;
    const colon = inner.indexOf(':');
    const kind = colon < 0 ? inner : inner.slice(0, colon);
    const arg = colon < 0 ? '' : inner.slice(colon + 1);
    if (kind === 'env') {
      if (!ENV_NAME.test(arg)) problems.push(`malformed reference ${ref}: expected \${env:NAME} with NAME of letters, digits and _`);
      else pieces.push({ ref, kind, arg });
    } else if (kind === 'file') {
      if (arg.trim() === '') problems.push(`malformed reference ${ref}: expected \${file:PATH}`);
      else pieces.push({ ref, kind, arg });
    } else if (colon < 0) {
      problems.push(`has a malformed \${…} reference (${REF_HELP})`);
    } else {
      problems.push(`has a \${…} reference of unknown kind (${REF_HELP})`);
    }
  }
  if (literal) pieces.push({ literal });
  return { pieces, problems };
}

/** Resolves a credential value into a Secret, or the problems that stop it. */
export function resolveSecretValue(value: string, ctx: SecretContext): SecretResolution {
  const { pieces, problems } = parseSecretValue(value);
  let out = '';
  const refs: string[] = [];
  for (const piece of pieces) {
    if ('literal' in piece) {
      out += piece.literal;
      continue;
    }
    refs.push(piece.ref);
    const got = piece.kind === 'env' ? readEnv(piece.arg, piece.ref, ctx) : readSecretFile(piece.arg, piece.ref, ctx);
    if (typeof got === 'string') out += got;
    else problems.push(got.problem);
  }
  if (problems.length > 0) return { ok: false, problems };
  // The source must be safe to show: the references only, never literal text (which may be the secret).
  const source = refs.length === 0 ? 'inline' : refs.join(' ');
  return { ok: true, secret: new Secret(out, source) };
}

function readEnv(name: string, ref: string, ctx: SecretContext): string | { problem: string } {
  const v = ctx.env[name];
  if (v === undefined) return { problem: `${ref} is not set` };
  if (v === '') return { problem: `${ref} is set but empty` };
  return v;
}

function readSecretFile(path: string, ref: string, ctx: SecretContext): string | { problem: string } {
  const abs = resolve(ctx.baseDir, path);
  try {
    // stat first: reading a FIFO or /dev/zero would hang or exhaust memory.
    const st = statSync(abs);
    if (!st.isFile()) return { problem: `${ref} is not a regular file` };
    if (st.size > MAX_SECRET_FILE_BYTES) return { problem: `${ref} is larger than 1 MiB` };
    const text = readFileSync(abs, 'utf8').replace(/\r?\n$/, '');
    if (text === '') return { problem: `${ref} is empty` };
    return text;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    return { problem: `${ref} cannot be read (${code})` };
  }
}
