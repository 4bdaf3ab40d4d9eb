/**
 * Password normalization for SCRAM, the way PostgreSQL does it (pg_saslprep in
 * src/common/saslprep.c), so a verifier we compute matches one the server computed:
 *
 * - A pure ASCII password is used exactly as is (no mapping, no checks). This is what
 *   the broker's own session secrets always are.
 * - Otherwise RFC 4013 SASLprep: non-ASCII spaces become U+0020, "commonly mapped to
 *   nothing" characters (RFC 3454 B.1) are dropped, the result is NFKC-normalized, and if
 *   it then contains a prohibited character (RFC 3454 C.1.2–C.9) PostgreSQL gives up on
 *   normalization and uses the raw UTF-8 bytes; so do we.
 *
 * Two simplifications, documented rather than hidden: we do not check for code points
 * unassigned in Unicode 3.2 (A.1), and we do not apply the bidirectional-text rule
 * (RFC 3454 section 6). Passwords that would fail only those checks get normalized here
 * where PostgreSQL would use the raw bytes.
 */

// RFC 3454 C.1.2 non-ASCII space characters.
const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/gu;
// RFC 3454 B.1 commonly mapped to nothing.
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/gu;
// RFC 3454 C.1.2, C.2.1, C.2.2, C.3 (private use), C.4 (non-characters), C.5 (surrogates),
// C.6, C.7, C.8, C.9.
const PROHIBITED = new RegExp(
  [
    '[\\u00A0\\u1680\\u2000-\\u200B\\u202F\\u205F\\u3000]', // C.1.2
    '[\\u0000-\\u001F\\u007F]', // C.2.1
    '[\\u0080-\\u009F\\u06DD\\u070F\\u180E\\u200C\\u200D\\u2028\\u2029\\u2060-\\u2063\\u206A-\\u206F\\uFEFF\\uFFF9-\\uFFFC\\u{1D173}-\\u{1D17A}]', // C.2.2
    '[\\uE000-\\uF8FF\\u{F0000}-\\u{FFFFD}\\u{100000}-\\u{10FFFD}]', // C.3
    '[\\uFDD0-\\uFDEF\\uFFFE\\uFFFF\\u{1FFFE}\\u{1FFFF}\\u{2FFFE}\\u{2FFFF}\\u{3FFFE}\\u{3FFFF}\\u{4FFFE}\\u{4FFFF}\\u{5FFFE}\\u{5FFFF}\\u{6FFFE}\\u{6FFFF}\\u{7FFFE}\\u{7FFFF}\\u{8FFFE}\\u{8FFFF}\\u{9FFFE}\\u{9FFFF}\\u{AFFFE}\\u{AFFFF}\\u{BFFFE}\\u{BFFFF}\\u{CFFFE}\\u{CFFFF}\\u{DFFFE}\\u{DFFFF}\\u{EFFFE}\\u{EFFFF}\\u{FFFFE}\\u{FFFFF}\\u{10FFFE}\\u{10FFFF}]', // C.4
    '[\\uD800-\\uDFFF]', // C.5 (only lone surrogates can match with the u flag)
    '[\\uFFF9-\\uFFFD]', // C.6
    '[\\u2FF0-\\u2FFB]', // C.7
    '[\\u0340\\u0341\\u200E\\u200F\\u202A-\\u202E\\u206A-\\u206F]', // C.8
    '[\\u{E0001}\\u{E0020}-\\u{E007F}]', // C.9
  ].join('|'),
  'u',
);

const LONE_SURROGATE = /\p{Cs}/u;
// eslint-disable-next-line no-control-regex
const ASCII = /^[\u0000-\u007F]*$/;

/** The bytes PostgreSQL would feed to PBKDF2 for this password. */
export function saslprep(password: string): Buffer {
  if (ASCII.test(password)) return Buffer.from(password, 'utf8');
  const raw = Buffer.from(password, 'utf8');
  // A lone surrogate is not valid UTF-8; PostgreSQL would take the raw bytes.
  if (LONE_SURROGATE.test(password)) return raw;
  const prepared = password.replace(NON_ASCII_SPACE, ' ').replace(MAPPED_TO_NOTHING, '').normalize('NFKC');
  if (prepared === '' || PROHIBITED.test(prepared)) return raw;
  return Buffer.from(prepared, 'utf8');
}
