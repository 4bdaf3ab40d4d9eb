/**
 * Reads agentgate.yaml into a BrokerConfig. The whole file is checked in one pass and every
 * problem is reported together, in file order, in one ConfigError.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import type { Document, Node as YamlNode } from 'yaml';
import { ConfigError } from '../../errors.js';
import type { BrokerConfig } from './types.js';
import { brokerConfigSchema } from './schema.js';
import { describeIssues, problemLine } from './issues.js';
import type { KeyPath, Problem } from './issues.js';
import { checkReferences } from './references.js';

export interface LoadOptions {
  /** Where `${env:…}` references are looked up. Default: process.env. */
  env?: NodeJS.ProcessEnv;
}

export async function loadBrokerConfig(path: string, options: LoadOptions = {}): Promise<BrokerConfig> {
  const configPath = resolve(path);
  let text: string;
  try {
    text = await readFile(configPath, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    const problem = `${configPath} cannot be read (${code})`;
    throw new ConfigError(`config ${problem}`, [problem], {
      hint: code === 'ENOENT' ? 'write one with `agentgate broker init`, or pass --config FILE (or set AGENTGATE_CONFIG)' : 'check the path and its permissions',
      cause: err,
    });
  }
  return parseBrokerConfig(text, configPath, options);
}

/** Parses and validates config text as if read from `configPath` (relative paths resolve against its folder). */
export function parseBrokerConfig(yamlText: string, configPath: string, options: LoadOptions = {}): BrokerConfig {
  const absPath = resolve(configPath);
  const lineCounter = new LineCounter();
  // prettyErrors off: its excerpt would echo source lines, which may hold an inline secret.
  const doc = parseDocument(yamlText, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw configError(
      absPath,
      doc.errors.map((e) => {
        const { line, col } = lineCounter.linePos(e.pos[0]);
        return `line ${line}, column ${col}: ${e.message.split('\n')[0] ?? e.message}`;
      }),
    );
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (err) {
    throw configError(absPath, [`(top level): ${err instanceof Error ? err.message : String(err)}`]);
  }

  const schema = brokerConfigSchema({ configPath: absPath, baseDir: dirname(absPath), env: options.env ?? process.env });
  const result = schema.safeParse(raw, { reportInput: true });
  const problems = [...(result.success ? [] : describeIssues(result.error.issues)), ...checkReferences(raw)];
  if (problems.length > 0 || !result.success) {
    throw configError(absPath, inFileOrder(problems, doc).map(problemLine));
  }
  return result.data;
}

function configError(configPath: string, problems: string[]): ConfigError {
  const n = problems.length;
  const message = [`config ${configPath} has ${n} problem${n === 1 ? '' : 's'}:`, ...problems.map((p) => `  ${p}`)].join('\n');
  // An unset ${env:NAME} is fixed in the broker's environment, not in the file.
  const unset = problems.filter((p) => UNSET_ENV.test(p)).length;
  const inEnv = unset > 0 ? `set the environment variable${unset === 1 ? '' : 's'} named above for the broker` : '';
  const inFile = unset < n ? `fix ${unset > 0 ? 'the rest' : n === 1 ? 'it' : 'them'} in ${configPath}` : '';
  const steps = [inEnv, inFile].filter(Boolean);
  return new ConfigError(message, problems, { hint: steps.length === 2 ? `${steps[0]}, ${steps[1]}, and run again` : `${steps[0]} and run again` });
}

const UNSET_ENV = /\$\{env:[^}]+\} is not set/;

/** Sorts problems by where their key sits in the file (a missing key sorts at its parent). */
function inFileOrder(problems: Problem[], doc: Document): Problem[] {
  return problems
    .map((p, i) => ({ p, i, at: offsetOf(doc, p.path) }))
    .sort((a, b) => a.at - b.at || a.i - b.i)
    .map((x) => x.p);
}

function offsetOf(doc: Document, path: KeyPath): number {
  let node: unknown = doc.contents;
  let offset = (node as YamlNode | null)?.range?.[0] ?? 0;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((it) => (isScalar(it.key) ? String(it.key.value) : String(it.key)) === String(seg));
      if (!pair) break;
      const keyNode = pair.key as YamlNode | null;
      offset = keyNode?.range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as YamlNode | undefined;
      if (!item) break;
      offset = item.range?.[0] ?? offset;
      node = item;
    } else {
      break;
    }
  }
  return offset;
}
