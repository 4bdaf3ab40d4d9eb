import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { Secret } from '../../src/shared/secret.js';
import { createLogger, parseLogLevel, redact } from '../../src/broker/log.js';
import { captureLogger } from './fixtures.js';

test('writes one JSON object per line with time, level, msg and fields; child adds fields', () => {
  const cap = captureLogger('debug');
  cap.logger.info('hello', { n: 1 });
  cap.logger.child({ component: 'identity' }).warn('careful', { path: '/v1/whoami' });
  const [a, b] = cap.records();
  assert.equal(typeof a?.['time'], 'string');
  assert.ok(!Number.isNaN(Date.parse(a?.['time'] as string)));
  assert.deepEqual({ ...a, time: 0 }, { time: 0, level: 'info', msg: 'hello', n: 1 });
  assert.deepEqual({ ...b, time: 0 }, { time: 0, level: 'warn', msg: 'careful', component: 'identity', path: '/v1/whoami' });
});

test('levels below the threshold are dropped', () => {
  const lines: string[] = [];
  const logger = createLogger({ level: 'warn', stream: new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    }) });
  logger.debug('d');
  logger.info('i');
  logger.warn('w');
  logger.error('e');
  assert.deepEqual(lines.map((l) => JSON.parse(l).msg), ['w', 'e']);
  assert.equal(parseLogLevel('DEBUG'), 'debug');
  assert.equal(parseLogLevel('loud'), undefined);
});

test('credential-named keys, Secrets, JWTs and bearer values never print', () => {
  const cap = captureLogger();
  const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz';
  cap.logger.info(`got header Bearer opaque-credential-123 and ${jwt}`, {
    authorization: 'Bearer opaque-credential-123',
    headers: { Authorization: 'x1', cookie: 'sid=x2', 'Set-Cookie': 'x3' },
    token: 'x4',
    access_token: 'x5',
    refreshToken: 'x6',
    password: 'x7',
    client_secret: 'x8',
    secret: 'x9',
    nested: [{ Password: 'x10' }],
    db: new Secret('x11', '${env:PG}'),
    note: `contains ${jwt}`,
    sub: 'alice',
  });
  const text = cap.text();
  for (const leaked of ['opaque-credential-123', jwt, 'sid=x2', 'x1"', 'x3', 'x4', 'x5', 'x6', 'x7', 'x8', 'x9', 'x10', 'x11']) {
    assert.ok(!text.includes(leaked), `log contains ${leaked}: ${text}`);
  }
  const [r] = cap.records();
  assert.equal(r?.['authorization'], '[redacted]');
  assert.equal(r?.['db'], '[redacted]');
  assert.equal(r?.['sub'], 'alice');
});

test('redact handles cycles, errors and buffers without throwing', () => {
  const o: Record<string, unknown> = { a: 1 };
  o['self'] = o;
  const err = Object.assign(new Error('boom'), { code: 'E_X' });
  assert.deepEqual(redact({ o, err, buf: Buffer.alloc(3) }), { o: { a: 1, self: '[circular]' }, err: { name: 'Error', message: 'boom', code: 'E_X' }, buf: '[3 bytes]' });
});

