/**
 * `agentgate mcp install`: the MCP configuration of one client for `agentgate mcp`, in
 * that client's documented project-scope file, merged into what is there (other servers
 * are kept; ours is replaced). Nothing secret goes in: no token, no session secret — the
 * server logs in the way every agentgate command does (stored login, AGENTGATE_TOKEN,
 * client credentials, GitHub Actions OIDC) when the client starts it.
 *
 *   claude-code  <dir>/.mcp.json          { "mcpServers": { name: { type: "stdio", command, args, env } } }
 *   cursor       <dir>/.cursor/mcp.json   { "mcpServers": { name: { command, args, env } } }   (--global: ~/.cursor/mcp.json)
 *   vscode       <dir>/.vscode/mcp.json   { "servers":    { name: { type: "stdio", command, args } } }
 */
import { mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { AgentgateError, UsageError } from '../../errors.js';
import { writeFileAtomic } from '../../shared/atomic-file.js';

export const MCP_CLIENTS = ['claude-code', 'cursor', 'vscode'] as const;
export type McpClient = (typeof MCP_CLIENTS)[number];

/** Where each client reads a project's (or, for Cursor with --global, the user's) MCP servers. */
export const CLIENT_FILES: Record<McpClient, { file: string; note: string }> = {
  'claude-code': { file: '.mcp.json', note: 'project scope, at the project root (Claude Code asks before using a project server)' },
  cursor: { file: '.cursor/mcp.json', note: 'project scope; --global writes ~/.cursor/mcp.json' },
  vscode: { file: '.vscode/mcp.json', note: 'workspace scope' },
};

export interface ServerLaunch {
  command: string;
  args: string[];
}

export interface InstallOptions {
  client: McpClient;
  /** The project folder (default: the current directory). */
  dir: string;
  /** Cursor only: the user's ~/.cursor/mcp.json. */
  global?: boolean;
  /** The entry's key (default `agentgate`). */
  name: string;
  launch: ServerLaunch;
  home?: string;
}

export interface InstallPlan {
  path: string;
  /** The whole file as it will be written. */
  text: string;
  /** An entry of that name was there and is replaced. */
  replaced: boolean;
}

export function isMcpClient(v: string): v is McpClient {
  return (MCP_CLIENTS as readonly string[]).includes(v);
}

/** The entry for one client's format. */
export function serverEntry(client: McpClient, launch: ServerLaunch): Record<string, unknown> {
  switch (client) {
    case 'claude-code':
      return { type: 'stdio', command: launch.command, args: launch.args, env: {} };
    case 'cursor':
      return { command: launch.command, args: launch.args, env: {} };
    case 'vscode':
      return { type: 'stdio', command: launch.command, args: launch.args };
  }
}

export function configPath(o: Pick<InstallOptions, 'client' | 'dir' | 'global' | 'home'>): string {
  if (o.global) {
    if (o.client !== 'cursor') throw new UsageError(`--global is for cursor only; ${o.client} keeps user-wide servers in its own settings`, { hint: `install into the project: agentgate mcp install --client ${o.client}` });
    return join(o.home ?? homedir(), '.cursor', 'mcp.json');
  }
  return resolve(o.dir, CLIENT_FILES[o.client].file);
}

/** Reads the current file (if any) and returns what it becomes. */
export async function planInstall(o: InstallOptions): Promise<InstallPlan> {
  const path = configPath(o);
  let current: Record<string, unknown> = {};
  let raw: string | undefined;
  try {
    raw = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (raw !== undefined && raw.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch (err) {
      throw new AgentgateError('AG_MCP_CONFIG_INVALID', `${path} is not valid JSON (${(err as Error).message}); it was left as it is`, 1, {
        hint: 'fix or remove it, or print the entry with --print and add it by hand (comments are not JSON)',
      });
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new AgentgateError('AG_MCP_CONFIG_INVALID', `${path} does not hold a JSON object; it was left as it is`, 1, { hint: 'fix or remove it, or use --print' });
    }
    current = parsed as Record<string, unknown>;
  }
  const key = o.client === 'vscode' ? 'servers' : 'mcpServers';
  const existing = current[key];
  if (existing !== undefined && (typeof existing !== 'object' || existing === null || Array.isArray(existing))) {
    throw new AgentgateError('AG_MCP_CONFIG_INVALID', `${path}: "${key}" is not an object; it was left as it is`, 1, { hint: 'fix it, or use --print' });
  }
  const servers = { ...(existing as Record<string, unknown> | undefined) };
  const replaced = Object.hasOwn(servers, o.name);
  servers[o.name] = serverEntry(o.client, o.launch);
  const next = { ...current, [key]: servers };
  return { path, text: JSON.stringify(next, null, 2) + '\n', replaced };
}

export async function writeInstall(plan: InstallPlan): Promise<void> {
  await mkdir(dirname(plan.path), { recursive: true });
  await writeFileAtomic(plan.path, plan.text, { mode: 0o600 });
}
