/**
 * Receipt endpoints.
 * - `GET /v1/receipts/:session`: the session's actor, or an auditor; anyone else gets the
 *   same 404 as for a session that does not exist, so ids cannot be probed.
 * - `GET /v1/receipts?connect=<id>`: the caller's own receipts from one connect/run session.
 */
import type { ReceiptListResponse } from '../../shared/receipt.js';
import { isAuditor } from '../audit/auditors.js';
import { HttpError } from '../http/errors.js';
import { sendJson } from '../http/json.js';
import type { Route } from '../http/types.js';
import type { Identity } from '../identity/types.js';
import type { ReceiptService } from './service.js';

const ID = /^[A-Za-z0-9._:-]{1,200}$/;

export function createReceiptRoutes(receipts: Pick<ReceiptService, 'get' | 'listForConnect'>): Route[] {
  return [
    {
      method: 'GET',
      path: '/v1/receipts/:session',
      auth: true,
      async handle({ res, params, identity, broker }) {
        const id = must(identity);
        const session = params['session'] ?? '';
        const found = ID.test(session) ? await receipts.get(session) : undefined;
        if (!found || (found.sub !== id.sub && !isAuditor(id, broker.config))) {
          throw new HttpError(404, 'AG_RECEIPT_NOT_FOUND', `no receipt for session ${JSON.stringify(session.slice(0, 200))} that you may read`, {
            hint: 'receipts are issued when a session ends; you may read your own, auditors may read all',
          });
        }
        sendJson(res, 200, found.envelope);
      },
    },
    {
      method: 'GET',
      path: '/v1/receipts',
      auth: true,
      async handle({ res, url, identity }) {
        const id = must(identity);
        const connect = url.searchParams.get('connect');
        if (connect === null || !ID.test(connect)) {
          throw new HttpError(400, 'AG_BAD_QUERY', 'GET /v1/receipts needs ?connect=<connect session id>', {
            hint: 'pass the id of the connect/run session whose receipts you want',
          });
        }
        const body: ReceiptListResponse = {
          receipts: (await receipts.listForConnect(connect, id.sub)).map((r) => ({ session: r.session, envelope: r.envelope })),
        };
        sendJson(res, 200, body);
      },
    },
  ];
}

function must(identity: Identity | undefined): Identity {
  if (!identity) throw new Error('auth route reached without an identity');
  return identity;
}
