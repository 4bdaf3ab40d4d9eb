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
import type { NamespaceChange } from './pipeline.js';

/** The policy decision about one statement, with what approvals and the audit log need. */
export interface GateVerdict extends PolicyDecision {
  /** Identifies "the same statement" for time-boxed approvals. */
  fingerprint: string;
  /** What reviewers and the audit log see about the statement (kinds, relations, flags). */
  classification: Record<string, unknown>;
  /** Per statement: what it does to prepared statements and cursors (PREPARE, DEALLOCATE, DECLARE, CLOSE, DISCARD ALL). */
  changes?: NamespaceChange[];
  /** The statement changes the schema: what was resolved in the catalog may be stale after it. */
  ddl?: boolean;
}

/**
 * The per-statement judge a session asks. Judging is synchronous once what it needs from
 * the live catalog (functions, by name or OID) is known: `prepare…` returns a promise when
 * a lookup must happen first (it never rejects: a failed lookup leaves the name unknown,
 * and unknown means no), undefined when `judge…` can answer now.
 */
export interface StatementGate {
  /**
   * The prepared statements the text EXECUTEs, by name. The caller resolves each to the
   * text it runs (as the pipeline tracker has it) and passes them to prepare and judge; a
   * name it cannot resolve is passed as undefined, and the statement is denied.
   */
  executes(sql: string): string[];
  prepare(sql: string, prepared?: ReadonlyMap<string, string | undefined>): Promise<void> | undefined;
  judge(sql: string, prepared?: ReadonlyMap<string, string | undefined>): GateVerdict;
  prepareFunctionCall(oid: number): Promise<void> | undefined;
  /** A FunctionCall message, resolved by OID; `label` names it for the audit log. */
  judgeFunctionCall(oid: number, args: number): GateVerdict & { label: string; builtin: boolean };
  /** The session changed the schema: forget what was resolved. */
  invalidate(): void;
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
