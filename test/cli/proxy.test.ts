/** Which proxy the environment names for a broker URL (HTTPS_PROXY / HTTP_PROXY / NO_PROXY). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bypassesProxy, proxyFor } from '../../src/client/proxy.js';
import { BrokerError } from '../../src/errors.js';

test('NO_PROXY matching: *, exact hosts, domain suffixes, ports, IPs', () => {
  const cases: Array<[string, string, boolean]> = [
    ['https://broker.example.com', '*', true],
    ['https://broker.example.com', 'example.com', true],
    ['https://broker.example.com', '.example.com', true],
    ['https://broker.example.com', '*.example.com', true],
    ['https://example.com', '.example.com', true],
    ['https://notexample.com', 'example.com', false],
    ['https://broker.example.com', 'other.org, example.com', true],
    ['https://broker.example.com', 'other.org example.com', true],
    ['https://broker.example.com:8443', 'example.com:8443', true],
    ['https://broker.example.com:8443', 'example.com:443', false],
    ['https://broker.example.com', 'example.com:443', true],
    ['https://BROKER.Example.com.', 'broker.example.com', true],
    ['https://127.0.0.1:8443', '127.0.0.1', true],
    ['https://127.0.0.1:8443', '0.0.1', false],
    ['https://[::1]:8443', '::1', true],
    ['https://[::1]:8443', '[::1]:8443', true],
    ['https://[::1]:8443', '[::1]:9000', false],
    ['https://broker.example.com', '', false],
  ];
  for (const [url, noProxy, expected] of cases) {
    assert.equal(bypassesProxy(new URL(url), noProxy), expected, `${url} with NO_PROXY=${JSON.stringify(noProxy)}`);
  }
});

test('proxyFor: https prefers HTTPS_PROXY, falls back to HTTP_PROXY, lowercase first; NO_PROXY wins', () => {
  const target = new URL('https://broker.example.com');
  assert.equal(proxyFor(target, {}), undefined);
  assert.equal(proxyFor(target, { HTTPS_PROXY: 'http://p1:3128' })?.href, 'http://p1:3128/');
  assert.equal(proxyFor(target, { https_proxy: 'http://p2:3128', HTTPS_PROXY: 'http://p1:3128' })?.href, 'http://p2:3128/');
  assert.equal(proxyFor(target, { HTTP_PROXY: 'http://p3:3128' })?.href, 'http://p3:3128/');
  assert.equal(proxyFor(target, { HTTPS_PROXY: 'p4:3128' })?.href, 'http://p4:3128/', 'a bare host:port means http');
  assert.equal(proxyFor(target, { HTTPS_PROXY: 'http://p1:3128', NO_PROXY: 'example.com' }), undefined);
  assert.equal(proxyFor(target, { HTTPS_PROXY: 'http://p1:3128', no_proxy: '*' }), undefined);
  assert.equal(proxyFor(new URL('http://plain.example.com'), { HTTPS_PROXY: 'http://p1:3128' }), undefined, 'http targets use HTTP_PROXY only');
});

test('a proxy setting that is not http(s) is an error that hides the password', () => {
  assert.throws(
    () => proxyFor(new URL('https://b.example.com'), { HTTPS_PROXY: 'socks5://user:hunter2@p:1080' }),
    (err: unknown) => err instanceof BrokerError && err.code === 'AG_PROXY_INVALID' && !err.message.includes('hunter2') && err.message.includes('user:***@'),
  );
});
