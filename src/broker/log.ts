/**
 * The broker's structured logger: one JSON object per line ({time, level, msg, ...fields})
 * to a writable, stderr by default. Every record goes through a redaction pass first, so
 * a credential handed to the logger by mistake prints as `[redacted]`.
 */
import type { Writable } from 'node:stream';
import { Secret } from '../shared/secret.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFields = Record<string, unknown>;

export interface Logger {
  readonly level: LogLevel;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every record. */
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  /** Default: AGENTGATE_LOG_LEVEL, else `info`. */
  level?: LogLevel;
  /** Default: process.stderr. */
  stream?: Writable;
  fields?: LogFields;
  /** `json` (default): one object per line, for collectors. `plain`: `time LEVEL msg key=value…`, for a person at a terminal. */
  format?: LogFormat;
}

export type LogFormat = 'json' | 'plain';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export const REDACTED = '[redacted]';

export function parseLogLevel(value: string | undefined): LogLevel | undefined {
  const v = value?.trim().toLowerCase();
  return v !== undefined && Object.hasOwn(RANK, v) ? (v as LogLevel) : undefined;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? parseLogLevel(process.env['AGENTGATE_LOG_LEVEL']) ?? 'info';
  const stream = options.stream ?? process.stderr;
  return makeLogger(level, stream, options.fields ?? {}, options.format ?? 'json');
}

/** The same record as one readable line: values that are not simple words are JSON-quoted. */
function plainLine(record: LogFields): string {
  const { time, level, msg, ...rest } = record;
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' && /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)}`);
  return [String(time).slice(11, 23), String(level).toUpperCase().padEnd(5), String(msg), ...fields].join(' ');
}

/** A logger that drops everything (tests and library callers that pass none). */
export const silentLogger: Logger = makeLogger('silent', process.stderr, {}, 'json');

function makeLogger(level: LogLevel, stream: Writable, bound: LogFields, format: LogFormat): Logger {
  const threshold = RANK[level];
  const write = (lvl: Exclude<LogLevel, 'silent'>, msg: string, fields?: LogFields): void => {
    if (RANK[lvl] < threshold) return;
    const record: LogFields = { time: new Date().toISOString(), level: lvl, msg: scrubString(msg) };
    for (const source of [bound, fields ?? {}]) {
      for (const [k, v] of Object.entries(source)) {
        if (k === 'time' || k === 'level' || k === 'msg') continue;
        record[k] = redactEntry(k, v, 0, new WeakSet());
      }
    }
    let line: string;
    try {
      line = format === 'plain' ? plainLine(record) : JSON.stringify(record);
    } catch {
      line = JSON.stringify({ time: record['time'], level: lvl, msg: record['msg'], log_error: 'fields not serializable' });
    }
    stream.write(line + '\n');
  };
  return {
    level,
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    child: (fields) => makeLogger(level, stream, { ...bound, ...fields }, format),
  };
}

/** Compared after lowercasing and dropping `-`/`_`, so `Access-Token` and `access_token` both hit. */
const SENSITIVE_KEYS = new Set([
  'authorization',
  'proxyauthorization',
  'token',
  'accesstoken',
  'refreshtoken',
  'idtoken',
  'bearer',
  'password',
  'passwd',
  'passphrase',
  'secret',
  'clientsecret',
  'cookie',
  'setcookie',
  'apikey',
  'privatekey',
]);

export function isSensitiveKey(key: string): boolean {
  return SENSITIVE_KEYS.has(key.toLowerCase().replace(/[-_]/g, ''));
}

const MAX_DEPTH = 8;

function redactEntry(key: string, value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (isSensitiveKey(key) && value !== undefined && value !== null) return REDACTED;
  return redactValue(value, depth, seen);
}

/** Deep copy with secrets replaced; exported for callers that build their own records. */
export function redact(value: unknown): unknown {
  return redactValue(value, 0, new WeakSet());
}

function redactValue(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (value instanceof Secret) return REDACTED;
  if (typeof value === 'string') return scrubString(value);
  if (typeof value === 'bigint') return value.toString();
  if (value === null || typeof value !== 'object') return value;
  if (seen.has(value)) return '[circular]';
  if (depth >= MAX_DEPTH) return '[truncated]';
  seen.add(value);
  if (value instanceof Error) {
    const out: LogFields = { name: value.name, message: scrubString(value.message) };
    const code = (value as { code?: unknown }).code;
    if (typeof code === 'string') out['code'] = code;
    return out;
  }
  if (value instanceof Date) return value.toISOString();
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return `[${value.byteLength} bytes]`;
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1, seen));
  if (value instanceof Map) {
    const out: LogFields = {};
    for (const [k, v] of value) out[String(k)] = redactEntry(String(k), v, depth + 1, seen);
    return out;
  }
  const out: LogFields = {};
  for (const [k, v] of Object.entries(value)) out[k] = redactEntry(k, v, depth + 1, seen);
  return out;
}

// Defence in depth for free text: a JWT or a `Bearer …` credential pasted into a message.
const JWT_LIKE = /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*/g;
const BEARER = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi;

function scrubString(s: string): string {
  if (!s.includes('eyJ') && !/bearer|basic/i.test(s)) return s;
  return s.replace(JWT_LIKE, '[redacted-jwt]').replace(BEARER, `$1 ${REDACTED}`);
}
