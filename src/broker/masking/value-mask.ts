/**
 * Which values of Kubernetes objects (and SSH output, masking/text-stream.ts) are masked, and how a masked value reads. The
 * detectors and styles are the broker's shared ones (src/broker/masking); what is
 * Kubernetes-specific is where they apply:
 *
 * - Secret values are always masked, whole (unless the deciding policy says
 *   `masking: off`), in the target's style (`full` when it has no masking config; a
 *   `partial` mask of a Secret keeps nothing of it).
 * - ConfigMap values and container env values: the spans the detectors find are masked
 *   in the detector's style; the whole value is masked when its key (ConfigMap key, env
 *   var name) matches one of the masking config's name patterns (`columns`, compared as
 *   for an expression's label: `*password*`, `*.email` → `email`) or looks like a secret
 *   name (`DB_PASSWORD`, `api_key`, `*_TOKEN`…).
 * - With no masking config for the target, the credential detectors run anyway:
 *   configuration may widen masking or switch it off, never leave credentials in the clear
 *   by omission.
 */
import type { BrokerConfig, MaskingConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';
import { decidingPolicy } from '../access.js';
import { compileMaskingPlan, type MaskingPlan } from './rules.js';
import { findSpans, looksLikeSecretName, parseDetectorNames, DETECTOR_NAMES, DetectorId, type DetectorName } from './detectors.js';
import { maskText, moreProtective, type MaskStyle } from './styles.js';
import { keepFor } from './sql-text.js';
import type { Glob } from '../glob.js';

/** Detectors that run when the target has no masking config: the ones that find credentials. */
export const DEFAULT_K8S_DETECTORS: readonly DetectorName[] = ['aws_key', 'github_token', 'slack_token', 'stripe_key', 'jwt', 'private_key'];

export interface ValueMasker {
  /** A Secret value: always masked, whole; null for style `null`. */
  secret(value: string): string | null;
  /** A ConfigMap or env value under `key`: the masked value, or undefined when nothing in it is sensitive. */
  field(value: string, key: string | undefined): { value: string | null } | undefined;
  /** Told each Secret value a response carried (kubernetes/known-secrets.ts masks copies of it). */
  learn?(value: string): void;
}

interface K8sMasking {
  secretStyle: MaskStyle;
  detectors: number;
  detectorStyles: readonly MaskStyle[];
  /** Name globs with their style (the column part of each `columns` pattern). */
  names: { glob: Glob; style: MaskStyle }[];
  /** Style for a value whose key looks like a secret's. */
  secretNameStyle: MaskStyle;
}

/**
 * The masker for this identity on this target, or undefined when its policy switches
 * masking off. Throws ConfigError for unknown detector names in the config.
 */
export function createValueMasker(config: Pick<BrokerConfig, 'masking' | 'policies'>, identity: Identity, target: string, key: Buffer): ValueMasker | undefined {
  const policyMasking = decidingPolicy(identity, target, config.policies)?.masking;
  if (policyMasking?.mode === 'off') return undefined;
  const plan = compileMaskingPlan(target, config.masking, policyMasking);
  const styles = [config.masking[target], policyMasking?.mode === 'extend' ? policyMasking.rules : undefined].filter((m): m is MaskingConfig => m !== undefined).map((m) => m.style);
  const secretStyle = styles.reduce<MaskStyle>((a, b) => moreProtective(a, b), styles[0] ?? 'full');
  return maskerFrom(resolve(plan, secretStyle), key);
}

function resolve(plan: MaskingPlan | undefined, secretStyle: MaskStyle): K8sMasking {
  const defaults = parseDetectorNames(DEFAULT_K8S_DETECTORS).set;
  const detectors = (plan?.detectors ?? 0) | defaults;
  const detectorStyles = DETECTOR_NAMES.map((_, id) => ((plan?.detectors ?? 0) & (1 << id) ? (plan?.detectorStyles[id] ?? 'full') : 'full'));
  const names = (plan?.columns ?? []).filter((c) => c.columnGlob !== undefined).map((c) => ({ glob: c.columnGlob as Glob, style: c.style }));
  return { secretStyle, detectors, detectorStyles, names, secretNameStyle: secretStyle };
}

function maskerFrom(m: K8sMasking, key: Buffer): ValueMasker {
  const whole = (value: string, style: MaskStyle): string | null => maskText(value, style, key, 'none');
  return {
    secret: (value) => whole(value, m.secretStyle),
    field(value, name) {
      if (name !== undefined) {
        const lower = name.toLowerCase();
        const rule = m.names.find((n) => n.glob.test(lower));
        if (rule) return { value: whole(value, rule.style) };
        if (looksLikeSecretName(name)) return { value: whole(value, m.secretNameStyle) };
      }
      const spans = findSpans(value, m.detectors, { secretColumn: false });
      if (spans.length === 0) return undefined;
      // Spans are byte offsets into the UTF-8 text, in order, never overlapping.
      const buf = Buffer.from(value, 'utf8');
      let out = '';
      let at = 0;
      for (const s of spans) {
        const id = DetectorId[s.detector];
        const style = m.detectorStyles[id] ?? 'full';
        out += buf.toString('utf8', at, s.start) + (maskText(s.text, style === 'null' ? 'full' : style, key, keepFor(s.detector)) ?? '');
        at = s.end;
      }
      return { value: out + buf.toString('utf8', at) };
    },
  };
}
