/**
 * `agentgate mcp install` as a user runs it (the built CLI as a child process): each
 * client's documented file, location and shape; merging with what is there; --print.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { JWT_LIKE, makeHome, runCli, type Home } from '../cli/fixture.js';

const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZ2VudC03In0.c2lnbmF0dXJl';

describe('agentgate mcp install', () => {
  let home: Home;
  const project = (name: string): string => {
    const dir = join(home.dir, name);
    mkdirSync(dir, { recursive: true });
    return dir;
  };
  const json = (path: string): Record<string, Record<string, Record<string, unknown>>> => JSON.parse(readFileSync(path, 'utf8')) as Record<string, Record<string, Record<string, unknown>>>;

  before(() => {
    // A token in the environment must not end up in any file.
    home = makeHome({ AGENTGATE_TOKEN: TOKEN });
  });
  after(() => home?.cleanup());

  test('claude-code: .mcp.json at the project root, mcpServers with a stdio entry', async () => {
    const dir = project('claude');
    const r = await runCli(['mcp', 'install', '--client', 'claude-code', '--dir', dir, '--target', 'pg-prod', '--broker', 'https://broker.example:8443'], home.env);
    assert.equal(r.code, 0, r.stderr);
    const path = join(dir, '.mcp.json');
    assert.deepEqual(json(path), {
      mcpServers: { agentgate: { type: 'stdio', command: 'agentgate', args: ['mcp', '--target', 'pg-prod', '--broker', 'https://broker.example:8443'], env: {} } },
    });
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.match(r.stderr, /Added "agentgate" in .*\.mcp\.json \(claude-code\)/);
    assert.doesNotMatch(readFileSync(path, 'utf8'), JWT_LIKE);
  });

  test('cursor: .cursor/mcp.json, mcpServers with command/args/env; --global writes ~/.cursor/mcp.json', async () => {
    const dir = project('cursor');
    const r = await runCli(['mcp', 'install', '--client', 'cursor', '--dir', dir], home.env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(json(join(dir, '.cursor', 'mcp.json')), { mcpServers: { agentgate: { command: 'agentgate', args: ['mcp'], env: {} } } });

    const g = await runCli(['mcp', 'install', '--client', 'cursor', '--global', '--command', '/opt/agentgate/bin/agentgate'], home.env);
    assert.equal(g.code, 0, g.stderr);
    assert.deepEqual(json(join(home.dir, '.cursor', 'mcp.json')), { mcpServers: { agentgate: { command: '/opt/agentgate/bin/agentgate', args: ['mcp'], env: {} } } });

    const wrong = await runCli(['mcp', 'install', '--client', 'vscode', '--global'], home.env);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /--global is for cursor only/);
  });

  test('vscode: .vscode/mcp.json, servers with a stdio entry; other servers and inputs are kept, ours replaced', async () => {
    const dir = project('vscode');
    mkdirSync(join(dir, '.vscode'));
    const path = join(dir, '.vscode', 'mcp.json');
    writeFileSync(path, JSON.stringify({ inputs: [{ id: 'k', type: 'promptString' }], servers: { other: { type: 'stdio', command: 'other-mcp' }, agentgate: { type: 'stdio', command: 'old' } } }));
    const r = await runCli(['mcp', 'install', '--client', 'vscode', '--dir', dir, '--target', 'k8s-prod'], home.env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Updated "agentgate"/);
    assert.deepEqual(json(path), {
      inputs: [{ id: 'k', type: 'promptString' }],
      servers: { other: { type: 'stdio', command: 'other-mcp' }, agentgate: { type: 'stdio', command: 'agentgate', args: ['mcp', '--target', 'k8s-prod'] } },
    });
  });

  test('--print writes nothing and prints the file; a file that is not JSON is left alone', async () => {
    const dir = project('print');
    const r = await runCli(['mcp', 'install', '--client', 'claude-code', '--dir', dir, '--print'], home.env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { mcpServers: { agentgate: { type: 'stdio', command: 'agentgate', args: ['mcp'], env: {} } } });
    assert.equal(existsSync(join(dir, '.mcp.json')), false);

    writeFileSync(join(dir, '.mcp.json'), '{ // a comment\n}');
    const bad = await runCli(['mcp', 'install', '--client', 'claude-code', '--dir', dir], home.env);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /\.mcp\.json is not valid JSON .*left as it is/);
    assert.equal(readFileSync(join(dir, '.mcp.json'), 'utf8'), '{ // a comment\n}');
  });

  test('--client is required and checked; --help names each client file', async () => {
    const none = await runCli(['mcp', 'install'], home.env);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /--client is required/);
    const wrong = await runCli(['mcp', 'install', '--client', 'emacs'], home.env);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /expected claude-code, cursor, vscode, got "emacs"/);
    const help = await runCli(['mcp', 'install', '--help'], home.env);
    assert.equal(help.code, 0);
    for (const f of [/claude-code\s+\.\/\.mcp\.json/, /cursor\s+\.\/\.cursor\/mcp\.json/, /vscode\s+\.\/\.vscode\/mcp\.json/, /~\/\.cursor\/mcp\.json/]) assert.match(help.stdout, f);
  });
});
