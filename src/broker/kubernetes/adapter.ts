/** The Kubernetes proxy as a protocol adapter (one shared K8sProxy, one connection per channel). */
import type { KubernetesTargetConfig } from '../config/types.js';
import type { AdapterFactory } from '../protocol-adapter.js';
import { SESSION_ID_HEADER, SESSION_VERIFIER_HEADER } from '../../shared/session-headers.js';
import { sessionVerifier } from '../session/secret.js';
import { K8sProxy } from './proxy.js';

export const kubernetesAdapter: AdapterFactory<KubernetesTargetConfig> = (deps) => {
  let k8s: K8sProxy | undefined;
  return {
    get active() {
      return k8s?.active ?? 0;
    },
    async close() {
      await k8s?.close();
    },
    serve(ch) {
      k8s ??= new K8sProxy({ config: deps.config, maskingKey: deps.maskingKey, audit: deps.audit, approvals: deps.approvals, logger: deps.logger.child({ protocol: 'kubernetes' }) });
      k8s.serve({
        stream: ch.channel.stream,
        target: ch.target,
        identity: ch.channel.identity,
        actor: ch.actor,
        verifier: sessionVerifier(ch.header(SESSION_VERIFIER_HEADER)),
        connectSession: ch.header(SESSION_ID_HEADER),
        ...(ch.reason !== undefined ? { reason: ch.reason } : {}),
        origin: ch.origin,
        onEnd: (summary) => ch.onEnd(summary),
        ...(ch.lease ? { lease: ch.lease } : {}),
      });
    },
  };
};
