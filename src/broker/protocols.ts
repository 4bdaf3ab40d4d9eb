/**
 * The registry of broker protocol adapters: one per target type. Adding a protocol is a
 * folder with its adapter and one line here; nothing else switches on target type.
 */
import type { AdapterRegistry } from './protocol-adapter.js';
import { postgresAdapter } from './postgres/adapter.js';
import { kubernetesAdapter } from './kubernetes/adapter.js';
import { sshAdapter } from './ssh/adapter.js';

export const BROKER_PROTOCOLS: AdapterRegistry = {
  postgres: postgresAdapter,
  kubernetes: kubernetesAdapter,
  ssh: sshAdapter,
};
