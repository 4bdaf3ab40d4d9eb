/** One line per command module; each exports `register(program)`. Order = order in --help. */
import type { Command } from 'commander';
import { register as login } from './login.js';
import { register as logout } from './logout.js';
import { register as whoami } from './whoami.js';
import { register as targets } from './targets.js';
import { register as connect } from './connect.js';
import { register as run } from './run.js';
import { register as mcp } from './mcp.js';
import { register as broker } from './broker.js';
import { register as approve } from './approve.js';
import { register as requests } from './requests.js';
import { register as audit } from './audit.js';
import { register as receipt } from './receipt.js';
import { register as sessions } from './sessions.js';
import { register as replay } from './replay.js';
import { register as dev } from './dev.js';

export function registerCommands(program: Command): void {
  for (const register of [login, logout, whoami, targets, connect, run, mcp, approve, requests, audit, receipt, sessions, replay, broker, dev]) register(program);
}
