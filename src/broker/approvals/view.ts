/**
 * Who may see and decide a request, and the wire shapes (src/shared/api-types.ts) built
 * from the service's records. Pure functions: the service and the routes share them.
 */
import type { ApprovalRequestJson, RequestView } from '../../shared/api-types.js';
import type { Identity } from '../identity/types.js';
import type { ApprovalRequest } from './types.js';
import { skeleton } from '../../shared/confusables.js';

/**
 * Whether two subjects may be the same person: compared after Unicode compatibility folding,
 * without surrounding whitespace, case-insensitively, and with letters of other scripts that
 * pass for Latin ones (Cyrillic `а` in `аgent-7`) read as the letter they pass for. An
 * identity provider that hands out `Bob` and `bob` (or a full-width `ｂｏｂ`, or `Ьоb`) for
 * one account, or lets anyone pick a look-alike of another's name, must not let that account
 * approve its own request or count twice; telling apart two people whose subjects read the
 * same is not worth that risk.
 */
export function sameSubject(a: string, b: string): boolean {
  return subjectKey(a) === subjectKey(b);
}

function subjectKey(sub: string): string {
  return skeleton(sub).trim();
}

/**
 * In one of the rule's approver groups, of a kind the rule accepts (human unless it opts
 * others in: a CI token or another agent mapped to the group is not a reviewer), and not
 * the requester (AC-5: no self-approval).
 */
export function isReviewer(viewer: Identity, r: ApprovalRequest): boolean {
  const kinds = r.approvers.kinds ?? ['human'];
  return !sameSubject(viewer.sub, r.requester.sub) && kinds.includes(viewer.kind) && viewer.groups.some((g) => r.approvers.groups.includes(g));
}

/** A reviewer who may act on it now: pending and not yet decided by them. */
export function mayDecide(viewer: Identity, r: ApprovalRequest): boolean {
  return r.status === 'pending' && isReviewer(viewer, r) && !r.decisions.some((d) => sameSubject(d.approver.sub, viewer.sub));
}

/** Listed for the viewer: requests they made or may review. */
export function isListedFor(viewer: Identity, r: ApprovalRequest): boolean {
  return viewer.sub === r.requester.sub || isReviewer(viewer, r);
}

/** Readable by the viewer: the requester, possible reviewers, and auditors. */
export function canSee(viewer: Identity, r: ApprovalRequest, auditorGroups: readonly string[]): boolean {
  return isListedFor(viewer, r) || viewer.groups.some((g) => auditorGroups.includes(g));
}

export function requestJson(r: ApprovalRequest): ApprovalRequestJson {
  const requester: ApprovalRequestJson['requester'] = { sub: r.requester.sub, groups: [...r.requester.groups], kind: r.requester.kind };
  if (r.requester.name !== undefined) requester.name = r.requester.name;
  const out: ApprovalRequestJson = {
    id: r.id,
    status: r.status,
    revision: r.revision,
    requester,
    target: r.target,
    protocol: r.protocol,
    session: r.session,
    ...(r.connectSession !== undefined ? { connect_session: r.connectSession } : {}),
    statement: r.statement,
    ...(r.parameters !== undefined ? { parameters: [...r.parameters] } : {}),
    ...(r.body !== undefined ? { body: { content_type: r.body.contentType, text: r.body.text } } : {}),
    ...(r.anyValues === true ? { any_values: true } : {}),
    classification: structuredClone(r.classification),
    policy: r.policy,
    rule: r.rule,
    reason: r.reason,
    ...(r.requesterReason !== undefined ? { requester_reason: r.requesterReason } : {}),
    approvers: { groups: [...r.approvers.groups], count: r.approvers.count, kinds: [...(r.approvers.kinds ?? ['human'])] },
    fingerprint: r.fingerprint,
    created_at: r.created_at,
    expires_at: r.expires_at,
    decisions: r.decisions.map((d) => ({ ...d, approver: { ...d.approver } })),
  };
  if (r.grantSeconds !== undefined) out.grant_seconds = r.grantSeconds;
  if (r.grant_until !== undefined) out.grant_until = r.grant_until;
  return out;
}

export function requestView(r: ApprovalRequest, viewer: Identity): RequestView {
  return { ...requestJson(r), mine: viewer.sub === r.requester.sub, can_decide: mayDecide(viewer, r) };
}
