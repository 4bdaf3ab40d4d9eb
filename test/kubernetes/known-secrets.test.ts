/** KnownSecrets: which values are kept, and how a text is read for them (once, whatever their number). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KnownSecrets } from '../../src/broker/kubernetes/known-secrets.js';

const star = (v: string): string => '*'.repeat(Math.min(v.length, 8));

test('values and their base64 are masked wherever they appear; ordinary words are not kept', () => {
  const k = new KnownSecrets();
  k.learn('postgres'); // one kind of character: an image name would be masked too
  k.learn('hunter2-Pw');
  assert.equal(k.size, 1, 'one value (kept in all its forms); postgres is not kept');
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

test('a value is found in the forms it is echoed in: Go-quoted, JSON with HTML escapes, percent-encoded, hex, base64 inside a longer base64 text', () => {
  const k = new KnownSecrets();
  const v = 'Wv7"q&<z> \\9pK!';
  k.learn(v);
  const bytes = Buffer.from(v, 'utf8');
  const goQuoted = JSON.stringify(v).slice(1, -1);
  const forms = [
    v,
    goQuoted,
    goQuoted.replace(/&/g, '\\u0026').replace(/</g, '\\u003c').replace(/>/g, '\\u003e'),
    encodeURIComponent(v),
    encodeURIComponent(v).replace(/%20/g, '+').replace(/!/g, '%21'),
    bytes.toString('hex'),
    bytes.toString('hex').toUpperCase(),
    bytes.toString('base64'),
  ];
  for (const f of forms) assert.equal(k.replaceIn(`before ${f} after`, () => '<m>'), 'before <m> after', f);
  // Inside a longer base64 text (a docker auth `user:value`) at each alignment: only the prefix's and the value's edge groups remain.
  for (const user of ['u', 'us', 'usr']) {
    const blob = Buffer.from(`${user}:${v}`, 'utf8').toString('base64');
    const out = k.replaceIn(blob, () => '<m>') ?? '';
    assert.match(out, /^[A-Za-z0-9+/]{0,8}<m>[A-Za-z0-9+/=]{0,4}$/, `${user}: ${out}`);
  }
  assert.equal(k.replaceIn('a plain line with %20 and \\u0026 and deadbeef00', () => '<m>'), undefined);
});
