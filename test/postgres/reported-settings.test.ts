import { test } from 'node:test';
import assert from 'node:assert/strict';
import { contradictedSetting } from '../../src/broker/postgres/reported-settings.js';

test('a reported setting contradicts the gate only where it reads SQL or relies on read-only', () => {
  // The parser reads text as UTF-8 with standard_conforming_strings on.
  assert.equal(contradictedSetting('client_encoding', 'UTF8', false), undefined);
  assert.equal(contradictedSetting('client_encoding', 'unicode', false), undefined);
  assert.match(contradictedSetting('client_encoding', 'SJIS', false) ?? '', /split statement text differently/);
  assert.equal(contradictedSetting('standard_conforming_strings', 'on', false), undefined);
  assert.match(contradictedSetting('standard_conforming_strings', 'off', false) ?? '', /read backslashes/);
  // Read-only matters only in a session opened read-only.
  assert.match(contradictedSetting('default_transaction_read_only', 'off', true) ?? '', /opened read-only/);
  assert.equal(contradictedSetting('default_transaction_read_only', 'off', false), undefined);
  assert.equal(contradictedSetting('default_transaction_read_only', 'on', true), undefined);
  // Others are not a contradiction of anything the gate assumes.
  assert.equal(contradictedSetting('application_name', 'x', true), undefined);
  assert.equal(contradictedSetting('is_superuser', 'on', true), undefined);
});
