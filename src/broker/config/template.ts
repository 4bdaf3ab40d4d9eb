/**
 * The commented agentgate.yaml that `agentgate broker init` writes. It loads as written:
 * the example targets, policies and masking are commented out (they name env vars that are
 * not set yet), and `targets: {}` / `policies: []` are active, so a fresh broker starts
 * and denies everything until the operator adds targets and policies.
 */
import { stringify } from 'yaml';

export interface TemplateOptions {
  issuer?: string;
  audience?: string;
  clientId?: string;
  listen?: string;
}

export const TEMPLATE_PLACEHOLDERS = {
  issuer: 'https://login.example.com/',
  audience: 'agentgate',
  clientId: 'agentgate-cli',
  listen: '127.0.0.1:8443',
} as const;

/** One YAML scalar, quoted only when YAML needs it (a URL with `#`, a leading `*`, …). */
function scalar(value: string): string {
  return stringify(value, { lineWidth: 0 }).trimEnd();
}

export function renderConfigTemplate(opts: TemplateOptions = {}): string {
  const issuer = scalar(opts.issuer ?? TEMPLATE_PLACEHOLDERS.issuer);
  const audience = scalar(opts.audience ?? TEMPLATE_PLACEHOLDERS.audience);
  const clientId = scalar(opts.clientId ?? TEMPLATE_PLACEHOLDERS.clientId);
  const listen = scalar(opts.listen ?? TEMPLATE_PLACEHOLDERS.listen);
  return `# agentgate broker configuration.
# Check it with \`agentgate broker start --config <this file>\`: every problem is reported
# at once, naming the key. Relative paths resolve against this file's folder.

# Address the broker's one HTTPS port listens on (host:port). Use 0.0.0.0:8443 to accept
# connections from other machines.
listen: ${listen}

# Generated keys and the SQLite audit store live here; created 0700.
state_dir: ./state

# TLS for the broker's port. Omitted: a self-signed certificate is generated in state_dir
# on first start and its SHA-256 fingerprint printed; clients pin it with --fingerprint.
# To use your own certificate instead:
# tls:
#   cert: /etc/agentgate/tls.crt
#   key: /etc/agentgate/tls.key

# Who may log in. The broker accepts access tokens from this OIDC issuer whose audience
# matches; the CLI logs in with the device flow using client_id (a public client).
identity:
  issuer: ${issuer}
  audience: ${audience}
  client_id: ${clientId}
  groups_claim: groups           # token claim that lists the user's groups
  agent_groups: []               # members of these groups act as kind: agent, e.g. [ai-agents]
  # CI jobs log in with their platform's OIDC token; subject is a glob on its \`sub\`.
  ci_issuers: []
  # ci_issuers:
  #   - issuer: https://token.actions.githubusercontent.com
  #     audience: agentgate
  #     subject: "repo:acme/*"
  #     groups: [ci]

# The systems behind the broker. Credentials come from the environment (\${env:NAME}) or
# a file (\${file:PATH}); they are never written to the audit log. Example:
targets: {}
# targets:
#   pg-prod:
#     type: postgres
#     host: db.internal
#     port: 5432
#     database: app
#     user: agentgate_ro
#     password: \${env:PG_PROD_PASSWORD}    # or \${file:/run/secrets/pg}
#     tls: verify-full                     # disable | require | verify-full
#   k8s-prod:
#     type: kubernetes
#     server: https://k8s.internal:6443
#     ca: /etc/agentgate/k8s-ca.pem
#     token: \${env:K8S_TOKEN}              # or client_cert + client_key

# Who may do what. The first policy whose subjects and targets match decides; when none
# matches, the answer is deny. Within a policy the first matching rule decides:
# allow, deny, or review (held until approvers from the named groups say yes; nobody
# approves their own request). Example:
policies: []
# policies:
#   - name: agents-read
#     subjects: { groups: [ai-agents] }
#     targets: [pg-prod]
#     rules:
#       - { sql: [select, explain], effect: allow }
#       - { sql: [insert, update, delete], effect: review, approvers: { groups: [dba], count: 1 } }
#       - { effect: deny }
#   - name: agents-k8s
#     subjects: { groups: [ai-agents] }
#     targets: [k8s-prod]
#     rules:
#       - { k8s: { verbs: [get, list, watch], resources: ["*", "!secrets"] }, effect: allow }
#       - { k8s: { verbs: [delete] }, effect: review, approvers: { groups: [sre], count: 1 } }
#       - { effect: deny }

# Members of these groups may export the audit log and read every session receipt.
auditors: { groups: [] }

# Members of these groups may list live sessions and end them at once
# (agentgate broker sessions / agentgate broker revoke <session|sub>).
operators: { groups: [] }

# Live sessions end when their credential expires unrenewed (after expiry_leeway), and
# after max_duration at the latest (off when absent).
sessions:
  expiry_leeway: 30s
  # max_duration: 8h

# Values masked before they leave the broker (and before they reach the audit log), per
# target: column name globs, value detectors, and how to mask. Example:
masking: {}
# masking:
#   pg-prod:
#     columns: ["*.email", "users.ssn", "*password*"]
#     detectors: [email, credit_card, aws_key, jwt, private_key]
#     style: partial                       # full | partial | hash | null

# Audit log durability: normal survives a broker crash; full also survives power loss.
audit:
  sync: normal
`;
}
