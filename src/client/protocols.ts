/**
 * The CLI side of each protocol, in one registry: its default local port, how its local
 * listener is opened and what a client is handed (a connection URL, a kubeconfig, an
 * OpenSSH config), the environment `agentgate run` gives the child, and the lines
 * `agentgate connect` prints. A new protocol is one entry here (and one in the broker's
 * protocols.ts); nothing else switches on target type.
 */
import type { TargetSummary } from '../shared/api-types.js';
import type { ConnectSession } from '../tunnel/connect-session.js';
import { POSTGRES_CLIENT_USER } from '../shared/postgres-login.js';
import { BrokerError } from '../errors.js';
import { listenKubernetes } from './connect-kubernetes.js';
import { writeSessionKubeconfig } from './session-kubeconfig.js';
import { writeSessionSshConfig } from './session-ssh-config.js';

export type TargetType = TargetSummary['type'];

/** What a client of one target is handed. */
export interface EndpointFields {
  /** The client URL with the secret in it (Postgres), e.g. for DATABASE_URL. */
  url?: string | undefined;
  /** The kubeconfig written for a Kubernetes target (0600). */
  kubeconfig?: string | undefined;
  /** The OpenSSH client config written for an SSH target (0600). */
  sshConfig?: string | undefined;
  /** Kubernetes: the local listener's certificate (what the kubeconfig trusts). */
  caPem?: string | undefined;
}

export interface OpenEndpointOptions {
  target: TargetSummary;
  host: string;
  port: number;
  allowRemote: boolean;
  loginTimeoutMs?: number;
  kubeconfigDir?: string | undefined;
}

export interface OpenedEndpoint {
  address: { host: string; port: number };
  fields: EndpointFields;
  cleanups: (() => Promise<void>)[];
}

/** One line of `agentgate connect` output: `print` goes to stdout (what to copy), `say` to stderr. */
export type HintLine = { say: string } | { print: string };

export interface ClientProtocol {
  /** `connect` without --port: 5432 for Postgres, else a free port. */
  defaultPort: number;
  /** What one request through it is called in messages. */
  noun: string;
  open(session: ConnectSession, o: OpenEndpointOptions): Promise<OpenedEndpoint>;
  /** Adds this endpoint's variables to the child's environment; `first` = the first endpoint of its type. */
  env(e: { target: TargetSummary; host: string; port: number } & EndpointFields, session: { secret: string }, env: NodeJS.ProcessEnv, first: boolean): void;
  hint(e: { target: TargetSummary; host: string; port: number } & EndpointFields): HintLine[];
}

function envName(target: string): string {
  return target.toUpperCase().replace(/[^A-Z0-9]+/g, '_');
}

const login = (o: OpenEndpointOptions): { loginTimeoutMs?: number } => (o.loginTimeoutMs !== undefined ? { loginTimeoutMs: o.loginTimeoutMs } : {});

/** libpq variables of the caller's that `agentgate run` passes on: none of them says where to connect or with what. */
const PG_ENV_KEPT = new Set(['PGAPPNAME', 'PGCLIENTENCODING', 'PGCONNECT_TIMEOUT', 'PGDATESTYLE', 'PGTZ', 'PGOPTIONS']);

const postgres: ClientProtocol = {
  defaultPort: 5432,
  noun: 'statement',
  async open(session, o) {
    const l = await session.listen({ target: o.target.name, type: 'postgres', host: o.host, port: o.port, allowRemote: o.allowRemote, ...login(o) });
    const { host, port } = l.address;
    const urlHost = host.includes(':') ? `[${host}]` : host;
    const url = `postgresql://${POSTGRES_CLIENT_USER}:${session.secret}@${urlHost}:${port}/${encodeURIComponent(o.target.database ?? 'postgres')}?sslmode=disable`;
    return { address: l.address, fields: { url }, cleanups: [] };
  },
  env(e, session, env, first) {
    if (!e.url) return;
    env[`AGENTGATE_${envName(e.target.name)}_URL`] = e.url;
    if (!first) return;
    // libpq reads more than PGHOST: PGHOSTADDR, a PGSERVICE entry or a PGPASSFILE from the
    // caller's environment would take the child's psql past the tunnel (unrecorded, with
    // this session's password). Only the ones known to shape the session, not where it goes, stay.
    for (const name of Object.keys(env)) if (name.startsWith('PG') && !PG_ENV_KEPT.has(name)) delete env[name];
    env['DATABASE_URL'] = e.url;
    env['PGHOST'] = e.host;
    env['PGPORT'] = String(e.port);
    env['PGDATABASE'] = e.target.database ?? 'postgres';
    env['PGUSER'] = POSTGRES_CLIENT_USER;
    env['PGPASSWORD'] = session.secret;
    // The local hop is loopback and the tunnel is encrypted; libpq must not try TLS here.
    env['PGSSLMODE'] = 'disable';
  },
  hint(e) {
    return [
      { say: `${e.target.name} (${e.target.type}) is at ${e.host}:${e.port}; every statement is checked and recorded by the broker.` },
      { say: 'connect with (the password is this session\'s secret; it dies when you press Ctrl-C):' },
      { print: e.url ?? '' },
      { say: '  use it as: psql "<url>"  or  export DATABASE_URL="<url>"' },
    ];
  },
};

const kubernetes: ClientProtocol = {
  defaultPort: 0,
  noun: 'request',
  async open(session, o) {
    const k = await listenKubernetes(session, { target: o.target.name, host: o.host, port: o.port, allowRemote: o.allowRemote, ...login(o) });
    const cleanups = [k.close];
    try {
      const { host, port } = k.listener.address;
      const written = await writeSessionKubeconfig({ dir: o.kubeconfigDir, target: o.target.name, host, port, secret: session.secret, caPem: k.caPem });
      cleanups.push(written.remove);
      return { address: k.listener.address, fields: { kubeconfig: written.path, caPem: k.caPem }, cleanups };
    } catch (err) {
      for (const c of cleanups) await c().catch(() => {});
      throw err;
    }
  },
  env(e, _session, env, first) {
    if (!e.kubeconfig) return;
    env[`AGENTGATE_${envName(e.target.name)}_KUBECONFIG`] = e.kubeconfig;
    if (first) env['KUBECONFIG'] = e.kubeconfig;
  },
  hint(e) {
    return [
      { say: `${e.target.name} (kubernetes) is at ${e.host}:${e.port}; every request is checked and recorded by the broker.` },
      { say: 'point kubectl at the session\'s kubeconfig (its token dies when you press Ctrl-C):' },
      { print: `export KUBECONFIG=${e.kubeconfig ?? ''}` },
    ];
  },
};

const ssh: ClientProtocol = {
  defaultPort: 0,
  noun: 'command',
  async open(session, o) {
    const l = await session.listen({ target: o.target.name, type: 'ssh', host: o.host, port: o.port, allowRemote: o.allowRemote, ...login(o) });
    const brokerHostKey = session.tunnel.hostKey;
    if (!brokerHostKey) {
      await l.close();
      throw new BrokerError('AG_NO_TUNNEL', 'the tunnel is up but its host key is unknown', { hint: 'reconnect; if it persists, report it as a bug' });
    }
    try {
      const written = await writeSessionSshConfig({ target: o.target.name, host: l.address.host, port: l.address.port, privateKey: session.sshKey.private, brokerHostKey });
      return { address: l.address, fields: { sshConfig: written.path }, cleanups: [written.remove] };
    } catch (err) {
      await l.close().catch(() => {});
      throw err;
    }
  },
  env(e, _session, env, first) {
    if (!e.sshConfig) return;
    env[`AGENTGATE_${envName(e.target.name)}_SSH_CONFIG`] = e.sshConfig;
    if (!first) return;
    env['AGENTGATE_SSH_CONFIG'] = e.sshConfig;
    // git (clone, fetch, push) to `<target>:repo.git` goes through the broker too.
    env['GIT_SSH_COMMAND'] = `ssh -F '${e.sshConfig.replace(/'/g, `'\\''`)}'`;
  },
  hint(e) {
    const cfg = e.sshConfig ?? '';
    return [
      { say: `${e.target.name} (ssh) is at ${e.host}:${e.port}; every command is checked and recorded by the broker.` },
      { say: 'connect with (the session\'s key and pinned host key are in that file; they die when you press Ctrl-C):' },
      { print: `ssh -F ${cfg} ${e.target.name}` },
      { say: `  git: GIT_SSH_COMMAND="ssh -F ${cfg}" git clone ${e.target.name}:path/to/repo.git` },
    ];
  },
};

export const CLIENT_PROTOCOLS: Record<TargetType, ClientProtocol> = { postgres, kubernetes, ssh };
