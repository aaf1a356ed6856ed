// The model of one conversation as this client holds it: messages ordered by seq and
// deduplicated by id, the contiguous seq held, receipt marks that only rise, and the state
// of paging back through history. Pure functions over plain objects: no DOM, no timers.

import { kindOf, peerOf } from './ids.js';

export const KEEP_IN_MEMORY = 1000; // messages per conversation, raised by loading earlier pages
export const PAGE = 50; // messages per history page

// newConv is an empty conversation.
export function newConv(id, now) {
  return {
    id, kind: kindOf(id), created: now,
    name: '', // a group's name, from the REST API ('' until known)
    messages: [], byId: new Map(), seqs: new Set(), // messages ordered by seq
    last: 0, // last contiguous seq held
    read: 0, sentRead: 0, sentDelivered: 0, receiptAt: 0, receiptTimer: 0, // my receipts
    marks: new Map(), // other member -> {delivered, read}
    typing: new Map(), // user -> timer that clears the indicator
    keep: KEEP_IN_MEMORY,
    older: 'more', // earlier history: 'more' to load, 'loading', or 'done'
    newestPending: false, // the history request in flight asks for the newest page
    unreadHint: 0, // the server's unread count (GET /api/conversations), up to lastHint
    lastHint: null, // the newest message the server's list named
  };
}

export const maxSeq = (c) => (c.messages.length ? c.messages[c.messages.length - 1].seq : 0);

// insertMessage dedupes by id, keeps seq order and returns whether anything changed. A
// tombstone (deleted: true) replaces a message held with the same id.
export function insertMessage(c, m) {
  const old = c.byId.get(m.id);
  if (old) {
    if (!m.deleted || old.deleted) return false;
    Object.assign(old, { deleted: true, body: '' });
    return true;
  }
  const msg = { id: m.id, conv: c.id, seq: m.seq, from: m.from, body: m.deleted ? '' : String(m.body ?? ''),
    ts: m.ts, cid: m.cid || '', to: m.to || '', deleted: !!m.deleted };
  let lo = 0, hi = c.messages.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (c.messages[mid].seq <= msg.seq) lo = mid + 1; else hi = mid;
  }
  c.messages.splice(lo, 0, msg);
  c.byId.set(msg.id, msg);
  c.seqs.add(msg.seq);
  while (c.messages.length > c.keep) {
    const gone = c.messages.shift();
    c.byId.delete(gone.id);
    c.seqs.delete(gone.seq);
  }
  advance(c);
  return true;
}

// advance moves `last` over every seq held right after it.
export function advance(c) {
  while (c.seqs.has(c.last + 1)) c.last++;
}

// hasGap reports whether a message above the contiguous seq is held (something is missing).
export const hasGap = (c) => maxSeq(c) > c.last;

// unreadCount counts others' live messages above my read mark. With the server's count
// from the conversation list (unreadHint, up to lastHint's seq), that count stands until
// the read mark reaches lastHint, and only messages above lastHint are counted here.
export function unreadCount(c, me) {
  const hintSeq = c.lastHint?.seq || 0;
  let n = c.unreadHint > 0 && c.read < hintSeq ? c.unreadHint : 0;
  const floor = Math.max(c.read, hintSeq);
  for (let i = c.messages.length - 1; i >= 0 && c.messages[i].seq > floor; i--) {
    if (c.messages[i].from !== me && !c.messages[i].deleted) n++;
  }
  return n;
}

// applySummary takes an entry of GET /api/conversations: the name, the newest message and
// the unread count. Nothing unread there means read up to that message here too.
export function applySummary(c, item) {
  if (typeof item.name === 'string' && c.kind === 'group') c.name = item.name;
  const last = item.last_message;
  if (!last || typeof last.seq !== 'number') return;
  c.lastHint = { id: last.id, conv: c.id, seq: last.seq, from: last.from, body: last.deleted ? '' : String(last.body ?? ''),
    ts: last.ts, deleted: !!last.deleted };
  c.unreadHint = Math.max(0, Number(item.unread) || 0);
  if (c.unreadHint === 0) {
    c.read = Math.max(c.read, last.seq);
    c.sentRead = Math.max(c.sentRead, last.seq);
  }
}

// lastMessage is the newest message known: held, or named by the conversation list.
export function lastMessage(c) {
  const held = c.messages[c.messages.length - 1];
  return held && (!c.lastHint || held.seq >= c.lastHint.seq) ? held : c.lastHint || held || null;
}

// applyReceipt records a receipt frame's mark; marks only rise. It reports whether
// anything changed.
export function applyReceipt(c, f, me) {
  if (typeof f.seq !== 'number') return false;
  if (f.user === me) { // my own mark, from another device
    if (f.status !== 'read' || f.seq <= c.read) return false;
    Object.assign(c, { read: f.seq, sentRead: Math.max(c.sentRead, f.seq) });
    return true;
  }
  const mark = c.marks.get(f.user) || { delivered: 0, read: 0 };
  const before = mark.read + ':' + mark.delivered;
  if (f.status === 'read') mark.read = Math.max(mark.read, f.seq);
  mark.delivered = Math.max(mark.delivered, f.seq); // read implies delivered
  c.marks.set(f.user, mark);
  return before !== mark.read + ':' + mark.delivered;
}

// nextReceipt is the receipt frame this client owes for c, or null: "read" when the read
// mark rose past what was sent, else (outside public) "delivered" for others' newest message.
export function nextReceipt(c, me) {
  if (c.read > c.sentRead) return { type: 'receipt', conv: c.id, seq: c.read, status: 'read' };
  if (c.kind === 'public') return null; // "delivered" only where someone shows it
  const top = c.messages.findLast((m) => m.from !== me)?.seq || 0;
  if (top > Math.max(c.sentDelivered, c.sentRead)) return { type: 'receipt', conv: c.id, seq: top, status: 'delivered' };
  return null;
}

// receiptSent records that frame (from nextReceipt) went out at `now`.
export function receiptSent(c, frame, now) {
  c.receiptAt = now;
  if (frame.status === 'read') c.sentRead = frame.seq;
  c.sentDelivered = Math.max(c.sentDelivered, frame.seq);
}

// ownStatus is the delivery state shown under one of my sent messages in a DM.
export function ownStatus(c, m, me) {
  if (c.kind !== 'direct' || m.from !== me || !m.id) return '';
  const mark = c.marks.get(peerOf(c.id, me)) || { delivered: 0, read: 0 };
  return mark.read >= m.seq ? 'read' : mark.delivered >= m.seq ? 'delivered' : 'sent';
}

// historyFrame is the request for the page below the oldest message held (newest: the
// newest page), or null while a page is loading.
export function historyFrame(c, newest) {
  if (c.older === 'loading') return null;
  const frame = { type: 'history', conv: c.id, limit: PAGE };
  if (!newest && c.messages.length) frame.before = c.messages[0].seq;
  return frame;
}

// historyRequested marks a page as in flight.
export function historyRequested(c, newest) {
  Object.assign(c, { older: 'loading', newestPending: newest });
}

// applyHistoryPage takes a history frame's page into c. It answers whether the page was
// the newest one asked for: then everything up to its top seq is held.
export function applyHistoryPage(c, f) {
  const newest = c.newestPending && !f.before;
  c.keep = Math.max(c.keep, c.messages.length + f.messages.length);
  let top = 0;
  for (const m of f.messages) {
    if (typeof m.id !== 'string' || typeof m.seq !== 'number') continue;
    insertMessage(c, m);
    top = Math.max(top, m.seq);
  }
  c.older = f.next_before ? 'more' : 'done';
  if (newest) {
    c.newestPending = false;
    if (top > c.last) c.last = top;
  }
  return newest;
}

// hasOlder reports whether "Load earlier messages" applies: a first message above seq 1
// and a next page not known to be absent.
export function hasOlder(c) {
  const first = c && c.messages[0];
  return !!first && first.seq > 1 && c.older !== 'done';
}
