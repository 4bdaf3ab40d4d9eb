/** The SSH proxy as a protocol adapter. */
import type { SshTargetConfig } from '../config/types.js';
import type { AdapterFactory } from '../protocol-adapter.js';
import { SESSION_ID_HEADER, SESSION_SSH_KEY_HEADER } from '../../shared/session-headers.js';
import { SshProxy } from './proxy.js';

export const sshAdapter: AdapterFactory<SshTargetConfig> = (deps) => {
  let ssh: SshProxy | undefined;
  return {
    get active() {
      return ssh?.active ?? 0;
    },
    async close() {
      await ssh?.close();
    },
    serve(ch) {
      if (!deps.sshHostKey) {
        ch.log.warn('ssh channel refused: this broker was started without an SSH host key for SSH targets');
        ch.channel.stream.destroy();
        return;
      }
      ssh ??= new SshProxy({ config: deps.config, maskingKey: deps.maskingKey, audit: deps.audit, approvals: deps.approvals, hostKey: deps.sshHostKey, logger: deps.logger.child({ protocol: 'ssh' }) });
      ssh.serve({
        stream: ch.channel.stream,
        target: ch.target,
        identity: ch.channel.identity,
        actor: ch.actor,
        clientKey: ch.header(SESSION_SSH_KEY_HEADER),
        connectSession: ch.header(SESSION_ID_HEADER),
        reason: ch.reason,
        origin: ch.origin,
        onEnd: (summary) => ch.onEnd(summary),
        lease: ch.lease,
      });
    },
  };
};
