/**
 * Refusals in the Kubernetes API's own words: a `Status` object (meta/v1) with the HTTP
 * status code, which kubectl prints as `Error from server (Forbidden): <message>`.
 * https://kubernetes.io/docs/reference/using-api/api-concepts/#api-verbs (Status kind)
 */
import type { ServerResponse } from 'node:http';

export type StatusReason = 'Unauthorized' | 'Forbidden' | 'BadRequest' | 'NotFound' | 'MethodNotAllowed' | 'RequestEntityTooLarge' | 'ServiceUnavailable' | 'InternalError' | 'TooManyRequests';

export interface StatusDetails {
  name?: string;
  group?: string;
  /** The resource (plural), as the API server fills it for Forbidden. */
  kind?: string;
}

export interface K8sStatus {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure';
  message: string;
  reason: StatusReason;
  details?: StatusDetails;
  code: number;
}

export function failureStatus(code: number, reason: StatusReason, message: string, details?: StatusDetails): K8sStatus {
  const s: K8sStatus = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
  if (details && Object.keys(details).length > 0) s.details = details;
  return s;
}

/**
 * Answer a request with a Status; returns the bytes written. `plain` sends the message as
 * text/plain instead: client-go decodes a Status from discovery responses with a codec that
 * does not know Status, and prints "Error from server (Forbidden): unknown", whereas a
 * text/plain error body is printed as is.
 */
export function sendStatus(res: ServerResponse, status: K8sStatus, plain = false): number {
  const body = Buffer.from(plain ? `${status.message}\n` : JSON.stringify(status));
  res.writeHead(status.code, { 'content-type': plain ? 'text/plain; charset=utf-8' : 'application/json', 'content-length': body.length, 'cache-control': 'no-store' });
  res.end(body);
  return body.length;
}

/** A whole HTTP/1.1 response carrying a Status, for a socket taken over by an upgrade request. */
export function rawStatusResponse(status: K8sStatus): Buffer {
  const body = JSON.stringify(status);
  const head =
    `HTTP/1.1 ${status.code} ${status.reason.replace(/([a-z])([A-Z])/g, '$1 $2')}\r\n` +
    'Content-Type: application/json\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Cache-Control: no-store\r\n' +
    'Connection: close\r\n\r\n';
  return Buffer.from(head + body);
}
