/**
 * Recordings follow audit retention: the retention run that prunes events older than
 * retention_days deletes the recordings last written before the same cut, and keeps the rest.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureBrokerKeys } from '../../src/broker/keys.js';
import { openSqliteAuditStore } from '../../src/broker/audit/sqlite-store.js';
import { startRetention, DAY_MS } from '../../src/broker/audit/retention.js';
import { createFileKeySigner } from '../../src/broker/receipts/signer.js';
import { pruneRecordings, recordingsDir } from '../../src/broker/recording/store.js';
import { silentLogger } from '../../src/broker/log.js';
import { makeBrokerConfig, makeTempDir } from '../broker/fixtures.js';

test('a retention run deletes recordings older than the audit cut and keeps newer ones', async () => {
  const tmp = await makeTempDir('agentgate-rec-retention-');
  try {
    const config = { ...makeBrokerConfig(tmp.path), audit: { sync: 'normal' as const, retentionDays: 30 } };
    const keys = await ensureBrokerKeys(config);
    const store = await openSqliteAuditStore(join(tmp.path, 'audit.db'));
    const old = new Date(Date.now() - 40 * DAY_MS);
    await store.append({ type: 'session.start', session: 'sshs_old', actor: null, target: 't', time: old, detail: {}, decision: null, outcome: null });
    await store.append({ type: 'session.start', session: 'sshs_new', actor: null, target: 't', detail: {}, decision: null, outcome: null });
    const dir = recordingsDir(config);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(join(dir, 'sshs_old.1.cast'), '{"version":2,"width":80,"height":24}\n');
    await utimes(join(dir, 'sshs_old.1.cast'), old, old);
    await writeFile(join(dir, 'sshs_new.1.cast'), '{"version":2,"width":80,"height":24}\n');
    await writeFile(join(dir, 'notes.txt'), 'not a recording');
    await utimes(join(dir, 'notes.txt'), old, old);
    const retention = startRetention({ config, audit: store, signer: createFileKeySigner(keys), logger: silentLogger, intervalMs: DAY_MS, alsoPrune: (before) => pruneRecordings(config, before) });
    const r = await retention.runOnce();
    retention.stop();
    assert.equal(r?.deleted, 1);
    assert.deepEqual((await readdir(dir)).sort(), ['notes.txt', 'sshs_new.1.cast']);
    await store.close();
  } finally {
    await tmp.remove();
  }
});
