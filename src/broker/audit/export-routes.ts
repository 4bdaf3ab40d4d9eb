/**
 * `GET /v1/audit/export?since&until&target&session&after_seq&format=jsonl|csv|ocsf`
 *
 * Auditors only (config `auditors.groups`); anyone else gets 403. The export is itself an
 * audit event (`audit.export`: who, which selection, which format), written and durable
 * before the first byte goes out — if it cannot be recorded, nothing is exported. The body
 * streams with backpressure; a client that goes away stops the export at once.
 */
import { EXPORT_FORMATS, type ExportFormat } from '../../shared/audit-export.js';
import type { AuditActor } from '../../shared/audit-hash.js';
import { HttpError } from '../http/errors.js';
import type { Route } from '../http/types.js';
import { JWKS_PATH } from '../http/well-known.js';
import type { Identity } from '../identity/types.js';
import type { ReceiptSigner } from '../receipts/types.js';
import { isAuditor } from './auditors.js';
import { writeExport, type ExportRequest } from './export.js';
import { AuditStoreError, normalizeAuditQuery, type AuditStore } from './store.js';

export const AUDIT_EXPORT_PATH = '/v1/audit/export';

const PARAMS = new Set(['since', 'until', 'target', 'session', 'after_seq', 'format']);
const CONTENT_TYPES: Record<ExportFormat, string> = {
  jsonl: 'application/x-ndjson; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
  ocsf: 'application/x-ndjson; charset=utf-8',
};

export interface AuditExportRouteDeps {
  audit: AuditStore;
  signer: ReceiptSigner;
}

function actorOf(identity: Identity): AuditActor {
  return { sub: identity.sub, name: identity.name ?? null, groups: identity.groups, kind: identity.kind };
}

/** Reads and checks the query string; every problem is a 400 naming the parameter. */
export function parseExportParams(params: URLSearchParams): ExportRequest {
  const bad = (message: string): never => {
    throw new HttpError(400, 'AG_BAD_QUERY', message, { hint: `parameters: ${[...PARAMS].join(', ')}; times are ISO-8601` });
  };
  for (const k of params.keys()) if (!PARAMS.has(k)) bad(`unknown parameter ${JSON.stringify(k)}`);
  const one = (k: string): string | undefined => {
    const all = params.getAll(k);
    if (all.length > 1) bad(`${k} is given ${all.length} times`);
    return all[0] === '' ? undefined : all[0];
  };
  const format = (one('format') ?? 'jsonl') as ExportFormat;
  if (!EXPORT_FORMATS.includes(format)) bad(`format must be one of ${EXPORT_FORMATS.join(', ')}, got ${JSON.stringify(format)}`);
  const afterText = one('after_seq');
  if (afterText !== undefined && !/^\d+$/.test(afterText)) bad(`after_seq must be a whole number, got ${JSON.stringify(afterText)}`);
  const req: ExportRequest = { format, afterSeq: afterText === undefined ? 0 : Number(afterText) };
  for (const k of ['since', 'until', 'target', 'session'] as const) {
    const v = one(k);
    if (v !== undefined) req[k] = v;
  }
  try {
    normalizeAuditQuery(req);
  } catch (e) {
    if (e instanceof AuditStoreError) bad(e.message);
    throw e;
  }
  return req;
}

export function createAuditExportRoutes(deps: AuditExportRouteDeps): Route[] {
  return [
    {
      method: 'GET',
      path: AUDIT_EXPORT_PATH,
      auth: true,
      async handle({ req, res, url, identity, broker, baseUrl, logger }) {
        if (!identity) throw new Error('auth route reached without an identity');
        if (!isAuditor(identity, broker.config)) {
          throw new HttpError(403, 'AG_NOT_AUDITOR', `${identity.sub} may not export the audit log`, {
            hint: `only members of the auditors groups (${broker.config.auditors.groups.join(', ') || 'none configured'}) may; ask the broker's operator`,
          });
        }
        const request = parseExportParams(url.searchParams);
        try {
          await deps.audit.append({
            type: 'audit.export',
            session: null,
            actor: actorOf(identity),
            target: request.target ?? null,
            detail: {
              format: request.format,
              query: {
                after_seq: request.afterSeq ?? 0,
                ...(request.since !== undefined ? { since: String(request.since) } : {}),
                ...(request.until !== undefined ? { until: String(request.until) } : {}),
                ...(request.target !== undefined ? { target: request.target } : {}),
                ...(request.session !== undefined ? { session: request.session } : {}),
              },
            },
            decision: { effect: 'allow', rule: null },
            outcome: null,
          });
        } catch (err) {
          throw new HttpError(503, 'AG_AUDIT_UNAVAILABLE', 'the export cannot be recorded in the audit log, so it is refused', {
            hint: "the broker's audit store is failing; its log has the details",
            cause: err,
          });
        }

        const ac = new AbortController();
        const onClose = (): void => {
          if (!res.writableFinished) ac.abort(new Error('the client went away'));
        };
        res.once('close', onClose);
        req.once('aborted', onClose);
        res.writeHead(200, {
          'content-type': CONTENT_TYPES[request.format],
          'content-disposition': `attachment; filename="agentgate-audit.${request.format === 'csv' ? 'csv' : request.format === 'ocsf' ? 'ocsf.jsonl' : 'jsonl'}"`,
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
        });
        const sink = {
          write: (chunk: string) => res.write(chunk),
          drain: () =>
            new Promise<void>((resolve, reject) => {
              if (ac.signal.aborted) {
                reject(ac.signal.reason as Error);
                return;
              }
              const done = (): void => {
                res.off('drain', done);
                ac.signal.removeEventListener('abort', done);
                if (ac.signal.aborted) reject(ac.signal.reason as Error);
                else resolve();
              };
              res.once('drain', done);
              ac.signal.addEventListener('abort', done, { once: true });
            }),
        };
        try {
          const summary = await writeExport({ store: deps.audit, signer: deps.signer, brokerUrl: baseUrl, jwksUri: baseUrl + JWKS_PATH }, request, sink, ac.signal);
          res.end();
          logger.info('audit exported', { sub: identity.sub, format: request.format, events: summary.count, first_seq: summary.first?.seq, last_seq: summary.last?.seq });
        } catch (err) {
          if (ac.signal.aborted) {
            logger.info('audit export stopped: the client went away', { sub: identity.sub });
            res.destroy();
            return;
          }
          throw err;
        } finally {
          res.off('close', onClose);
        }
      },
    },
  ];
}
