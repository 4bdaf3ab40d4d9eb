/**
 * The `options` startup parameter (libpq's PGOPTIONS), read the way PostgreSQL reads it
 * (see postgres.c, process_postgres_switches, and pg_split_opts): words split on
 * whitespace, a backslash makes the next character part of the word, and each word is a
 * backend command-line switch. Only the switches that set a run-time parameter are
 * understood here — `-c name=value`, `-cname=value` and `--name=value`, where PostgreSQL
 * turns `-` in the name into `_` — so the proxy can judge each setting on its own. Every
 * other switch (`-d 5`, `-F`, `-B 100`, …) is reported as unsupported: unknown means no.
 */

/** One `name=value` taken from `options`, name as PostgreSQL would look it up. */
export interface OptionSetting {
  name: string;
  value: string;
  /** The switch as the client wrote it, for messages (`-c statement_timeout=5s`). */
  written: string;
}

export interface ParsedOptions {
  settings: OptionSetting[];
  /** Switches that are not `-c`/`--` settings, or settings without `=value`, with why. */
  unsupported: { written: string; reason: string }[];
}

/** What C's isspace() accepts in the C locale. */
const SPACE = new Set([' ', '\t', '\n', '\v', '\f', '\r']);

/** Words of an options string: whitespace separates, a backslash escapes the next character. */
export function splitOptionWords(options: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < options.length; i++) {
    const ch = options[i] as string;
    if (SPACE.has(ch)) {
      if (word !== undefined) words.push(word);
      word = undefined;
      continue;
    }
    if (ch === '\\') {
      // A trailing backslash escapes nothing and is dropped, as PostgreSQL does.
      i++;
      if (i < options.length) word = (word ?? '') + (options[i] as string);
      continue;
    }
    word = (word ?? '') + ch;
  }
  if (word !== undefined) words.push(word);
  return words;
}

export function parseStartupOptions(options: string): ParsedOptions {
  const out: ParsedOptions = { settings: [], unsupported: [] };
  const words = splitOptionWords(options);
  for (let i = 0; i < words.length; i++) {
    const w = words[i] as string;
    let assignment: string | undefined;
    let written = w;
    if (w === '-c') {
      const next = words[i + 1];
      if (next === undefined) {
        out.unsupported.push({ written: w, reason: '-c needs name=value' });
        continue;
      }
      i++;
      assignment = next;
      written = `-c ${next}`;
    } else if (w.startsWith('-c')) {
      assignment = w.slice(2);
    } else if (w.startsWith('--') && w.length > 2) {
      assignment = w.slice(2);
    } else {
      out.unsupported.push({ written: w, reason: 'only -c name=value and --name=value are accepted in options' });
      continue;
    }
    const eq = assignment.indexOf('=');
    if (eq <= 0) {
      out.unsupported.push({ written, reason: `${written} needs a value (name=value)` });
      continue;
    }
    out.settings.push({ name: assignment.slice(0, eq).replace(/-/g, '_'), value: assignment.slice(eq + 1), written });
  }
  return out;
}
