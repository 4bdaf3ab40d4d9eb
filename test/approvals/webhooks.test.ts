/**
 * Outgoing webhooks against a real local HTTP receiver: the body is `{event, request}`, the
 * signature is the HMAC-SHA256 of the exact body, a failing receiver is retried, and a
 * receiver that never answers costs nothing but a log line (which names no secret).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApprovalService } from '../../src/broker/approvals/service.js';
import type { ApprovalService } from '../../src/broker/approvals/types.js';
import type { SqliteAuditStore } from '../../src/broker/audit/sqlite-store.js';
import type { ApprovalWebhookPayload } from '../../src/shared/api-types.js';
import { Secret } from '../../src/shared/secret.js';
import { captureLogger, makeBrokerConfig, makeTempDir, waitFor, type CapturedLog, type TempDir } from '../broker/fixtures.js';
import { BOB, held, openStore } from './fixtures.js';

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

const SECRET = 'whsec-test-0123456789';
const URL_TOKEN = 'T0KEN-IN-THE-PATH';

describe('approval webhooks', () => {
  let tmp: TempDir;
  let audit: SqliteAuditStore;
  let server: Server;
  let base: string;
  let log: CapturedLog;
  let service: ApprovalService;
  const received: Received[] = [];
  /** Answers 503 to the first POST on /flaky, so it has to be retried. */
  let flakyFailures = 1;

  before(async () => {
    tmp = await makeTempDir('agentgate-webhooks-');
    audit = await openStore(tmp.path);
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
        if (req.url === '/flaky' && flakyFailures-- > 0) res.writeHead(503).end();
        else res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    log = captureLogger('debug');
    const config = makeBrokerConfig(tmp.path, {
      approvals: {
        timeoutSeconds: 600,
        webhooks: [
          { url: `${base}/signed`, secret: new Secret(SECRET, '${env:WEBHOOK_SECRET}'), events: ['created', 'decided'] },
          { url: `${base}/unsigned`, secret: undefined, events: ['decided'] },
          { url: `${base}/flaky`, secret: undefined, events: ['created'] },
          // Nothing listens on port 1: every try fails fast.
          { url: `http://127.0.0.1:1/hooks/${URL_TOKEN}`, secret: new Secret(SECRET), events: ['created'] },
        ],
      },
    });
    service = createApprovalService({ config, audit, logger: log.logger, webhooks: { retryDelayMs: 10, timeoutMs: 2_000 } });
  });

  after(async () => {
    await service?.close();
    await audit?.close();
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await tmp?.remove();
  });

  test('created and decided are POSTed as signed JSON; failures are retried and logged without secrets', async () => {
    const { request } = service.request(held());
    await waitFor('the created hooks', () => (received.filter((r) => r.path === '/signed' || r.path === '/flaky').length >= 3 ? true : undefined));
    await service.decide(request.id, BOB, 'approve', 'ok');
    await waitFor('the decided hooks', () => (received.filter((r) => r.headers['x-agentgate-event'] === 'decided').length >= 2 ? true : undefined));

    const signed = received.filter((r) => r.path === '/signed');
    assert.deepEqual(
      signed.map((r) => r.headers['x-agentgate-event']),
      ['created', 'decided'],
    );
    for (const r of signed) {
      const header = String(r.headers['x-agentgate-signature'] ?? '');
      assert.match(header, /^sha256=[0-9a-f]{64}$/);
      const expected = createHmac('sha256', SECRET).update(r.body).digest();
      assert.ok(timingSafeEqual(Buffer.from(header.slice('sha256='.length), 'hex'), expected), 'signature is the HMAC of the raw body');
      assert.equal(r.headers['content-type'], 'application/json');
      const payload = JSON.parse(r.body.toString('utf8')) as ApprovalWebhookPayload;
      assert.equal(payload.event, r.headers['x-agentgate-event']);
      assert.equal(payload.request.id, request.id);
      assert.equal(payload.request.statement, "UPDATE users SET plan = 'pro' WHERE id = 42");
    }
    const decidedPayload = JSON.parse(signed[1]!.body.toString('utf8')) as ApprovalWebhookPayload;
    assert.equal(decidedPayload.request.status, 'approved');
    assert.deepEqual(decidedPayload.request.decisions.map((d) => [d.approver.sub, d.decision, d.reason]), [['bob', 'approve', 'ok']]);

    const unsigned = received.filter((r) => r.path === '/unsigned');
    assert.deepEqual(unsigned.map((r) => r.headers['x-agentgate-event']), ['decided'], 'only the events it subscribed to');
    assert.equal(unsigned[0]?.headers['x-agentgate-signature'], undefined, 'no secret, no signature');

    const flaky = received.filter((r) => r.path === '/flaky');
    assert.equal(flaky.length, 2, 'a 503 is tried again');
    assert.equal(flaky[0]?.headers['x-agentgate-delivery'], flaky[1]?.headers['x-agentgate-delivery'], 'a retry carries the same delivery id');

    const failed = await waitFor('the unreachable hook to give up', () => log.records().find((r) => r['msg'] === 'webhook delivery failed'));
    assert.equal(failed['url'], 'http://127.0.0.1:1');
    assert.equal(failed['event'], 'created');
    assert.ok(!log.text().includes(SECRET), 'the secret is never logged');
    assert.ok(!log.text().includes(URL_TOKEN), 'nor the URL path, which may be a credential');
  });

  test("the requester's own reason is escaped like the statement: it cannot disguise what a reviewer reads", async () => {
    const sneaky = 'routine \u202Eexe.ngis\u202C fix \x1b[2K\x1b[1A';
    const { request } = service.request(held({ requesterReason: sneaky, fingerprint: 'fp-sneaky-reason', session: 'sess-2' }));
    const hook = await waitFor('the created hook', () => {
      const r = received.find((x) => x.path === '/signed' && (JSON.parse(x.body.toString('utf8')) as ApprovalWebhookPayload).request.id === request.id);
      return r ? (JSON.parse(r.body.toString('utf8')) as ApprovalWebhookPayload) : undefined;
    });
    assert.equal(hook.request.requester_reason, 'routine \\u{202e}exe.ngis\\u{202c} fix \\x1b[2K\\x1b[1A');
    await service.decide(request.id, BOB, 'deny', 'no');
  });

  test('a held Kubernetes write carries its Content-Type and body, escaped like the statement', async () => {
    const { request } = service.request(
      held({ protocol: 'kubernetes', statement: 'PATCH /api/v1/namespaces/default/configmaps/c', body: { contentType: 'application/json-patch+json', text: '[{"op":"replace","value":"a\u202eb\x1b[2K"}]' }, fingerprint: 'fp-k8s-body', session: 'sess-3' }),
    );
    const hook = await waitFor('the created hook', () => {
      const r = received.find((x) => x.path === '/signed' && (JSON.parse(x.body.toString('utf8')) as ApprovalWebhookPayload).request.id === request.id);
      return r ? (JSON.parse(r.body.toString('utf8')) as ApprovalWebhookPayload) : undefined;
    });
    assert.deepEqual(hook.request.body, { content_type: 'application/json-patch+json', text: '[{"op":"replace","value":"a\\u{202e}b\\x1b[2K"}]' });
    await service.decide(request.id, BOB, 'deny', 'no');
  });
});
