/**
 * A bare PostgreSQL client built from the codec, for what psql and node-postgres cannot
 * do on demand: pipelines, cancel keys, malformed bytes. It authenticates with SCRAM
 * like any client would. Test-only.
 */
import net from 'node:net';
import { BackendReader } from '../../src/broker/postgres/reader.js';
import * as fe from '../../src/broker/postgres/build-frontend.js';
import { AuthCode, BackendType } from '../../src/broker/postgres/protocol.js';
import { decodeAuthentication, decodeBackendKeyData, decodeErrorResponse, type BackendKeyData } from '../../src/broker/postgres/decode-backend.js';
import { ScramClient } from '../../src/broker/postgres/scram.js';

export interface Msg {
  type: number;
  body: Buffer;
}

export class RawPg {
  readonly socket: net.Socket;
  readonly #reader = new BackendReader();
  readonly #queue: Msg[] = [];
  #wake: (() => void) | undefined;
  closed = false;
  key: BackendKeyData | undefined;
  /** What `login` received before its ReadyForQuery. */
  readonly startup: Msg[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#reader.push(chunk, (m) => this.#queue.push({ type: m.type, body: Buffer.from(m.body) }));
      this.#wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.#wake?.();
    });
    socket.on('error', () => {});
  }

  static open(port: number): Promise<RawPg> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new RawPg(s)));
      s.once('error', reject);
    });
  }

  /**
   * Open, start up (with `params` added to the StartupMessage) and authenticate with SCRAM;
   * resolves at the first ReadyForQuery. Every message before it is kept in `c.startup`.
   */
  static async login(port: number, password: string, user = 'agent', params: Record<string, string> = {}): Promise<RawPg> {
    const c = await RawPg.open(port);
    c.send(fe.startupMessage({ user, database: 'app', ...params }));
    let scram: ScramClient | undefined;
    for (;;) {
      const m = await c.next();
      c.startup.push(m);
      if (m.type === BackendType.errorResponse) throw new Error(decodeErrorResponse(m.body).message);
      if (m.type === BackendType.backendKeyData) c.key = decodeBackendKeyData(m.body);
      if (m.type === BackendType.readyForQuery) return c;
      if (m.type !== BackendType.authentication) continue;
      const auth = decodeAuthentication(m.body);
      if (auth.code === AuthCode.sasl) {
        scram = new ScramClient(password);
        c.send(fe.saslInitialResponse('SCRAM-SHA-256', scram.clientFirst()));
      } else if (auth.code === AuthCode.saslContinue) {
        c.send(fe.saslResponse(await (scram as ScramClient).clientFinal(auth.data)));
      } else if (auth.code === AuthCode.saslFinal) {
        (scram as ScramClient).verifyServerFinal(auth.data);
      }
    }
  }

  send(...bufs: Buffer[]): void {
    this.socket.write(Buffer.concat(bufs));
  }

  /** The next message; rejects if the connection closes first or after `timeoutMs`. */
  async next(timeoutMs = 10_000): Promise<Msg> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.#queue.shift();
      if (m) return m;
      if (this.closed) throw new Error('connection closed');
      if (Date.now() > deadline) throw new Error('timed out waiting for a message');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.#wake = () => {
          clearTimeout(t);
          this.#wake = undefined;
          resolve();
        };
      });
    }
  }

  /** Messages up to and including the next ReadyForQuery. */
  async untilReady(timeoutMs = 10_000): Promise<Msg[]> {
    const out: Msg[] = [];
    for (;;) {
      const m = await this.next(timeoutMs);
      out.push(m);
      if (m.type === BackendType.readyForQuery) return out;
    }
  }

  /** Wait for the server to close; returns every message received before that. */
  async untilClosed(timeoutMs = 10_000): Promise<Msg[]> {
    const out: Msg[] = [];
    for (;;) {
      try {
        out.push(await this.next(timeoutMs));
      } catch (err) {
        if (this.closed) return out;
        throw err;
      }
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

export function errorCodes(msgs: Msg[]): string[] {
  return msgs.filter((m) => m.type === BackendType.errorResponse).map((m) => decodeErrorResponse(m.body).code);
}

export function errorMessages(msgs: Msg[]): string[] {
  return msgs.filter((m) => m.type === BackendType.errorResponse).map((m) => decodeErrorResponse(m.body).message);
}
