/**
 * What the local listener does differently per protocol, in one table: whether a
 * connection must finish a protocol login within the deadline (Postgres: startup and
 * SCRAM), and how to tell a client the broker is unreachable in its own protocol.
 */
import type { Socket } from 'node:net';
import type { LoginWatch } from './login-watch.js';
import { postgresLoginWatch } from './login-watch.js';
import { postgresConnectionFailure } from '../shared/postgres-login.js';

export type LocalProtocol = 'postgres' | 'kubernetes' | 'ssh';

export interface LocalProtocolBehaviour {
  /** Watches the client's login (plain connections only; TLS fronts have their handshake deadline). */
  loginWatch?: () => LoginWatch;
  /** The broker could not be reached: say so in the client's protocol, if it has a way. */
  unreachable?: (socket: Socket, message: string, hint: string) => void;
}

export const LOCAL_PROTOCOLS: Record<LocalProtocol, LocalProtocolBehaviour> = {
  postgres: {
    loginWatch: postgresLoginWatch,
    // psql then prints a sentence, not "server closed the connection".
    unreachable: (socket, message, hint) => socket.write(postgresConnectionFailure(message, hint)),
  },
  kubernetes: {},
  // ssh prints "kex_exchange_identification: Connection closed by remote host"; the broker cannot be asked.
  ssh: {},
};
