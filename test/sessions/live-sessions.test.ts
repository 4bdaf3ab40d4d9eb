/**
 * The live-session registry's rules, without a network: renewal keeps the subject and
 * issuer, revives an expired tunnel but never a revoked one; leases on a lapsed tunnel are
 * refused; an unknown tunnel gets no session. Deadlines in the past fire at once, so
 * nothing here waits on a clock. And the `sessions:` / `operators:` config keys.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LiveSessions, type EndNotice } from '../../src/broker/live-sessions.js';
import { silentLogger } from '../../src/broker/log.js';
import { parseBrokerConfig } from '../../src/broker/config/load.js';

const actor = { sub: 'alice', name: null, groups: ['ai-agents'], kind: 'human' as const };
const nowSec = (): number => Math.floor(Date.now() / 1000);
const registry = (): LiveSessions => new LiveSessions({ leewayMs: 0, logger: silentLogger });

test('a lapsed credential ends live sessions and refuses new ones; the same subject renews and revives', () => {
  const live = registry();
  live.openTunnel('t1', { sub: 'alice', issuer: 'https://idp', groups: ['ai-agents'], kind: 'agent', expiresAt: nowSec() + 3600 });
  const lease = live.lease('t1', { actor, target: 'db', protocol: 'postgres' });
  const ended: EndNotice[] = [];
  lease.start('pgs_1', (n) => ended.push(n));
  assert.equal(lease.refusal, undefined);
  assert.equal(live.list().length, 1);

  // A credential already past its exp (leeway 0): the deadline is now.
  live.renew('t1', { sub: 'alice', issuer: 'https://idp', groups: ['ai-agents'], kind: 'agent', expiresAt: nowSec() - 1 });
  assert.deepEqual(ended.map((n) => n.reason), ['credential_expired']);
  assert.equal(live.list().length, 0);
  const next = live.lease('t1', { actor, target: 'db', protocol: 'postgres' });
  assert.equal(next.refusal?.reason, 'credential_expired');
  assert.match(next.refusal?.hint ?? '', /agentgate login/);

  assert.throws(() => live.renew('t1', { sub: 'mallory', issuer: 'https://idp', groups: ['ai-agents'], kind: 'agent', expiresAt: nowSec() + 3600 }), { code: 'AG_CREDENTIAL_SUBJECT_CHANGED' });
  assert.throws(() => live.renew('t1', { sub: 'alice', issuer: 'https://other-idp', groups: ['ai-agents'], kind: 'agent', expiresAt: nowSec() + 3600 }), { code: 'AG_CREDENTIAL_SUBJECT_CHANGED' });
  assert.equal(next.refusal?.reason, 'credential_expired');

  const until = live.renew('t1', { sub: 'alice', issuer: 'https://idp', groups: ['ai-agents'], kind: 'agent', expiresAt: nowSec() + 3600 });
  assert.ok(until > Date.now() + 3_000_000);
  assert.equal(next.refusal, undefined);
  live.close();
});

test('revoking a subject ends its sessions, and its tunnels stay refused even with a fresh credential', () => {
  const live = registry();
  live.openTunnel('t1', { sub: 'alice', issuer: 'https://idp', groups: ['ai-agents'], kind: 'agent', expiresAt: nowSec() + 3600 });
  live.openTunnel('t2', { sub: 'bob', issuer: 'https://idp', groups: ['ai-agents'], kind: 'agent', expiresAt: nowSec() + 3600 });
  const ended: string[] = [];
  live.lease('t1', { actor, target: 'db', protocol: 'postgres' }).start('pgs_a', (n) => ended.push(`a:${n.reason}:${n.by}`));
  live.lease('t2', { actor: { ...actor, sub: 'bob' }, target: 'db', protocol: 'postgres' }).start('pgs_b', (n) => ended.push(`b:${n.reason}`));
  assert.deepEqual(live.revoke({ sub: 'alice' }, 'op-1'), ['pgs_a']);
  assert.deepEqual(ended, ['a:revoked:op-1']);
  assert.deepEqual(live.list().map((s) => s.id), ['pgs_b']);
  assert.throws(() => live.renew('t1', { sub: 'alice', issuer: 'https://idp', groups: ['ai-agents'], kind: 'agent', expiresAt: nowSec() + 7200 }), { code: 'AG_SESSION_REVOKED' });
  assert.equal(live.lease('t1', { actor, target: 'db', protocol: 'postgres' }).refusal?.reason, 'revoked');
  // Ending twice is a no-op; an unknown session is nothing to revoke.
  assert.deepEqual(live.revoke({ session: 'pgs_a' }, 'op-1'), []);
  assert.deepEqual(live.revoke({ session: 'pgs_b' }, 'op-1'), ['pgs_b']);
  live.close();
});

test('a lease on an unknown tunnel is refused (fail closed)', () => {
  const live = registry();
  const lease = live.lease('nope', { actor, target: 'db', protocol: 'postgres' });
  assert.equal(lease.refusal?.reason, 'credential_expired');
  lease.start('pgs_x', () => assert.fail('never started'));
  assert.deepEqual(live.list(), []);
});

test('sessions: and operators: in the config', () => {
  const base = 'identity: { issuer: "https://idp.example", audience: agentgate, client_id: cli }\n';
  const c = parseBrokerConfig(`${base}sessions: { max_duration: 8h, expiry_leeway: 0 }\noperators: { groups: [ops] }\n`, '/srv/a/agentgate.yaml', { env: {} });
  assert.deepEqual(c.sessions, { maxDurationSeconds: 8 * 3600, expiryLeewaySeconds: 0, loginTimeoutMs: 15_000, tlsHandshakeTimeoutMs: 10_000 });
  assert.deepEqual(c.operators, { groups: ['ops'] });
  const d = parseBrokerConfig(base, '/srv/a/agentgate.yaml', { env: {} });
  assert.deepEqual(d.sessions, { maxDurationSeconds: undefined, expiryLeewaySeconds: 30, loginTimeoutMs: 15_000, tlsHandshakeTimeoutMs: 10_000 });
  assert.deepEqual(d.operators, { groups: [] });
  assert.throws(() => parseBrokerConfig(`${base}sessions: { max_duration: forever }\n`, '/srv/a/agentgate.yaml', { env: {} }), /sessions\.max_duration/);
});
