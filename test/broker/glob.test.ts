import { test } from 'node:test';
import assert from 'node:assert/strict';
import { anyGlobMatches, globMatch } from '../../src/broker/glob.js';

test('`*` matches any run of characters, the rest is literal', () => {
  const cases: [string, string, boolean][] = [
    ['repo:acme/*', 'repo:acme/api:ref:refs/heads/main', true],
    ['repo:acme/*', 'repo:acme/', true],
    ['repo:acme/*', 'repo:acme', false],
    ['repo:acme/*', 'repo:evil/acme/x', false],
    ['repo:acme/*:ref:refs/heads/main', 'repo:acme/api:ref:refs/heads/main', true],
    ['repo:acme/*:ref:refs/heads/main', 'repo:acme/api:ref:refs/heads/main-evil', false],
    ['*', '', true],
    ['', '', true],
    ['', 'x', false],
    ['pg-*', 'pg-prod', true],
    ['pg-*', 'k8s-prod', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'axxbyyc', true],
    ['a*b*c', 'acb', false],
    ['ab*ba', 'aba', false],
    ['ab*ba', 'abba', true],
    ['a.b', 'axb', false],
    ['[x]', '[x]', true],
    ['**', 'anything', true],
  ];
  for (const [pattern, value, want] of cases) assert.equal(globMatch(pattern, value), want, `${pattern} vs ${value}`);
});

test('pathological patterns stay fast (no backtracking)', () => {
  const pattern = 'a*'.repeat(50) + 'b';
  const value = 'a'.repeat(20_000);
  const started = performance.now();
  assert.equal(globMatch(pattern, value), false);
  assert.ok(performance.now() - started < 200, 'took too long');
});

test('anyGlobMatches', () => {
  assert.equal(anyGlobMatches(['x', 'pg-*'], 'pg-prod'), true);
  assert.equal(anyGlobMatches([], 'pg-prod'), false);
});
