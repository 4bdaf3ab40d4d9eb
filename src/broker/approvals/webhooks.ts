/**
 * Outgoing approval webhooks: a JSON POST of `{event, request}` to each configured URL on
 * `created` and `decided`, so chat or paging tools can be wired. The raw body is signed
 * with HMAC-SHA256 (`x-agentgate-signature: sha256=<hex>`) when the hook has a secret.
 *
 * Deliveries never block a decision: they run in the background, each try bounded by a
 * timeout, up to `attempts` tries with exponential backoff. Failures are logged with the
 * URL's origin only, since incoming-webhook URLs often carry a credential in their path.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { request, type Dispatcher } from 'undici';
import type { ApprovalRequestJson, ApprovalWebhookPayload } from '../../shared/api-types.js';
import { VERSION } from '../../shared/version.js';
import { mrkdwnText, shownStatement, sizeOf, visible } from '../../shared/display-text.js';
import type { WebhookConfig } from '../config/types.js';
import type { Logger } from '../log.js';

export const SIGNATURE_HEADER = 'x-agentgate-signature';
export const EVENT_HEADER = 'x-agentgate-event';
export const DELIVERY_HEADER = 'x-agentgate-delivery';

export interface WebhookSenderOptions {
  webhooks: readonly WebhookConfig[];
  logger: Logger;
  /** Aborting it stops deliveries in flight and pending retries. */
  signal: AbortSignal;
  /** Per try. Default 5 000. */
  timeoutMs?: number;
  /** Default 3. */
  attempts?: number;
  /** Delay before the second try; doubles after. Default 500. */
  retryDelayMs?: number;
  dispatcher?: Dispatcher;
}

export interface WebhookSender {
  /** Queues one POST per hook subscribed to `event`; returns at once. */
  send(event: ApprovalWebhookPayload['event'], request: ApprovalRequestJson): void;
  /** Resolves when every delivery started so far has finished (or given up). */
  idle(): Promise<void>;
}

/** `sha256=<hex>`: HMAC-SHA256 of the exact bytes sent. */
export function signatureFor(body: string | Buffer, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export function createWebhookSender(options: WebhookSenderOptions): WebhookSender {
  const { webhooks, logger, signal } = options;
  const timeoutMs = options.timeoutMs ?? 5_000;
  const attempts = Math.max(1, options.attempts ?? 3);
  const retryDelayMs = options.retryDelayMs ?? 500;
  const inFlight = new Set<Promise<void>>();

  const deliver = async (hook: WebhookConfig, event: string, requestId: string, body: string): Promise<void> => {
    const delivery = randomUUID();
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': `agentgate/${VERSION}`,
      [EVENT_HEADER]: event,
      // The same id on every try, so a receiver can drop duplicates.
      [DELIVERY_HEADER]: delivery,
    };
    if (hook.secret) headers[SIGNATURE_HEADER] = signatureFor(body, hook.secret.reveal());
    const where = originOf(hook.url);
    let last = '';
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (signal.aborted) return;
      try {
        const res = await request(hook.url, {
          method: 'POST',
          headers,
          body,
          signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
          ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
        });
        await res.body.dump();
        if (res.statusCode >= 200 && res.statusCode < 300) {
          logger.debug('webhook delivered', { url: where, event, request_id: requestId, delivery, attempt });
          return;
        }
        last = `HTTP ${res.statusCode}`;
        // The receiver refused the content itself: another try would be refused too.
        if (res.statusCode >= 400 && res.statusCode < 500 && res.statusCode !== 408 && res.statusCode !== 429) break;
      } catch (err) {
        if (signal.aborted) return;
        last = describe(err);
      }
      if (attempt < attempts) {
        try {
          await sleep(retryDelayMs * 2 ** (attempt - 1), undefined, { signal, ref: false });
        } catch {
          return; // aborted by close()
        }
      }
    }
    logger.warn('webhook delivery failed', { url: where, event, request_id: requestId, delivery, error: last });
  };

  return {
    send(event, req) {
      const hooks = webhooks.filter((h) => h.events.includes(event));
      if (hooks.length === 0 || signal.aborted) return;
      const payload: ApprovalWebhookPayload = { event, text: mrkdwnSummary(event, req), request: shownSafely(req) };
      const body = JSON.stringify(payload);
      for (const hook of hooks) {
        const p = deliver(hook, event, req.id, body).catch((err: unknown) => logger.error('webhook delivery crashed', { url: originOf(hook.url), error: err }));
        inFlight.add(p);
        // eslint-disable-next-line @typescript-eslint/no-floating-promises -- p ends in .catch, so this cannot reject
        void p.finally(() => inFlight.delete(p));
      }
    },
    async idle() {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    },
  };
}

/**
 * The request with its agent-controlled text escaped (control characters, bidi overrides),
 * as the reviewer screen shows it: chat tools render these fields to people who decide.
 */
function shownSafely(req: ApprovalRequestJson): ApprovalRequestJson {
  const out: ApprovalRequestJson = {
    ...req,
    requester: { ...req.requester, sub: visible(req.requester.sub, true), ...(typeof req.requester.name === 'string' ? { name: visible(req.requester.name, true) } : {}) },
    statement: visible(req.statement),
    reason: visible(req.reason),
    // Table names and the session's earlier SETs come from the agent's text too.
    classification: shownClassification(req.classification),
    decisions: req.decisions.map((d) => ({ ...d, approver: { ...d.approver, sub: visible(d.approver.sub, true), ...(d.approver.name !== undefined ? { name: visible(d.approver.name, true) } : {}) }, reason: d.reason === null ? null : visible(d.reason) })),
  };
  if (req.parameters) out.parameters = req.parameters.map((p) => visible(p, true));
  if (req.body) out.body = { content_type: visible(req.body.content_type, true), text: visible(req.body.text) };
  if (req.requester_reason !== undefined) out.requester_reason = visible(req.requester_reason, true);
  return out;
}

/** Characters of the statement (and of a body) the mrkdwn text carries: chat tools fold or cut longer messages. */
export const MRKDWN_STATEMENT_CHARS = 2_500;

/**
 * The request as one mrkdwn message. Agent text only ever appears through mrkdwnText; the
 * statement goes in a code block (so `*bold*` or `_x_` in it are not formatting, and a
 * backtick cannot close it early), with its size and padding said in words, and cut only
 * with a line that says so and where to read it whole.
 */
export function mrkdwnSummary(event: ApprovalWebhookPayload['event'], req: ApprovalRequestJson): string {
  const who = req.requester.name ? `${req.requester.name} (${req.requester.sub})` : req.requester.sub;
  const block = (label: string, text: string): string[] => {
    const shown = [...shownStatement(text)];
    const cut = shown.length > MRKDWN_STATEMENT_CHARS;
    const body = mrkdwnText((cut ? shown.slice(0, MRKDWN_STATEMENT_CHARS) : shown).join('')).replaceAll('`', '\\x60');
    return [
      `${label} (${sizeOf(text)}):`,
      `\`\`\`\n${body}\n\`\`\``,
      ...(cut ? [`CUT: only the first ${MRKDWN_STATEMENT_CHARS} of ${shown.length} characters are shown above; read it whole before deciding: agentgate approve ${req.id}`] : []),
    ];
  };
  const lines = [
    `${event === 'created' ? 'Approval requested' : `Request ${req.status}`}: ${req.id} by ${mrkdwnText(who, true)} on ${mrkdwnText(req.target, true)} (rule ${mrkdwnText(req.rule, true)})`,
    `Why held: ${mrkdwnText(req.reason, true)}`,
    `Reason given: ${req.requester_reason !== undefined ? mrkdwnText(req.requester_reason, true) : '(none)'}`,
    ...(req.parameters && req.parameters.length > 0 ? [`Values: ${mrkdwnText(req.parameters.map((v, i) => `$${i + 1} = ${v}`).join(', '), true)}`] : []),
    ...(req.any_values ? ['Approves this statement with ANY parameter values'] : []),
    ...req.decisions.map((d) => `Decision: ${mrkdwnText(`${d.approver.name ?? d.approver.sub}: ${d.decision}${d.reason ? ` — ${d.reason}` : ''}`, true)}`),
    ...block('Statement', req.statement),
    ...(req.body ? block(`Body, ${mrkdwnText(req.body.content_type, true) || 'no content type'}`, req.body.text) : []),
  ];
  return lines.join('\n');
}

function shownClassification(value: Record<string, unknown>): Record<string, unknown> {
  const walk = (v: unknown): unknown =>
    typeof v === 'string' ? visible(v, true) : Array.isArray(v) ? v.map(walk) : v !== null && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [visible(k, true), walk(x)])) : v;
  return walk(value) as Record<string, unknown>;
}

function originOf(url: string): string {
  return URL.parse(url)?.origin ?? '(invalid url)';
}

/** A failure in words without the URL (whose path may be a credential). */
function describe(err: unknown): string {
  const e = err as { name?: string; code?: string; cause?: { code?: string } };
  if (e?.name === 'TimeoutError') return 'timed out';
  return e?.code ?? e?.cause?.code ?? e?.name ?? 'error';
}
