/**
 * Globs where `*` matches any run of characters (including none) and everything else is
 * literal. Matching is greedy-leftmost over the literal pieces, which is exact for this
 * grammar and runs in O(pattern × value) at worst: no regex, no backtracking blowup on
 * patterns like `a*a*a*a*b` from config.
 */

export interface Glob {
  readonly pattern: string;
  test(value: string): boolean;
}

export function compileGlob(pattern: string): Glob {
  const parts = pattern.split('*');
  if (parts.length === 1) return { pattern, test: (v) => v === pattern };
  const first = parts[0] ?? '';
  const last = parts[parts.length - 1] ?? '';
  const middle = parts.slice(1, -1).filter((p) => p.length > 0);
  const minLength = first.length + last.length + middle.reduce((n, p) => n + p.length, 0);
  return {
    pattern,
    test(value: string): boolean {
      if (value.length < minLength) return false;
      if (!value.startsWith(first) || !value.endsWith(last)) return false;
      let pos = first.length;
      const end = value.length - last.length;
      for (const piece of middle) {
        const at = value.indexOf(piece, pos);
        if (at < 0 || at + piece.length > end) return false;
        pos = at + piece.length;
      }
      return true;
    },
  };
}

export function globMatch(pattern: string, value: string): boolean {
  return compileGlob(pattern).test(value);
}

/** True when any of the patterns matches. */
export function anyGlobMatches(patterns: readonly string[], value: string): boolean {
  return patterns.some((p) => globMatch(p, value));
}
