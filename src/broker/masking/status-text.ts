/**
 * ParameterStatus and NotificationResponse: names and values a session can set.
 *
 * `select set_config('application_name', (select email from users limit 1), false)`
 * makes the server report the email in a ParameterStatus; `NOTIFY "alice@example.com"`
 * puts it in a notification's channel name. Both strings of each message go through the
 * detectors (outbound-text.ts, which also replaces text that is not valid UTF-8).
 *
 * With column rules, what no analysis can trace is masked whole, since a value computed
 * from a masked column (the local part of an email, reversed) trips no detector:
 * - a notification's payload: any session's code writes it (an administrator's trigger
 *   runs `pg_notify('ch', NEW.email)` on another client's write), and nothing says what it
 *   was computed from. The channel is kept (scanned): a listener receives only the
 *   channels it named in LISTEN.
 * - a ParameterStatus value, unless the setting only takes values from a fixed set
 *   (FIXED_SET_SETTINGS: encodings, DateStyle, booleans…, which drivers read). A function
 *   an administrator wrote may run `set_config('application_name', <email>, false)`; the
 *   value is masked whole, its name kept. The values reported at startup (configuration,
 *   role and database defaults, the client's own parameters) get the detectors only.
 *
 * maskParameterStatusFrame is standalone so the proxy can mask the ParameterStatus
 * frames it relays from the server's startup, before or without a ResultMasker;
 * ResultMasker.parameterStatus uses it for the ones that come later.
 */
import { ProtocolError } from '../postgres/errors.js';
import type { MaskingPlan } from './rules.js';
import { addCount, buildFrame, cstringEnd, maskTextBytes } from './outbound-text.js';

const ZERO = Buffer.from([0]);
const PARAMETER_STATUS = 0x53;
const NOTIFICATION = 0x41;

/**
 * The ParameterStatus `frame` ('S', length, name, value) with detector hits in its name
 * and value masked: the same Buffer when nothing changed. Counts are added to `byRule`.
 * Throws ProtocolError on a malformed message.
 */
export function maskParameterStatusFrame(frame: Buffer, plan: MaskingPlan, key: Buffer | undefined, byRule: Record<string, number> = {}, startup = false): Buffer {
  if (frame[0] !== PARAMETER_STATUS) throw new ProtocolError('maskParameterStatusFrame: not a ParameterStatus message');
  const nameEnd = cstringEnd(frame, 5, 'ParameterStatus');
  const valueEnd = cstringEnd(frame, nameEnd + 1, 'ParameterStatus');
  // At startup the values are the server's configuration, the role's and database's defaults
  // and the client's own startup packet: no statement of this session chose them, and
  // drivers read them (TimeZone). They get the detectors only.
  const whole = !startup && plan.columns.length > 0 && !FIXED_SET_SETTINGS.has(frame.toString('latin1', 5, nameEnd).toLowerCase());
  if (plan.detectors === 0 && !whole) return frame;
  return rewrite(frame, 5, [5, nameEnd, nameEnd + 1, valueEnd], plan, key, byRule, whole ? 1 : -1, PARAMETER_WITHHELD);
}

/**
 * The NotificationResponse `frame` ('A', length, process id, channel, payload) with
 * detector hits in its channel name and payload masked: the same Buffer when nothing
 * changed. Counts are added to `byRule`. Throws ProtocolError on a malformed message.
 */
export function maskNotificationFrame(frame: Buffer, plan: MaskingPlan, key: Buffer | undefined, byRule: Record<string, number> = {}): Buffer {
  if (frame[0] !== NOTIFICATION || frame.length < 9) throw new ProtocolError('malformed NotificationResponse message: no process id');
  const channelEnd = cstringEnd(frame, 9, 'NotificationResponse');
  const payloadEnd = cstringEnd(frame, channelEnd + 1, 'NotificationResponse');
  const whole = plan.columns.length > 0;
  if (plan.detectors === 0 && !whole) return frame;
  return rewrite(frame, 9, [9, channelEnd, channelEnd + 1, payloadEnd], plan, key, byRule, whole ? 1 : -1, PAYLOAD_WITHHELD);
}

/**
 * Reported settings whose values come from a fixed set the server validates (names of
 * encodings, styles, booleans, numbers): they carry no text a statement chose, and
 * drivers depend on them (client_encoding, DateStyle, standard_conforming_strings…).
 * Every other reported setting (application_name, TimeZone, session_authorization, a
 * setting a later server adds) takes free text, or a name from a list long enough to
 * spell with, and its value is masked whole under column rules.
 */
const FIXED_SET_SETTINGS: ReadonlySet<string> = new Set([
  'server_version',
  'server_encoding',
  'client_encoding',
  'datestyle',
  'intervalstyle',
  'integer_datetimes',
  'standard_conforming_strings',
  'is_superuser',
  'in_hot_standby',
  'default_transaction_read_only',
  'scram_iterations',
]);

/** The count name of a value masked whole because its provenance is unknown. */
export const UNTRACED_RULE = 'untraced';
const PARAMETER_WITHHELD = Buffer.from('********', 'utf8');
const PAYLOAD_WITHHELD = Buffer.from('agentgate: withheld (a notification payload may carry masked data)', 'utf8');

/**
 * Mask the strings at [s0, e0, s1, e1, …] of a frame whose strings start at `first`; the
 * string at index `wholeAt` (if ≥ 0 and not empty) is replaced by `replacement`.
 */
function rewrite(
  frame: Buffer,
  first: number,
  bounds: readonly number[],
  plan: MaskingPlan,
  key: Buffer | undefined,
  byRule: Record<string, number>,
  wholeAt: number,
  replacement: Buffer,
): Buffer {
  const parts: Buffer[] = [frame.subarray(5, first)];
  let changed = false;
  for (let k = 0; k < bounds.length; k += 2) {
    const s = bounds[k]!;
    const e = bounds[k + 1]!;
    if (k / 2 === wholeAt && e > s) {
      addCount(byRule, UNTRACED_RULE);
      parts.push(replacement, ZERO);
      changed = true;
      continue;
    }
    const masked = maskTextBytes(frame, s, e, plan, key, byRule);
    if (masked !== undefined) changed = true;
    parts.push(masked ?? frame.subarray(s, e), ZERO);
  }
  if (!changed) return frame;
  return buildFrame(frame[0]!, parts);
}
