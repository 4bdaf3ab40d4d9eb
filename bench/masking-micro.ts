/**
 * Micro-benchmark of the masking stage alone: ResultMasker.dataRow over DataRows shaped
 * like pgbench_accounts (aid int4, bid int4, abalance int4, filler char(84), text
 * format), as views into large chunks the way the proxy's reader hands them out.
 *
 *   npx tsc -p . && node dist/bench/masking-micro.js [rows]
 *
 * Reports MB/s of DataRow bytes for: no masker at all (the loop alone), a plan that
 * masks nothing in this table, one masked column in each style, and every detector on
 * the char(84) column. Not a test: numbers depend on the machine.
 */
import { ResultMasker, type CatalogLookup, type TableInfo } from '../src/broker/postgres/proxy-masking.js';
import { compileMaskingPlan, type MaskingPlan } from '../src/broker/masking/rules.js';
import * as be from '../src/broker/postgres/build-backend.js';
import type { FieldDescription } from '../src/broker/postgres/decode-backend.js';
import type { MaskingConfig } from '../src/broker/config/types.js';

const ROWS = Number(process.argv[2] ?? 500_000);
const PASSES = 5;
const TABLE_OID = 16384;

const info: TableInfo = {
  schema: 'public',
  table: 'pgbench_accounts',
  columns: new Map([
    [1, 'aid'],
    [2, 'bid'],
    [3, 'abalance'],
    [4, 'filler'],
  ]),
};
const catalog: CatalogLookup = async (oids) => new Map(oids.filter((o) => o === TABLE_OID).map((o) => [o, info]));

const field = (name: string, attnum: number, typeOid: number): FieldDescription => ({ name, tableOid: TABLE_OID, columnAttr: attnum, typeOid, typeSize: -1, typeMod: -1, format: 0 });
const rowDescription = be.rowDescription([field('aid', 1, 23), field('bid', 2, 23), field('abalance', 3, 23), field('filler', 4, 1042)]);

/** DataRows as views into 64 KiB chunks, like the backend reader produces. */
function makeRows(n: number): { frames: Buffer[]; bytes: number } {
  const frames: Buffer[] = [];
  const filler = ' '.repeat(84);
  let chunk: Buffer[] = [];
  let size = 0;
  let bytes = 0;
  const flush = (): void => {
    const big = Buffer.concat(chunk);
    let off = 0;
    for (const f of chunk) {
      frames.push(big.subarray(off, off + f.length));
      off += f.length;
    }
    chunk = [];
    size = 0;
  };
  for (let i = 1; i <= n; i++) {
    const f = Buffer.from(be.dataRow([String(i), String(1 + Math.floor(i / 100_000)), String((i * 7919) % 10_000 - 5000), filler]));
    chunk.push(f);
    size += f.length;
    bytes += f.length;
    if (size >= 64 * 1024) flush();
  }
  if (chunk.length > 0) flush();
  return { frames, bytes };
}

function plan(config: Partial<MaskingConfig>): MaskingPlan {
  const p = compileMaskingPlan('bench', { bench: { columns: [], detectors: [], style: 'full', ...config } });
  if (!p) throw new Error('empty plan');
  return p;
}

interface Scenario {
  name: string;
  plan: MaskingPlan | undefined;
}

const scenarios: Scenario[] = [
  { name: 'no masker (loop only)', plan: undefined },
  { name: 'plan masks nothing here', plan: plan({ columns: ['users.email'] }) },
  { name: 'filler masked, full', plan: plan({ columns: ['pgbench_accounts.filler'], style: 'full' }) },
  { name: 'filler masked, partial', plan: plan({ columns: ['pgbench_accounts.filler'], style: 'partial' }) },
  { name: 'filler masked, null', plan: plan({ columns: ['pgbench_accounts.filler'], style: 'null' }) },
  { name: 'filler masked, hash', plan: plan({ columns: ['pgbench_accounts.filler'], style: 'hash' }) },
  { name: 'aid masked, full', plan: plan({ columns: ['*.aid'], style: 'full' }) },
  { name: 'all detectors on filler', plan: plan({ detectors: ['all'] }) },
];

async function main(): Promise<void> {
  const { frames, bytes } = makeRows(ROWS);
  const mb = bytes / 1e6;
  process.stderr.write(`[masking-micro] ${ROWS} rows, ${mb.toFixed(1)} MB of DataRows, best of ${PASSES} passes\n`);
  const results: { name: string; mbps: number; nsRow: number }[] = [];
  for (const s of scenarios) {
    let best = Infinity;
    let sink = 0;
    for (let pass = 0; pass < PASSES; pass++) {
      const masker = s.plan ? new ResultMasker(s.plan, Buffer.alloc(32, 1), catalog) : undefined;
      if (masker) await masker.rowDescription(rowDescription.subarray(5));
      const t0 = process.hrtime.bigint();
      if (masker) {
        for (const f of frames) sink += masker.dataRow(f).length;
      } else {
        for (const f of frames) sink += f.length;
      }
      const ns = Number(process.hrtime.bigint() - t0);
      best = Math.min(best, ns);
    }
    if (sink === 0) throw new Error('nothing ran');
    results.push({ name: s.name, mbps: mb / (best / 1e9), nsRow: best / ROWS });
  }
  const base = results[1]?.mbps ?? 1;
  const w = Math.max(...results.map((r) => r.name.length));
  process.stdout.write(`${'scenario'.padEnd(w)}  ${'MB/s'.padStart(9)}  ${'ns/row'.padStart(7)}  vs. plan-masks-nothing\n`);
  for (const r of results) {
    process.stdout.write(`${r.name.padEnd(w)}  ${r.mbps.toFixed(0).padStart(9)}  ${r.nsRow.toFixed(0).padStart(7)}  ${(base / r.mbps).toFixed(2)}×\n`);
  }
}

await main();
