/**
 * The per-statement gate of the Postgres proxy: what the session asks before a statement
 * runs, and how a refusal is delivered.
 *
 * A refused statement is not answered by the proxy itself. Instead the server is sent a
 * tiny statement that raises the refusal as an error (`DO … RAISE`), in the place of the
 * refused one. The server then produces the ErrorResponse and ReadyForQuery in order with
 * everything else in the pipeline, and its transaction state is exactly what the client
 * believes (a refused statement inside BEGIN … aborts the transaction, as any error does).
 * The proxy swaps the server's error frame for its own (without the PL/pgSQL CONTEXT).
 */
import { randomBytes } from 'node:crypto';

export type { GateVerdict, StatementGate } from '../policy/sql-gate-types.js';

/** A statement that makes the server raise `message` with `code`; the tag cannot occur in the text. */
export function raiseStatement(code: string, message: string, hint?: string): string {
  const tag = `$ag${randomBytes(6).toString('hex')}$`;
  let body = `RAISE EXCEPTION USING ERRCODE = ${literal(code)}, MESSAGE = ${literal(message)}`;
  if (hint) body += `, HINT = ${literal(hint)}`;
  return `DO ${tag} BEGIN ${body}; END ${tag}`;
}

/** An E'' literal, so the result does not depend on standard_conforming_strings. */
function literal(s: string): string {
  return `E'${s.replace(/\\/g, '\\\\').replace(/'/g, "''").replace(/\0/g, '')}'`;
}
