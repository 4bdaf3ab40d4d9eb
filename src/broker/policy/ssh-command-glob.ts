/**
 * `commands` globs of SSH allow rules, matched word by word against a plain simple
 * command's words (the words the program receives, as ssh-command.ts parsed them).
 *
 * - The pattern's words are separated by spaces; each matches one command word.
 * - A `*` inside a pattern word matches any run of characters within that one word
 *   (never across words), and a pattern word with a `*` never matches a word with a `..`
 *   path segment (`..`, `../x`, `x/..`, `x/../y`): `ls -l /srv/*` allows `ls -l /srv/app`,
 *   not `ls -l /srv/../etc` nor `ls -l /srv/a /root`. Such a word is matched only literally.
 * - A pattern word that is exactly `*` in the last place matches one or more remaining
 *   words, whatever they are (`systemctl status *`, `git-upload-pack *`): "any arguments".
 *   It never matches none: `git-upload-pack *` does not allow a bare `git-upload-pack`.
 *
 * Why words: joined by spaces, `*` also matched the spaces between arguments, so one glob
 * meant for one path allowed any number of further arguments (red team W3).
 */
import { compileGlob, type Glob } from '../glob.js';

export interface CommandGlob {
  readonly pattern: string;
  test(words: readonly string[]): boolean;
}

/** A `..` path segment anywhere in a word: what a `*` must not stand for. */
function hasParentSegment(word: string): boolean {
  return word.split('/').includes('..');
}

export function compileCommandGlob(pattern: string): CommandGlob {
  const parts = pattern.trim().split(/ +/);
  const rest = parts[parts.length - 1] === '*';
  const fixed: Glob[] = (rest ? parts.slice(0, -1) : parts).map((p) => compileGlob(p));
  return {
    pattern,
    test(words: readonly string[]): boolean {
      if (rest ? words.length <= fixed.length : words.length !== fixed.length) return false;
      return fixed.every((g, i) => {
        const word = words[i] as string;
        if (g.pattern.includes('*') && hasParentSegment(word)) return false;
        return g.test(word);
      });
    },
  };
}

/** True when any of the patterns matches the words. */
export function anyCommandGlobMatches(patterns: readonly string[], words: readonly string[]): boolean {
  return patterns.some((p) => compileCommandGlob(p).test(words));
}
