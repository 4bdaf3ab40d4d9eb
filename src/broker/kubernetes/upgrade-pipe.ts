/**
 * An allowed upgrade (exec, attach, port-forward over SPDY or WebSocket) towards the API
 * server. The request goes upstream with node:https, whose client tells a `101` apart
 * from any other answer; on `101` the two sockets are joined as a raw byte pipe. Any other
 * answer is a plain response and is masked like one (`mask`, the proxy's maskers).
 */
import https from 'node:https';
import type http from 'node:http';
import type { IncomingMessage } from 'node:http';
import { pipeline, type Duplex, type Transform } from 'node:stream';
import type { K8sUpstream } from './upstream.js';
import { failureStatus, rawStatusResponse } from './status.js';
import { maskedRawHeaders, responseHead, unreadableCoding, upgradeRequestHeaders, withoutHeaders, type HeaderMask } from './headers.js';
import { readStream } from './read-stream.js';

/** How long both sides of an ending upgraded stream get to close before they are destroyed. */
export const UPGRADE_CLOSE_GRACE_MS = 2_000;

export interface UpgradeOutcome {
  /** 101, the upstream's other answer, 499 (client gone), 502 (the answer broke off) or 503 (upstream unreachable). */
  status: number;
  toClient: number;
  toServer: number;
  error?: string;
  /** Values masked in a non-101 answer. */
  masked?: number;
}

/**
 * A non-101 answer's body as the client may see it (masked), or undefined when it is in a
 * form that cannot be masked (it is then refused with 502, never relayed raw).
 */
/** `encoding`: why the answer's codings keep it from being read (headers.ts unreadableCoding), undefined when they do not. */
export type UpgradeAnswerMask = (answer: { status: number; contentType: string; encoding: string | undefined; body: Buffer }) => { body: Buffer; masked: number } | undefined;

/**
 * Sends the upgrade request upstream with node:https and, on `101`, joins the two
 * sockets as a raw byte pipe. Any other answer is relayed as a complete response and
 * the connection is closed: nothing the client sends is forwarded before the upstream
 * has switched protocols, so no second request can ride an upgrade that did not happen.
 */
/** Copies of what an upgraded stream carries, for a recording; it changes nothing. */
export interface UpgradeTap {
  /** Called once on 101 with the subprotocol the API server chose; false = stop tapping. */
  switched(protocol: string | undefined): boolean;
  toClient(b: Buffer): void;
  toServer(b: Buffer): void;
}

/**
 * What the API server sends on a switched stream, rewritten on its way to the client (the
 * masked output of an exec, exec-mask.ts).
 */
export interface UpgradeOutput {
  /** The only subprotocols offered upstream (the client's offer narrowed to these); no extension is offered. */
  protocols: readonly string[];
  /**
   * Called once on 101 with the subprotocol and extensions the API server chose: the
   * Transform its bytes go through, or why they cannot be relayed (the stream is then not
   * joined: the client gets a 502 Status). `cut` ends the stream after what the Transform
   * already wrote (it ends its readable side itself).
   */
  switched(protocol: string | undefined, extensions: string | undefined, cut: (reason: string) => void): Transform | string;
}

export interface UpgradeOptions {
  tap?: UpgradeTap | undefined;
  /** How a non-101 answer is masked (undefined: relayed as it is). */
  mask?: UpgradeAnswerMask | undefined;
  output?: UpgradeOutput | undefined;
  /** How the answer's header values are masked (a proxied backend sets any header). */
  headers?: HeaderMask | undefined;
}

export function pipeUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, up: K8sUpstream, live: Set<Duplex>, o: UpgradeOptions = {}): Promise<UpgradeOutcome> {
  const { tap, mask, output } = o;
  const shownHeaders = (raw: readonly string[]): string[] => maskedRawHeaders(raw, o.headers);
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: UpgradeOutcome): void => {
      if (settled) return;
      settled = true;
      resolve(r);
    };
    const upReq = https.request({
      ...up.tls,
      host: up.hostname,
      port: up.port,
      method: req.method ?? 'GET',
      path: up.basePath + (req.url ?? '/'),
      headers: upgradeRequestHeaders(req.rawHeaders, up.host, up.authorization, output?.protocols) as unknown as http.OutgoingHttpHeaders,
      agent: false,
      timeout: 30_000,
    });
    const onClientGone = (): void => {
      upReq.destroy();
      finish({ status: 499, toClient: 0, toServer: 0, error: 'the client went away' });
    };
    socket.once('close', onClientGone);
    upReq.on('timeout', () => upReq.destroy(new Error('the API server did not answer the upgrade in time')));
    upReq.on('error', (err: Error) => {
      socket.removeListener('close', onClientGone);
      const status = failureStatus(503, 'ServiceUnavailable', `agentgate: cannot reach the Kubernetes API server of ${up.target.name}: ${err.message}`);
      const bytes = rawStatusResponse(status);
      socket.end(bytes);
      finish({ status: 503, toClient: bytes.length, toServer: 0, error: err.message });
    });
    upReq.on('response', (res: IncomingMessage) => {
      // Not switched: relay the whole answer (a Status, typically; for `proxy`, whatever the
      // backend answered), masked like any other response, then close.
      socket.removeListener('close', onClientGone);
      readStream(res, 64 * 1024).then(
        (body) => {
          const code = res.statusCode ?? 502;
          const answer = { status: code, contentType: String(res.headers['content-type'] ?? ''), encoding: unreadableCoding(res.headers), body: body ?? Buffer.alloc(0) };
          const shown = mask ? mask(answer) : { body: answer.body, masked: 0 };
          if (shown === undefined) {
            const status = failureStatus(502, 'InternalError', `agentgate: the API server answered the upgrade in a form agentgate cannot mask (${answer.contentType || 'no content type'}${answer.encoding !== undefined ? `, ${answer.encoding}` : ''}); refused`);
            const bytes = rawStatusResponse(status);
            socket.end(bytes);
            finish({ status: 502, toClient: bytes.length, toServer: 0, error: `upstream answered ${code} in a form that cannot be masked` });
            return;
          }
          // A masked body no longer matches the answer's digests.
          const kept = shownHeaders(withoutHeaders(res.rawHeaders, ['content-length', 'transfer-encoding', 'connection', 'keep-alive', ...(mask ? ['etag', 'content-md5'] : [])]));
          const out = Buffer.concat([responseHead(code, res.statusMessage, kept, ['Content-Length', String(shown.body.length), 'Connection', 'close']), shown.body]);
          socket.end(out);
          finish({ status: code, toClient: out.length, toServer: 0, ...(shown.masked > 0 ? { masked: shown.masked } : {}) });
        },
        (err: Error) => {
          // The API server reset the connection before its answer was complete: nothing of
          // it has reached the client yet, so the client gets a whole 502 Status instead.
          const status = failureStatus(502, 'InternalError', `agentgate: the Kubernetes API server of ${up.target.name} broke off its answer to the upgrade (${err.message}); try again`);
          const bytes = rawStatusResponse(status);
          socket.end(bytes);
          finish({ status: 502, toClient: bytes.length, toServer: 0, error: `the API server broke off its answer: ${err.message}` });
        },
      );
    });
    upReq.on('upgrade', (res: IncomingMessage, upSocket: Duplex, upHead: Buffer) => {
      socket.removeListener('close', onClientGone);
      upSocket.on('error', () => {});
      const protocol = typeof res.headers['sec-websocket-protocol'] === 'string' ? res.headers['sec-websocket-protocol'].trim() : undefined;
      let cutReason: string | undefined;
      let filter: Transform | undefined;
      if (output) {
        const extensions = res.headers['sec-websocket-extensions'];
        const f = output.switched(protocol, typeof extensions === 'string' ? extensions : undefined, (reason) => {
          cutReason = reason;
          // The filter ends the client's side after its last frames; the API server's ends now.
          wind(false);
        });
        if (typeof f === 'string') {
          upSocket.destroy();
          const bytes = rawStatusResponse(failureStatus(502, 'InternalError', `agentgate: ${f}`));
          socket.end(bytes);
          finish({ status: 502, toClient: bytes.length, toServer: 0, error: f });
          return;
        }
        filter = f;
      }
      live.add(upSocket);
      const responseBytes = responseHead(101, res.statusMessage, shownHeaders(res.rawHeaders));
      let toClient = responseBytes.length;
      let toServer = head.length;
      const t = tap?.switched(protocol) ? tap : undefined;
      const toClientSide: Duplex = filter ?? upSocket;
      toClientSide.on('data', (c: Buffer) => {
        toClient += c.length;
        t?.toClient(c);
      });
      socket.on('data', (c: Buffer) => {
        toServer += c.length;
        t?.toServer(c);
      });
      if (head.length > 0) t?.toServer(head);
      socket.write(responseBytes);
      if (head.length > 0) upSocket.write(head);
      // One side ending or closing ends the exchange (exec streams do not half-close
      // usefully): the other side is ended so what is in flight still arrives, then both
      // are destroyed once both have closed or after a short grace, whichever is first.
      // The grace is what ends a stream whose peer never answers — kubectl exiting on the
      // exec status without answering the WebSocket close, an API server ignoring EOF.
      // The outcome does not wait for a 'close' either side may never emit.
      socket.on('error', () => {});
      let winding = false;
      let grace: NodeJS.Timeout | undefined;
      let closed = 0;
      const teardown = (): void => {
        if (grace) clearTimeout(grace);
        socket.destroy();
        upSocket.destroy();
        filter?.destroy();
        // A tunnel channel emits 'close' only after 'end', which waits for its unread data
        // to be read: drain both so each can finish closing.
        socket.resume();
        upSocket.resume();
        live.delete(upSocket);
        finish({ status: 101, toClient, toServer, ...(cutReason !== undefined ? { error: cutReason } : {}) });
      };
      function wind(endClient = true): void {
        if (winding) return;
        winding = true;
        if (endClient) socket.end();
        upSocket.end();
        grace = setTimeout(teardown, UPGRADE_CLOSE_GRACE_MS);
        grace.unref();
      }
      const onClose = (): void => {
        wind();
        if (++closed === 2) teardown();
      };
      // With a filter, the API server's end reaches the client through it (after what it held).
      socket.once('end', () => wind());
      upSocket.once('end', () => wind(!filter));
      for (const s of [socket, upSocket]) s.once('close', onClose);
      pipeline(socket, upSocket, () => wind());
      if (filter) {
        if (upHead.length > 0) filter.write(upHead);
        pipeline(upSocket, filter, socket, () => wind());
      } else {
        if (upHead.length > 0) {
          toClient += upHead.length;
          t?.toClient(upHead);
          socket.write(upHead);
        }
        pipeline(upSocket, socket, () => wind());
      }
    });
    // Nothing from the client travels before the upstream has switched protocols.
    upReq.end();
  });
}
