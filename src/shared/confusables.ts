/**
 * Letters of other scripts that a reviewer reads as a Latin letter: Cyrillic `а` in
 * `agent-7`, Greek `ο` in `orders`. Compatibility forms (full-width `ｅ`, mathematical `𝐞`)
 * are not listed: NFKC folds those already. Shared by subject comparison (one person, one
 * approval, never their own) and by what reviewers are shown (display-text.ts).
 */

/** Each look-alike, lower case, and the ASCII letter it passes for. */
const LOOKALIKES: Record<string, string> = {
  // Cyrillic
  а: 'a', в: 'b', ь: 'b', с: 'c', ԁ: 'd', е: 'e', ё: 'e', һ: 'h', н: 'h', і: 'i', ї: 'i', ј: 'j', к: 'k', ӏ: 'l', м: 'm', п: 'n',
  о: 'o', р: 'p', ԛ: 'q', г: 'r', ѕ: 's', т: 't', ѵ: 'v', ԝ: 'w', ѡ: 'w', х: 'x', у: 'y', ү: 'y', з: '3', ԍ: 'g', ɡ: 'g',
  // Greek
  α: 'a', β: 'b', ϲ: 'c', ε: 'e', η: 'n', ι: 'i', ϳ: 'j', κ: 'k', ν: 'v', ο: 'o', ρ: 'p', τ: 't', υ: 'u', χ: 'x', γ: 'y', ζ: 'z', ω: 'w',
  // Armenian
  օ: 'o', ս: 'u', ց: 'g', հ: 'h', ո: 'n', զ: 'q',
  // Latin letters outside ASCII that look like ASCII ones
  ı: 'i', ȷ: 'j', ℓ: 'l', ſ: 's',
};

/** The ASCII letter `ch` passes for, if it is a listed look-alike (any case). */
export function lookalikeOf(ch: string): string | undefined {
  return LOOKALIKES[ch] ?? LOOKALIKES[ch.toLowerCase()];
}

/**
 * What a reader takes `text` for: compatibility-folded (NFKC), lower case, each look-alike
 * replaced by the ASCII letter it passes for, and folded again.
 */
export function skeleton(text: string): string {
  let out = '';
  for (const ch of text.normalize('NFKC').toLowerCase()) out += lookalikeOf(ch) ?? ch;
  return out.normalize('NFKC');
}
