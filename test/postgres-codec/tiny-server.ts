/**
 * The smallest PostgreSQL server the codec can build: declines TLS, authenticates with
 * SCRAM-SHA-256 from a verifier, answers `select N` with one int4 row. Real clients
 * (psql, node-postgres) connect to it, so what they accept is what the codec produces.
 *
 * It never asserts: anything unexpected is recorded in `errors` for the test body to check.
 */
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';

import * as be from '../../src/broker/postgres/build-backend.js';
import { decodeQuery, decodeSASLInitialResponse, decodeStartupMessage, startupRequestKind } from '../../src/broker/postgres/decode-frontend.js';
import type { StartupRequestKind } from '../../src/broker/postgres/decode-frontend.js';
import { PgError, ProtocolError, featureNotSupported, passwordAuthFailed } from '../../src/broker/postgres/errors.js';
import { FrontendType, SCRAM_SHA_256 } from '../../src/broker/postgres/protocol.js';
import { FrontendReader } from '../../src/broker/postgres/reader.js';
import type { PgMessage } from '../../src/broker/postgres/reader.js';
import { ScramServer } from '../../src/broker/postgres/scram.js';
import type { ScramVerifier } from '../../src/broker/postgres/scram.js';

export interface TinyServer {
  port: number;
  /** Untyped requests seen, in order, across connections. */
  requests: StartupRequestKind[];
  /** StartupMessage parameters per connection. */
  startups: Map<string, string>[];
  /** Simple queries received. */
  queries: string[];
  /** Logins that succeeded / failed. */
  outcomes: ('ok' | 'failed')[];
  /** Anything that should not have happened. */
  errors: unknown[];
  close(): Promise<void>;
}

export async function startTinyServer(verifier: ScramVerifier): Promise<TinyServer> {
  const sockets = new Set<Socket>();
  const state: Omit<TinyServer, 'port' | 'close'> = { requests: [], startups: [], queries: [], outcomes: [], errors: [] };

  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'ECONNRESET' && e.code !== 'EPIPE') state.errors.push(e);
    });

    const reader = new FrontendReader();
    let step: 'startup' | 'sasl-initial' | 'sasl-response' | 'ready' = 'startup';
    let user = '';
    let scram: ScramServer | undefined;

    const onMessage = (m: PgMessage): void => {
      if (m.type === 0) {
        const kind = startupRequestKind(m.body);
        state.requests.push(kind);
        if (kind === 'ssl' || kind === 'gssenc') {
          socket.write(be.ENCRYPTION_DECLINED);
        } else if (kind === 'cancel') {
          socket.end();
        } else {
          const startup = decodeStartupMessage(m.body);
          state.startups.push(startup.params);
          user = startup.params.get('user') ?? '';
          socket.write(be.authenticationSASL());
          step = 'sasl-initial';
        }
        return;
      }
      switch (m.type) {
        case FrontendType.password:
          if (step === 'sasl-initial') {
            const initial = decodeSASLInitialResponse(m.body);
            if (initial.mechanism !== SCRAM_SHA_256 || initial.data === null) {
              throw new ProtocolError(`unsupported SASL mechanism ${initial.mechanism}`);
            }
            scram = new ScramServer(verifier);
            socket.write(be.authenticationSASLContinue(scram.start(initial.data)));
            step = 'sasl-response';
          } else if (step === 'sasl-response' && scram) {
            const result = scram.finish(m.body);
            if (!result.ok) {
              state.outcomes.push('failed');
              socket.end(passwordAuthFailed(user).toErrorResponse());
              return;
            }
            state.outcomes.push('ok');
            reader.authenticated();
            step = 'ready';
            socket.write(
              Buffer.concat([
                be.authenticationSASLFinal(result.serverFinal),
                be.AUTHENTICATION_OK,
                be.parameterStatus('server_version', '15.0'),
                be.parameterStatus('server_encoding', 'UTF8'),
                be.parameterStatus('client_encoding', 'UTF8'),
                be.parameterStatus('DateStyle', 'ISO, MDY'),
                be.parameterStatus('integer_datetimes', 'on'),
                be.parameterStatus('standard_conforming_strings', 'on'),
                be.backendKeyData(4242, 0x1234_5678),
                be.readyForQuery('I'),
              ]),
            );
          }
          return;
        case FrontendType.query: {
          const sql = decodeQuery(m.body).trim().replace(/;$/, '');
          state.queries.push(sql);
          const select = /^select (\d+)$/i.exec(sql);
          if (select) {
            socket.write(
              Buffer.concat([
                be.rowDescription([{ name: '?column?', tableOid: 0, columnAttr: 0, typeOid: 23, typeSize: 4, typeMod: -1, format: 0 }]),
                be.dataRow([select[1] as string]),
                be.commandComplete('SELECT 1'),
                be.readyForQuery('I'),
              ]),
            );
          } else if (sql === '') {
            socket.write(Buffer.concat([be.EMPTY_QUERY_RESPONSE, be.readyForQuery('I')]));
          } else {
            socket.write(Buffer.concat([featureNotSupported('the tiny server only runs `select N`').toErrorResponse(), be.readyForQuery('I')]));
          }
          return;
        }
        case FrontendType.terminate:
          socket.end();
          return;
        default:
          throw new ProtocolError(`tiny server: unexpected message type ${m.type}`);
      }
    };

    socket.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk, onMessage);
      } catch (e) {
        state.errors.push(e);
        if (e instanceof PgError) socket.end(e.toErrorResponse());
        else socket.destroy();
      }
    });
    socket.on('end', () => {
      try {
        reader.end();
      } catch (e) {
        state.errors.push(e);
      }
      socket.end();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    ...state,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
