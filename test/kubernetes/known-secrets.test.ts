/** KnownSecrets: which values are kept, and how a text is read for them (once, whatever their number). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KnownSecrets } from '../../src/broker/kubernetes/known-secrets.js';

const star = (v: string): string => '*'.repeat(Math.min(v.length, 8));

test('values and their base64 are masked wherever they appear; ordinary words are not kept', () => {
  const k = new KnownSecrets();
  k.learn('postgres'); // one kind of character: an image name would be masked too
  k.learn('hunter2-Pw');
  assert.equal(k.size, 2, 'the value and its base64');
  assert.equal(k.replaceIn('image postgres:16', star), undefined);
  assert.equal(k.replaceIn('login hunter2-Pw failed; again hunter2-Pw', star), 'login ******** failed; again ********');
  const b64 = Buffer.from('hunter2-Pw').toString('base64');
  assert.equal(k.replaceIn(`annotation: ${b64}`, star), 'annotation: ********');
});

test('a longer value wins over a shorter one it starts with', () => {
  const k = new KnownSecrets();
  k.learn('abcdEFGH');
  k.learn('abcdEFGH-and-more');
  assert.equal(k.replaceIn('x abcdEFGH-and-more y abcdEFGH z', (v) => `<${v.length}>`), 'x <17> y <8> z');
});

test('thousands of values: the one present is found in a large text', () => {
  const k = new KnownSecrets();
  for (let i = 0; i < 4000; i++) k.learn(`Secret-${i}-value`);
  const text = 'plain text without any secret in it, '.repeat(20_000) + 'Secret-3999-value';
  const out = k.replaceIn(text, star);
  assert.equal(out?.length, text.length - 'Secret-3999-value'.length + 8);
  assert.ok(out?.endsWith('without any secret in it, ********'));
});
