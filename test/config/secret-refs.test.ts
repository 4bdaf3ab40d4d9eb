/** Secret references on their own: parsing, resolution, and what a problem may say. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveSecretValue } from '../../src/broker/config/secret-refs.js';
import type { SecretResolution } from '../../src/broker/config/secret-refs.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'agentgate-secrets-'));
  await writeFile(join(dir, 'crlf'), 'v1\r\n');
  await writeFile(join(dir, 'empty'), '\n');
  await mkdir(join(dir, 'a-dir'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function resolved(r: SecretResolution): { value: string; source: string } {
  assert.ok(r.ok, r.ok ? '' : r.problems.join('; '));
  return { value: r.secret.reveal(), source: r.secret.source };
}

function problems(r: SecretResolution): string[] {
  assert.ok(!r.ok, 'expected the value to be rejected');
  return r.problems;
}

test('literals, whole references and embedded references resolve; the source names only references', () => {
  const ctx = { env: { A: 'alpha', B: 'beta' }, baseDir: dir };
  assert.deepEqual(resolved(resolveSecretValue('plain-literal', ctx)), { value: 'plain-literal', source: 'inline' });
  assert.deepEqual(resolved(resolveSecretValue('${env:A}', ctx)), { value: 'alpha', source: '${env:A}' });
  assert.deepEqual(resolved(resolveSecretValue('postgres://u:${env:A}@h/${env:B}', ctx)), { value: 'postgres://u:alpha@h/beta', source: '${env:A} ${env:B}' });
  assert.deepEqual(resolved(resolveSecretValue('$${env:A}', ctx)), { value: '${env:A}', source: 'inline' });
  assert.deepEqual(resolved(resolveSecretValue('${file:crlf}', ctx)), { value: 'v1', source: '${file:crlf}' });
});

test('every unresolvable reference in a value is reported, each naming itself', () => {
  const r = resolveSecretValue('${env:NOPE}:${file:a-dir}:${file:empty}:${file:missing}', { env: {}, baseDir: dir });
  assert.deepEqual(problems(r), [
    '${env:NOPE} is not set',
    '${file:a-dir} is not a regular file',
    '${file:empty} is empty',
    '${file:missing} cannot be read (ENOENT)',
  ]);
});

test('malformed references are problems that do not echo literal text', () => {
  const ctx = { env: {}, baseDir: dir };
  assert.deepEqual(problems(resolveSecretValue('${env:}', ctx)), ['malformed reference ${env:}: expected ${env:NAME} with NAME of letters, digits and _']);
  assert.deepEqual(problems(resolveSecretValue('${file:}', ctx)), ['malformed reference ${file:}: expected ${file:PATH}']);
  const literal = problems(resolveSecretValue('hunter2${vault:kv/hunter2}', ctx));
  assert.deepEqual(literal, ['has a ${…} reference of unknown kind (expected ${env:NAME} or ${file:PATH})']);
  const unclosed = problems(resolveSecretValue('pw${env:hunter2', ctx));
  assert.equal(unclosed.length, 1);
  assert.ok(!unclosed[0]!.includes('hunter2'), unclosed[0]);
});
