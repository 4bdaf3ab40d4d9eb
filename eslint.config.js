// Lint for what the compiler cannot see: promises nobody handles (a rejection there takes
// the broker down) and imports against the dependency direction DESIGN.md sets. Only
// these rules: style is not linted, and there is no formatter.
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

// `import x from '../broker/…'` from a file one folder below src/ (or './broker/…' from src/cli.ts).
const BROKER = String.raw`^(?:\./|(?:\.\./)+)broker/`;
// From src/broker/policy/: the protocol adapters (and the tunnel), which policy must not know.
const PROTOCOL = String.raw`^(?:\.\./(?:postgres|kubernetes|ssh)/|(?:\.\./){2,}tunnel/)`;

/** Both rule entries for one forbidden direction: static imports and re-exports, and `import()`. */
function forbid(regex, message) {
  return {
    'no-restricted-imports': ['error', { patterns: [{ regex, message }] }],
    // esquery regexes cannot hold a literal slash: \x2F is '/'.
    'no-restricted-syntax': ['error', { selector: `ImportExpression[source.value=/${regex.replaceAll('/', String.raw`\x2F`)}/]`, message }],
  };
}

/** `regex` (anchored with ^) except for the exact specifiers listed: known violations, kept until they move. */
function exceptList(regex, allowed) {
  const exact = allowed.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, String.raw`\$&`)).join('|');
  return `^(?!(?:${exact})$)${regex.slice(1)}`;
}

const CLI_FILES = ['src/cli.ts', 'src/commands/**', 'src/client/**', 'src/ui/**', 'src/shared/**', 'src/tunnel/**'];
const cliMessage = 'The CLI imports nothing from src/broker (DESIGN.md): move what both sides need to src/shared.';
const policyMessage = 'Policy imports no protocol module (DESIGN.md): policy owns the neutral request and verdict types.';
const coreMessage = 'The session core imports no protocol module: adapters call the core, not the other way round.';

export default defineConfig(
  { ignores: ['dist/**', 'node_modules/**', 'eslint.config.js'] },
  {
    files: ['src/**/*.{ts,tsx}', 'test/**/*.{ts,tsx}', 'bench/**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test reports a failing test itself; the promise describe/it/test return never rejects.
        { ignoreVoid: false, allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      // Regexes that match control characters say so with an eslint-disable comment.
      'no-control-regex': 'error',
    },
  },
  // The tunnel's broker side (the acceptor) is broker code that lives with the tunnel.
  { files: CLI_FILES, ignores: ['src/tunnel/acceptor.ts'], rules: forbid(BROKER, cliMessage) },
  { files: ['src/broker/policy/**'], rules: forbid(PROTOCOL, policyMessage) },
  { files: ['src/broker/session/**'], rules: forbid(PROTOCOL, coreMessage) },

  // The `agentgate broker` command runs the broker: its one door is broker/service.ts.
  { files: ['src/commands/broker.ts'], rules: forbid(exceptList(BROKER, ['../broker/service.js']), cliMessage) },
);
