/** The device flow's unhappy endings, in process against the real oidc-provider. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { deviceLogin, type DevicePrompt } from '../../src/client/device-login.js';
import { closeIdpConnections } from '../../src/client/oidc.js';
import { AgentgateError, AuthError, ExitCode } from '../../src/errors.js';
import type { BrokerDiscovery } from '../../src/shared/api-types.js';
import { startTestIdp, type TestIdp } from '../helpers/oidc-provider.js';

let idp: TestIdp;
let discovery: BrokerDiscovery;

before(async () => {
  idp = await startTestIdp({ deviceCodeTtl: 1 });
  discovery = {
    broker_version: 'test',
    issuer: idp.issuer,
    audience: idp.audience,
    client_id: idp.deviceClientId,
    scopes: ['openid', 'offline_access'],
    tunnel_endpoint: 'https://broker.invalid/v1/tunnel',
    jwks_uri: 'https://broker.invalid/.well-known/jwks.json',
  };
});

after(async () => {
  await closeIdpConnections();
  await idp?.close();
});

test('a code nobody enters expires: AuthError telling the user to run login again', async () => {
  const prompts: DevicePrompt[] = [];
  await assert.rejects(
    deviceLogin(discovery, { prompt: (p) => prompts.push(p) }),
    (err: unknown) => {
      assert.ok(err instanceof AuthError);
      assert.equal(err.code, 'AG_LOGIN_EXPIRED');
      assert.equal(err.exitCode, ExitCode.auth);
      assert.match(err.message, /the code expired/);
      assert.match(err.hint ?? '', /run agentgate login again/);
      return true;
    },
  );
  assert.equal(prompts.length, 1);
  assert.match(prompts[0]?.user_code ?? '', /^[A-Z]{4}-[A-Z]{4}$/);
  assert.equal(prompts[0]?.verification_uri, `${idp.issuer}/device`);
});

test('Ctrl-C while waiting cancels the login', async () => {
  const cancel = new AbortController();
  await assert.rejects(
    deviceLogin(discovery, { prompt: () => cancel.abort(), signal: cancel.signal }),
    (err: unknown) => err instanceof AuthError && err.code === 'AG_LOGIN_CANCELLED',
  );
});

test('an IdP on plain http is refused unless it runs on this machine', async () => {
  await assert.rejects(
    deviceLogin({ ...discovery, issuer: 'http://idp.example.test' }, { prompt: () => assert.fail('no prompt') }),
    (err: unknown) => err instanceof AgentgateError && err.code === 'AG_IDP_INSECURE' && /not served over https/.test(err.message),
  );
});
