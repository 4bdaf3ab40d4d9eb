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
import type { PolicyDecision } from '../policy/decision.js';
import type { FunctionEffects } from '../policy/function-effects.js';
import type { SqlClassification } from '../policy/sql-classify.js';

/** The policy decision about one statement, with what approvals and the audit log need. */
export interface GateVerdict extends PolicyDecision {
  /** Identifies "the same statement" for time-boxed approvals. */
  fingerprint: string;
  /** What reviewers and the audit log see about the statement (kinds, relations, flags). */
  classification: Record<string, unknown>;
}

export interface StatementGate {
  /**
   * Decides one Query string or one prepared statement's text. Synchronous: cached
   * classification. `effects`: what the catalog says about the functions and operators
   * functionsOf named (see function-effects.ts); without it no call counts as effectful
   * or unknown.
   */
  judge(sql: string, effects?: FunctionEffects): GateVerdict;
  /** The classification judge uses (synchronous, cached by text and by shape). */
  classify(sql: string): SqlClassification;
  /** The function and operator names of a classification, to resolve in the catalog before judge. */
  functionsOf(c: SqlClassification): { functions: string[]; operators: string[] };
}

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
