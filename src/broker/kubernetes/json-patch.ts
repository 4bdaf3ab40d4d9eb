/**
 * JSON Patch (RFC 6902, `application/json-patch+json`) in a session whose responses are
 * masked. `copy` and `move` read a value on the API server and put it under another name,
 * where masking — by key name for ConfigMaps and env, by kind for Secrets — no longer finds
 * it (`dryRun=All` even answers with the result and stores nothing); `test` answers whether
 * a guessed value is the stored one. Masks cannot follow a value the server moves, so these
 * operations are refused before the server sees them. add/remove/replace only carry values
 * the agent already holds.
 */

/** The media type of a request's Content-Type header, lower-cased, without parameters. */
export function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

export const JSON_PATCH = 'application/json-patch+json';

/** Operations that read a stored value server-side. */
const READING_OPS: ReadonlySet<string> = new Set(['copy', 'move', 'test']);

/**
 * Why this JSON Patch body may not go to the API server in a masked session, or undefined
 * when every operation only writes values it carries. A body that is not a JSON array of
 * operations with a string `op` is refused too: what cannot be read cannot be judged.
 */
export function jsonPatchRefusal(body: Buffer): string | undefined {
  let ops: unknown;
  try {
    ops = JSON.parse(body.toString('utf8'));
  } catch {
    return 'this JSON Patch body is not valid JSON, so agentgate cannot tell which operations it holds';
  }
  if (!Array.isArray(ops)) return 'a JSON Patch body must be an array of operations';
  for (const [i, op] of ops.entries()) {
    if (op === null || typeof op !== 'object' || Array.isArray(op) || typeof (op as Record<string, unknown>)['op'] !== 'string') {
      return `JSON Patch operation ${i} is not an object with an "op"`;
    }
    const name = (op as Record<string, unknown>)['op'] as string;
    if (READING_OPS.has(name)) {
      return `JSON Patch operation ${i} is "${name.slice(0, 20)}", which reads a value on the API server: in a session whose values are masked it could move a masked value where masking does not look${name === 'test' ? ', or confirm a guess of one' : ''}`;
    }
  }
  return undefined;
}
