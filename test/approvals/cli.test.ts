/**
 * `agentgate approve` and `agentgate requests` as a user runs them: the built CLI as a
 * child process (no TTY), a real broker over HTTPS, the token in AGENTGATE_TOKEN.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { runBroker, type Broker } from '../../src/broker/index.js';
import { silentLogger } from '../../src/broker/log.js';
import type { RequestView, RequestsResponse } from '../../src/shared/api-types.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { makeBrokerConfig, makeTempDir, type TempDir } from '../broker/fixtures.js';
import { JWT_LIKE, makeHome, runCli, type CliRun, type Home } from '../cli/fixture.js';
import { held } from './fixtures.js';

describe('agentgate approve / requests', () => {
  let tmp: TempDir;
  let issuer: TestIssuer;
  let broker: Broker;
  const homes: Home[] = [];
  const envs: Record<string, NodeJS.ProcessEnv> = {};

  const run = async (who: string, args: string[]): Promise<CliRun> => {
    const r = await runCli(args, envs[who]!);
    assert.doesNotMatch(r.stdout + r.stderr, JWT_LIKE, 'no token in the output');
    return r;
  };

  before(async () => {
    tmp = await makeTempDir('agentgate-approvals-cli-');
    issuer = await startTestIssuer();
    broker = await runBroker(makeBrokerConfig(tmp.path, { identity: { issuer: issuer.issuer } }), { port: 0, logger: silentLogger, closeGraceMs: 100 });
    for (const [sub, groups] of Object.entries({ 'agent-7': ['ai-agents'], bob: ['dba'], eve: ['dev'] })) {
      const token = await issuer.sign({ sub, groups }, { expiresIn: 3600 });
      const home = makeHome({ AGENTGATE_BROKER: broker.url, AGENTGATE_FINGERPRINT: broker.fingerprint, AGENTGATE_TOKEN: token });
      homes.push(home);
      envs[sub] = home.env;
    }
  });

  after(async () => {
    for (const h of homes) h.cleanup();
    await broker?.close();
    await issuer?.close();
    await tmp?.remove();
  });

  test('a reviewer approves by ID and the held statement is released', async () => {
    const { request, outcome } = broker.approvals.request(held({ fingerprint: 'fp-cli-approve' }));
    const r = await run('bob', ['approve', request.id, '--approve']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`Approved ${request.id}`));
    assert.equal((await outcome).status, 'approved');
  });

  test('the requester cannot approve their own request: exit 4 with the reason', async () => {
    const { request } = broker.approvals.request(held({ fingerprint: 'fp-cli-self' }));
    const r = await run('agent-7', ['approve', request.id, '--approve']);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /agent-7 made request .* cannot decide it/);
    assert.match(r.stderr, /→ ask someone in dba/);
    assert.equal(broker.approvals.get(request.id)?.status, 'pending');
  });

  test('--deny without --reason is a usage error (exit 2); with one it denies, --json prints the request', async () => {
    const { request, outcome } = broker.approvals.request(held({ fingerprint: 'fp-cli-deny' }));
    const usage = await run('bob', ['approve', request.id, '--deny']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--deny needs --reason/);
    assert.equal(broker.approvals.get(request.id)?.status, 'pending');

    const r = await run('bob', ['approve', request.id, '--deny', '--reason', 'use a migration', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const view = JSON.parse(r.stdout) as RequestView;
    assert.equal(view.id, request.id);
    assert.equal(view.status, 'denied');
    const o = await outcome;
    assert.equal(o.status === 'denied' ? o.reason : o.status, 'use a migration');
  });

  test('without a TTY and without flags it lists what waits and says how to decide; it never prompts', async () => {
    const { request } = broker.approvals.request(held({ fingerprint: 'fp-cli-list' }));
    const r = await run('bob', ['approve']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${request.id}\\s+pending`));
    assert.match(r.stderr, /--approve/);

    const one = await run('bob', ['approve', request.id]);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, /Why held\s+update needs review by dba/);
    assert.match(one.stdout, /UPDATE users SET plan = 'pro' WHERE id = 42/);

    const nothing = await run('eve', ['approve']);
    assert.equal(nothing.code, 0);
    assert.match(nothing.stderr, /Nothing waiting for your review/);
    const hidden = await run('eve', ['approve', request.id, '--approve']);
    assert.equal(hidden.code, 1);
    assert.match(hidden.stderr, /no approval request/);
  });

  test('requests lists what I made, with status; --all includes decided ones', async () => {
    const r = await run('agent-7', ['requests', '--all', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const { requests } = JSON.parse(r.stdout) as RequestsResponse;
    assert.ok(requests.length >= 4);
    assert.ok(requests.every((x) => x.mine));
    assert.ok(requests.some((x) => x.status === 'approved') && requests.some((x) => x.status === 'denied'));

    const table = await run('agent-7', ['requests']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^ID\s+STATUS\s+AGE\s+ROLE/);
    assert.doesNotMatch(table.stdout, /denied/, 'pending only without --all');
    assert.match(table.stdout, /pending\s+\d+s\s+mine\s+agent-7\s+pg-prod/);
  });
});
