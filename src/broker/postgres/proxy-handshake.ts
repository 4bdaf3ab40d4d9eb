/**
 * The client side of a proxied session's start, as a small state machine:
 *
 *   startup ──(SSLRequest/GSSENCRequest: declined)──► startup
 *   startup ──(CancelRequest)──► done: cancel
 *   startup ──(StartupMessage)──► sasl ──(SASLInitialResponse)──► sasl-final
 *           ──(SASLResponse, proof checked against the session secret's verifier)──► done: authenticated
 *
 * The client proves it holds this `connect`/`run` session's secret with SCRAM-SHA-256,
 * so the secret never crosses even the loopback in clear. The startup parameters are kept
 * whole; what becomes of each is decided after authentication (startup-params.ts).
 */
import type { Duplex } from 'node:stream';
import { SCRAM_SHA_256, FrontendType } from './protocol.js';
import { decodeCancelRequest, decodeSASLInitialResponse, decodeSASLResponse, decodeStartupMessage, startupRequestKind } from './decode-frontend.js';
import { AUTHENTICATION_OK, authenticationSASL, authenticationSASLContinue, authenticationSASLFinal, ENCRYPTION_DECLINED, negotiateProtocolVersion } from './build-backend.js';
import { PgError, ProtocolError, SqlState, passwordAuthFailed } from './errors.js';
import { ScramServer, type ScramVerifier } from './scram.js';
import type { PgMessage } from './reader.js';

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
        this.#user = startup.params.get('user') ?? '';
        for (const [k, v] of startup.params) this.#params.set(k, v);
        // As PostgreSQL does: a newer 3.x minor or `_pq_.` options get NegotiateProtocolVersion
        // (3.0, and the options not understood) before authentication; the client goes on with 3.0.
        const unknownOptions = [...startup.params.keys()].filter((k) => k.startsWith('_pq_.'));
        if (startup.minorVersion > 0 || unknownOptions.length > 0) this.#client.write(negotiateProtocolVersion(0, unknownOptions));
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
