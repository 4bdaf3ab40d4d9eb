/**
 * `agentgate mcp` in front of an SSH target: OpenSSH's sshd started by the test
 * (test/helpers/sshd.ts), an OIDC-style issuer, a real broker, and `agentgate mcp` started
 * as a child process by the MCP SDK's own client over stdio.
 */
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { startSshd, type Sshd } from '../helpers/sshd.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { makeBrokerConfig, makeTempDir, type TempDir } from '../broker/fixtures.js';
import { runBroker, type Broker } from '../../src/broker/index.js';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { Secret } from '../../src/shared/secret.js';
import { silentLogger } from '../../src/broker/log.js';
import type { AuditRecord } from '../../src/shared/audit-hash.js';
import { makeHome, type Home } from '../cli/fixture.js';
import { BIN, type McpChild } from './stack.js';
import { ROOT } from '../cli/fixture.js';

export const SSH = 'ssh-test';
/** Same sshd, a wrong pinned host key in the broker config: the broker refuses to connect. */
export const BAD_SSH = 'ssh-wrong-key';

export interface McpSshStack {
  sshd: Sshd;
  issuer: TestIssuer;
  tmp: TempDir;
  broker: Broker;
  home(sub: string): Home;
  connect(sub: string, args?: string[], extraEnv?: NodeJS.ProcessEnv): Promise<McpChild>;
  events(): Promise<AuditRecord[]>;
  close(): Promise<void>;
}

export async function startMcpSshStack(policies: PolicyConfig[]): Promise<McpSshStack> {
  const tmp = await makeTempDir('agentgate-mcp-ssh-');
  const sshd = await startSshd(join(tmp.path, 'sshd'));
  const issuer = await startTestIssuer();
  const base = {
    type: 'ssh' as const,
    host: '127.0.0.1',
    port: sshd.port,
    user: sshd.user,
    privateKey: new Secret(sshd.clientPrivateKey, '${file:broker_key}'),
    password: undefined,
  };
  const config = makeBrokerConfig(tmp.path, {
    identity: { issuer: issuer.issuer },
    targets: {
      [SSH]: { ...base, name: SSH, hostKey: sshd.hostKeyLine },
      // A valid fingerprint of some other key.
      [BAD_SSH]: { ...base, name: BAD_SSH, hostKey: 'SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s' },
    },
    policies,
  });
  const broker = await runBroker(config, { port: 0, logger: silentLogger, closeGraceMs: 100 });
  const homes = new Map<string, Home>();
  const children: McpChild[] = [];
  const groups: Record<string, string[]> = { 'agent-7': ['ai-agents'], bob: ['sre'], sam: ['security'] };
  for (const [sub, g] of Object.entries(groups)) {
    const token = await issuer.sign({ sub, groups: g }, { expiresIn: 3600 });
    homes.set(sub, makeHome({ AGENTGATE_BROKER: broker.url, AGENTGATE_FINGERPRINT: broker.fingerprint, AGENTGATE_TOKEN: token }));
  }
  const home = (sub: string): Home => {
    const h = homes.get(sub);
    if (!h) throw new Error(`no home for ${sub}`);
    return h;
  };
  return {
    sshd,
    issuer,
    tmp,
    broker,
    home,
    async connect(sub, args = [], extraEnv = {}) {
      const transport = new StdioClientTransport({
        command: process.execPath,
        args: [BIN, 'mcp', '--receipt-dir', join(home(sub).dir, 'receipts'), ...args],
        env: { ...home(sub).env, ...extraEnv } as Record<string, string>,
        cwd: ROOT,
        stderr: 'pipe',
      });
      let stderr = '';
      transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
      const client = new Client({ name: 'agentgate-test', version: '1.0.0' });
      try {
        await client.connect(transport);
      } catch (err) {
        throw new Error(`agentgate mcp did not start: ${(err as Error).message}\n${stderr}`);
      }
      const child: McpChild = { client, stderr: () => stderr, close: () => client.close() };
      children.push(child);
      return child;
    },
    async events() {
      const out: AuditRecord[] = [];
      for await (const r of broker.audit.read({})) out.push(r);
      return out;
    },
    async close() {
      for (const c of children) await c.close().catch(() => {});
      for (const h of homes.values()) h.cleanup();
      await broker.close().catch(() => {});
      await issuer.close().catch(() => {});
      await sshd.close().catch(() => {});
      await tmp.remove().catch(() => {});
    },
  };
}
