/**
 * The client side of a proxied session's start, as a small state machine:
 *
 *   startup ──(SSLRequest/GSSENCRequest: declined)──► startup
 *   startup ──(CancelRequest)──► done: cancel
 *   startup ──(StartupMessage)──► sasl ──(SASLInitialResponse)──► sasl-final
 *           ──(SASLResponse, proof checked against the session secret's verifier)──► done: authenticated
 *
 * The client proves it holds this `connect`/`run` session's secret with SCRAM-SHA-256,
 * so the secret never crosses even the loopback in clear. Only what the upstream login
 * needs is kept from the startup packet (see FORWARDED_PARAMS).
 */
import type { Duplex } from 'node:stream';
import { SCRAM_SHA_256, FrontendType } from './protocol.js';
import { decodeCancelRequest, decodeSASLInitialResponse, decodeSASLResponse, decodeStartupMessage, startupRequestKind } from './decode-frontend.js';
import { AUTHENTICATION_OK, authenticationSASL, authenticationSASLContinue, authenticationSASLFinal, ENCRYPTION_DECLINED } from './build-backend.js';
import { PgError, ProtocolError, SqlState, passwordAuthFailed } from './errors.js';
import { ScramServer, type ScramVerifier } from './scram.js';
import type { PgMessage } from './reader.js';

/**
 * Startup parameters passed upstream; user/database come from the target, replication is
 * refused. Dropped on purpose: `options` (`-c role=…` would switch roles before any
 * statement is inspected, `-c default_transaction_read_only=off` would undo the read-only
 * backstop), `search_path` (policy resolves unqualified names in `public`), and
 * `client_encoding`, which is always UTF8 upstream so the server splits statement text
 * exactly as the policy's parser did (clients that asked for another encoding get UTF8
 * reported in ParameterStatus, as with any server-side setting).
 */
const FORWARDED_PARAMS = new Set(['application_name', 'DateStyle', 'TimeZone', 'IntervalStyle', 'extra_float_digits']);

export type HandshakeStep =
  | { step: 'continue' }
  | { step: 'cancel'; processId: number; secretKey: Buffer }
  | { step: 'gave-up' }
  | { step: 'authenticated'; params: Map<string, string>; user: string };

type State = 'startup' | 'sasl' | 'sasl-final' | 'done';

export class ClientHandshake {
  readonly #client: Duplex;
  readonly #verifier: ScramVerifier | undefined;
  #state: State = 'startup';
  #scram: ScramServer | undefined;
  #user = '';
  readonly #params = new Map<string, string>();

  constructor(client: Duplex, verifier: ScramVerifier | undefined) {
    this.#client = client;
    this.#verifier = verifier;
  }

  /** Before authentication the reader caps messages at the startup size. */
  get startingUp(): boolean {
    return this.#state === 'startup';
  }

  get user(): string {
    return this.#user;
  }

  /** One client message; throws PgError/ProtocolError for what ends the connection. */
  step(m: PgMessage): HandshakeStep {
    switch (this.#state) {
      case 'startup':
        return this.#startup(m);
      case 'sasl':
      case 'sasl-final':
        return this.#auth(m);
      case 'done':
        throw new ProtocolError('message after the handshake ended');
    }
  }

  #startup(m: PgMessage): HandshakeStep {
    switch (startupRequestKind(m.body)) {
      case 'ssl':
      case 'gssenc':
        // The tunnel is already encrypted end to end; the client may proceed in the clear.
        this.#client.write(ENCRYPTION_DECLINED);
        return { step: 'continue' };
      case 'cancel': {
        this.#state = 'done';
        const req = decodeCancelRequest(m.body);
        return { step: 'cancel', processId: req.processId, secretKey: req.secretKey };
      }
      case 'startup': {
        const startup = decodeStartupMessage(m.body);
        if (startup.params.has('replication')) {
          throw new PgError(SqlState.featureNotSupported, 'replication connections are not supported through agentgate', { severity: 'FATAL' });
        }
        this.#user = startup.params.get('user') ?? '';
        for (const [k, v] of startup.params) if (FORWARDED_PARAMS.has(k)) this.#params.set(k, v);
        this.#params.set('client_encoding', 'UTF8');
        if (!this.#verifier) {
          throw new PgError(SqlState.invalidAuthorizationSpecification, 'this tunnel carries no session secret', {
            severity: 'FATAL',
            hint: 'connect through `agentgate connect` or `agentgate run`, which create one',
          });
        }
        this.#state = 'sasl';
        this.#client.write(authenticationSASL([SCRAM_SHA_256]));
        return { step: 'continue' };
      }
    }
  }

  #auth(m: PgMessage): HandshakeStep {
    if (m.type === FrontendType.terminate) {
      this.#state = 'done';
      return { step: 'gave-up' };
    }
    if (this.#state === 'sasl') {
      const initial = decodeSASLInitialResponse(m.body);
      if (initial.mechanism !== SCRAM_SHA_256 || initial.data === null) {
        throw new ProtocolError(`client selected an invalid SASL authentication mechanism "${initial.mechanism}"`);
      }
      this.#scram = new ScramServer(this.#verifier as ScramVerifier);
      this.#client.write(authenticationSASLContinue(this.#scram.start(initial.data)));
      this.#state = 'sasl-final';
      return { step: 'continue' };
    }
    const result = (this.#scram as ScramServer).finish(decodeSASLResponse(m.body));
    if (!result.ok) throw passwordAuthFailed(this.#user);
    this.#state = 'done';
    this.#client.write(Buffer.concat([authenticationSASLFinal(result.serverFinal), AUTHENTICATION_OK]));
    return { step: 'authenticated', params: this.#params, user: this.#user };
  }
}
