/**
 * Wave 7 red team, SSH (ids w7s-NN): output masking against what a terminal shows. The
 * scanner judged a line "as the terminal shows it" only by removing CSI sequences
 * (`ESC [ … m`); every other control a terminal consumes without showing it was left in
 * the text the detectors read, so a key printed with one inside it was not a key to them,
 * while the agent's terminal (or a log of it) showed it whole:
 * - `ESC ( B` (what `tput sgr0` prints before `ESC [ m`), an OSC title (`ESC ] 0;… BEL`),
 *   a two-byte escape (`ESC 7`, save cursor), a NUL or a DEL: shown as nothing;
 * - a backspace or a carriage return that puts the key's first half over filler: shown
 *   as the key.
 * w7s-10 is a must-hold check (it passed before the fix too): the scanner's line match now
 * runs to `\n`, so a pty's `\r\n` line must keep a `NAME=value` line's name mask.
 *
 * Every case has a control: the same command straight to the sshd shows the key (as a
 * terminal renders the output). Through agentgate the rendered output holds no key, and
 * plain output (colours, tabs, CRLF) passes unchanged.
 *
 * Looked at and not kept (no bypass found, or already refused): agent and X11 forwarding,
 * remote forwarding, env requests outside LANG, LC_*, TZ, GIT_PROTOCOL or with non-inert
 * values, exec after exec/shell on one channel (only the first runs), a pty-req after the
 * exec (refused), subsystems not named by a rule, simple commands with shell syntax
 * (`$'…'`, `{a,b}`, `~user`, `#`: compound, or re-quoted before they are sent).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { mkdir, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { PolicyConfig } from '../../src/broker/config/types.js';
import { startSshStack, TARGET, type SshStack } from './stack.js';
import { direct as directVia, viaBroker, type RunOptions } from './adversary.js';

const BASE = mkdtempSync('/tmp/w7s-');
const LOG = join(BASE, 'log');
const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';
const [HEAD, TAIL] = [AWS_KEY.slice(0, 8), AWS_KEY.slice(8)];

const POLICY: PolicyConfig[] = [
  {
    name: 'agents-ssh',
    subjects: { groups: ['ai-agents'] },
    targets: [TARGET],
    rules: [
      { name: 'read-logs', ssh: { commands: [`cat ${LOG}/*`], tty: true }, effect: 'allow', extra: {} },
      { name: 'rest', effect: 'deny', extra: {} },
    ],
  },
];

/**
 * The text a terminal shows for `out`, line by line: escape sequences and invisible
 * controls consumed, a backspace or a carriage return moving the cursor over what was
 * written. (What the agent reads on its screen, or a screen log keeps.)
 */
function rendered(out: string): string {
  return out
    .split('\n')
    .map((line) => {
      // eslint-disable-next-line no-control-regex
      const text = line.replace(/\x1b(?:\[[0-?]*[ -/]*[@-~]|[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -/]*[0-~])/g, '');
      const cells: string[] = [];
      let col = 0;
      for (const ch of text) {
        if (ch === '\b') col = Math.max(0, col - 1);
        else if (ch === '\r') col = 0;
        // eslint-disable-next-line no-control-regex
        else if (/[\x00-\x08\x0b-\x1f\x7f]/.test(ch)) continue;
        else cells[col++] = ch;
      }
      return cells.join('');
    })
    .join('\n');
}

interface Case {
  id: string;
  what: string;
  /** The file's text: the key inside it, as the terminal will show it. */
  text: string;
}

const CASES: Case[] = [
  { id: 'w7s-01', what: '`ESC ( B` inside the key (tput sgr0 prints it before `ESC [ m`)', text: `aws ${HEAD}\x1b(B\x1b[m${TAIL} loaded\n` },
  { id: 'w7s-02', what: 'an OSC window title (`ESC ] 0;… BEL`) inside the key', text: `aws ${HEAD}\x1b]0;build\x07${TAIL} loaded\n` },
  { id: 'w7s-03', what: 'a two-byte escape (`ESC 7`, save the cursor) inside the key', text: `aws ${HEAD}\x1b7${TAIL} loaded\n` },
  { id: 'w7s-04', what: 'a backspace over a filler character inside the key', text: `aws ${HEAD}#\b${TAIL} loaded\n` },
  { id: 'w7s-05', what: 'a carriage return that writes the first half over filler', text: `aws ${'.'.repeat(HEAD.length)}${TAIL} loaded\raws ${HEAD}\n` },
  { id: 'w7s-06', what: 'a NUL inside the key (a terminal shows nothing for it)', text: `aws ${HEAD}\0${TAIL} loaded\n` },
  { id: 'w7s-07', what: 'a DEL inside the key (a terminal shows nothing for it)', text: `aws ${HEAD}\x7f${TAIL} loaded\n` },
];

after(async () => {
  await rm(BASE, { recursive: true, force: true });
});

describe('wave 7: ssh output masking sees the key a terminal shows', () => {
  let stack: SshStack;
  before(async () => {
    await mkdir(LOG, { recursive: true });
    stack = await startSshStack(POLICY);
  });
  after(async () => {
    await stack?.close();
  });
  const direct = (cmd: string, o: RunOptions = {}): ReturnType<typeof directVia> => directVia(stack, BASE, cmd, o);

  test('w7s-00. harmless: colours, tabs, a backspace and CRLF line ends pass unchanged; a plain key is masked', async () => {
    const f = join(LOG, 'plain.log');
    const text = `\x1b[32mok\x1b[0m\tbuild 12\r\nprogress 10%\rprogress 100%\nab\bc\n`;
    await writeFile(f, text);
    const r = await viaBroker(stack, `cat ${f}`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, text, 'plain terminal output was changed');
    const k = join(LOG, 'key.log');
    await writeFile(k, `aws ${AWS_KEY} loaded\n`);
    const m = await viaBroker(stack, `cat ${k}`);
    assert.equal(m.code, 0, m.stderr);
    assert.match(m.stdout, /^aws .* loaded\n$/);
    assert.ok(!m.stdout.includes(AWS_KEY), m.stdout);
  });

  for (const c of CASES) {
    test(`${c.id}. ${c.what}: the terminal shows the key straight from sshd; through agentgate it is masked`, async () => {
      const f = join(LOG, `${c.id}.log`);
      await writeFile(f, c.text);
      const d = await direct(`cat ${f}`);
      assert.ok(rendered(d.stdout).includes(AWS_KEY), `control: the terminal shows the key: ${JSON.stringify(rendered(d.stdout))}`);
      const r = await viaBroker(stack, `cat ${f}`);
      assert.equal(r.code, 0, r.stderr);
      assert.match(rendered(r.stdout), /loaded/);
      assert.ok(!rendered(r.stdout).includes(AWS_KEY), `the terminal shows the key through agentgate: ${JSON.stringify(r.stdout)}`);
      assert.ok(!r.stdout.includes(AWS_KEY), `the key in the clear: ${JSON.stringify(r.stdout)}`);
    });
  }

  test('w7s-10. must hold: under a pty (`ssh -tt`, lines end in CRLF) a `DB_PASSWORD=…` line has its value masked, as without one', async () => {
    const f = join(LOG, 'app.env');
    const value = 'Tr0ub4dor-w7s-horse';
    await writeFile(f, `APP_MODE=prod\nDB_PASSWORD=${value}\n`);
    const plain = await viaBroker(stack, `cat ${f}`);
    assert.equal(plain.code, 0, plain.stderr);
    assert.ok(!plain.stdout.includes(value), `control: without a pty the value is masked by its name: ${plain.stdout}`);
    assert.match(plain.stdout, /APP_MODE=prod/);
    const d = await direct(`cat ${f}`, { ssh: ['-tt'] });
    assert.ok(d.stdout.includes(`DB_PASSWORD=${value}\r\n`), `control: a pty ends lines in CRLF: ${JSON.stringify(d.stdout)}`);
    const r = await viaBroker(stack, `cat ${f}`, { ssh: ['-tt'] });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /APP_MODE=prod\r\n/);
    assert.ok(!r.stdout.includes(value), `the value in the clear under a pty: ${JSON.stringify(r.stdout)}`);
  });
});
