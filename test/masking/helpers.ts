/**
 * Frames and a fixed catalog for the masking stage's unit tests. The catalog is data
 * handed to the masker (a real one runs against PostgreSQL in catalog.test.ts).
 */
import { dataRowValues, decodeNoticeFieldMap, type FieldDescription } from '../../src/broker/postgres/decode-backend.js';
import { BackendReader } from '../../src/broker/postgres/reader.js';
import type { CatalogLookup, TableInfo } from '../../src/broker/postgres/proxy-masking.js';
import assert from 'node:assert/strict';
import { compileMaskingPlan, type MaskingPlan } from '../../src/broker/masking/rules.js';
import type { MaskingConfig } from '../../src/broker/config/types.js';

/** A masking plan for target `t`: no columns, no detectors, style `full`, unless `config` says otherwise. */
export function maskingPlan(config: Partial<MaskingConfig>): MaskingPlan {
  const p = compileMaskingPlan('t', { t: { columns: [], detectors: [], style: 'full', ...config } });
  assert.ok(p);
  return p;
}

export const USERS_OID = 16400;
export const ORDERS_OID = 16500;

export const TABLES = new Map<number, TableInfo>([
  [
    USERS_OID,
    {
      schema: 'public',
      table: 'users',
      columns: new Map([
        [1, 'id'],
        [2, 'email'],
        [3, 'ssn'],
        [4, 'note'],
        [5, 'password_hash'],
        [6, 'profile'],
        [7, 'birth_date'],
        [8, 'code'],
      ]),
      types: new Map([
        [1, 23],
        [2, 25],
        [3, 1042],
        [4, 25],
        [5, 25],
        [6, 3802],
        [7, 1082],
        [8, 1043],
      ]),
      generated: new Set(),
    },
  ],
  [ORDERS_OID, { schema: 'public', table: 'orders', columns: new Map([[1, 'id'], [2, 'ssn']]), types: new Map([[1, 23], [2, 25]]), generated: new Set() }],
]);

/** A users column as RowDescription would describe it. */
export function col(attnum: number, format = 0, name?: string): FieldDescription {
  const info = TABLES.get(USERS_OID)!;
  return {
    name: name ?? info.columns.get(attnum)!,
    tableOid: USERS_OID,
    columnAttr: attnum,
    typeOid: info.types!.get(attnum)!,
    typeSize: -1,
    typeMod: -1,
    format,
  };
}

export function expr(name: string, typeOid = 25, format = 0): FieldDescription {
  return { name, tableOid: 0, columnAttr: 0, typeOid, typeSize: -1, typeMod: -1, format };
}

export interface FixedCatalog extends CatalogLookup {
  calls: number[][];
  described: string[];
}

/** A catalog over TABLES; `describe` answers from `describeAs` (undefined = the server refuses). */
export function fixedCatalog(describeAs: (sql: string) => FieldDescription[] | undefined = () => undefined): FixedCatalog {
  const calls: number[][] = [];
  const described: string[] = [];
  const fn = (async (oids: number[]) => {
    calls.push([...oids]);
    return new Map([...TABLES].filter(([oid]) => oids.includes(oid)));
  }) as FixedCatalog;
  fn.calls = calls;
  fn.described = described;
  fn.describe = async (sql: string) => {
    described.push(sql);
    return describeAs(sql);
  };
  return fn;
}

/** A DataRow's values as text (null for NULL). */
export function rowValues(frame: Buffer): (string | null)[] {
  const out: (string | null)[] = [];
  const cur = dataRowValues(frame.subarray(5));
  while (cur.next()) out.push(cur.text());
  if (frame.readInt32BE(1) !== frame.length - 1) throw new Error('frame length field is wrong');
  return out;
}

export function rowBuffers(frame: Buffer): (Buffer | null)[] {
  const out: (Buffer | null)[] = [];
  const cur = dataRowValues(frame.subarray(5));
  while (cur.next()) out.push(cur.value());
  return out;
}

/** Split bytes into frames (checking their framing). */
export function frames(bytes: Buffer): { type: number; body: Buffer }[] {
  const out: { type: number; body: Buffer }[] = [];
  new BackendReader().push(bytes, (m) => out.push({ type: m.type, body: Buffer.from(m.body) }));
  return out;
}

/** CopyOutResponse. */
export function copyOutResponse(format: number, columns: number): Buffer {
  const b = Buffer.alloc(1 + 4 + 1 + 2 + 2 * columns);
  b[0] = 0x48;
  b.writeInt32BE(b.length - 1, 1);
  b[5] = format;
  b.writeUInt16BE(columns, 6);
  for (let i = 0; i < columns; i++) b.writeInt16BE(format, 8 + 2 * i);
  return b;
}

export function copyData(data: Buffer | string): Buffer {
  const d = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const b = Buffer.alloc(5);
  b[0] = 0x64;
  b.writeInt32BE(d.length + 4, 1);
  return Buffer.concat([b, d]);
}

/** The data of CopyData frames in `bytes`, concatenated. */
export function copyPayload(bytes: Buffer[]): string {
  return Buffer.concat(bytes.flatMap((b) => frames(b).filter((f) => f.type === 0x64).map((f) => f.body))).toString('utf8');
}

export function noticeFields(frame: Buffer): Map<string, string> {
  if (frame.readInt32BE(1) !== frame.length - 1) throw new Error('frame length field is wrong');
  return decodeNoticeFieldMap(frame.subarray(5));
}
