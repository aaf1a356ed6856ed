// Sync and gap filling: which conversations to ask for, and what a `synced` frame proves.
// Pure functions over the conversations (see conv.js).

import { hasGap, maxSeq } from './conv.js';

// syncFrame asks for what was missed: scope null = everything (after hello: every
// conversation held, and the recent window of any this client does not know), or a list
// of conversation ids with a gap (only those).
export function syncFrame(convs, scope) {
  const since = {};
  for (const c of convs) if (scope ? scope.includes(c.id) : c.last > 0) since[c.id] = c.last;
  return scope ? { type: 'sync', since, only: true } : { type: 'sync', since };
}

// gaps lists the conversations holding a message above their contiguous seq.
export const gaps = (convs) => [...convs].filter(hasGap).map((c) => c.id);

// syncedSeqs lists the [conversation id, latest seq] pairs of a synced frame that count for
// the sync in flight (a gap sync counts only the conversations it named).
export function syncedSeqs(f, scope) {
  const latest = f.convs && typeof f.convs === 'object' ? f.convs : {};
  return Object.entries(latest).filter(([id]) => !scope || scope.includes(id));
}

// raiseLast records that the server sent all it has up to seq.
export function raiseLast(c, seq) {
  if (typeof seq === 'number' && seq > c.last) c.last = seq;
}

// unfillable lists the conversations a gap sync named that its synced says nothing about:
// their gap cannot be filled, so the client stops asking (see giveUpGap).
export function unfillable(f, scope) {
  const latest = f.convs && typeof f.convs === 'object' ? f.convs : {};
  return (scope || []).filter((id) => !(id in latest));
}

// giveUpGap treats everything held as contiguous.
export function giveUpGap(c) {
  c.last = maxSeq(c);
}
