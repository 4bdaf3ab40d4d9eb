/**
 * The browser half of `agentgate login` against `agentgate dev`, as a person meets it: the
 * real CLI child process prints a URL and a code and waits; headless Chromium (Debian's
 * `chromium`, driven by puppeteer-core) opens the URL, enters the code, confirms, signs in
 * as a demo user; the CLI then finishes. The pages must work offline: every request the
 * browser makes goes to the local issuer.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { makeTempDir, type TempDir } from '../broker/fixtures.js';
import { startDev, type DevEnvironment } from '../../src/dev/run-dev.js';

const BIN = fileURLToPath(new URL('../../../bin/agentgate', import.meta.url));
const CHROMIUM = process.env['AGENTGATE_TEST_CHROMIUM'] ?? '/usr/bin/chromium';

/** Clicks and waits for the page the click leads to. */
async function clickThrough(page: Page, selector: string): Promise<void> {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]);
}

describe('agentgate login in a real browser against agentgate dev', () => {
  let tmp: TempDir;
  let dev: DevEnvironment;
  let browser: Browser;
  before(async () => {
    tmp = await makeTempDir('agentgate-browser-');
    dev = await startDev({ dir: join(tmp.path, 'dev'), port: 0, pglite: true, say: () => {} });
    // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  });
  after(async () => {
    await browser?.close();
    await dev?.close();
    await tmp?.remove();
  });

  test('open the printed URL, enter the code, confirm, sign in: the waiting CLI logs in', async () => {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env['PATH'],
      HOME: tmp.path,
      XDG_CONFIG_HOME: join(tmp.path, 'config'),
      AGENTGATE_KEYCHAIN: 'off',
      LANG: 'C',
    };
    const child = spawn(process.execPath, [BIN, 'login', '--broker', dev.brokerUrl, '--fingerprint', dev.fingerprint], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
    const prompted = new Promise<{ url: string; code: string }>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        const m = /open this page in a browser:\s+(\S+)\s+and enter the code:\s+(\S+)/.exec(stderr);
        if (m) resolve({ url: m[1]!, code: m[2]! });
      });
      child.once('close', (code) => reject(new Error(`agentgate login exited (${code}) before printing a code: ${stderr}`)));
    });
    try {
      const { url, code } = await prompted;
      assert.equal(new URL(url).origin, dev.issuer, 'the URL is the dev issuer');

      const page = await browser.newPage();
      const requested: string[] = [];
      page.on('request', (req) => requested.push(req.url()));
      await page.goto(url, { waitUntil: 'load' });
      await page.type('input[name=user_code]', code);
      await clickThrough(page, 'button[type=submit]');

      // The confirmation page shows the code and has a button that submits.
      const confirmText = await page.$eval('body', (b) => b.textContent ?? '');
      assert.ok(confirmText.includes(code), confirmText);
      await clickThrough(page, 'button[type=submit]:not([name=abort])');

      // Sign in as a demo user, any password.
      const loginText = await page.$eval('body', (b) => b.textContent ?? '');
      assert.match(loginText, /any password/);
      assert.doesNotMatch(loginText, /DEBUG/i);
      await page.select('select[name=username]', 'dev-human');
      await page.type('input[name=password]', 'anything');
      await clickThrough(page, 'button[type=submit]');
      assert.equal(await page.title(), 'Signed in', await page.$eval('body', (b) => b.textContent ?? ''));

      assert.equal(await exit, 0, stderr);
      assert.match(stdout, /^Logged in to .* as .*dev-human.*groups: developers/m);
      const elsewhere = requested.filter((u) => !u.startsWith(dev.issuer + '/'));
      assert.deepEqual(elsewhere, [], 'the pages load nothing from elsewhere');

      // The stored login works for the next command.
      const whoami = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const w = spawn(process.execPath, [BIN, 'whoami', '--json'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        w.stdout.on('data', (d: Buffer) => (out += d.toString()));
        w.on('close', (c) => resolve({ code: c, out }));
      });
      assert.equal(whoami.code, 0);
      assert.equal((JSON.parse(whoami.out) as { sub: string }).sub, 'dev-human');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
