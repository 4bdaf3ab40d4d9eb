/** Unauthenticated endpoints: health, broker discovery, the receipt-verification key. */
import type { BrokerDiscovery } from '../../shared/api-types.js';
import { VERSION } from '../../shared/version.js';
import { TUNNEL_PATH } from '../../tunnel/protocol.js';
import { receiptJwks } from '../keys.js';
import { sendJson } from './json.js';
import type { Route } from './types.js';

export { TUNNEL_PATH };
export const JWKS_PATH = '/.well-known/jwks.json';

export const healthzRoute: Route = {
  method: 'GET',
  path: '/healthz',
  auth: false,
  handle: ({ res }) => sendJson(res, 200, { ok: true }),
};

export const discoveryRoute: Route = {
  method: 'GET',
  path: '/.well-known/agentgate',
  auth: false,
  handle({ res, baseUrl, broker }) {
    const { identity } = broker.config;
    const body: BrokerDiscovery = {
      broker_version: VERSION,
      issuer: identity.issuer,
      audience: identity.audience,
      client_id: identity.clientId,
      scopes: identity.scopes,
      tunnel_endpoint: baseUrl + TUNNEL_PATH,
      jwks_uri: baseUrl + JWKS_PATH,
    };
    if (broker.upgradePaths.includes(TUNNEL_PATH)) body.ssh_host_key_fingerprint = broker.keys.sshHostKeyFingerprint;
    sendJson(res, 200, body, { 'cache-control': 'max-age=60' });
  },
};

/** The receipt-signing key and every retired one: receipts signed before a rotation still verify. */
export const jwksRoute: Route = {
  method: 'GET',
  path: JWKS_PATH,
  auth: false,
  handle: ({ res, broker }) => sendJson(res, 200, receiptJwks(broker.keys), { 'cache-control': 'max-age=300' }),
};
