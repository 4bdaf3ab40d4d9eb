/**
 * Adversarial corpus — lexer tricks: text that a naive tokenizer reads as one harmless
 * statement while PostgreSQL runs a DELETE (comments, dollar quotes, escape strings,
 * Unicode escapes, standard_conforming_strings, NUL bytes, client encodings whose
 * multibyte characters end in a backslash byte).
 */
import { after, before, describe, test } from 'node:test';
import {
  assertIntact,
  assertNoRaw,
  assertRefused,
  assertSomeRefusal,
  assertStoreClean,
  exchange,
  fe,
  loginWith,
  parseBytes,
  simple,
  useAdversary,
  type Adversary,
  type Msg,
} from './harness.js';

describe('adversarial corpus: lexer tricks', () => {
  let adv!: Adversary;
  const withClient = useAdversary((a) => (adv = a));

  function refusedText(id: string, title: string, sql: string): void {
    test(`${id}: ${title}`, () =>
      withClient(async ({ c }) => {
        const msgs = await simple(c, sql);
        assertRefused(msgs, title);
        await assertIntact(adv, title);
      }));
  }

  refusedText('lex-01', 'a line comment before the statement separator', 'select 1 -- ; harmless\n; delete from users');
  refusedText('lex-02', 'comment markers inside string literals', "select '/*'; delete from users; select '*/'");
  refusedText('lex-03', 'nested block comments (PostgreSQL nests them)', 'select 1 /* outer /* inner */ still comment */ ; delete from users');
  refusedText('lex-04', 'dollar quotes with interleaved tags', 'select $a$ $b$ $a$; delete from users; select $b$ x $b$');
  refusedText('lex-05', 'a backslash before the quote in a standard string', "select 'x\\'; delete from users; --'");
  refusedText('lex-06', "an E'' string with an escaped quote", "select E'\\''; delete from users; --'");
  refusedText('lex-07', "a U&'' string with an escaped apostrophe", "select U&'\\0027'; delete from users");
  refusedText('lex-08', "a U&'' string with a custom UESCAPE", "select U&'!0027x' UESCAPE '!'; delete from users");
  refusedText('lex-09', 'a dollar quote with an underscore tag', 'select $_$ ; $_$; delete from users');
  refusedText('lex-10', 'keywords split by comments and mixed case', 'SELECT/**/1;DeLeTe/**/FROM/**/users');

  test('lex-11: SET standard_conforming_strings = off, then a string only a backslash-aware lexer reads right', () =>
    withClient(async ({ c }) => {
      const set = await simple(c, 'set standard_conforming_strings = off');
      // With the setting off, \' escapes the quote and the DELETE is outside the string;
      // a lexer that assumes the default sees one long literal.
      const msgs = await simple(c, "select 'a\\'' ; delete from users; --'");
      assertSomeRefusal([...set, ...msgs], 'standard_conforming_strings off');
      await assertIntact(adv);
    }));

  test('lex-12: a NUL byte in a Query: the text after it is never executed or mis-judged', () =>
    withClient(async ({ c }) => {
      const msgs = await simple(c, Buffer.from('delete from users\0select 1', 'utf8'));
      assertRefused(msgs, 'Query with an embedded NUL');
      await assertIntact(adv);
    }));

  test('lex-13: a NUL byte in a Parse: the text after it is never executed or mis-judged', () =>
    withClient(async ({ c }) => {
      const msgs = await exchange(c, [parseBytes('', Buffer.from('delete from users\0select 1', 'utf8')), fe.bind('', '', []), fe.execute('', 0), fe.SYNC]);
      assertRefused(msgs, 'Parse with an embedded NUL');
      await assertIntact(adv);
    }));

  /**
   * A broker that pins the upstream client_encoding to UTF8 lets the server reject these
   * bytes as invalid UTF-8 (22021): also safe, so also accepted.
   */
  const PINNED_UTF8 = ['22021'];

  /**
   * Log in with a client encoding whose multibyte characters may end in 0x5C (backslash),
   * then send an E'' string in which that byte, read as UTF-8, escapes the closing quote.
   */
  async function encodingAttack(encoding: string, lead: number, trail: number): Promise<Msg[]> {
    const s = await loginWith(adv, { client_encoding: encoding });
    try {
      const msgs = [...s.startup];
      if (s.ready) {
        const sql = Buffer.concat([Buffer.from("select E'", 'latin1'), Buffer.from([lead, trail]), Buffer.from("'; delete from users; --'", 'latin1')]);
        msgs.push(...(await simple(s.c, sql)));
      }
      assertNoRaw(s.bytes());
      return msgs;
    } finally {
      s.close();
    }
  }

  test('lex-14: client_encoding SJIS, a character whose second byte is a backslash before the quote', async () => {
    const msgs = await encodingAttack('SJIS', 0x95, 0x5c);
    assertSomeRefusal(msgs, 'SJIS backslash trail byte', PINNED_UTF8);
    await assertIntact(adv);
  });

  test('lex-15: client_encoding BIG5, a character whose second byte is a backslash before the quote', async () => {
    const msgs = await encodingAttack('BIG5', 0xa4, 0x5c);
    assertSomeRefusal(msgs, 'BIG5 backslash trail byte', PINNED_UTF8);
    await assertIntact(adv);
  });

  test('lex-16: SET client_encoding = SJIS mid-session, then the same string', () =>
    withClient(async ({ c }) => {
      const set = await simple(c, "set client_encoding = 'SJIS'");
      const sql = Buffer.concat([Buffer.from("select E'", 'latin1'), Buffer.from([0x95, 0x5c]), Buffer.from("'; delete from users; --'", 'latin1')]);
      const msgs = await simple(c, sql);
      assertSomeRefusal([...set, ...msgs], 'SET client_encoding then a backslash trail byte', PINNED_UTF8);
      await assertIntact(adv);
    }));

  test('lex-store: the audit store and every state file hold no raw value', async () => {
    await assertStoreClean(adv);
  });
});
