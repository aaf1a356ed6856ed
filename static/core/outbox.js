// Sends not yet acknowledged, and when to send them again. A retry always carries the
// entry's original cid, so the server answers a repeat with the original message.
// Pure functions: no DOM, no timers.

import { kindOf, peerOf } from './ids.js';

export const RETRYABLE = new Set(['rate_limited', 'unavailable', 'internal']);
export const MAX_AUTO_RETRIES = 5;
export const RETRY_CAP_MS = 30000;

// newEntry is an outbox entry for body in conv.
export function newEntry(cid, conv, body, me, now) {
  const entry = { cid, conv, body, created: now, status: 'pending', error: null, tries: 0 };
  if (kindOf(conv) === 'direct') entry.to = peerOf(conv, me);
  return entry;
}

// sendFrame is the send frame of an entry: `to` for a direct message, else `conv`.
export function sendFrame(entry) {
  const frame = { type: 'send', cid: entry.cid, body: entry.body };
  if (entry.to) frame.to = entry.to; else frame.conv = entry.conv;
  return frame;
}

// failed records an error answer to an entry's send.
export function failed(entry, f) {
  entry.status = 'error';
  entry.error = { code: String(f.code || 'error'), message: String(f.message || '') };
}

// retryDelay is how long to wait before sending a failed entry again by itself, or -1 when
// it waits for the user: an error that is not retryable, or too many tries. The server's
// retry_after_ms wins; else full jitter over 1 s·2^tries, capped. It counts the try.
export function retryDelay(entry, retryAfterMs, random = Math.random) {
  if (!RETRYABLE.has(entry.error?.code) || entry.tries >= MAX_AUTO_RETRIES) return -1;
  entry.tries++;
  return retryAfterMs > 0 ? retryAfterMs : random() * Math.min(RETRY_CAP_MS, 1000 * 2 ** entry.tries);
}

// toResend lists, oldest first, the entries to send after a (re)connect: pending ones, and
// retryable failures without a retry already scheduled.
export function toResend(entries, scheduled) {
  return [...entries].sort((a, b) => a.created - b.created).filter((e) =>
    e.status === 'pending' || (e.status === 'error' && RETRYABLE.has(e.error?.code) && !scheduled.has(e.cid)));
}

// restore turns stored entries back into outbox entries (pending again, unless they failed).
export function restore(saved) {
  const out = [];
  for (const e of saved || []) {
    if (e && e.cid && typeof e.body === 'string') out.push({ ...e, status: e.status === 'error' ? 'error' : 'pending' });
  }
  return out;
}
