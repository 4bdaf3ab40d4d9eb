/**
 * ParameterStatus and NotificationResponse: names and values a session can set.
 *
 * `select set_config('application_name', (select email from users limit 1), false)`
 * makes the server report the email in a ParameterStatus; `NOTIFY "alice@example.com"`
 * puts it in a notification's channel name. Both strings of each message go through the
 * detectors (outbound-text.ts, which also replaces text that is not valid UTF-8).
 *
 * maskParameterStatusFrame is standalone so the proxy can mask the ParameterStatus
 * frames it relays from the server's startup, before or without a ResultMasker;
 * ResultMasker.parameterStatus uses it for the ones that come later.
 */
import { ProtocolError } from '../postgres/errors.js';
import type { MaskingPlan } from './rules.js';
import { buildFrame, cstringEnd, maskTextBytes } from './outbound-text.js';

const ZERO = Buffer.from([0]);
const PARAMETER_STATUS = 0x53;
const NOTIFICATION = 0x41;

/**
 * The ParameterStatus `frame` ('S', length, name, value) with detector hits in its name
 * and value masked: the same Buffer when nothing changed. Counts are added to `byRule`.
 * Throws ProtocolError on a malformed message.
 */
export function maskParameterStatusFrame(frame: Buffer, plan: MaskingPlan, key: Buffer | undefined, byRule: Record<string, number> = {}): Buffer {
  if (frame[0] !== PARAMETER_STATUS) throw new ProtocolError('maskParameterStatusFrame: not a ParameterStatus message');
  const nameEnd = cstringEnd(frame, 5, 'ParameterStatus');
  const valueEnd = cstringEnd(frame, nameEnd + 1, 'ParameterStatus');
  if (plan.detectors === 0) return frame;
  return rewrite(frame, 5, [5, nameEnd, nameEnd + 1, valueEnd], plan, key, byRule);
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
  if (plan.detectors === 0) return frame;
  return rewrite(frame, 9, [9, channelEnd, channelEnd + 1, payloadEnd], plan, key, byRule);
}

/** Mask the strings at [s0, e0, s1, e1, …] of a frame whose strings start at `first`. */
function rewrite(frame: Buffer, first: number, bounds: readonly number[], plan: MaskingPlan, key: Buffer | undefined, byRule: Record<string, number>): Buffer {
  const parts: Buffer[] = [frame.subarray(5, first)];
  let changed = false;
  for (let k = 0; k < bounds.length; k += 2) {
    const s = bounds[k]!;
    const e = bounds[k + 1]!;
    const masked = maskTextBytes(frame, s, e, plan, key, byRule);
    if (masked !== undefined) changed = true;
    parts.push(masked ?? frame.subarray(s, e), ZERO);
  }
  if (!changed) return frame;
  return buildFrame(frame[0]!, parts);
}
