/**
 * How values of a type binary-scan.ts does not list look in binary format, asked of the
 * catalog: a type whose send function (pg_type.typsend) is one of the built-in ones
 * binary-scan.ts reads (SEND_FUNCTIONS) has that built-in type's binary form — citext
 * (textsend), an enum (enum_send writes its label), a domain over either (a domain's
 * typsend is its base type's) — and an array (array_send) of such elements is that
 * built-in's array with the element type's own OID in its header.
 *
 * Why: RowDescription reports a domain as its base type, but an enum, citext or an array
 * of them by their own OID, which the masker would otherwise send as NULL in binary format
 * (its bytes unread) — a masked email column of type citext included. Only `internal`
 * send functions are trusted by name: creating one takes a superuser, so its prosrc is
 * the C function that runs. Anything else stays unread (NULL with a notice).
 */
import { arrayTypeOf, SEND_FUNCTIONS } from './binary-scan.js';
import type { CatalogRows } from './masking-catalog.js';

/** pg_language.oid of `internal` (fixed: INTERNALlanguageId). */
const INTERNAL_LANGUAGE = '12';

/** A type read as a built-in one: `oid` is that type's; `header`, for arrays, the element type the array header names. */
export interface WireType {
  oid: number;
  header?: number;
}

/** The built-in type whose binary form a send function writes, when it is a trusted one binary-scan.ts reads. */
function sendType(prolang: string | null | undefined, prosrc: string | null | undefined): number | undefined {
  return prolang === INTERNAL_LANGUAGE && prosrc ? SEND_FUNCTIONS.get(prosrc) : undefined;
}

/**
 * The wire type of each of `oids` (null: not read as any built-in type). Rejects when the
 * catalog query fails (the caller then leaves the values unread).
 */
export async function lookupWireTypes(rows: CatalogRows, oids: readonly number[]): Promise<Map<number, WireType | null>> {
  const wanted = [...new Set(oids.filter((o) => Number.isInteger(o) && o > 0 && o <= 0xffff_ffff))];
  const out = new Map<number, WireType | null>();
  if (wanted.length === 0) return out;
  const answer = await rows(
    'SELECT t.oid, p.prolang, p.prosrc, t.typelem, ep.prolang, ep.prosrc ' +
      'FROM pg_catalog.pg_type t JOIN pg_catalog.pg_proc p ON p.oid = t.typsend ' +
      "LEFT JOIN pg_catalog.pg_type et ON et.oid = t.typelem AND p.prosrc = 'array_send' " +
      'LEFT JOIN pg_catalog.pg_proc ep ON ep.oid = et.typsend ' +
      `WHERE t.oid = ANY ('{${wanted.join(',')}}'::pg_catalog.oid[])`,
  );
  for (const oid of wanted) out.set(oid, null);
  for (const [oid, lang, src, elem, elemLang, elemSrc] of answer) {
    const own = sendType(lang, src);
    if (own !== undefined) {
      out.set(Number(oid), { oid: own });
      continue;
    }
    if (lang !== INTERNAL_LANGUAGE || src !== 'array_send') continue;
    const el = sendType(elemLang, elemSrc);
    const array = el === undefined ? undefined : arrayTypeOf(el);
    if (array !== undefined) out.set(Number(oid), { oid: array, header: Number(elem) });
  }
  return out;
}
