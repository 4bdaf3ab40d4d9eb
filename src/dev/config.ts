/**
 * The broker config `agentgate dev` writes to <dir>/agentgate.yaml on every start and
 * loads through the ordinary loader, so the demo runs on exactly what an operator would
 * write — and the file doubles as a worked example of policies, approvals and masking.
 */
import { stringify } from 'yaml';
import type { DevUser } from './issuer.js';

export const DEMO_TARGET = 'pg-demo';
export const DEV_AUDIENCE = 'agentgate-dev';
/** The database password reaches the broker through this variable of the loader's environment, never the file. */
export const DEV_PG_PASSWORD_ENV = 'AGENTGATE_DEV_PG_PASSWORD';

export const DEV_USERS = {
  human: { username: 'dev-human', name: 'Dana Developer', email: 'dana@dev.example', groups: ['developers'] },
  reviewer: { username: 'dev-reviewer', name: 'Riley Reviewer', email: 'riley@dev.example', groups: ['dba'] },
  agent: { username: 'dev-agent', name: 'Demo Agent', email: 'agent@dev.example', groups: ['ai-agents'] },
} as const satisfies Record<string, DevUser>;

export type DevRole = keyof typeof DEV_USERS;

export interface DevConfigInput {
  port: number;
  issuer: string;
  clientId: string;
  db: { host: string; port: number; database: string; user: string; hasPassword: boolean };
}

/** One YAML scalar, quoted only when YAML needs it. */
const y = (v: string): string => stringify(v, { lineWidth: 0 }).trimEnd();

export function renderDevConfig(c: DevConfigInput): string {
  return `# Written by \`agentgate dev\` on every start (edits are overwritten): the demo broker's config.
# It is an ordinary agentgate.yaml; copy from it for your own.
listen: 127.0.0.1:${c.port}
state_dir: ./state

identity:
  issuer: ${c.issuer}          # the embedded demo issuer
  audience: ${DEV_AUDIENCE}
  client_id: ${c.clientId}
  groups_claim: groups
  agent_groups: [ai-agents]

targets:
  ${DEMO_TARGET}:
    type: postgres
    host: ${c.db.host}
    port: ${c.db.port}
    database: ${y(c.db.database)}
    user: ${y(c.db.user)}${c.db.hasPassword ? `\n    password: \${env:${DEV_PG_PASSWORD_ENV}}   # generated per start, handed over in memory` : ''}
    tls: disable                     # loopback only

policies:
  # Agents read freely; writes wait for one reviewer from dba; DROP/TRUNCATE never run.
  - name: agents
    subjects: { groups: [ai-agents] }
    targets: [${DEMO_TARGET}]
    rules:
      - { name: agent-reads, sql: [select, explain, show], effect: allow }
      - { name: agent-writes, sql: [insert, update, delete], effect: review, approvers: { groups: [dba], count: 1 } }
      - { name: no-drop-or-truncate, sql: [drop, truncate], effect: deny }
      - { name: agents-default-deny, effect: deny }
  # People (the demo human and the reviewer) may do anything; masking still applies.
  - name: people
    subjects: { groups: [developers, dba] }
    targets: [${DEMO_TARGET}]
    rules:
      - { name: people-allow, effect: allow }

# May export the audit log and read every session receipt.
auditors: { groups: [dba] }

masking:
  ${DEMO_TARGET}:
    columns: ["customers.email", "*.card*"]
    detectors: [email, credit_card]
    style: partial

approvals:
  timeout: 10m
`;
}
