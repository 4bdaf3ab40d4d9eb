/**
 * The reviewer's screen behind `agentgate approve` on a terminal: pending requests the
 * viewer may decide, live. Presentational: data comes from a RequestStore and decisions go
 * through `decide`, so it renders the same against the broker or in a test.
 *
 * Keys: ↑/↓ (or k/j) move, Enter details, `a` approve (optional reason, Enter confirms), `d` deny (type a reason, Enter sends,
 * Esc cancels), Esc back from details, `q` quit.
 */
import { useEffect, useRef, useState, useSyncExternalStore } from 'react';
import { Box, Text, useInput, useWindowSize } from 'ink';
import type { RequestView } from '../shared/api-types.js';
import type { Decision } from '../client/approvals.js';
import type { FeedState, RequestStore } from './request-store.js';
import { approvalProgress, bodyLine, bodyRows, coverage, decisionSummary, describeClassification, formatAge, oneLine, parameterList, requesterLabel, shownStatement, sizeOf, visible, wrapLines } from './format.js';

export interface ApproveScreenProps {
  store: RequestStore;
  decide(id: string, decision: Decision, reason: string | null): Promise<RequestView>;
  onExit(): void;
  /** Open this request's details first (`agentgate approve ID` on a terminal). */
  initialId?: string;
  /** Shown in the header: who is reviewing. */
  viewer?: string;
  now?: () => number;
}

/** `reason`: the confirmation step of a decision; a reason is optional for approve, required for deny. */
/** `scroll`: the first statement line the details show. */
type Mode = { kind: 'list' } | { kind: 'details'; id: string; scroll: number } | { kind: 'reason'; decision: Decision; id: string; text: string; back: 'list' | 'details' };
type Message = { tone: 'ok' | 'error' | 'info'; text: string };
type Cursor = { id: string | undefined; index: number };

/** The broker keeps this much of a reason; the prompt stops there too. */
const MAX_REASON = 2_000;

/** The selection follows its request when others arrive or leave; else it stays at its row. */
function cursorIndex(cursor: Cursor, items: readonly RequestView[]): number {
  const i = cursor.id === undefined ? -1 : items.findIndex((r) => r.id === cursor.id);
  return i >= 0 ? i : Math.min(cursor.index, Math.max(0, items.length - 1));
}

/** Pending requests this viewer can act on: what the list shows. */
export function reviewable(state: FeedState): RequestView[] {
  return state.requests.filter((r) => r.status === 'pending' && r.can_decide);
}

export function ApproveScreen(props: ApproveScreenProps) {
  const now = props.now ?? Date.now;
  const state = useSyncExternalStore(props.store.subscribe, props.store.getState);
  const items = reviewable(state);
  // Keys can arrive faster than renders: handlers read and write these refs, never a
  // render's stale copy, and the state setters only trigger the next frame.
  const [mode, setModeState] = useState<Mode>(props.initialId ? details(props.initialId) : { kind: 'list' });
  const modeRef = useRef(mode);
  const setMode = (m: Mode): void => {
    modeRef.current = m;
    setModeState(m);
  };
  const [cursor, setCursorState] = useState<Cursor>({ id: undefined, index: 0 });
  const cursorRef = useRef(cursor);
  const setCursor = (c: Cursor): void => {
    cursorRef.current = c;
    setCursorState(c);
  };
  const widthRef = useRef(100);
  const pageRef = useRef(20);
  /** Per request, how many statement lines (from the top) have been on screen: approving needs all. */
  const seenRef = useRef(new Map<string, number>());
  const seen = (id: string, lines: number): void => {
    seenRef.current.set(id, Math.max(seenRef.current.get(id) ?? 0, lines));
  };
  const busyRef = useRef<string | undefined>(undefined);
  const [busy, setBusyState] = useState<string | undefined>(undefined);
  const setBusy = (id: string | undefined): void => {
    busyRef.current = id;
    setBusyState(id);
  };
  const [message, setMessage] = useState<Message | undefined>(undefined);
  const [, setTick] = useState(0);
  const size = useWindowSize();

  // Ages and countdowns move on their own.
  useEffect(() => {
    const t = setInterval(() => setTick((n) => n + 1), 1_000);
    return () => clearInterval(t);
  }, []);

  const index = cursorIndex(cursor, items);
  const find = (id: string): RequestView | undefined => props.store.getState().requests.find((r) => r.id === id);

  const run = (id: string, decision: Decision, reason: string | null, back: 'list' | 'details'): void => {
    setBusy(id);
    setMessage({ tone: 'info', text: `${decision === 'approve' ? 'Approving' : 'Denying'} ${id}…` });
    props.decide(id, decision, reason).then(
      (view) => {
        props.store.upsert(view);
        setMessage({ tone: 'ok', text: decisionSummary(view) });
        setBusy(undefined);
        setMode(back === 'details' && view.can_decide ? details(id) : { kind: 'list' });
      },
      (err: unknown) => {
        const e = err as { message?: string; hint?: string };
        setMessage({ tone: 'error', text: `Could not ${decision} ${id}: ${e?.message ?? String(err)}${e?.hint ? ` (${e.hint})` : ''}` });
        setBusy(undefined);
        setMode(back === 'details' ? details(id) : { kind: 'list' });
      },
    );
  };

  /** `a`/`d` on a request: only when it still waits for this viewer. */
  const act = (r: RequestView | undefined, key: 'a' | 'd', from: 'list' | 'details'): void => {
    if (!r) return;
    if (!(r.status === 'pending' && r.can_decide)) {
      setMessage({ tone: 'error', text: `${r.id} is no longer waiting for your review (${r.status}).` });
      return;
    }
    // An approval covers the whole statement: only what was on the screen, all of it, may be approved.
    if (key === 'a' && from === 'list' && !fitsRow(r, statementWidth(widthRef.current))) {
      setMode(details(r.id));
      setMessage({ tone: 'info', text: `${r.id} does not fit in the list: read it whole here, then \`a\` approves.` });
      return;
    }
    if (key === 'a' && from === 'details') {
      const total = statementLayout(r, widthRef.current).length;
      const seen = seenRef.current.get(r.id) ?? 0;
      if (seen < total) {
        setMessage({ tone: 'error', text: `Read the statement to its end before approving: lines ${seen + 1}–${total} of ${total} have not been on screen (↓ or PgDn).` });
        return;
      }
    }
    // Both ask first: approving lets a production write run, so one key press must not do it.
    setMessage(undefined);
    setMode({ kind: 'reason', decision: key === 'a' ? 'approve' : 'deny', id: r.id, text: '', back: from });
  };

  useInput((input, key) => {
    const m = modeRef.current;
    if (input === 'q' && m.kind !== 'reason') {
      props.onExit();
      return;
    }
    if (busyRef.current !== undefined) return;
    if (m.kind === 'reason') {
      if (key.escape) {
        setMode(m.back === 'details' ? details(m.id) : { kind: 'list' });
        setMessage({ tone: 'info', text: `${m.decision === 'approve' ? 'Approve' : 'Deny'} cancelled; ${m.id} is still pending.` });
      } else if (key.return) {
        const reason = m.text.trim();
        if (reason === '' && m.decision === 'deny') setMessage({ tone: 'error', text: 'A denial needs a reason: type it, then Enter (Esc cancels).' });
        else run(m.id, m.decision, reason === '' ? null : reason, m.back);
      } else if (key.backspace || key.delete) {
        setMode({ ...m, text: m.text.slice(0, -1) });
      } else if (input && !key.ctrl && !key.meta) {
        // Pasted text arrives in one chunk; control characters never belong in a reason.
        // eslint-disable-next-line no-control-regex -- these are the characters it removes
        const clean = input.replace(/[\u0000-\u001f\u007f]/g, '');
        if (clean) setMode({ ...m, text: (m.text + clean).slice(0, MAX_REASON) });
      }
      return;
    }
    if (m.kind === 'details') {
      const r = find(m.id);
      const total = r ? statementLayout(r, widthRef.current).length : 0;
      const page = pageRef.current;
      const scrollTo = (top: number): void => {
        const scroll = Math.max(0, Math.min(top, total - page));
        seen(m.id, Math.min(total, scroll + page));
        setMode({ ...m, scroll });
      };
      if (key.downArrow || input === 'j') scrollTo(m.scroll + 1);
      else if (key.upArrow || input === 'k') scrollTo(m.scroll - 1);
      else if (key.pageDown || input === ' ') scrollTo(m.scroll + page);
      else if (key.pageUp) scrollTo(m.scroll - page);
      else if (key.escape || key.return || key.leftArrow) setMode({ kind: 'list' });
      else if (input === 'a' || input === 'd') act(find(m.id), input, 'details');
      return;
    }
    const list = reviewable(props.store.getState());
    const at = cursorIndex(cursorRef.current, list);
    const select = (i: number): void => {
      const clamped = Math.max(0, Math.min(i, list.length - 1));
      setCursor({ id: list[clamped]?.id, index: clamped });
    };
    if (key.upArrow || input === 'k') select(at - 1);
    else if (key.downArrow || input === 'j') select(at + 1);
    else if (key.return && list[at]) setMode(details(list[at].id));
    else if (input === 'a' || input === 'd') act(list[at], input, 'list');
  });

  const width = Math.max(60, size.columns || 100);
  const rows = size.rows || 30;
  widthRef.current = width;
  pageRef.current = statementPage(rows);
  // What the details draw of the statement counts as seen (the first page as soon as they open).
  let scroll = 0;
  if (mode.kind === 'details') {
    const r = find(mode.id);
    const total = r ? statementLayout(r, width).length : 0;
    scroll = Math.max(0, Math.min(mode.scroll, total - pageRef.current));
    seen(mode.id, Math.min(total, scroll + pageRef.current));
  }

  return (
    <Box flexDirection="column" width={width}>
      <Header state={state} count={items.length} viewer={props.viewer} />
      {mode.kind === 'list' && <List items={items} index={index} now={now()} width={width} maxItems={Math.max(3, Math.floor((rows - 8) / (items.some((r) => r.body) ? 3 : 2)))} />}
      {mode.kind === 'details' && <Details request={find(mode.id)} id={mode.id} now={now()} width={width} scroll={scroll} page={pageRef.current} />}
      {mode.kind === 'reason' && <ReasonPrompt request={find(mode.id)} decision={mode.decision} id={mode.id} text={mode.text} />}
      {message && <Text color={message.tone === 'error' ? 'red' : message.tone === 'ok' ? 'green' : undefined}>{message.text}</Text>}
      <Text dimColor>{help(mode, busy !== undefined)}</Text>
    </Box>
  );
}

function details(id: string): Mode {
  return { kind: 'details', id, scroll: 0 };
}

/** The list's statement column at this terminal width. */
function statementWidth(width: number): number {
  return Math.max(10, width - 2 - 5 - 16 - 12 - 14);
}

/** The statement (and its values) on one line, as its list row shows it, cut to the column. */
function rowText(r: RequestView): string {
  return oneLine(r.statement) + (r.parameters?.length ? ` -- ${parameterList(r) ?? ''}` : '') + (r.any_values ? ' [any values]' : '');
}

/** Whether the row shows all of it: one line's text within the column, and no body on another line. */
function fitsRow(r: RequestView, width: number): boolean {
  const text = rowText(r);
  return r.body === undefined && !/[\r\n]/.test(r.statement.trim()) && wrapLines(text, width - 1).length === 1;
}

/** The statement as the details box draws it: terminal lines at the box's inner width. */
function statementLayout(r: RequestView, width: number): string[] {
  return wrapLines(shownStatement(r.statement), Math.max(10, width - 4));
}

/** Statement lines the details show at once: the terminal less the rows above and below the box. */
function statementPage(rows: number): number {
  return Math.max(5, rows - 24);
}

function help(mode: Mode, busy: boolean): string {
  if (busy) return 'Working…';
  if (mode.kind === 'reason') return mode.decision === 'approve' ? 'Enter approve · Esc cancel' : 'Enter deny · Esc cancel';
  if (mode.kind === 'details') return '↑/↓ PgUp/PgDn scroll · a approve · d deny · Esc back · q quit';
  return '↑/↓ move · Enter details · a approve · d deny · q quit';
}

function Header({ state, count, viewer }: { state: FeedState; count: number; viewer: string | undefined }) {
  const live =
    state.status === 'live' ? <Text color="green">● live</Text> : state.status === 'connecting' ? <Text dimColor>○ connecting…</Text> : <Text color="yellow">○ reconnecting{state.error ? `: ${state.error}` : ''}</Text>;
  return (
    <Box justifyContent="space-between">
      <Text bold>
        {count === 0 ? 'Approvals' : `${count} waiting for your review`}
        {viewer ? <Text dimColor>{` · as ${visible(viewer, true)}`}</Text> : null}
      </Text>
      {live}
    </Box>
  );
}

function List({ items, index, now, width, maxItems }: { items: RequestView[]; index: number; now: number; width: number; maxItems: number }) {
  if (items.length === 0) {
    return (
      <Box flexDirection="column" marginY={1}>
        <Text>Nothing waiting for your review.</Text>
        <Text dimColor>New requests appear here as soon as they are held.</Text>
      </Box>
    );
  }
  // A window around the selection when there are more than fit.
  const start = Math.max(0, Math.min(index - Math.floor(maxItems / 2), items.length - maxItems));
  const shown = items.slice(start, start + maxItems);
  const stWidth = statementWidth(width);
  return (
    <Box flexDirection="column" marginY={1}>
      <Box>
        <Box width={2} />
        <Col w={5}>AGE</Col>
        <Col w={16}>REQUESTER</Col>
        <Col w={12}>TARGET</Col>
        <Col w={14}>RULE</Col>
        <Col w={stWidth}>STATEMENT</Col>
      </Box>
      {start > 0 && <Text dimColor>{`  … ${start} newer`}</Text>}
      {shown.map((r, i) => {
        const on = start + i === index;
        return (
          <Box key={r.id} flexDirection="column">
            <Box>
              <Box width={2}>
                <Text color="cyan">{on ? '›' : ' '}</Text>
              </Box>
              <Col w={5} on={on}>{formatAge(now - Date.parse(r.created_at))}</Col>
              <Col w={16} on={on}>{visible(r.requester.name ?? r.requester.sub, true)}</Col>
              <Col w={12} on={on}>{r.target}</Col>
              <Col w={14} on={on}>{r.rule}</Col>
              <Col w={stWidth} on={on}>{rowText(r)}</Col>
            </Box>
            {r.body && (
              // Its own line: a long path must not push what the write changes out of sight.
              <Box paddingLeft={7}>
                <Text wrap="truncate-end">{`body: ${bodyLine(r) ?? ''}`}</Text>
              </Box>
            )}
            <Box paddingLeft={7}>
              <Text dimColor wrap="truncate-end">{`held: ${visible(r.reason, true)} · ${approvalProgress(r)}`}</Text>
            </Box>
          </Box>
        );
      })}
      {start + shown.length < items.length && <Text dimColor>{`  … ${items.length - start - shown.length} older`}</Text>}
    </Box>
  );
}

function Col({ w, on, children }: { w: number; on?: boolean; children: string }) {
  return (
    <Box width={w} paddingRight={1}>
      <Text bold={on === true} wrap="truncate-end">
        {children}
      </Text>
    </Box>
  );
}

function Details({ request: r, id, now, width, scroll, page }: { request: RequestView | undefined; id: string; now: number; width: number; scroll: number; page: number }) {
  if (!r) {
    return (
      <Box marginY={1}>
        <Text>{`${id} is not among the requests you may review (it may have been decided, or the ID is wrong).`}</Text>
      </Box>
    );
  }
  const expiresIn = Date.parse(r.expires_at) - now;
  const rows: [string, string][] = [
    ['Status', r.status === 'pending' ? `pending, expires in ${formatAge(expiresIn)}` : r.status],
    ['Requester', `${requesterLabel(r)}, ${r.requester.kind}`],
    ['Target', `${r.target} (${r.protocol})`],
    ['Rule', `${r.rule} (policy ${r.policy})`],
    ['Why held', visible(r.reason, true)],
    ['Reason given', r.requester_reason !== undefined ? visible(r.requester_reason, true) : '(none)'],
    ['Approvals', approvalProgress(r)],
    ['Grant', r.grant_seconds ? `${formatAge(r.grant_seconds * 1000)} for the same statement` : 'one execution'],
    ['Approves', coverage(r)],
    ...(parameterList(r) ? [['Values', parameterList(r) ?? ''] as [string, string]] : []),
    ...bodyRows(r),
    ['Age', formatAge(now - Date.parse(r.created_at))],
    ['Classification', visible(describeClassification(r.classification), true)],
    ...r.decisions.map((d): [string, string] => ['Decision', visible(`${d.approver.name ?? d.approver.sub}: ${d.decision}${d.reason ? ` — ${d.reason}` : ''}`, true)]),
    ['Statement', sizeOf(r.statement)],
  ];
  const lines = statementLayout(r, width);
  const shown = lines.slice(scroll, scroll + page);
  return (
    <Box flexDirection="column" marginY={1}>
      <Text bold>{`Request ${r.id}`}</Text>
      {rows.map(([k, v], i) => (
        <Box key={i}>
          <Box width={16}>
            <Text dimColor>{k}</Text>
          </Box>
          <Text wrap="wrap">{v}</Text>
        </Box>
      ))}
      {lines.length > page && <Text color="yellow">{`statement lines ${scroll + 1}–${scroll + shown.length} of ${lines.length}${scroll + shown.length < lines.length ? ' · ↓/PgDn reads on; approving needs all of it on screen first' : ''}`}</Text>}
      <Box borderStyle="round" paddingX={1} flexDirection="column">
        {shown.map((l, i) => (
          <Text key={i} wrap="wrap">
            {l === '' ? ' ' : l}
          </Text>
        ))}
      </Box>
    </Box>
  );
}

function ReasonPrompt({ request, decision, id, text }: { request: RequestView | undefined; decision: Decision; id: string; text: string }) {
  const what = `${id}${request ? ` (${visible(request.requester.sub, true)} on ${request.target})` : ''}`;
  return (
    <Box flexDirection="column" marginY={1}>
      <Text>{decision === 'approve' ? `Approve ${what}? The statement runs once enough approvers agree.` : `Deny ${what}: the requester sees your reason.`}</Text>
      <Text>
        {decision === 'approve' ? 'Reason (optional): ' : 'Reason: '}
        {text}
        <Text inverse> </Text>
      </Text>
    </Box>
  );
}
